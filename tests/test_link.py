"""install_packages against the reference: rattler.install of the same packages, compared file by file.

Our install writes into its own build folder but names rattler's prefix as the target, so every byte
(placeholders, shebangs, entry points) must come out identical.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import hashlib
import io
import json
import logging
import os
import random
import re
import stat
import sys
import tarfile
import time
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import pytest
import rattler
from builders import (
    PLACEHOLDER,
    BuiltPackage,
    Directory,
    File,
    Symlink,
    binary_prefix,
    build_package,
    executable,
    text_prefix,
)
from conftest import default_packages, prefix_tree, realdata_path, source_of
from test_extract import member, tar_bytes, write_conda

from pixi_pack.cli import GIL_SLICE, tuned_interpreter
from pixi_pack.errors import ArchiveError, InstallError
from pixi_pack.formats.package_info import EntryPoint, parse_has_prefix_line
from pixi_pack.install.condameta import HISTORY
from pixi_pack.install.entrypoints import entry_point_script
from pixi_pack.install.link import install_packages
from pixi_pack.install.plan import CLOBBERS_DIR, dependency_name, resolve_clobbers, sort_topologically
from pixi_pack.models import PackageSource
from pixi_pack.platforms import PythonInfo, python_major_minor

PLATFORM = "linux-64"
RECORD_FIELDS = (
    "name",
    "version",
    "build",
    "build_number",
    "depends",
    "constrains",
    "subdir",
    "noarch",
    "sha256",
    "md5",
    "size",
)


def built(packages: Sequence[BuiltPackage]) -> list[PackageSource]:
    return [source_of(p.path, dict(p.record)) for p in packages]


def rattler_install(paths: Sequence[Path], prefix: Path, cache: Path, platform: str = PLATFORM) -> float:
    records = []
    for path in paths:
        record = asyncio.run(rattler.RepoDataRecord.from_package_archive(path))
        record.md5 = hashlib.md5(path.read_bytes()).digest()
        records.append(record)
    start = time.perf_counter()
    subdir = rattler.Subdir(platform)
    asyncio.run(rattler.install(records, prefix, cache_dir=cache, show_progress=False, platform=subdir))
    return time.perf_counter() - start


def ours_and_rattler(
    tmp_path: Path, sources: Sequence[PackageSource], paths: Sequence[Path], name: str = "env"
) -> tuple[Path, Path]:
    """Install with rattler into ``tmp/rattler/<name>`` and with us into ``tmp/ours/<name>`` (same target)."""
    theirs = tmp_path / "rattler" / name
    rattler_install(paths, theirs, tmp_path / "cache")
    ours = tmp_path / "ours" / name
    install_packages(sources, ours, theirs, PLATFORM)
    return ours, theirs


def paths_data(document: dict[str, Any]) -> list[dict[str, Any]]:
    return sorted(document["paths_data"]["paths"], key=lambda p: p["_path"])


def installed_tree(prefix: Path) -> dict[str, tuple[str, str]]:
    """:func:`prefix_tree` without the folders under ``__clobbers__`` that hold no file.

    rattler first links a clobbered file wherever its threads put it, then moves winners back out of
    ``__clobbers__``, which leaves their empty folders behind depending on timing.
    """
    tree = prefix_tree(prefix, frozenset({"conda-meta"}))
    files = [path for path, (kind, _) in tree.items() if kind != "dir"]
    return {
        path: value
        for path, value in tree.items()
        if not path.startswith(CLOBBERS_DIR)
        or value[0] != "dir"
        or any(f.startswith(path + "/") for f in files)
    }


def assert_same_install(ours: Path, theirs: Path, *, ordered_paths: bool = True) -> None:
    """Same files (type, mode, content, symlink target, mtime) and same conda-meta key fields."""
    assert installed_tree(ours) == installed_tree(theirs)
    metas = sorted(p.name for p in (theirs / "conda-meta").glob("*.json"))
    assert sorted(p.name for p in (ours / "conda-meta").glob("*.json")) == metas
    for name in metas:
        mine = json.loads((ours / "conda-meta" / name).read_text())
        reference = json.loads((theirs / "conda-meta" / name).read_text())
        rattler.PrefixRecord.from_path(ours / "conda-meta" / name)
        for key in RECORD_FIELDS:
            assert mine.get(key) == reference.get(key), (name, key)
        assert sorted(mine["files"]) == sorted(reference["files"]), name
        assert paths_data(mine) == paths_data(reference), name
        if ordered_paths:
            assert mine["files"] == reference["files"], name
            assert mine["paths_data"] == reference["paths_data"], name
    # Files dated by the archive (not "now", as entry points and some patched files are) keep that date.
    recent = time.time() - 600
    for root, dirs, files in os.walk(theirs):
        for entry in [*dirs, *files]:
            path = Path(root, entry)
            rel = path.relative_to(theirs)
            if rel.parts[0] == "conda-meta" or path.is_dir() or os.lstat(path).st_mtime > recent:
                continue
            assert int(os.lstat(ours / rel).st_mtime) == int(os.lstat(path).st_mtime), rel


# --- real packages -------------------------------------------------------------------------------------

REAL_SETS = {
    "conda": [
        "conda-fake-python-3.99.99-0.conda",
        "_r-mutex-1.0.1-anacondar_1.tar.bz2",
        "cph_test_data-0.0.1-0.tar.bz2",
        "clobber-pynoarch-1-0.1.0-pyh4616a5c_0.tar.bz2",
        "clobber-python-0.1.0-cpython.conda",
        "clobber-with-symlink-a-0.1.0-h4616a5c_0.conda",
        "conda-index-pkg-a-1.0-py27h5e241af_0.conda",
        "link-scripts-0.1.0-h4616a5c_0.conda",
        "mock-2.0.0-py37_1000.conda",
        "my-webserver-0.1.0-pyh4616a5c_0.conda",
        "sample_noarch_python-1.0-py_0.conda",
        "test-package-0.1-0.tar.bz2",
    ],
    "tar.bz2": [
        "conda-fake-python-3.99.99-0.conda",
        "mock-2.0.0-py37_1000.tar.bz2",
        "my-webserver-0.1.0-pyh4616a5c_0.tar.bz2",
        "my-webserver-broken-0.1.0-pyh4616a5c_0.conda",
    ],
}


@pytest.mark.parametrize("variant", sorted(REAL_SETS))
def test_real_packages_match_rattler(tmp_path: Path, variant: str) -> None:
    folder = realdata_path("packages")
    paths = [folder / name for name in REAL_SETS[variant]]
    ours, theirs = ours_and_rattler(tmp_path, [source_of(p) for p in paths], paths)
    # my-webserver and my-webserver-broken clobber each other; rattler orders paths_data by link time.
    assert_same_install(ours, theirs, ordered_paths=variant == "conda")
    assert (ours / "conda-meta" / "history").read_text() == HISTORY
    assert (ours / "CACHEDIR.TAG").read_bytes() == (theirs / "CACHEDIR.TAG").read_bytes()


def test_real_clobber_goes_to_the_last_in_dependency_order(tmp_path: Path) -> None:
    folder = realdata_path("packages")
    paths = [folder / name for name in REAL_SETS["tar.bz2"]]
    ours, _ = ours_and_rattler(tmp_path, [source_of(p) for p in paths], paths)
    init = "lib/python3.99t/site-packages/my_webserver/__init__.py"
    broken = json.loads((ours / "conda-meta" / "my-webserver-broken-0.1.0-pyh4616a5c_0.json").read_text())
    assert f"{CLOBBERS_DIR}/my-webserver-broken/{init}" in broken["files"]
    entry = next(p for p in broken["paths_data"]["paths"] if p.get("original_path") == init)
    assert entry["_path"] == f"{CLOBBERS_DIR}/my-webserver-broken/{init}"
    assert (ours / CLOBBERS_DIR / "my-webserver-broken" / init).is_file()


def test_real_timing_against_rattler(tmp_path: Path) -> None:
    """Not a benchmark, a guard: the pure-Python installer stays in the same league as rattler."""
    folder = realdata_path("packages")
    paths = [folder / name for name in REAL_SETS["conda"]]
    theirs = tmp_path / "rattler"
    rattler_seconds = rattler_install(paths, theirs, tmp_path / "cache")
    start = time.perf_counter()
    install_packages([source_of(p) for p in paths], tmp_path / "ours", theirs, PLATFORM)
    ours_seconds = time.perf_counter() - start
    logging.getLogger("pixi_pack").info("install: ours %.3fs, rattler %.3fs", ours_seconds, rattler_seconds)
    assert ours_seconds < max(10 * rattler_seconds, 2.0)


@pytest.mark.parametrize("name", ["zlib-1.2.11-h7b6447c_3.conda", "zlib-1.2.11-h7b6447c_3.tar.bz2"])
def test_real_broken_package_fails_cleanly(tmp_path: Path, name: str) -> None:
    folder = realdata_path("packages")
    good = folder / "cph_test_data-0.0.1-0.tar.bz2"
    build = tmp_path / "build"
    build.mkdir()
    with pytest.raises(ArchiveError, match=re.escape("zlib-1.2.11-h7b6447c_3")):
        install_packages(
            [source_of(good), source_of(folder / "broken" / name)], build, tmp_path / "env", PLATFORM
        )
    assert list(build.iterdir()) == []


# --- built packages ------------------------------------------------------------------------------------


def test_default_channel_packages_match_rattler(tmp_path: Path) -> None:
    packages = default_packages(tmp_path / "build")
    ours, theirs = ours_and_rattler(tmp_path, built(packages), [p.path for p in packages])
    assert_same_install(ours, theirs)
    old = json.loads((ours / "conda-meta" / "hello-old-0.1-0.json").read_text())
    (entry,) = old["paths_data"]["paths"]
    assert "sha256" not in entry and len(entry["sha256_in_prefix"]) == 64  # no paths.json: hashed on install


def test_python_and_entry_points_match_rattler(tmp_path: Path, python_channel: Any) -> None:
    packages = list(python_channel.packages.values())
    ours, theirs = ours_and_rattler(tmp_path, built(packages), [p.path for p in packages])
    assert_same_install(ours, theirs)
    script = (ours / "bin" / "pyhello").read_text()
    assert script.startswith(f"#!{theirs}/bin/python3.")
    assert (ours / "bin" / "pyhello").stat().st_mode & 0o777 == 0o775


def shebang_package(out: Path) -> BuiltPackage:
    """Scripts whose shebang holds the placeholder, and a no_link file."""
    return build_package(
        out,
        "scripts",
        files={
            "bin/py": text_prefix("#!@PREFIX@/bin/python3.11 -E\nprint('@PREFIX@')\n", mode=0o755),
            "bin/pl": text_prefix("#!@PREFIX@/bin/perl -w\nprint '@PREFIX@';\n", mode=0o755),
            "bin/env-py": text_prefix("#!/usr/bin/env python\n# @PREFIX@\n", mode=0o755),
            "share/keep": File("copied, never linked\n", no_link=True),
        },
    )


@pytest.mark.parametrize("kind", ["long", "space", "short"])
def test_unusual_prefixes_match_rattler(tmp_path: Path, python_channel: Any, kind: str) -> None:
    """Long prefixes and prefixes with spaces turn shebangs into the /bin/sh trampoline."""
    build = tmp_path / "build"
    packages = [*python_channel.packages.values(), *default_packages(build), shebang_package(build)]
    name = {"long": "p" * (140 - len(str(tmp_path))), "space": "with space", "short": "env"}[kind]
    ours, theirs = ours_and_rattler(tmp_path, built(packages), [p.path for p in packages], name)
    assert_same_install(ours, theirs)
    trampoline = (ours / "bin" / "pyhello").read_text().startswith("#!/bin/sh\n'''exec' ")
    assert trampoline is (kind != "short")
    assert (ours / "bin" / "hello").read_text() == f'#!/bin/sh\necho "{theirs}"\n'
    assert (ours / "bin" / "py").read_text().startswith("#!/bin/sh\n" if kind != "short" else f"#!{theirs}/")


def test_clobbered_files_match_rattler(tmp_path: Path) -> None:
    out = tmp_path / "build"
    packages = [
        build_package(
            out, "top", files={"share/x.txt": "top\n", "bin/tool": executable("top")}, depends=["mid"]
        ),
        build_package(out, "mid", files={"share/x.txt": "mid\n", "lib/y": Symlink("z")}, depends=["base"]),
        build_package(out, "base", files={"share/x.txt": "base\n", "lib/y": "base y", "lib/z": "z"}),
        build_package(out, "other", files={"bin/tool": executable("other")}),
    ]
    ours, theirs = ours_and_rattler(tmp_path, built(packages), [p.path for p in packages])
    assert_same_install(ours, theirs, ordered_paths=False)
    assert (ours / "share" / "x.txt").read_text() == "top\n"
    assert (ours / CLOBBERS_DIR / "base" / "share" / "x.txt").read_text() == "base\n"
    assert (ours / "lib" / "y").readlink() == Path("z")
    # "other" and "top" do not depend on each other: the roots' order decides, as in rattler.
    assert (ours / "bin" / "tool").read_text() == (theirs / "bin" / "tool").read_text()


def test_file_against_folder_clobber(tmp_path: Path) -> None:
    """A file where another package has a folder: the package last in dependency order wins it all.

    rattler's own result depends on which package its threads link first (sometimes it fails), so
    this checks the layout its path resolver aims for.
    """
    out = tmp_path / "build"
    packages = [
        build_package(out, "pkga", files={"lib/f": "A", "lib/h/i": "A"}, depends=["pkgb"]),
        build_package(out, "pkgb", files={"lib/f/g": "B", "lib/h": "B"}),
    ]
    env = tmp_path / "env"
    install_packages(built(packages), env, env, PLATFORM)
    assert (env / "lib" / "f").read_text() == "A"
    assert (env / "lib" / "h" / "i").read_text() == "A"
    assert (env / CLOBBERS_DIR / "pkgb" / "lib" / "f" / "g").read_text() == "B"
    assert (env / CLOBBERS_DIR / "pkgb" / "lib" / "h").read_text() == "B"
    meta = json.loads((env / "conda-meta" / "pkgb-1.0-0.json").read_text())
    assert meta["files"] == [f"{CLOBBERS_DIR}/pkgb/lib/f/g", f"{CLOBBERS_DIR}/pkgb/lib/h"]
    assert [p["original_path"] for p in meta["paths_data"]["paths"]] == ["lib/f/g", "lib/h"]


def custom_package(
    path: Path, payload: Sequence[tuple[tarfile.TarInfo, bytes | None]], paths: list[dict[str, Any]]
) -> Path:
    import bz2

    index = {
        "name": path.name.split("-")[0],
        "version": "1",
        "build": "0",
        "build_number": 0,
        "depends": [],
        "subdir": "linux-64",
    }
    info = [
        member("info/index.json", json.dumps(index).encode()),
        member("info/paths.json", json.dumps({"paths": paths, "paths_version": 1}).encode()),
    ]
    path.write_bytes(bz2.compress(tar_bytes([*info, *payload])))
    return path


def test_hard_link_members_and_no_link_symlinks_match_rattler(tmp_path: Path) -> None:
    text = f"prefix={PLACEHOLDER}\n".encode()
    sha = hashlib.sha256(text).hexdigest()
    payload = [
        member("lib/a", text, mode=0o755, mtime=1_600_000_000),
        member("lib/b", None, type=tarfile.LNKTYPE, linkname="lib/a", mode=0o755, mtime=1_600_000_000),
        member("lib/c", None, type=tarfile.SYMTYPE, linkname="a", mtime=1_600_000_000),
        member("lib/d", None, type=tarfile.SYMTYPE, linkname="c", mtime=1_600_000_000),
    ]
    paths = [
        {"_path": "lib/a", "path_type": "hardlink", "sha256": sha, "size_in_bytes": len(text)},
        {
            "_path": "lib/b",
            "path_type": "hardlink",
            "sha256": sha,
            "size_in_bytes": len(text),
            "prefix_placeholder": PLACEHOLDER,
            "file_mode": "text",
        },
        {"_path": "lib/c", "path_type": "softlink", "sha256": sha, "size_in_bytes": 1},
        {"_path": "lib/d", "path_type": "softlink", "no_link": True, "sha256": sha, "size_in_bytes": 1},
    ]
    path = custom_package(tmp_path / "links-1-0.tar.bz2", payload, paths)
    ours, theirs = ours_and_rattler(tmp_path, [source_of(path)], [path])
    assert_same_install(ours, theirs)
    assert (ours / "lib" / "b").read_text() == f"prefix={theirs}\n"
    assert (ours / "lib" / "d").read_bytes() == text and not (ours / "lib" / "d").is_symlink()


@pytest.mark.parametrize("fmt", ["conda", "tar.bz2"])
def test_old_package_without_hashes_matches_rattler(tmp_path: Path, fmt: Literal["conda", "tar.bz2"]) -> None:
    """info/files only: every file is hashed as it is written, a big one while it streams."""
    big = random.Random(9).randbytes(3 << 20)
    package = build_package(
        tmp_path / "build", "old", fmt=fmt, paths_json=False, files={"lib/big.bin": big, "share/small": "s"}
    )
    ours, theirs = ours_and_rattler(tmp_path, built([package]), [package.path])
    assert_same_install(ours, theirs)
    assert (ours / "lib" / "big.bin").read_bytes() == big


def test_directory_entries_are_created(tmp_path: Path) -> None:
    """rattler fails on ``directory`` entries (it tries to copy them); conda creates them, so do we."""
    package = build_package(tmp_path / "build", "dirs", files={"var/empty": Directory(), "share/a": "a"})
    env = tmp_path / "env"
    install_packages(built([package]), env, env, PLATFORM)
    assert (env / "var" / "empty").is_dir()
    meta = json.loads((env / "conda-meta" / "dirs-1.0-0.json").read_text())
    assert {"_path": "var/empty", "path_type": "directory"} in meta["paths_data"]["paths"]
    rattler.PrefixRecord.from_path(env / "conda-meta" / "dirs-1.0-0.json")


# --- what we write on our own ----------------------------------------------------------------------------


def test_conda_meta_record(tmp_path: Path) -> None:
    packages = default_packages(tmp_path / "build")
    env = tmp_path / "out" / "env"
    sources = built(packages)
    sources[1] = PackageSource(
        sources[1].file_name,
        {**sources[1].record, "url": "https://x/c/noarch/a.tar.bz2", "channel": "https://x/c"},
        sources[1].open,
    )
    sources[2] = PackageSource(
        sources[2].file_name,
        sources[2].record,
        sources[2].open,
        url=f"https://conda.example.org/main/{sources[2].record['subdir']}/{sources[2].file_name}",
    )
    install_packages(sources, env, env, PLATFORM)
    hello = json.loads((env / "conda-meta" / "hello-1.2.3-h0_0.json").read_text())
    assert hello["fn"] == "hello-1.2.3-h0_0.conda"
    # Packed from a local file: its place in the pack's channel, and no channel.
    assert hello["url"] == (tmp_path / "out" / "channel" / "linux-64" / "hello-1.2.3-h0_0.conda").as_uri()
    assert hello["channel"] is None
    # What conda and conda-pack read, true of this install: no package cache, files written (copy).
    assert hello["extracted_package_dir"] == "" and hello["link"] == {"source": "", "type": 3}
    assert (hello["requested_spec"], hello["requested_specs"]) == ("", [])
    keys = list(hello)
    assert keys[: keys.index("fn")] == sorted(keys[: keys.index("fn")])
    assert keys[keys.index("fn") :] == [
        *("fn", "url", "channel", "extracted_package_dir", "requested_spec", "requested_specs"),
        *("files", "paths_data", "link"),
    ]
    data = json.loads((env / "conda-meta" / "hello-data-1.0-0.json").read_text())
    assert (data["url"], data["channel"]) == ("https://x/c/noarch/a.tar.bz2", "https://x/c")
    third_record = sources[2].record
    dist = f"{third_record['name']}-{third_record['version']}-{third_record['build']}"
    third = json.loads((env / "conda-meta" / f"{dist}.json").read_text())
    assert third["url"] == sources[2].url and third["channel"] == "https://conda.example.org/main/"
    record = rattler.PrefixRecord.from_path(env / "conda-meta" / "hello-1.2.3-h0_0.json")
    assert str(record.name.normalized) == "hello"
    lib = next(p for p in hello["paths_data"]["paths"] if p["_path"] == "lib/libhello.so")
    assert lib["file_mode"] == "binary" and lib["sha256_in_prefix"] != lib["sha256"]
    assert lib["size_in_bytes"] == (env / "lib" / "libhello.so").stat().st_size


def test_result_is_deterministic(tmp_path: Path) -> None:
    packages = default_packages(tmp_path / "build")
    first, second = tmp_path / "one", tmp_path / "two"
    target = tmp_path / "env"
    install_packages(built(packages), first, target, PLATFORM, workers=8)
    install_packages(built(packages), second, target, PLATFORM, workers=1)
    assert prefix_tree(first, frozenset()) == prefix_tree(second, frozenset())


def test_on_installed_is_called_once_per_package(tmp_path: Path) -> None:
    sources = built(default_packages(tmp_path / "build"))
    seen: list[str] = []
    install_packages(
        sources, tmp_path / "env", tmp_path / "env", PLATFORM, on_installed=lambda s: seen.append(s.file_name)
    )
    assert sorted(seen) == sorted(s.file_name for s in sources)


def test_a_library_call_leaves_the_interpreter_alone(tmp_path: Path) -> None:
    """GIL slices and the collector are the process's: only a caller that passes ``tuning`` changes them."""
    sources = built(default_packages(tmp_path / "build"))
    seen: list[tuple[float, bool]] = []
    before = sys.getswitchinterval()
    install_packages(
        sources,
        tmp_path / "env",
        tmp_path / "env",
        PLATFORM,
        on_installed=lambda _: seen.append((sys.getswitchinterval(), gc.isenabled())),
    )
    assert seen and set(seen) == {(before, True)}


def test_gil_slices_and_gc_are_tuned_while_installing_and_restored_after(tmp_path: Path) -> None:
    sources = built(default_packages(tmp_path / "build"))
    seen: list[tuple[float, bool]] = []
    before = sys.getswitchinterval()
    install_packages(
        sources,
        tmp_path / "env",
        tmp_path / "env",
        PLATFORM,
        on_installed=lambda _: seen.append((sys.getswitchinterval(), gc.isenabled())),
        tuning=tuned_interpreter,
    )
    assert seen and set(seen) == {(GIL_SLICE, False)}
    assert sys.getswitchinterval() == before
    assert gc.isenabled()
    evil = write_conda(
        tmp_path / "evil-1-0.conda", [member("/etc/evil")], paths=[{"_path": "evil", "path_type": "hardlink"}]
    )
    record = {"name": "evil", "version": "1", "build": "0", "subdir": PLATFORM, "depends": []}
    with pytest.raises(ArchiveError, match="absolute path"):  # also after a failure
        install_packages(
            [source_of(evil, record)],
            tmp_path / "env2",
            tmp_path / "env2",
            PLATFORM,
            tuning=tuned_interpreter,
        )
    assert sys.getswitchinterval() == before
    assert gc.isenabled()
    gc.disable()  # a caller that turned the collector off keeps it off
    try:
        install_packages(sources, tmp_path / "env3", tmp_path / "env3", PLATFORM, tuning=tuned_interpreter)
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_link_scripts_are_not_run_but_warned_about(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    script = '#!/bin/sh\ntouch "$PREFIX/ran"\n'
    package = build_package(
        tmp_path / "build", "linky", files={"bin/.linky-post-link.sh": executable(script)}
    )
    env = tmp_path / "env"
    with caplog.at_level(logging.WARNING, logger="pixi_pack"):
        install_packages(built([package]), env, env, PLATFORM)
    assert not (env / "ran").exists()
    assert "linky-1.0-0 has a post-link script, which is not run" in caplog.text


def test_build_dir_must_be_empty(tmp_path: Path) -> None:
    (tmp_path / "env").mkdir()
    (tmp_path / "env" / "x").write_text("")
    with pytest.raises(InstallError, match="not empty"):
        install_packages([], tmp_path / "env", tmp_path / "env", PLATFORM)


# --- failures ------------------------------------------------------------------------------------------


def test_noarch_python_without_python(tmp_path: Path) -> None:
    package = build_package(tmp_path / "b", "pure", noarch="python", files={"site-packages/pure.py": ""})
    with pytest.raises(
        InstallError,
        match=re.escape(
            "could not install pure-1.0-0: it is a noarch python package but the environment has no python"
        ),
    ):
        install_packages(built([package]), tmp_path / "env", tmp_path / "env", PLATFORM)
    assert not (tmp_path / "env").exists()


def test_symlink_out_of_the_prefix_is_installed_and_never_written_through(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """conda and rattler install a link leading out; a later package's file below it goes to __clobbers__."""
    outside = tmp_path / "outside"
    outside.mkdir()
    linking = build_package(
        tmp_path / "b", "sneaky", files={"lib/ok": "1", "lib/escape": Symlink("../../outside")}
    )
    env = tmp_path / "env"
    install_packages(built([linking]), env, env, PLATFORM)
    assert (env / "lib" / "escape").readlink().as_posix() == "../../outside"
    assert "sneaky-1.0-0: the symlink lib/escape points outside the environment" in caplog.text

    through = build_package(tmp_path / "c", "through", files={"lib/escape/pwned": "x"})
    again = tmp_path / "again"
    install_packages(built([linking, through]), again, again, PLATFORM)
    assert list(outside.iterdir()) == []
    assert (again / "__clobbers__" / "through" / "lib" / "escape" / "pwned").read_text() == "x"


def test_noarch_symlink_is_checked_at_its_installed_place(
    tmp_path: Path, python_package: BuiltPackage
) -> None:
    """site-packages/x -> ../../../bin/y escapes the package but not lib/pythonX.Y/site-packages/x."""
    package = build_package(
        tmp_path / "b",
        "deep",
        noarch="python",
        files={"site-packages/link": Symlink("../../../bin/tool"), "python-scripts/tool": "t"},
    )
    env = tmp_path / "env"
    install_packages(built([python_package, package]), env, env, PLATFORM)
    version = python_package.version.rsplit(".", 1)[0]
    assert (env / "lib" / f"python{version}" / "site-packages" / "link").read_text() == "t"


def test_paths_json_with_parent_path_is_refused(tmp_path: Path) -> None:
    package = build_package(tmp_path / "b", "evil", files={"../../outside": "x"})
    with pytest.raises(ArchiveError, match=re.escape("evil-1.0-0.conda is not a valid conda package")):
        install_packages(built([package]), tmp_path / "env", tmp_path / "env", PLATFORM)
    assert not (tmp_path / "outside").exists()


def test_prefix_too_long_for_binary_placeholder(tmp_path: Path) -> None:
    package = build_package(
        tmp_path / "b", "bin", files={"lib/x.so": binary_prefix(b"\0@PREFIX@\0", placeholder="/short")}
    )
    with pytest.raises(InstallError, match=r"could not install bin-1.0-0: the environment path .* is longer"):
        install_packages(built([package]), tmp_path / "env", tmp_path / "a-much-longer-prefix", PLATFORM)


def test_two_packages_with_the_same_name(tmp_path: Path) -> None:
    a = build_package(tmp_path / "a", "same", "1")
    b = build_package(tmp_path / "b", "same", "2")
    with pytest.raises(InstallError, match="two packages named same"):
        install_packages(built([a, b]), tmp_path / "env", tmp_path / "env", PLATFORM)


# --- Windows targets (written here, checked by content) ---------------------------------------------------


def test_windows_target_layout(tmp_path: Path) -> None:
    python = build_package(tmp_path / "b", "python", "3.12.1", subdir="win-64")
    noarch = build_package(
        tmp_path / "b",
        "tool",
        noarch="python",
        entry_points=["tool = tool.cli:main"],
        files={
            "site-packages/tool/__init__.py": text_prefix("HOME = r'@PREFIX@'\n"),
            "python-scripts/helper.py": "",
        },
    )
    native = build_package(
        tmp_path / "b",
        "native",
        subdir="win-64",
        files={
            "Library/bin/x.dll": binary_prefix(b"\0@PREFIX@\0"),
            "etc/x.cfg": text_prefix("@PREFIX@\\etc\n"),
        },
    )
    env = tmp_path / "env"
    install_packages(built([python, noarch, native]), env, Path("C:\\Users\\me\\env"), "win-64")
    assert (
        env / "Lib" / "site-packages" / "tool" / "__init__.py"
    ).read_text() == "HOME = r'C:/Users/me/env'\n"
    assert (env / "Scripts" / "helper.py").exists()
    script = (env / "Scripts" / "tool-script.py").read_text()
    assert script == entry_point_script(EntryPoint("tool", "tool.cli", "main"), "")
    assert script.startswith("\n# -*- coding: utf-8 -*-\n")
    assert (env / "Library" / "bin" / "x.dll").read_bytes() == b"\0" + PLACEHOLDER.encode() + b"\0"
    assert (env / "etc" / "x.cfg").read_text() == "C:/Users/me/env\\etc\n"
    meta = json.loads((env / "conda-meta" / "tool-1.0-0.json").read_text())
    assert {
        "_path": "Scripts/tool-script.py",
        "path_type": "windows_python_entry_point_script",
    }.items() <= next(
        p for p in meta["paths_data"]["paths"] if p["_path"] == "Scripts/tool-script.py"
    ).items()


def test_windows_entry_points_match_rattler_but_the_launcher(tmp_path: Path) -> None:
    """rattler writes conda's launcher, which runs ``<name>-script.py`` with ``..\\python.exe``; ours is
    installer's, with the interpreter in its shebang and the script zipped in. Everything else is the same."""
    python = build_package(tmp_path / "b", "python", "3.12.1", subdir="win-64")
    tool = build_package(
        tmp_path / "b",
        "tool",
        noarch="python",
        entry_points=["tool = tool.cli:main", "tool-admin = tool.cli:admin"],
        files={"site-packages/tool/cli.py": "def main(): pass\n"},
    )
    packages = [python, tool]
    theirs = tmp_path / "rattler" / "env"
    rattler_install([p.path for p in packages], theirs, tmp_path / "cache", "win-64")
    ours = tmp_path / "ours" / "env"
    install_packages(built(packages), ours, theirs, "win-64")
    launchers = {"Scripts/tool.exe", "Scripts/tool-admin.exe"}
    mine, reference = installed_tree(ours), installed_tree(theirs)
    assert {path for path in mine if path.endswith(".exe")} == launchers
    assert {mine[p][1].split()[0] for p in launchers} == {reference[p][1].split()[0] for p in launchers}
    assert {p: v for p, v in mine.items() if p not in launchers} == {
        p: v for p, v in reference.items() if p not in launchers
    }
    meta, reference_meta = (
        json.loads((p / "conda-meta/tool-1.0-0.json").read_text()) for p in (ours, theirs)
    )
    assert meta["files"] == reference_meta["files"]
    drop = {"sha256", "size_in_bytes"}
    assert [{k: v for k, v in e.items() if k not in drop} for e in meta["paths_data"]["paths"]] == [
        {k: v for k, v in e.items() if k not in drop} for e in reference_meta["paths_data"]["paths"]
    ]
    for entry in meta["paths_data"]["paths"]:
        data = (ours / entry["_path"]).read_bytes()
        assert (entry["sha256"], entry["size_in_bytes"]) == (hashlib.sha256(data).hexdigest(), len(data))
    launcher = (ours / "Scripts/tool-admin.exe").read_bytes()
    assert launcher.startswith(b"MZ") and f"#!{theirs}/python.exe\n".encode() in launcher
    with zipfile.ZipFile(io.BytesIO(launcher)) as zipped:
        main = zipped.read("__main__.py").decode()
    assert main == (ours / "Scripts/tool-admin-script.py").read_text()
    assert "from tool.cli import admin" in main


def test_windows_launchers_are_the_same_on_every_install(tmp_path: Path) -> None:
    python = build_package(tmp_path / "b", "python", "3.12.1", subdir="win-64")
    tool = build_package(tmp_path / "b", "tool", noarch="python", entry_points=["tool = tool:main"])
    for name in ("one", "two"):
        install_packages(built([python, tool]), tmp_path / name, Path("C:\\Program Files\\env"), "win-64")
    launcher = (tmp_path / "one/Scripts/tool.exe").read_bytes()
    assert launcher == (tmp_path / "two/Scripts/tool.exe").read_bytes()
    assert b'#!"C:\\Program Files\\env\\python.exe"\n' in launcher


# --- pure parts --------------------------------------------------------------------------------------------


def test_entry_point_script_matches_rattler_template() -> None:
    script = entry_point_script(
        EntryPoint("jupyter-lab", "jupyterlab.labapp", "main"), "#!/prefix/bin/python3.11"
    )
    assert script == (
        "#!/prefix/bin/python3.11\n# -*- coding: utf-8 -*-\nimport re\nimport sys\n\n"
        "from jupyterlab.labapp import main\n\nif __name__ == '__main__':\n"
        "\tsys.argv[0] = re.sub(r'(-script\\.pyw?|\\.exe)?$', '', sys.argv[0])\n\tsys.exit(main())\n"
    )


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        ("3.11.7", (3, 11)),
        ("5!3.12.0rc1", (3, 12)),
        ("3.99.99", (3, 99)),
        ("3", None),
        ("3.12rc1", None),
        ("3a.1", None),
    ],
)
def test_python_major_minor(version: str, expected: tuple[int, int] | None) -> None:
    assert python_major_minor(version) == expected


def test_python_info_site_packages_override() -> None:
    info = PythonInfo.from_record(
        {"version": "3.13.1", "python_site_packages_path": "lib/python3.13t/site-packages"}, "linux-64"
    )
    assert info is not None
    assert info.target_path("site-packages/a/b.py") == "lib/python3.13t/site-packages/a/b.py"
    assert info.target_path("python-scripts/x") == "bin/x"
    assert info.target_path("info/other") == "info/other"
    windows = PythonInfo.from_record({"version": "3.12.0"}, "win-64")
    assert windows is not None
    assert windows.target_path("site-packages/a") == "Lib/site-packages/a"
    assert PythonInfo.from_record({"version": "3"}, "linux-64") is None


@pytest.mark.parametrize(
    ("spec", "name"),
    [
        ("python >=3.8", "python"),
        ("numpy", "numpy"),
        ("Foo==1", "foo"),
        ("pkg[version='>1']", "pkg"),
        ("a;b", "a"),
    ],
)
def test_dependency_name(spec: str, name: str) -> None:
    assert dependency_name(spec) == name


def test_has_prefix_lines() -> None:
    assert parse_has_prefix_line("bin/x", "p") == ("/opt/anaconda1anaconda2anaconda3", "text", "bin/x")
    assert parse_has_prefix_line('/opt/p binary "lib/a b.so"', "p") == ("/opt/p", "binary", "lib/a b.so")
    with pytest.raises(ArchiveError):
        parse_has_prefix_line("a b", "p")


def test_topological_sort_matches_rattler() -> None:
    rng = random.Random(1234)
    for _ in range(60):
        names = [f"p{i}" for i in range(rng.randint(1, 9))]
        pool = [*names, "virtual"]
        depends = {n: rng.sample(pool, rng.randint(0, min(3, len(pool)))) for n in names}
        noarch = {n: rng.random() < 0.3 for n in names}
        records = [
            rattler.PackageRecord(
                n,
                "1",
                rattler.BuildString("0"),
                0,
                "noarch" if noarch[n] else "linux-64",
                noarch=rattler.NoArchType("python") if noarch[n] else None,
                depends=[f"{d} >=1" for d in depends[n]],
            )
            for n in names
        ]
        rng.shuffle(records)
        expected = [r.name.normalized for r in rattler.PackageRecord.sort_topologically(records)]
        assert (
            sort_topologically(sorted(names), {n: [f"{d} >=1" for d in depends[n]] for n in names}, noarch)
            == expected
        )


def test_resolve_clobbers_rules() -> None:
    owned = {"a": ["x", "d/f"], "b": ["x", "d"], "c": ["y"]}
    live = resolve_clobbers(["a", "b", "c"], owned)
    assert live == {("b", "x"), ("b", "d"), ("c", "y")}
    live = resolve_clobbers(["b", "a", "c"], owned)
    assert live == {("a", "x"), ("a", "d/f"), ("c", "y")}


def test_placeholder_file_is_the_only_write(tmp_path: Path) -> None:
    """Text files are rewritten in memory and written once, already patched (no temp copies left)."""
    package = build_package(
        tmp_path / "b", "t", files={"share/t": File(f"{PLACEHOLDER}\n", placeholder=PLACEHOLDER)}
    )
    env = tmp_path / "env"
    install_packages(built([package]), env, tmp_path / "final", PLATFORM)
    assert (env / "share" / "t").read_text() == f"{tmp_path / 'final'}\n"
    assert sorted(p.name for p in (env / "share").iterdir()) == ["t"]


def test_real_clobber_packages_with_python_match_rattler(
    tmp_path: Path, python_package: BuiltPackage
) -> None:
    """clobber-python's bin/python against the real python's bin/python symlink, as rattler resolves it."""
    folder = realdata_path("packages")
    paths = [
        folder / "clobber-python-0.1.0-cpython.conda",
        folder / "clobber-pynoarch-1-0.1.0-pyh4616a5c_0.tar.bz2",
    ]
    sources = [*built([python_package]), *(source_of(p) for p in paths)]
    ours, theirs = ours_and_rattler(tmp_path, sources, [python_package.path, *paths])
    assert_same_install(ours, theirs, ordered_paths=False)
    assert (ours / CLOBBERS_DIR / "python" / "bin" / "python").is_symlink()
    assert (ours / "bin" / "python").read_bytes() == (theirs / "bin" / "python").read_bytes()


def _big_placeholder_files(size: int) -> dict[str, File]:
    rng = random.Random(7)
    block = 64 << 10
    text, binary = bytearray(), bytearray()
    while len(text) < size:
        text += rng.randbytes(block // 2).hex().encode() + f"\n{PLACEHOLDER}/lib\n".encode()
        binary += rng.randbytes(block) + f"\0{PLACEHOLDER}/lib:{PLACEHOLDER}/x\0".encode()
    return {
        "share/big.txt": File(b"#!" + PLACEHOLDER.encode() + b"/bin/python\n" + text, 0o755, PLACEHOLDER),
        "lib/big.so": File(bytes(binary), 0o755, PLACEHOLDER, "binary"),
    }


def test_big_placeholder_files_are_streamed_and_match_rattler(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Above PATCHED_IN_MEMORY_UP_TO, a placeholder file is replaced while it streams: same bytes and
    same conda-meta hashes as rattler, and memory well below the file's size."""
    import tracemalloc

    import pixi_pack.install.linker

    monkeypatch.setattr(pixi_pack.install.linker, "PATCHED_IN_MEMORY_UP_TO", 1 << 20)
    size = 24 << 20
    package = build_package(tmp_path / "b", "big", files=_big_placeholder_files(size))
    theirs, ours = tmp_path / "rattler" / "env", tmp_path / "ours" / "env"
    rattler_install([package.path], theirs, tmp_path / "cache")
    tracemalloc.start()
    try:
        install_packages(built([package]), ours, theirs, PLATFORM)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert_same_install(ours, theirs)
    assert (ours / "share" / "big.txt").read_bytes().startswith(f"#!{theirs}/bin/python\n".encode())
    assert peak < size // 3, f"installing two {size >> 20} MiB files peaked at {peak >> 20} MiB"


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002, 0o000])
@pytest.mark.parametrize("mode", [0o644, 0o755, 0o664, 0o600, 0o777, 0o4755, 0o444])
def test_files_get_exactly_their_mode_whatever_the_umask(tmp_path: Path, mask: int, mode: int) -> None:
    """Modes the umask leaves whole are given to open(); the rest are set after, so both come out exact."""
    from pixi_pack.install.tree import TreeWriter

    previous = os.umask(mask)
    try:
        writer = TreeWriter(tmp_path)
        writer.write("a/b/small", b"x", mode, 1_600_000_000)
        writer.write("a/streamed", io.BytesIO(b"y" * 3_000_000), mode, None)
    finally:
        os.umask(previous)
    for rel in ("a/b/small", "a/streamed"):
        assert stat.S_IMODE(os.lstat(tmp_path / rel).st_mode) == mode, rel
    assert int(os.lstat(tmp_path / "a/b/small").st_mtime) == 1_600_000_000


@pytest.mark.parametrize("kept", [0, 3])
def test_released_entries_are_read_again_and_match_rattler(
    tmp_path: Path, python_channel: Any, monkeypatch: pytest.MonkeyPatch, kept: int
) -> None:
    """Past KEPT_ENTRIES paths, packages drop their paths.json entries once planned and read them again:
    with none kept, or some, the install is rattler's (clobbers, noarch python, entry points)."""
    import pixi_pack.install.link as link

    monkeypatch.setattr(link, "KEPT_ENTRIES", kept)
    out = tmp_path / "build"
    packages = [
        *python_channel.packages.values(),
        build_package(out, "top", files={"share/x.txt": "top\n", "lib/y": "top"}, depends=["base"]),
        build_package(out, "base", files={"share/x.txt": "base\n", "lib/z": "z"}),
    ]
    ours, theirs = ours_and_rattler(tmp_path, built(packages), [p.path for p in packages])
    assert_same_install(ours, theirs, ordered_paths=False)
    assert (ours / CLOBBERS_DIR / "base" / "share" / "x.txt").read_text() == "base\n"
    # A file where another package has a folder (rattler's own result depends on its threads here).
    packages = [
        build_package(out, "pkga", files={"lib/f": "A"}, depends=["pkgb"]),
        build_package(out, "pkgb", files={"lib/f/g": "B"}),
    ]
    env = tmp_path / "clash"
    install_packages(built(packages), env, env, PLATFORM)
    assert (env / "lib" / "f").read_text() == "A"
    assert (env / CLOBBERS_DIR / "pkgb" / "lib" / "f" / "g").read_text() == "B"


def test_a_package_whose_info_changed_after_planning_is_refused(tmp_path: Path) -> None:
    from dataclasses import replace

    from pixi_pack.formats.package_info import load_package, with_entries

    (source,) = built([build_package(tmp_path, "p", files={"a": "1", "b": "2"})])
    package = load_package(source)
    assert with_entries(package) is package
    released = load_package(source, keep=lambda count: count < 2)
    assert released.released and not released.entries and released.file_paths == package.file_paths
    assert with_entries(released) == package
    planned = replace(released, file_paths="a\0c")
    with pytest.raises(ArchiveError, match="changed while it was being installed"):
        with_entries(planned)


@pytest.mark.parametrize("seed", range(200))
def test_moved_copies_are_the_exact_rule(seed: int) -> None:
    """The hashed first pass finds every clash: the result is resolve_clobbers' for random path sets."""
    from pixi_pack.install.plan import moved_copies, place

    rng = random.Random(seed)
    names = [f"p{i}" for i in range(rng.randint(1, 5))]
    pool = ["a", "a/b", "a/b/c", "a/d", "e", "e/f", "g/h/i", "g/h", "g"]
    owned = {n: list(dict.fromkeys(rng.sample(pool, rng.randint(0, 4)))) for n in names}
    live = resolve_clobbers(names, owned)
    expected = {n: {p: place(n, p, live) for p in paths if (n, p) not in live} for n, paths in owned.items()}
    moved = moved_copies(names, {n: functools.partial(iter, owned[n]) for n in names})
    assert moved == {n: m for n, m in expected.items() if m}


@pytest.mark.parametrize("seed", range(20))
def test_pretty_json_is_json_dumps_with_indent_2(seed: int) -> None:
    """conda-meta's fast writer gives json.dumps(indent=2, ensure_ascii=False)'s text, whatever the values."""
    from pixi_pack.install.condameta import pretty_json

    rng = random.Random(seed)
    scalars = [
        None,
        True,
        False,
        0,
        -5,
        1.5,
        float("nan"),
        float("-inf"),
        10**20,
        "",
        'é\n"\\\x01\u2028',
        "abc",
    ]

    def value(depth: int) -> Any:
        roll = rng.random()
        if depth > 3 or roll < 0.4:
            return rng.choice(scalars)
        if roll < 0.7:
            keys = ["a", "é", "", "k\n"]
            return {rng.choice(keys) + str(i): value(depth + 1) for i in range(rng.randint(0, 4))}
        return [value(depth + 1) for _ in range(rng.randint(0, 4))]

    for _ in range(500):
        document = value(0)
        assert pretty_json(document) == json.dumps(document, indent=2, ensure_ascii=False)
    with pytest.raises(TypeError, match="keys are strings"):
        pretty_json({1: "x"})
