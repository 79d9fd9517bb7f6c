"""Injected conda packages: reading their metadata from real archives, and checking them like rattler."""

from __future__ import annotations

import bz2
import io
import json
import tarfile
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from builders import build_package

from pixi_pack.errors import PixiPackError
from pixi_pack.lock.lockfile import load_lockfile, select_environment
from pixi_pack.models import CondaPackage
from pixi_pack.pack.inject import check_compatible, load_injected


def locked(
    name: str,
    version: str,
    build: str = "0",
    *,
    depends: Sequence[str] = (),
    constrains: Sequence[str] = (),
    subdir: str = "linux-64",
) -> CondaPackage:
    """A package as the lockfile gives it (a URL and a record)."""
    record: dict[str, Any] = {
        "name": name,
        "version": version,
        "build": build,
        "build_number": 0,
        "depends": list(depends),
        "subdir": subdir,
    }
    if constrains:
        record["constrains"] = list(constrains)
    file_name = f"{name}-{version}-{build}.conda"
    return CondaPackage(f"https://example.invalid/{subdir}/{file_name}", file_name, subdir, record)


ENVIRONMENT = (
    locked(
        "python", "3.12.8", "h9e4cc4f_1_cpython", depends=["__glibc >=2.17,<3.0.a0", "libzlib >=1.3.1,<2.0a0"]
    ),
    locked("libzlib", "1.3.1", "hb9d3cd8_2", depends=["__glibc >=2.17"], constrains=["zlib 1.3.1 *_2"]),
    locked("numpy", "1.26.4", "py312heda63a1_0", depends=["python >=3.12,<3.13.0a0", "libzlib"]),
    locked("pydantic", "2.7.3", "pyhd8ed1ab_0", subdir="noarch", depends=["python >=3.8"]),
)


def inject(
    tmp_path: Path, name: str = "my-pkg", version: str = "1.0", build: str = "0", **kwargs: Any
) -> CondaPackage:
    """A real package built in ``tmp_path``, read back as ``--inject`` reads it (noarch unless told)."""
    kwargs.setdefault("subdir", "noarch")
    return load_injected(build_package(tmp_path, name, version, build, **kwargs).path)


# ---- load_injected ---------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["conda", "tar.bz2"])
def test_load_injected_reads_the_record_and_hashes(tmp_path: Path, fmt: Any) -> None:
    built = build_package(
        tmp_path,
        "local-package",
        "1.0.0",
        "hbefa133_0",
        subdir="linux-64",
        build_number=3,
        depends=["python >=3.12", "__glibc >=2.17"],
        constrains=["numpy >=1.20"],
        fmt=fmt,
        extra_index={"track_features": "", "license_family": "MIT"},
    )
    package = load_injected(built.path)
    assert package.location == str(built.path.resolve())
    assert Path(package.location).is_absolute()
    assert (package.file_name, package.subdir) == (built.file_name, "linux-64")
    assert dict(package.record) == built.record
    assert package.dist_name == "local-package-1.0.0-hbefa133_0"
    assert (package.sha256, package.md5, package.size) == (built.sha256, built.md5, built.size)


def test_load_injected_accepts_a_relative_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    built = build_package(tmp_path / "dist", "rel", subdir="noarch")
    monkeypatch.chdir(tmp_path)
    package = load_injected(Path("dist") / built.file_name)
    assert package.location == str(built.path.resolve())


def test_load_injected_derives_a_missing_subdir(tmp_path: Path) -> None:
    # Old packages have platform and arch but no subdir; rattler derives linux-64 from linux + x86_64.
    built = build_package(tmp_path, "old", subdir="linux-64", extra_index={"subdir": None})
    package = load_injected(built.path)
    assert package.subdir == package.record["subdir"] == "linux-64"


def test_load_injected_missing_file(tmp_path: Path) -> None:
    with pytest.raises(PixiPackError, match=r"cannot inject .*nope-1.0-0.conda: no such file"):
        load_injected(tmp_path / "nope-1.0-0.conda")


def test_load_injected_refuses_a_directory(tmp_path: Path) -> None:
    (tmp_path / "dir.conda").mkdir()
    with pytest.raises(PixiPackError, match="no such file"):
        load_injected(tmp_path / "dir.conda")


@pytest.mark.parametrize("name", ["notes.txt", "package.zip", "package.tar.gz"])
def test_load_injected_refuses_other_files(tmp_path: Path, name: str) -> None:
    (tmp_path / name).write_text("hello\n")
    with pytest.raises(PixiPackError, match="not a conda package"):
        load_injected(tmp_path / name)


@pytest.mark.parametrize("name", ["fake-1.0-0.conda", "fake-1.0-0.tar.bz2"])
def test_load_injected_refuses_garbage(tmp_path: Path, name: str) -> None:
    (tmp_path / name).write_bytes(b"this is not an archive\n" * 10)
    with pytest.raises(PixiPackError, match="not a readable conda package"):
        load_injected(tmp_path / name)


def test_load_injected_refuses_a_truncated_package(tmp_path: Path) -> None:
    built = build_package(tmp_path, "cut", subdir="noarch", fmt="tar.bz2")
    built.path.write_bytes(built.path.read_bytes()[:100])
    with pytest.raises(PixiPackError, match="not a readable conda package"):
        load_injected(built.path)


def _tar(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_load_injected_without_index_json(tmp_path: Path) -> None:
    path = tmp_path / "noindex-1.0-0.tar.bz2"
    path.write_bytes(bz2.compress(_tar({"info/files": b"lib/x\n", "lib/x": b"x"})))
    with pytest.raises(PixiPackError, match=r"has no info/index\.json"):
        load_injected(path)


def test_load_injected_defaults_depends(tmp_path: Path) -> None:
    path = tmp_path / "bare-1.0-0.tar.bz2"
    index = {"name": "bare", "version": "1.0", "build": "0", "subdir": "noarch", "arch": None}
    path.write_bytes(bz2.compress(_tar({"info/index.json": json.dumps(index).encode()})))
    record = load_injected(path).record
    assert record["depends"] == []
    assert "arch" not in record  # no nulls, as rattler writes repodata


def test_load_injected_conda_without_info_tar(tmp_path: Path) -> None:
    path = tmp_path / "noinfo-1.0-0.conda"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("metadata.json", json.dumps({"conda_pkg_format_version": 2}))
    with pytest.raises(PixiPackError, match=r"has no info-\*\.tar\.zst"):
        load_injected(path)


@pytest.mark.parametrize(
    ("index", "message"),
    [
        (b"[1, 2]", "is not a JSON object"),
        (b"{not json", "not a readable conda package"),
        (json.dumps({"version": "1", "build": "0"}).encode(), "has no name"),
        (json.dumps({"name": "x", "version": "1", "build": "0", "depends": "abc"}).encode(), "not a list"),
        (json.dumps({"name": "x", "version": "1", "build": "0"}).encode(), "has no subdir"),
    ],
)
def test_load_injected_bad_index_json(tmp_path: Path, index: bytes, message: str) -> None:
    path = tmp_path / "bad-1.0-0.tar.bz2"
    path.write_bytes(bz2.compress(_tar({"info/index.json": index})))
    with pytest.raises(PixiPackError, match=message):
        load_injected(path)


def test_load_injected_real_packages(realdata: Path) -> None:
    for name in ("my-webserver-0.1.0-pyh4616a5c_0.conda", "my-webserver-0.1.0-pyh4616a5c_0.tar.bz2"):
        package = load_injected(realdata / "packages" / name)
        assert (package.name, package.subdir, package.record["noarch"]) == (
            "my-webserver",
            "noarch",
            "python",
        )
        assert package.record["depends"] == ["python >=3.12", "fastapi", "python"]
        assert package.record["constrains"] == ["pydantic >=2,<3"]


def test_load_injected_refuses_a_malformed_real_conda(realdata: Path) -> None:
    with pytest.raises(PixiPackError, match="cannot inject"):
        load_injected(realdata / "packages" / "broken" / "ca-certificates-2024.7.4-hbcca054_0.conda")


# ---- check_compatible ------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["conda", "tar.bz2"])
def test_compatible_inject(tmp_path: Path, fmt: Any) -> None:
    package = inject(
        tmp_path,
        depends=["python >=3.12", "numpy >=1.26,<2", "libzlib 1.3.*", "pydantic"],
        constrains=["pandas >=2", "numpy <3"],  # pandas is absent: a constraint does not require it
        fmt=fmt,
    )
    check_compatible(ENVIRONMENT, [package], platform="linux-64")


def test_virtual_package_dependencies_are_skipped(tmp_path: Path) -> None:
    package = inject(
        tmp_path, subdir="linux-64", depends=["__glibc >=2.17", "__unix", "__cuda >=12", "python"]
    )
    check_compatible(ENVIRONMENT, [package], platform="linux-64")


def test_virtual_package_dependencies_are_skipped_before_parsing(tmp_path: Path) -> None:
    # rattler skips "__" dependencies without parsing them.
    check_compatible(ENVIRONMENT, [inject(tmp_path, depends=["__weird ^not a spec$"])], platform="linux-64")


def test_unmet_dependency(tmp_path: Path) -> None:
    package = inject(tmp_path, depends=["python", "numpy >=2"])
    with pytest.raises(PixiPackError) as info:
        check_compatible(ENVIRONMENT, [package], platform="linux-64")
    assert (
        str(info.value)
        == "injected package my-pkg-1.0-0 depends on numpy >=2 but the environment has numpy 1.26.4"
    )


def test_unmet_build_dependency_shows_the_build(tmp_path: Path) -> None:
    package = inject(tmp_path, depends=["numpy 1.26.4 py311*"])
    with pytest.raises(
        PixiPackError, match=r"but the environment has numpy 1\.26\.4 \(build py312heda63a1_0\)"
    ):
        check_compatible(ENVIRONMENT, [package], platform="linux-64")


def test_missing_dependency(tmp_path: Path) -> None:
    package = inject(tmp_path, depends=["requests"])
    with pytest.raises(PixiPackError) as info:
        check_compatible(ENVIRONMENT, [package], platform="linux-64")
    assert str(info.value) == (
        "injected package my-pkg-1.0-0 depends on requests, which is not satisfied by any package in the environment"
    )


def test_violated_constraint(tmp_path: Path) -> None:
    package = inject(tmp_path, constrains=["pydantic >=2.8"])
    with pytest.raises(PixiPackError) as info:
        check_compatible(ENVIRONMENT, [package], platform="linux-64")
    assert str(info.value) == (
        "injected package my-pkg-1.0-0 constrains pydantic >=2.8 but the environment has pydantic 2.7.3"
    )


def test_injected_package_violating_an_environment_constraint(tmp_path: Path) -> None:
    package = inject(tmp_path, "zlib", "1.3.1", "h_0", subdir="linux-64")
    with pytest.raises(PixiPackError) as info:
        check_compatible(ENVIRONMENT, [package], platform="linux-64")
    assert str(info.value) == (
        "injected package zlib-1.3.1-h_0 conflicts with environment package libzlib-1.3.1-hb9d3cd8_2, "
        "which constrains zlib 1.3.1 *_2"
    )
    ok = inject(tmp_path / "ok", "zlib", "1.3.1", "hb9d3cd8_2", subdir="linux-64")
    check_compatible(ENVIRONMENT, [ok], platform="linux-64")


def test_injected_packages_may_depend_on_each_other(tmp_path: Path) -> None:
    app = inject(tmp_path, "app", depends=["lib >=2", "python"])
    lib = inject(tmp_path, "lib", "2.1", depends=["numpy"])
    check_compatible(ENVIRONMENT, [app, lib], platform="linux-64")
    with pytest.raises(PixiPackError, match="depends on lib >=2, which is not satisfied"):
        check_compatible(ENVIRONMENT, [app], platform="linux-64")


def test_refuses_a_name_already_in_the_environment(tmp_path: Path) -> None:
    package = inject(tmp_path, "NumPy", "2.0", subdir="linux-64")
    with pytest.raises(PixiPackError) as info:
        check_compatible(ENVIRONMENT, [package], platform="linux-64")
    assert str(info.value) == (
        "cannot inject NumPy-2.0-0.conda: the environment already has numpy-1.26.4-py312heda63a1_0"
    )


def test_refuses_the_same_package_twice(tmp_path: Path) -> None:
    first = inject(tmp_path / "a", "twice")
    second = inject(tmp_path / "b", "twice", fmt="tar.bz2")
    with pytest.raises(
        PixiPackError, match=r"cannot inject twice-1.0-0.tar.bz2: twice-1.0-0 is injected twice"
    ):
        check_compatible(ENVIRONMENT, [first, second], platform="linux-64")


@pytest.mark.parametrize(("subdir", "platform"), [("osx-arm64", "linux-64"), ("linux-64", "linux-aarch64")])
def test_refuses_another_platform(tmp_path: Path, subdir: str, platform: str) -> None:
    package = inject(tmp_path, subdir=subdir)
    with pytest.raises(PixiPackError) as info:
        check_compatible([], [package], platform=platform)
    assert str(info.value) == (
        f"cannot inject my-pkg-1.0-0.conda: it is built for {subdir}, but the environment is for {platform}"
    )


@pytest.mark.parametrize("subdir", ["noarch", "win-64"])
def test_accepts_noarch_and_the_platform(tmp_path: Path, subdir: str) -> None:
    check_compatible([], [inject(tmp_path, subdir=subdir)], platform="win-64")


def test_lists_every_problem(tmp_path: Path) -> None:
    package = inject(tmp_path, depends=["numpy >=2", "requests"], constrains=["python <3"])
    with pytest.raises(PixiPackError) as info:
        check_compatible(ENVIRONMENT, [package], platform="linux-64")
    assert str(info.value).splitlines() == [
        "the injected packages do not fit the environment:",
        "  - injected package my-pkg-1.0-0 depends on numpy >=2 but the environment has numpy 1.26.4",
        "  - injected package my-pkg-1.0-0 depends on requests, which is not satisfied by any package in the "
        "environment",
        "  - injected package my-pkg-1.0-0 constrains python <3 but the environment has python 3.12.8",
    ]


def test_invalid_spec_in_an_injected_package(tmp_path: Path) -> None:
    package = inject(tmp_path, depends=["numpy >=1,,2"])
    with pytest.raises(PixiPackError, match=r"cannot check my-pkg-1.0-0: invalid match spec 'numpy >=1,,2'"):
        check_compatible(ENVIRONMENT, [package], platform="linux-64")


def test_environment_problems_are_reported_too(tmp_path: Path) -> None:
    # rattler validates the whole set, so an environment that was already inconsistent fails as well.
    broken = (*ENVIRONMENT, locked("scipy", "1.14", depends=["libblas >=3.9"]))
    with pytest.raises(
        PixiPackError, match=r"environment package scipy-1\.14-0 depends on libblas >=3\.9, which is"
    ):
        check_compatible(broken, [inject(tmp_path)], platform="linux-64")


def test_nothing_injected_is_fine() -> None:
    check_compatible(ENVIRONMENT, [], platform="linux-64")


# ---- against rattler and real lockfiles ------------------------------------------------------------

SCENARIOS: list[tuple[list[str], list[str]]] = [
    # (depends, constrains) of one injected package, checked against ENVIRONMENT.
    (["python"], []),
    (["python 3.12.*"], []),
    (["python 3.12"], []),
    (["python 3.12.8"], []),
    (["python =3.12"], []),
    (["python ~=3.11"], []),
    (["python ~=3.13"], []),
    (["python >=3.13|<3.12"], []),
    (["python >=3.8,<3.13.0a0 *_cpython"], []),
    (["python * *_pypy"], []),
    (["numpy 1.26.4 py312heda63a1_0"], []),
    (["numpy[version='>=1.20,<2', build=py312*]"], []),
    (["numpy[build_number='>=1']"], []),
    (["conda-forge::numpy >=1"], []),
    (["libzlib >=1.3.1,<2.0a0"], []),
    (["libzlib 1.2.*"], []),
    (["__glibc >=2.17", "__unix", "__osx >=11"], []),
    (["pandas"], []),
    ([], ["pandas >=2"]),
    ([], ["numpy >=2"]),
    ([], ["numpy >=1.26,<2"]),
    ([], ["python 3.11.*"]),
    ([], ["libzlib !=1.3.1"]),
    ([], ["__glibc >=2.40"]),  # no package provides it, so nothing violates it
]


@pytest.mark.parametrize(("depends", "constrains"), SCENARIOS)
def test_agrees_with_rattler_validate(tmp_path: Path, depends: list[str], constrains: list[str]) -> None:
    rattler = pytest.importorskip("rattler")
    package = inject(tmp_path, depends=depends, constrains=constrains)
    union = [*ENVIRONMENT, package]
    records = [
        rattler.PackageRecord(
            p.name,
            p.version,
            rattler.BuildString(p.build),
            int(p.record.get("build_number", 0)),
            p.subdir,
            depends=list(p.record.get("depends", [])),
            constrains=list(p.record.get("constrains", [])),
        )
        for p in union
    ]
    try:
        rattler.PackageRecord.validate(records)
    except Exception:
        with pytest.raises(PixiPackError):
            check_compatible(ENVIRONMENT, [package], platform="linux-64")
    else:
        check_compatible(ENVIRONMENT, [package], platform="linux-64")


@pytest.mark.parametrize("platform", ["linux-64", "osx-arm64", "win-64"])
def test_real_webserver_inject(realdata: Path, platform: str) -> None:
    # pixi-pack's own example: my-webserver fits the lockfile, my-webserver-broken wants fastapi >=0.112.
    lockfile = realdata / "locks" / "pixipack-webserver.v6.lock"
    env = select_environment(load_lockfile(lockfile), "default", platform, lockfile.parent)
    packages = realdata / "packages"
    for name in ("my-webserver-0.1.0-pyh4616a5c_0.conda", "my-webserver-0.1.0-pyh4616a5c_0.tar.bz2"):
        check_compatible(env.conda_packages, [load_injected(packages / name)], platform=platform)
    broken = load_injected(packages / "my-webserver-broken-0.1.0-pyh4616a5c_0.conda")
    with pytest.raises(PixiPackError) as info:
        check_compatible(env.conda_packages, [broken], platform=platform)
    assert str(info.value) == (
        "injected package my-webserver-broken-0.1.0-pyh4616a5c_0 depends on fastapi >=0.112 "
        "but the environment has fastapi 0.111.0"
    )
