"""pixi-unpack checks the host before it writes anything: virtual packages, free space, the platform."""

from __future__ import annotations

import shutil
import subprocess
from collections import namedtuple
from pathlib import Path

import pytest
from builders import build_package
from lockfiles import conda, write_lock
from test_zipapp import zipapp_path

from pixi_pack.cli import pack_main, unpack_main
from pixi_pack.install import preflight
from pixi_pack.platforms import current_subdir

pytestmark = pytest.mark.skipif(current_subdir() != "linux-64", reason="end-to-end tests run on linux-64")


def _pack(tmp_path: Path, depends: list[str], *extra: str, subdir: str = "linux-64") -> Path:
    channel = tmp_path / "channel"
    package = build_package(
        channel / subdir,
        "needy",
        "1.0",
        "0",
        subdir=subdir,
        depends=depends,
        files={"share/needy/x.txt": "x\n"},
    )
    write_lock(
        tmp_path / "project" / "pixi.lock",
        {"default": {subdir: [conda(package, channel.as_uri())]}},
        [channel.as_uri()],
    )
    out = tmp_path / ("environment.sh" if "--create-executable" in extra else "environment.tar")
    assert pack_main([str(tmp_path / "project"), "-p", subdir, "-o", str(out), *extra]) == 0
    return out


def test_this_host_has_its_virtual_packages() -> None:
    host = preflight.this_host()
    assert {"__unix", "__linux", "__archspec"} <= set(host.packages)
    assert host.packages["__glibc"][0].count(".") >= 1  # Debian's glibc


def test_a_glibc_too_old_is_refused_before_anything_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tar = _pack(tmp_path, ["__glibc >=2.99", "__unix"])
    out = tmp_path / "out"
    assert unpack_main([str(tar), "-o", str(out)]) == 1
    err = capsys.readouterr().err
    glibc = preflight.this_host().packages["__glibc"][0]
    assert (
        f"error: this host cannot run the environment: needy-1.0-0 needs __glibc >=2.99, and this host has glibc {glibc}"
        in err
    )
    assert "--ignore-virtual-packages" in err
    assert not out.exists()
    assert unpack_main([str(tar), "-o", str(out), "--ignore-virtual-packages"]) == 0
    assert (out / "env" / "share" / "needy" / "x.txt").is_file()


def test_met_requirements_pass_and_cuda_only_warns(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tar = _pack(tmp_path, ["__glibc >=2.17", "__linux >=3.10", "__unix", "__cuda >=12"])
    assert unpack_main([str(tar), "-o", str(tmp_path / "out")]) == 0
    err = capsys.readouterr().err
    assert "warning: needy-1.0-0 needs __cuda >=12, which cannot be checked here" in err


def test_every_unmet_requirement_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tar = _pack(tmp_path, ["__osx >=11", "__win"])
    assert unpack_main([str(tar), "-o", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert (
        "needy-1.0-0 needs __osx >=11, and this host has no osx; needy-1.0-0 needs __win, and this host has no win"
        in err
    )


def test_no_room_is_refused_before_anything_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    tar = _pack(tmp_path, [])
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr("pixi_pack.install.preflight.shutil.disk_usage", lambda path: usage(10_000, 9_999, 1))
    monkeypatch.setattr(preflight, "PLENTY", 10**9)  # every byte counts: look into the packages
    out = tmp_path / "out"
    assert unpack_main([str(tar), "-o", str(out)]) == 1
    assert "error: the environment needs 2 B, and " in capsys.readouterr().err
    assert not out.exists()
    monkeypatch.setattr(
        "pixi_pack.install.preflight.shutil.disk_usage", lambda path: usage(10**12, 0, 10**12)
    )
    assert unpack_main([str(tar), "-o", str(out)]) == 0


def test_the_installed_size_is_what_paths_json_says(tmp_path: Path) -> None:
    from pixi_pack.formats.archive import PackReader
    from pixi_pack.install.unpack import collect_packages
    from pixi_pack.io.zstd import Decompressor

    tar = _pack(tmp_path, [])
    reader = PackReader(tar)
    assert (
        preflight.installed_size(collect_packages(reader), zstd=Decompressor(), wheel_sizes=lambda: 5)
        == 2 + 5
    )


def test_a_pack_for_another_platform_unpacks_with_ignore_platform(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tar = _pack(tmp_path, [], subdir="linux-aarch64")
    out = tmp_path / "out"
    assert unpack_main([str(tar), "-o", str(out)]) == 1
    assert "--ignore-platform" in capsys.readouterr().err
    assert unpack_main([str(tar), "-o", str(out), "--ignore-platform"]) == 0
    err = capsys.readouterr().err
    assert "warning: the pack is for linux-aarch64 and this machine is linux-64: unpacking it anyway" in err
    assert (out / "env" / "share" / "needy" / "x.txt").read_text() == "x\n"
    assert (out / "env" / "conda-meta" / "needy-1.0-0.json").is_file()


def test_a_self_extracting_file_takes_the_same_flags(tmp_path: Path) -> None:
    script = _pack(
        tmp_path, ["__glibc >=2.99"], "--create-executable", "--pixi-unpack-source", str(zipapp_path())
    )
    refused = subprocess.run(
        ["sh", str(script), "-o", str(tmp_path / "a")], capture_output=True, text=True, check=False
    )
    assert refused.returncode == 1 and "needs __glibc >=2.99" in refused.stderr
    assert not (tmp_path / "a" / "env").exists()
    done = subprocess.run(
        ["sh", str(script), "-o", str(tmp_path / "b"), "--ignore-virtual-packages"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "b" / "env" / "share" / "needy" / "x.txt").is_file()
    shutil.rmtree(tmp_path / "b")
