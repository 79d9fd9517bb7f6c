"""pixi.lock parsing: every layout, derived fields, location kinds and the errors users meet."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from builders import build_package
from conftest import REALDATA
from lockfiles import conda, conda_at, write_lock

from pixi_pack.errors import LockfileError
from pixi_pack.lock.lockfile import (
    find_lockfile,
    load_lockfile,
    parse_lockfile,
    platform_subdir,
    resolve_location,
    select_environment,
)

REAL_LOCKS = sorted((REALDATA / "locks").glob("*.lock*")) if REALDATA.is_dir() else []


def _environments(data: dict[str, object]) -> list[tuple[str, str]]:
    if "environments" not in data:
        meta = data["metadata"]
        assert isinstance(meta, dict)
        return [("default", p) for p in meta["platforms"]]
    envs = data["environments"]
    assert isinstance(envs, dict)
    return [(e, p) for e, body in envs.items() for p in (body.get("packages") or {})]


@pytest.mark.skipif(not REAL_LOCKS, reason="../shared/realdata is absent")
@pytest.mark.parametrize("path", REAL_LOCKS, ids=lambda p: p.name)
def test_every_real_lockfile_parses(path: Path) -> None:
    data = load_lockfile(path)
    pairs = _environments(data)
    assert pairs
    for environment, platform in pairs:
        env = select_environment(data, environment, platform, path.parent)
        for package in env.conda_packages:
            assert package.name and package.version and package.build
            assert package.file_name.endswith((".conda", ".tar.bz2"))
            assert package.subdir in ("noarch", platform_subdir(data, platform))
            assert package.sha256 or package.md5 or "<" in package.location
        assert env.conda_packages or env.pypi_packages or env.source_packages or not pairs


@pytest.mark.skipif(not REAL_LOCKS, reason="../shared/realdata is absent")
def test_real_v6_record_fields_are_derived_from_the_url() -> None:
    path = REALDATA / "locks" / "pixipack-pypi-wheel-packages.v6.lock"
    env = select_environment(load_lockfile(path), "default", "linux-64", path.parent)
    by_name = {p.name: p for p in env.conda_packages}
    mutex = by_name["_libgcc_mutex"]
    assert (mutex.version, mutex.build, mutex.subdir) == ("0.1", "conda_forge", "linux-64")
    assert mutex.record["build_number"] == 0
    assert by_name["_openmp_mutex"].record["build_number"] == 16  # explicit beats derived
    assert by_name["bzip2"].record["build_number"] == 7  # derived from the build string
    assert by_name["pip"].record["noarch"] == "python"  # noarch subdir + "py" in the build
    assert by_name["tzdata"].record["noarch"] == "generic"
    assert "noarch" not in by_name["python"].record
    assert by_name["python"].record["arch"] == "x86_64"
    wheels = {w.name: w for w in env.pypi_packages}
    assert wheels["numpy"].location.startswith("https://files.pythonhosted.org/")  # direct+ dropped
    assert wheels["numpy"].is_wheel
    local = wheels["my-webserver"]
    assert local.location == str((path.parent / "../webserver/my_webserver-0.1.0-py3-none-any.whl").resolve())


@pytest.mark.skipif(not REAL_LOCKS, reason="../shared/realdata is absent")
def test_real_v7_conda_source_packages_are_reported() -> None:
    path = REALDATA / "locks" / "pixipack-local-build.v7.lock"
    env = select_environment(load_lockfile(path), "default", "linux-64", path.parent)
    assert len(env.source_packages) == 3
    assert env.conda_packages


@pytest.mark.skipif(not REAL_LOCKS, reason="../shared/realdata is absent")
def test_legacy_v1_layout_converts_dependencies() -> None:
    path = REALDATA / "locks" / "pixipack-auth.lock"
    env = select_environment(load_lockfile(path), "default", "linux-64", path.parent)
    mutex = next(p for p in env.conda_packages if p.name == "_openmp_mutex")
    assert "libgomp >=7.5.0" in mutex.record["depends"]
    assert mutex.sha256 == "fbe2c5e56a653bebb982eda4876a9178aedfc2b545f25d0ce9c4c0b508253d22"
    assert env.channels[0] == "https://repo.prefix.dev/setup-pixi-test/"


@pytest.mark.parametrize("version", [4, 5, 6, 7])
def test_written_lockfiles_of_every_version_select_the_same_records(tmp_path: Path, version: int) -> None:
    pkg = build_package(tmp_path / "pkgs", "foo", "1.2", "py_3", noarch="python", depends=["bar >=1"])
    other = build_package(tmp_path / "pkgs", "bar", "2.0", "h1_0", subdir="linux-64", fmt="tar.bz2")
    lock = write_lock(
        tmp_path / "pixi.lock",
        {
            "default": {
                "linux-64": [
                    conda(pkg, "https://example.invalid/ch"),
                    conda(other, "https://example.invalid/ch"),
                ]
            }
        },
        ["https://example.invalid/ch"],
        version=version,
    )
    env = select_environment(load_lockfile(lock), "default", "linux-64", tmp_path)
    assert [p.file_name for p in env.conda_packages] == [pkg.file_name, other.file_name]
    foo, bar = env.conda_packages
    assert foo.subdir == "noarch" and foo.record["noarch"] == "python"
    assert foo.record["depends"] == ["bar >=1"]
    assert foo.sha256 == pkg.sha256 and bar.md5 == other.md5
    assert bar.record["build_number"] == 0 and bar.subdir == "linux-64"
    assert env.channels == ("https://example.invalid/ch",)


def test_locations_relative_absolute_and_file_urls(tmp_path: Path) -> None:
    pkg = build_package(tmp_path / "pkgs" / "linux-64", "foo", "1.0", "0")
    (tmp_path / "project").mkdir()
    entries = [
        conda_at(pkg, "../pkgs/linux-64/foo-1.0-0.conda", explicit=True),
    ]
    lock = write_lock(tmp_path / "project" / "pixi.lock", {"default": {"linux-64": entries}}, [], version=6)
    env = select_environment(load_lockfile(lock), "default", "linux-64", lock.parent)
    assert env.conda_packages[0].location == str(pkg.path)
    assert resolve_location("file:///x/y.conda", tmp_path) == "file:///x/y.conda"
    assert resolve_location("/abs/y.conda", tmp_path) == "/abs/y.conda"
    assert resolve_location("direct+https://h/x.whl", tmp_path) == "https://h/x.whl"


def test_unknown_environment_and_platform_list_what_exists(tmp_path: Path) -> None:
    pkg = build_package(tmp_path, "foo", "1.0", "0")
    lock = write_lock(
        tmp_path / "pixi.lock",
        {"default": {"linux-64": [conda(pkg, "https://x.invalid/c")]}, "prod": {"linux-64": []}},
        [],
    )
    data = load_lockfile(lock)
    with pytest.raises(
        LockfileError, match=r"environment not found in lockfile: dev \(available: default, prod\)"
    ):
        select_environment(data, "dev", "linux-64", tmp_path)
    with pytest.raises(
        LockfileError, match=r"platform not found in lockfile: win-64 \(available for default: linux-64\)"
    ):
        select_environment(data, "default", "win-64", tmp_path)


def test_v7_named_platforms_resolve_to_their_subdir() -> None:
    data = {"version": 7, "platforms": [{"name": "jetson", "subdir": "linux-aarch64"}]}
    assert platform_subdir(data, "jetson") == "linux-aarch64"
    assert platform_subdir(data, "linux-64") == "linux-64"
    with pytest.raises(LockfileError, match="unknown platform: nonsense"):
        platform_subdir(data, "nonsense")


def test_malformed_and_unsupported_lockfiles(tmp_path: Path) -> None:
    with pytest.raises(LockfileError, match="could not parse"):
        parse_lockfile("version: 6\nenvironments: [unclosed\n")
    with pytest.raises(LockfileError, match="unsupported lockfile version 99"):
        parse_lockfile(yaml.safe_dump({"version": 99, "environments": {}}))
    with pytest.raises(LockfileError, match="not a pixi lockfile"):
        parse_lockfile("just a string")


def test_find_lockfile(tmp_path: Path) -> None:
    with pytest.raises(LockfileError, match="manifest not found"):
        find_lockfile(tmp_path / "nope" / "pixi.toml")
    (tmp_path / "pixi.toml").write_text("[workspace]\n")
    with pytest.raises(LockfileError, match="lockfile not found"):
        find_lockfile(tmp_path / "pixi.toml")
    (tmp_path / "pixi.lock").write_text("version: 6\n")
    assert find_lockfile(tmp_path) == tmp_path / "pixi.lock"
    assert find_lockfile(tmp_path / "pixi.toml") == tmp_path / "pixi.lock"
