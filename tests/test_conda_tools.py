"""conda's tools accept what pixi-unpack makes: conda-meta as rattler writes it, conda-pack packs it.

conda-pack (PyPI) reads every ``conda-meta/*.json`` for ``link``, ``files`` and ``url``; rattler.install
of the same records, with the URLs the lockfile had, is the reference for every key.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from conftest import Channel
from lockfiles import conda, write_lock

from pixi_pack.cli import pack_main, unpack_main
from pixi_pack.platforms import current_subdir

rattler = pytest.importorskip("rattler")
pytestmark = pytest.mark.skipif(current_subdir() != "linux-64", reason="end-to-end tests run on linux-64")

#: Keys whose values are the installer's own: where its package cache was, and how it linked.
INSTALLER_KEYS = {"extracted_package_dir", "link", "files", "paths_data"}
#: conda's key for the spec a package was installed for; rattler writes only ``requested_specs``.
CONDA_ONLY_KEYS = {"requested_spec"}


@pytest.fixture
def unpacked(tmp_path: Path, served_channel: str, channel: Channel) -> Path:
    """The default packages, locked from the served channel, packed and unpacked by us."""
    project = tmp_path / "project"
    packages = list(channel.packages.values())
    write_lock(
        project / "pixi.lock",
        {"default": {"linux-64": [conda(p, served_channel) for p in packages]}},
        [served_channel],
    )
    tar = tmp_path / "environment.tar"
    assert pack_main([str(project), "-p", "linux-64", "-o", str(tar)]) == 0
    out = tmp_path / "ours"
    assert unpack_main([str(tar), "-o", str(out)]) == 0
    return out / "env"


def _rattler_install(channel: Channel, served_channel: str, prefix: Path, cache: Path) -> None:
    """rattler.install of the records a lockfile of ``served_channel`` gives pixi."""
    records = []
    for package in channel.packages.values():
        record = asyncio.run(rattler.RepoDataRecord.from_package_archive(package.path))
        record.md5 = hashlib.md5(package.path.read_bytes()).digest()
        record.url = f"{served_channel}/{package.subdir}/{package.file_name}"
        record.channel = f"{served_channel}/"
        records.append(record)
    asyncio.run(rattler.install(records, prefix, cache_dir=cache, show_progress=False))


def test_conda_meta_has_every_key_rattler_writes_with_its_values(
    unpacked: Path, tmp_path: Path, served_channel: str, channel: Channel
) -> None:
    theirs = tmp_path / "rattler" / "env"
    _rattler_install(channel, served_channel, theirs, tmp_path / "cache")
    names = sorted(p.name for p in (theirs / "conda-meta").glob("*.json"))
    assert sorted(p.name for p in (unpacked / "conda-meta").glob("*.json")) == names
    for name in names:
        ours = json.loads((unpacked / "conda-meta" / name).read_text())
        reference = json.loads((theirs / "conda-meta" / name).read_text())
        assert set(ours) == set(reference) | CONDA_ONLY_KEYS, name
        for key in set(reference) - INSTALLER_KEYS:
            assert ours[key] == reference[key], (name, key)
        # The lock's URL, not the pack's channel folder that is gone after unpacking.
        assert ours["url"].startswith(f"{served_channel}/"), name
        assert ours["channel"] == f"{served_channel}/", name
        assert set(ours["link"]) == set(reference["link"]) == {"source", "type"}
        rattler.PrefixRecord.from_path(unpacked / "conda-meta" / name)


def test_conda_pack_packs_the_environment_and_it_relocates(unpacked: Path, tmp_path: Path) -> None:
    """``conda-pack -p`` packs an env made by pixi-unpack; unpacked elsewhere, conda-unpack relocates it."""
    archive = tmp_path / "packed.tar.gz"
    result = subprocess.run(
        [sys.executable, "-m", "conda_pack.cli", "-p", str(unpacked), "-o", str(archive), "--quiet"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "KeyError" not in result.stderr
    moved = tmp_path / "m"  # shorter than the original prefix, as binary placeholders need
    moved.mkdir()
    with tarfile.open(archive) as tar:
        tar.extractall(moved, filter="tar")
    assert json.loads((moved / "conda-meta" / "hello-1.2.3-h0_0.json").read_text())["name"] == "hello"
    unpack = subprocess.run(
        [sys.executable, str(moved / "bin" / "conda-unpack")], capture_output=True, text=True
    )
    assert unpack.returncode == 0, unpack.stderr
    hello = subprocess.run([str(moved / "bin" / "hello")], capture_output=True, text=True, check=True)
    assert hello.stdout == f"{moved}\n"
    assert (moved / "lib" / "libhello.so").read_bytes().find(str(moved).encode() + b"/lib\0") > 0
    assert (moved / "share" / "hello-data" / "readme.txt").read_text() == "readme\n"
    shutil.rmtree(moved)
