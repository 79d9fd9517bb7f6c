"""The shared test infrastructure builds real things: rattler reads and installs the packages, loads the
lockfiles, and the HTTP server serves them."""

from __future__ import annotations

import asyncio
import io
import json
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import pytest
import rattler
import requests
import zstandard
from builders import (
    PLACEHOLDER,
    BuiltPackage,
    Directory,
    File,
    FileSpec,
    Symlink,
    binary_prefix,
    build_package,
    build_wheel,
    executable,
    extract_package,
    text_prefix,
    write_channel,
)
from conftest import Channel, HttpServer, prefix_tree, rattler_install, rattler_solve
from lockfiles import (
    LockEntry,
    conda,
    conda_at,
    pypi,
    rattler_locations,
    write_lock,
    write_lock_v6,
    write_lock_v7,
    write_lock_with_rattler,
)

ALL_KINDS: dict[str, FileSpec] = {
    "bin/tool": text_prefix("#!/bin/sh\necho @PREFIX@\n", mode=0o755),
    "bin/tool-link": Symlink("tool"),
    "lib/libx.so": binary_prefix(b"\x7fELF\0@PREFIX@/lib\0"),
    "lib/plain.txt": "plain\n",
    "lib/run.sh": executable("#!/bin/sh\n"),
    "lib/nolink.txt": File("copied", no_link=True),
    "share/pkg/a.txt": b"a",
    "share/pkg-link": Symlink("pkg"),
    "share/up-link": Symlink("../lib/plain.txt"),
    "var/empty": Directory(),
}


def install(records: list[rattler.RepoDataRecord], prefix: Path, cache: Path) -> None:
    asyncio.run(rattler.install(records, prefix, cache_dir=cache, show_progress=False))


def conda_members(path: Path) -> dict[str, dict[str, tarfile.TarInfo]]:
    with zipfile.ZipFile(path) as outer:
        assert {i.compress_type for i in outer.infolist()} == {zipfile.ZIP_STORED}
        assert json.loads(outer.read("metadata.json")) == {"conda_pkg_format_version": 2}
        members = {}
        for name in outer.namelist():
            if name.endswith(".tar.zst"):
                data = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(outer.read(name))).read()
                with tarfile.open(fileobj=io.BytesIO(data)) as tar:
                    members[name] = {m.name: m for m in tar.getmembers()}
    return members


@pytest.mark.parametrize("fmt", ["conda", "tar.bz2"])
def test_package_is_read_by_rattler(tmp_path: Path, fmt: Any) -> None:
    package = build_package(tmp_path, "kinds", "2.1", "h1_3", build_number=3, files=ALL_KINDS, fmt=fmt)
    assert package.file_name == f"kinds-2.1-h1_3.{fmt}"
    index = rattler.IndexJson.from_package_archive(package.path)
    assert (index.name.source, str(index.version), str(index.build), index.build_number) == (
        "kinds",
        "2.1",
        "h1_3",
        3,
    )
    assert index.subdir == "linux-64"
    paths = {
        e.relative_path.as_posix(): e for e in rattler.PathsJson.from_package_archive(package.path).paths
    }
    assert set(paths) == set(ALL_KINDS)
    assert paths["bin/tool-link"].path_type.softlink and paths["var/empty"].path_type.directory
    assert paths["lib/nolink.txt"].no_link
    placeholder = paths["lib/libx.so"].prefix_placeholder
    assert placeholder is not None
    assert placeholder.placeholder == PLACEHOLDER and placeholder.file_mode.binary
    text = paths["bin/tool"].prefix_placeholder
    assert text is not None and text.file_mode.text
    record = asyncio.run(rattler.RepoDataRecord.from_package_archive(package.path))
    assert record.sha256 is not None and record.sha256.hex() == package.sha256
    assert package.record["size"] == package.path.stat().st_size


def test_conda_layout_and_determinism(tmp_path: Path) -> None:
    first = build_package(tmp_path / "a", "kinds", files=ALL_KINDS)
    second = build_package(tmp_path / "b", "kinds", files=ALL_KINDS)
    assert first.path.read_bytes() == second.path.read_bytes()
    members = conda_members(first.path)
    assert set(members) == {"info-kinds-1.0-0.tar.zst", "pkg-kinds-1.0-0.tar.zst"}
    payload = members["pkg-kinds-1.0-0.tar.zst"]
    assert list(payload) == sorted(ALL_KINDS)
    assert payload["bin/tool"].mode == 0o755 and payload["lib/plain.txt"].mode == 0o644
    assert payload["share/up-link"].issym() and payload["share/up-link"].linkname == "../lib/plain.txt"
    assert payload["var/empty"].isdir()
    info = members["info-kinds-1.0-0.tar.zst"]
    assert set(info) == {"info/files", "info/has_prefix", "info/index.json", "info/paths.json"}


def test_old_style_package_metadata(tmp_path: Path) -> None:
    files: dict[str, FileSpec] = {"bin/a b": text_prefix("@PREFIX@"), "lib/x": File("x", no_link=True)}
    package = build_package(tmp_path, "old", fmt="tar.bz2", paths_json=False, files=files)
    extract_package(package.path, tmp_path / "x")
    info = tmp_path / "x" / "info"
    assert sorted(p.name for p in info.iterdir()) == ["files", "has_prefix", "index.json", "no_link"]
    assert (info / "has_prefix").read_text() == f'{PLACEHOLDER} text "bin/a b"\n'
    assert (info / "files").read_text() == "bin/a b\nlib/x\n"


def test_noarch_python_metadata(tmp_path: Path) -> None:
    package = build_package(
        tmp_path,
        "pyt",
        build="pyh_0",
        noarch="python",
        entry_points=["pyt = pyt:main"],
        files={"site-packages/pyt.py": "def main(): pass\n"},
    )
    assert package.subdir == "noarch" and package.record["noarch"] == "python"
    assert "arch" not in package.record
    extract_package(package.path, tmp_path / "x")
    link = json.loads((tmp_path / "x/info/link.json").read_text())
    assert link == {
        "noarch": {"entry_points": ["pyt = pyt:main"], "type": "python"},
        "package_metadata_version": 1,
    }


def test_write_channel_repodata(tmp_path: Path, channel: Channel) -> None:
    linux = json.loads((channel.root / "linux-64/repodata.json").read_text())
    noarch = json.loads((channel.root / "noarch/repodata.json").read_text())
    assert linux["info"] == {"subdir": "linux-64"} and linux["repodata_version"] == 1
    assert set(linux["packages.conda"]) == {"hello-1.2.3-h0_0.conda"}
    assert set(linux["packages"]) == {"hello-old-0.1-0.tar.bz2"}
    assert set(noarch["packages"]) == {"hello-data-1.0-0.tar.bz2"}
    assert linux["packages.conda"]["hello-1.2.3-h0_0.conda"] == channel.packages["hello"].record
    empty = write_channel(tmp_path / "empty", [])
    assert json.loads((empty / "noarch/repodata.json").read_text())["packages.conda"] == {}


def test_rattler_solves_and_installs_over_http(
    tmp_path: Path, served_channel: str, http_server: HttpServer
) -> None:
    records = rattler_solve(served_channel, ["hello", "hello-old"], tmp_path / "cache")
    assert sorted(r.name.source for r in records) == ["hello", "hello-data", "hello-old"]
    assert "/channel/linux-64/repodata.json" in http_server.requests
    prefix = tmp_path / "env"
    install(records, prefix, tmp_path / "pkgs")
    for script in ("hello", "hello-old"):
        run = subprocess.run([prefix / "bin" / script], capture_output=True, text=True, check=True)
        assert run.stdout == f"{prefix}\n"
    assert (prefix / "bin/hello-link").is_symlink()
    library = (prefix / "lib/libhello.so").read_bytes()
    assert f"\0{prefix}/lib\0".encode() in library
    assert len(library) == len((tmp_path / "pkgs/hello-1.2.3-h0_0/lib/libhello.so").read_bytes())
    for meta in (prefix / "conda-meta").glob("*.json"):
        rattler.PrefixRecord.from_path(meta)


def test_python_package_runs_after_plain_extraction(tmp_path: Path, python_package: BuiltPackage) -> None:
    folder = extract_package(python_package.path, tmp_path / "fresh")
    code = (
        "import sys, json, hashlib, zlib\n"
        "print(json.dumps(sys.prefix))\n"
        "hashlib.sha256(zlib.compress(b'x'))\n"
        f"print(any({str(Path(sys.base_prefix))!r} in line for line in open('/proc/self/maps')))\n"
    )
    result = subprocess.run(
        [folder / "bin/python3.11", "-I", "-c", code], capture_output=True, text=True, env={}, check=True
    )
    lines = result.stdout.splitlines()
    assert json.loads(lines[0]) == str(folder)
    assert lines[1] == "False", "the interpreter still loads files from the original python"
    assert python_package.version == ".".join(map(str, sys.version_info[:3]))
    assert "python_site_packages_path" not in python_package.record


def test_rattler_installs_noarch_python_with_entry_point(tmp_path: Path, python_channel: Channel) -> None:
    records = rattler_solve(python_channel.url, ["pyhello"], tmp_path / "cache")
    prefix = tmp_path / "env"
    install(records, prefix, tmp_path / "pkgs")
    assert (prefix / "lib/python3.11/site-packages/pyhello/__init__.py").exists()
    out = subprocess.run([prefix / "bin/pyhello"], capture_output=True, text=True, env={}, check=True).stdout
    assert out == f"pyhello {prefix}\n"
    script = subprocess.run([prefix / "bin/pyhello-script"], capture_output=True, text=True, check=True)
    assert script.stdout == "pyhello-script\n"
    sysconfig = "import sysconfig; print(sysconfig.get_config_var('prefix'))"
    out = subprocess.run(
        [prefix / "bin/python", "-c", sysconfig], capture_output=True, text=True, env={}
    ).stdout
    assert out == f"{prefix}\n", "the text placeholder in the sysconfig data is replaced"


def test_wheel_installs_with_installer(tmp_path: Path) -> None:
    from installer import install as install_wheel
    from installer.destinations import SchemeDictionaryDestination
    from installer.sources import WheelFile

    wheel = build_wheel(
        tmp_path,
        "my-tool",
        "0.3",
        console_scripts={"my-tool": "my_tool:main"},
        data_files={"share/t.txt": "t"},
    )
    assert wheel.file_name == "my_tool-0.3-py3-none-any.whl"
    scheme = {
        key: str(tmp_path / "env" / key) for key in ("purelib", "platlib", "headers", "scripts", "data")
    }
    destination = SchemeDictionaryDestination(scheme, interpreter=sys.executable, script_kind="posix")
    with WheelFile.open(wheel.path) as source:
        install_wheel(source, destination, {})
    assert (tmp_path / "env/purelib/my_tool/__init__.py").exists()
    assert (tmp_path / "env/scripts/my-tool").exists()
    assert (tmp_path / "env/data/share/t.txt").read_text() == "t"
    platform = build_wheel(tmp_path, "plat", tag="cp311-cp311-manylinux_2_17_x86_64")
    with zipfile.ZipFile(platform.path) as archive:
        assert "Root-Is-Purelib: false" in archive.read("plat-1.0.dist-info/WHEEL").decode()


@pytest.mark.parametrize("version", [4, 5, 6, 7])
def test_lockfiles_load_in_rattler(tmp_path: Path, channel: Channel, version: int) -> None:
    url = "http://127.0.0.1:9/channel"
    hello, data = channel.packages["hello"], channel.packages["hello-data"]
    wheel = build_wheel(tmp_path, "my-tool")
    linux: list[LockEntry] = [
        conda(hello, url),
        conda(data, url),
        pypi(wheel, f"http://127.0.0.1:9/{wheel.file_name}"),
    ]
    osx: list[LockEntry] = [conda_at(data, data.path.as_uri())]
    if version >= 6:
        rel = os.path.relpath(data.path, tmp_path)
        osx = [conda_at(data, rel), conda_at(hello, hello.path), pypi(wheel, wheel.path, with_hash=False)]
    lock = write_lock(
        tmp_path / "pixi.lock", {"default": {"linux-64": linux, "osx-64": osx}}, [url], version=version
    )
    locations = rattler_locations(lock)
    assert sorted(locations["default"]["linux-64"]) == sorted(e.location for e in linux)
    assert sorted(locations["default"]["osx-64"]) == sorted(e.location for e in osx)
    env = rattler.LockFile.from_path(lock).default_environment()
    assert env is not None
    # rattler panics when given a standalone LockPlatform: take the lock file's own.
    platform = next(p for p in env.platforms() if p.name == "linux-64")
    records = env.conda_repodata_records_for_platform(platform)
    assert records is not None
    by_name = {r.name.source: r for r in records}
    assert by_name["hello"].md5 is not None and by_name["hello"].md5.hex() == hello.md5
    assert by_name["hello-data"].noarch.generic
    pypi_packages = env.pypi_packages_for_platform(platform)
    assert pypi_packages is not None and pypi_packages[0].hashes is not None


def test_v6_text_matches_pixi_conventions(tmp_path: Path, channel: Channel) -> None:
    url = "http://127.0.0.1:9/channel"
    lock = write_lock_v6(
        tmp_path / "pixi.lock", {"default": {"linux-64": [conda(channel.packages["hello"], url)]}}, [url]
    )
    text = lock.read_text()
    assert text.startswith(
        "version: 6\nenvironments:\n  default:\n    channels:\n    - url: http://127.0.0.1:9/channel\n"
    )
    assert f"- conda: {url}/linux-64/hello-1.2.3-h0_0.conda\n  sha256: " in text
    assert "name:" not in text and "build_number" not in text
    v7 = write_lock_v7(tmp_path / "v7.lock", {"default": {"linux-64": []}}, [url]).read_text()
    assert v7.startswith("version: 7\nplatforms:\n- name: linux-64\n")


def test_rattler_written_lock(tmp_path: Path, channel: Channel) -> None:
    url = "http://127.0.0.1:9/channel"
    entries = [conda(channel.packages["hello"], url), conda(channel.packages["hello-data"], url)]
    lock = write_lock_with_rattler(tmp_path / "pixi.lock", {"default": {"linux-64": entries}}, [url])
    assert lock.read_text().startswith("version: 7\n")
    assert sorted(rattler_locations(lock)["default"]["linux-64"]) == sorted(e.location for e in entries)


def test_http_server_serves_records_and_fails(http_server: HttpServer) -> None:
    (http_server.root / "a.txt").write_text("hello")
    http_server.fail("/b.txt", 500, times=1)
    (http_server.root / "b.txt").write_text("b")
    assert requests.get(f"{http_server.url}/a.txt", timeout=5).text == "hello"
    assert requests.get(f"{http_server.url}/b.txt", timeout=5).status_code == 500
    assert requests.get(f"{http_server.url}/b.txt", timeout=5).text == "b"
    assert requests.get(f"{http_server.url}/missing", timeout=5).status_code == 404
    assert http_server.requests == ["/a.txt", "/b.txt", "/b.txt", "/missing"]


def test_http_server_auth(http_server: HttpServer) -> None:
    (http_server.root / "a.txt").write_text("secret")
    http_server.require_auth("user", "pass")
    assert requests.get(f"{http_server.url}/a.txt", timeout=5).status_code == 401
    assert requests.get(f"{http_server.url}/a.txt", auth=("user", "pass"), timeout=5).text == "secret"
    http_server.require_bearer("tok")
    headers = {"Authorization": "Bearer tok"}
    assert requests.get(f"{http_server.url}/a.txt", headers=headers, timeout=5).text == "secret"


def test_realdata_fixture(realdata: Path) -> None:
    assert (realdata / "locks").is_dir()


def test_rattler_install_from_archives_and_prefix_tree(tmp_path: Path, channel: Channel) -> None:
    packages = [channel.packages["hello"], channel.packages["hello-data"]]
    tree = prefix_tree(rattler_install(packages, tmp_path / "env", tmp_path / "pkgs"))
    assert tree["bin/hello-link"] == ("link", "hello")
    assert tree["bin"] == ("dir", "")
    assert tree["share/hello/run.sh"][1].startswith("755 ")
    assert not any(path.startswith("conda-meta") for path in tree)
    again = prefix_tree(rattler_install(packages, tmp_path / "env2", tmp_path / "pkgs"))
    assert again.keys() == tree.keys() and again["share/hello/run.sh"] == tree["share/hello/run.sh"]
