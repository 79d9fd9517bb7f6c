"""``pixi-pack --from-prefix``: an installed environment packed from its own records, byte for byte as
its lockfile would pack it, the archives found in package folders or downloaded."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from builders import build_package
from conftest import Channel, HttpServer, prefix_tree, realdata_path
from hypothesis import given, settings
from hypothesis import strategies as st
from lockfiles import conda, write_lock_with_rattler

from pixi_pack.cli import pack_main, unpack_main
from pixi_pack.formats.package import read_info
from pixi_pack.pack.from_prefix import PrefixError, _package
from pixi_pack.platforms import current_subdir

rattler = pytest.importorskip("rattler")
pytestmark = pytest.mark.skipif(current_subdir() != "linux-64", reason="end-to-end tests run on linux-64")


def _rattler_env(channel: Channel, served_channel: str, prefix: Path, cache: Path) -> None:
    """An environment as pixi installs it: rattler.install of the records a lock of the channel gives."""
    records = []
    for package in channel.packages.values():
        record = asyncio.run(rattler.RepoDataRecord.from_package_archive(package.path))
        record.md5 = bytes.fromhex(package.md5)
        url = f"{served_channel}/{package.subdir}/{package.file_name}"
        records.append(rattler.RepoDataRecord(record, package.file_name, url, f"{served_channel}/"))
    asyncio.run(rattler.install(records, prefix, cache_dir=cache, show_progress=False))


@pytest.fixture
def installed(tmp_path: Path, channel: Channel, served_channel: str, http_server: HttpServer) -> Path:
    prefix = tmp_path / "installed" / "env"
    _rattler_env(channel, served_channel, prefix, tmp_path / "rattler-cache")
    http_server.requests.clear()  # rattler downloaded the packages: only what pixi-pack asks for counts
    return prefix


def test_a_prefix_packs_byte_for_byte_as_its_lockfile(
    installed: Path, tmp_path: Path, channel: Channel, served_channel: str, http_server: HttpServer
) -> None:
    lock = tmp_path / "project" / "pixi.lock"
    write_lock_with_rattler(
        lock,
        {"default": {"linux-64": [conda(p, served_channel) for p in channel.packages.values()]}},
        [served_channel],
    )
    from_lock = tmp_path / "from-lock.tar"
    assert pack_main([str(lock.parent), "-p", "linux-64", "-o", str(from_lock)]) == 0
    from_prefix = tmp_path / "from-prefix.tar"
    assert pack_main(["--from-prefix", str(installed), "-o", str(from_prefix)]) == 0
    assert from_prefix.read_bytes() == from_lock.read_bytes()
    assert any(r.endswith(".conda") for r in http_server.requests)  # downloaded from the records' URLs


def test_packed_from_package_folders_offline_and_unpacked_as_the_original(
    installed: Path, tmp_path: Path, channel: Channel, http_server: HttpServer
) -> None:
    out = tmp_path / "env.tar"
    folders = ["--pkgs-dir", str(channel.root / "linux-64"), "--pkgs-dir", str(channel.root / "noarch")]
    assert pack_main(["--from-prefix", str(installed), "-o", str(out), *folders]) == 0
    assert http_server.requests == []  # every archive came from the folders
    original = installed.with_name("original")
    installed.rename(original)
    assert unpack_main([str(out), "-o", str(installed.parent), "-e", installed.name]) == 0
    assert prefix_tree(installed) == prefix_tree(original)
    meta = json.loads((installed / "conda-meta" / "hello-1.2.3-h0_0.json").read_text())
    assert meta["url"] == json.loads((original / "conda-meta" / "hello-1.2.3-h0_0.json").read_text())["url"]


def test_a_corrupt_cached_archive_is_passed_over(
    installed: Path, tmp_path: Path, channel: Channel, http_server: HttpServer
) -> None:
    cache = tmp_path / "pkgs"
    shutil.copytree(channel.root / "linux-64", cache)
    (cache / "hello-1.2.3-h0_0.conda").write_bytes(b"damaged")
    assert (
        pack_main(["--from-prefix", str(installed), "-o", str(tmp_path / "a.tar"), "--pkgs-dir", str(cache)])
        == 0
    )
    # The damaged copy is passed over for its URL; noarch's archive is in no folder given.
    assert sorted(http_server.requests) == [
        "/channel/linux-64/hello-1.2.3-h0_0.conda",
        "/channel/noarch/hello-data-1.0-0.tar.bz2",
    ]


def test_what_no_record_owns_is_named_and_left_out(
    installed: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], channel: Channel
) -> None:
    (installed / "lib" / "python3.11" / "site-packages" / "foo").mkdir(parents=True)
    (installed / "lib" / "python3.11" / "site-packages" / "foo" / "__init__.py").write_text("")
    (installed / "notes.txt").write_text("mine")
    out = tmp_path / "env.tar"
    folders = ["--pkgs-dir", str(channel.root / "linux-64"), "--pkgs-dir", str(channel.root / "noarch")]
    assert pack_main(["--from-prefix", str(installed), "-o", str(out), *folders]) == 0
    warnings = capsys.readouterr().err.splitlines()
    assert "warning: lib/python3.11/site-packages/foo (not from a conda package: not packed)" in warnings
    assert "warning: notes.txt (not from a conda package: not packed)" in warnings
    assert not [w for w in warnings if "hello" in w]  # what the records own is not named
    assert b"notes.txt" not in out.read_bytes()


def test_a_package_found_nowhere_says_where_it_looked(
    installed: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    record_path = installed / "conda-meta" / "hello-1.2.3-h0_0.json"
    record = json.loads(record_path.read_text())
    del record["url"]
    record_path.write_text(json.dumps(record))
    empty = tmp_path / "empty"
    empty.mkdir()
    assert (
        pack_main(["--from-prefix", str(installed), "-o", str(tmp_path / "a.tar"), "--pkgs-dir", str(empty)])
        == 1
    )
    err = capsys.readouterr().err
    assert (
        "error: hello-1.2.3-h0_0: its archive hello-1.2.3-h0_0.conda is in none of the package folders ("
        in err
    )
    assert str(empty) in err and "--pkgs-dir" in err
    assert not (tmp_path / "a.tar").exists()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.update(name="../../evil"), "name"),
        (lambda d: d.update(depends=5), "depends"),
        (lambda d: d.update(url=7), "url must be a string"),
        (lambda d: d.update(url=None, fn=None), "neither url nor fn"),
    ],
)
def test_hostile_records_are_refused_naming_the_file(
    installed: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], change: Any, message: str
) -> None:
    record_path = installed / "conda-meta" / "hello-1.2.3-h0_0.json"
    record = json.loads(record_path.read_text())
    change(record)
    record_path.write_text(json.dumps(record))
    assert pack_main(["--from-prefix", str(installed), "-o", str(tmp_path / "a.tar")]) == 1
    err = capsys.readouterr().err
    assert str(record_path) in err and message in err and "Traceback" not in err


def test_other_broken_prefixes(installed: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert pack_main(["--from-prefix", str(tmp_path), "-o", str(tmp_path / "a.tar")]) == 1
    assert "is not a conda environment: it has no conda-meta/ folder" in capsys.readouterr().err
    assert pack_main(["--from-prefix", str(installed), "-p", "osx-arm64", "-o", str(tmp_path / "a.tar")]) == 1
    assert "--platform osx-arm64 disagrees with the records of" in capsys.readouterr().err
    assert pack_main(["--from-prefix", str(installed), "pixi.toml", "-o", str(tmp_path / "a.tar")]) == 1
    assert "leave out the manifest path" in capsys.readouterr().err
    (installed / "conda-meta" / "broken.json").write_text("{not json")
    assert pack_main(["--from-prefix", str(installed), "-o", str(tmp_path / "a.tar")]) == 1
    assert f"could not parse {installed / 'conda-meta' / 'broken.json'}" in capsys.readouterr().err


def test_conda_meta_as_conda_writes_it(tmp_path: Path) -> None:
    """A prefix whose records conda wrote (channel, package_tarball_full_path, requested_spec...), from
    real packages; their archives in a package cache."""
    packages = realdata_path("packages")
    prefix = tmp_path / "envs" / "real"
    (prefix / "conda-meta").mkdir(parents=True)
    (prefix / "conda-meta" / "history").write_text("==> 2024-01-01 00:00:00 <==\n")
    names = ["test-package-0.1-0.tar.bz2", "sample_noarch_python-1.0-py_0.conda"]
    for name in names:
        archive = packages / name
        with archive.open("rb") as f:
            index = json.loads(read_info(f, name).files["index.json"])
        data = archive.read_bytes()
        dist = name.removesuffix(".conda").removesuffix(".tar.bz2")
        document = {
            **index,
            "channel": "https://conda.anaconda.org/conda-forge/noarch",
            "extracted_package_dir": f"/opt/conda/pkgs/{dist}",
            "files": [],
            "fn": name,
            "link": {"source": f"/opt/conda/pkgs/{dist}", "type": 1},
            "md5": hashlib.md5(data).hexdigest(),
            "package_tarball_full_path": f"/opt/conda/pkgs/{name}",
            "paths_data": {"paths": [], "paths_version": 1},
            "requested_spec": "None",
            "sha256": hashlib.sha256(data).hexdigest(),
            "size": len(data),
            "url": f"https://conda.anaconda.org/conda-forge/noarch/{name}",
        }
        (prefix / "conda-meta" / f"{dist}.json").write_text(json.dumps(document))
    (tmp_path / "pkgs").mkdir()
    for name in names:
        shutil.copy2(packages / name, tmp_path / "pkgs" / name)  # <root>/pkgs, found without --pkgs-dir
    out = tmp_path / "real.tar"
    assert pack_main(["--from-prefix", str(prefix), "-p", "linux-64", "-o", str(out)]) == 0
    listed = tmp_path / "listed.json"
    with listed.open("w") as stream, contextlib.redirect_stdout(stream):
        assert unpack_main([str(out), "--list", "--json"]) == 0
    rows = json.loads(listed.read_text())
    assert sorted(r["file_name"] for r in rows) == sorted(names)
    assert unpack_main([str(out), "--verify-only"]) == 0


_values = st.one_of(
    st.none(), st.booleans(), st.integers(), st.text(max_size=12), st.lists(st.text(max_size=5), max_size=2)
)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(
            [
                "name",
                "version",
                "build",
                "build_number",
                "subdir",
                "fn",
                "url",
                "depends",
                "sha256",
                "md5",
                "size",
                "noarch",
                "x",
            ]
        ),
        _values,
    )
)
def test_fuzz_a_conda_meta_record_is_a_package_or_our_error(document: dict[str, Any]) -> None:
    with contextlib.suppress(PrefixError):
        _package(Path("/env/conda-meta/x.json"), document)


def test_a_noarch_only_prefix_needs_a_platform(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    built = build_package(tmp_path / "build", "only-data", "1.0", "0", noarch="generic")
    prefix = tmp_path / "env"
    (prefix / "conda-meta").mkdir(parents=True)
    (prefix / "conda-meta" / "only-data-1.0-0.json").write_text(
        json.dumps({**built.record, "fn": built.file_name, "files": []})
    )
    assert (
        pack_main(
            [
                "--from-prefix",
                str(prefix),
                "-o",
                str(tmp_path / "a.tar"),
                "--pkgs-dir",
                str(built.path.parent),
            ]
        )
        == 1
    )
    assert "every package of" in capsys.readouterr().err
    assert (
        pack_main(
            [
                "--from-prefix",
                str(prefix),
                "-p",
                "linux-64",
                "-o",
                str(tmp_path / "a.tar"),
                "--pkgs-dir",
                str(built.path.parent),
            ]
        )
        == 0
    )


def test_package_folders_are_searched_in_conda_s_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pixi_pack.cli import _package_dirs

    monkeypatch.setenv("CONDA_PKGS_DIRS", f"{tmp_path / 'a'},{tmp_path / 'b'}")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    given = tmp_path / "given"
    assert _package_dirs([given], tmp_path / "root" / "envs" / "app") == (
        given,
        tmp_path / "a",
        tmp_path / "b",
        tmp_path / "root" / "pkgs",
        tmp_path / "home" / ".conda" / "pkgs",
    )
    monkeypatch.delenv("CONDA_PKGS_DIRS")
    assert _package_dirs([], tmp_path / "base")[0] == tmp_path / "base" / "pkgs"  # a base environment
