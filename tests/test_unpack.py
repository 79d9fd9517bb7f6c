"""pixi-unpack end to end: pack over HTTP -> unpack -> activate in a real shell -> run what was installed."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from builders import PLACEHOLDER, BuiltPackage, binary_prefix, build_package, write_channel
from conftest import Channel, HttpServer, prefix_tree
from lockfiles import conda, write_lock

from pixi_pack.cli import pack_main, unpack_main
from pixi_pack.io import tempfiles
from pixi_pack.platforms import current_subdir

pytestmark = pytest.mark.skipif(current_subdir() != "linux-64", reason="end-to-end tests run on linux-64")


def _pack(
    tmp_path: Path, channel_url: str, packages: list[BuiltPackage], *extra: str, platform: str = "linux-64"
) -> Path:
    project = tmp_path / "project"
    write_lock(
        project / "pixi.lock",
        {"default": {platform: [conda(p, channel_url) for p in packages]}},
        [channel_url],
    )
    out = tmp_path / "environment.tar"
    assert pack_main([str(project), "-p", platform, "-o", str(out), *extra]) == 0
    return out


def _bash(script: str, cwd: Path) -> str:
    result = subprocess.run(["bash", "-c", script], cwd=cwd, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture(scope="session")
def c_program(tmp_path_factory: pytest.TempPathFactory) -> BuiltPackage:
    """``cprefix``: a C program compiled here whose string constant holds the binary placeholder."""
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed")
    work = tmp_path_factory.mktemp("cprog")
    source = work / "cprefix.c"
    source.write_text(
        '#include <stdio.h>\nstatic const volatile char prefix[] = "' + PLACEHOLDER + '/share/cprefix";\n'
        'int main(void) { printf("%s\\n", (const char *)prefix); return 0; }\n'
    )
    subprocess.run(["gcc", "-O2", "-o", str(work / "cprefix"), str(source)], check=True)
    return build_package(
        work / "pkgs",
        "cprefix",
        "1.0",
        "h0_0",
        files={"bin/cprefix": binary_prefix((work / "cprefix").read_bytes())},
    )


def test_round_trip_runs_the_installed_programs(
    tmp_path: Path, http_server: HttpServer, channel: Channel, c_program: BuiltPackage
) -> None:
    packages = [*channel.packages.values(), c_program]
    write_channel(http_server.root / "ch", packages)
    tar = _pack(tmp_path, http_server.url_for("ch"), packages)
    out = tmp_path / "target dir"  # spaces in the prefix path
    assert unpack_main([str(tar), "-o", str(out)]) == 0
    prefix = out / "env"
    assert sorted(p.name for p in out.iterdir()) == ["activate.sh", "env"]
    printed = _bash(
        '. ./activate.sh && echo "$CONDA_PREFIX" && hello && hello-old && cprefix', out
    ).splitlines()
    assert printed == [str(prefix), str(prefix), str(prefix), f"{prefix}/share/cprefix"]
    binary = (prefix / "lib" / "libhello.so").read_bytes()
    assert f"{prefix}/lib".encode() + b"\0" in binary and PLACEHOLDER.encode() not in binary
    assert len(binary) == len(b"\x7fELF\0fake\0" + PLACEHOLDER.encode() + b"/lib\0tail\0")
    assert (prefix / "bin" / "cprefix").stat().st_size == (
        c_program.path.parent.parent / "cprefix"
    ).stat().st_size
    assert (prefix / "bin" / "hello-link").readlink() == Path("hello")
    assert os.access(prefix / "share" / "hello" / "run.sh", os.X_OK)
    import rattler

    record = rattler.PrefixRecord.from_path(prefix / "conda-meta" / "hello-1.2.3-h0_0.json")
    assert record.name.normalized == "hello"
    assert (prefix / "conda-meta" / "history").is_file()
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


def test_noarch_python_entry_point_runs_with_the_env_python(
    tmp_path: Path, http_server: HttpServer, python_channel: Channel
) -> None:
    packages = list(python_channel.packages.values())
    write_channel(http_server.root / "ch", packages)
    tar = _pack(tmp_path, http_server.url_for("ch"), packages)
    out = tmp_path / "out"
    assert unpack_main([str(tar), "-o", str(out), "-e", "pyenv"]) == 0
    prefix = out / "pyenv"
    printed = _bash(
        ". ./activate.sh && pyhello && pyhello-script && python -c 'import pyhello, sys; print(sys.prefix)'",
        out,
    )
    assert printed.splitlines() == [f"pyhello {prefix}", "pyhello-script", str(prefix)]
    assert (prefix / "lib" / "python3.11" / "site-packages" / "pyhello" / "__init__.py").is_file()


def test_unpack_from_stdin_and_from_a_folder(tmp_path: Path, served_channel: str, channel: Channel) -> None:
    tar = _pack(tmp_path, served_channel, list(channel.packages.values()))
    out = tmp_path / "from-stdin"
    with tar.open("rb") as stdin:
        result = subprocess.run(
            [sys.executable, "-m", "pixi_pack", "unpack", "-", "-o", str(out)],
            stdin=stdin,
            capture_output=True,
            check=False,
        )
    assert result.returncode == 0, result.stderr
    assert (out / "env" / "bin" / "hello").is_file()
    assert sorted(p.name for p in out.iterdir()) == ["activate.sh", "env"]
    folder = tmp_path / "folder"
    _extract(tar, folder)
    assert unpack_main([str(folder), "-o", str(tmp_path / "from-folder")]) == 0
    assert (tmp_path / "from-folder" / "env" / "bin" / "hello").is_file()


def _extract(tar: Path, folder: Path) -> None:
    with tarfile.open(tar) as t:
        if sys.version_info >= (3, 12):
            t.extractall(folder, filter="data")
        else:
            t.extractall(folder)


def _fails(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert unpack_main(argv) == 1
    err = capsys.readouterr().err
    last = err.splitlines()[-1]
    assert last.startswith("error: ") and "Traceback" not in err, err
    return last


def _tar_with(members: dict[str, bytes], path: Path) -> Path:
    with tarfile.open(path, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def _assert_nothing_left(out: Path) -> None:
    assert not out.exists() or list(out.iterdir()) == []


def test_wrong_platform_and_malformed_metadata(
    tmp_path: Path, served_channel: str, channel: Channel, capsys: pytest.CaptureFixture[str]
) -> None:
    tar = _pack(tmp_path, served_channel, [channel.packages["hello-data"]], platform="linux-aarch64")
    out = tmp_path / "out"
    err = _fails([str(tar), "-o", str(out)], capsys)
    assert "the pack is for linux-aarch64 but this machine is linux-64" in err
    _assert_nothing_left(out)
    bad = _tar_with({"pixi-pack.json": b"{not json"}, tmp_path / "bad.tar")
    assert "malformed pixi-pack.json" in _fails([str(bad), "-o", str(out)], capsys)
    future = _tar_with(
        {"pixi-pack.json": json.dumps({"version": "2", "platform": "linux-64"}).encode()}, tmp_path / "v2.tar"
    )
    assert "unsupported pack format version '2'" in _fails([str(future), "-o", str(out)], capsys)
    assert "has no pixi-pack.json" in _fails(
        [str(_tar_with({"x": b""}, tmp_path / "x.tar")), "-o", str(out)], capsys
    )
    assert "pack not found" in _fails([str(tmp_path / "missing.tar"), "-o", str(out)], capsys)
    _assert_nothing_left(out)


def test_hash_mismatch_truncation_and_hostile_members(
    tmp_path: Path, served_channel: str, channel: Channel, capsys: pytest.CaptureFixture[str]
) -> None:
    tar = _pack(tmp_path, served_channel, list(channel.packages.values()))
    out = tmp_path / "out"

    folder = tmp_path / "folder"
    _extract(tar, folder)
    victim = folder / "channel" / "linux-64" / "hello-1.2.3-h0_0.conda"
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    err = _fails([str(folder), "-o", str(out)], capsys)
    assert "hello-1.2.3-h0_0.conda in the pack: sha256 mismatch" in err
    _assert_nothing_left(out)

    truncated = tmp_path / "truncated.tar"
    truncated.write_bytes(tar.read_bytes()[: tar.stat().st_size // 2])
    err = _fails([str(truncated), "-o", str(out)], capsys)
    assert "truncated" in err
    _assert_nothing_left(out)

    meta = json.dumps({"version": "1", "platform": "linux-64"}).encode()
    for name in ("../evil", "/etc/evil", "channel/../../evil"):
        hostile = _tar_with({"pixi-pack.json": meta, name: b"x"}, tmp_path / "hostile.tar")
        assert "refusing pack member" in _fails([str(hostile), "-o", str(out)], capsys)
    link = tmp_path / "link.tar"
    with tarfile.open(link, "w") as t:
        info = tarfile.TarInfo("pixi-pack.json")
        info.size = len(meta)
        t.addfile(info, io.BytesIO(meta))
        sym = tarfile.TarInfo("channel/evil")
        sym.type, sym.linkname = tarfile.SYMTYPE, "/etc/passwd"
        t.addfile(sym)
    assert "only regular files and folders" in _fails([str(link), "-o", str(out)], capsys)
    _assert_nothing_left(out)
    assert not (tmp_path / "evil").exists()


def test_existing_environment_is_not_touched(
    tmp_path: Path, served_channel: str, channel: Channel, capsys: pytest.CaptureFixture[str]
) -> None:
    tar = _pack(tmp_path, served_channel, [channel.packages["hello-data"]])
    out = tmp_path / "out"
    (out / "env").mkdir(parents=True)
    (out / "env" / "keep.txt").write_text("mine")
    assert "already exists" in _fails([str(tar), "-o", str(out)], capsys)
    assert (out / "env" / "keep.txt").read_text() == "mine"


def test_a_second_environment_takes_the_activation_script_over_and_says_so(
    tmp_path: Path, served_channel: str, channel: Channel, capsys: pytest.CaptureFixture[str]
) -> None:
    """The one rule on both sides: files are replaced, with a line saying so; folders never are."""
    tar = _pack(tmp_path, served_channel, [channel.packages["hello-data"]])
    out = tmp_path / "out"
    assert unpack_main([str(tar), "-o", str(out)]) == 0
    assert "replaced" not in capsys.readouterr().err
    assert unpack_main([str(tar), "-o", str(out), "-e", "env2"]) == 0
    err = capsys.readouterr().err
    assert (
        f"replaced the activation script that was at {out / 'activate.sh'}: it now activates {out / 'env2'}"
        in err
    )
    assert f"CONDA_PREFIX={out / 'env2'}" in (out / "activate.sh").read_text()
    assert (out / "env" / "share").is_dir()  # the first environment stays
    err = _fails([str(tar), "-o", str(out), "-e", "env2"], capsys)
    assert "already exists and is not empty: pass --update to update it" in err


# --- --force ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("exchange", [True, False], ids=["renameat2", "two renames"])
def test_force_replaces_an_environment_once_the_new_one_is_complete(
    tmp_path: Path,
    served_channel: str,
    channel: Channel,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    exchange: bool,
) -> None:
    if not exchange:
        monkeypatch.setattr(tempfiles, "_exchange", lambda a, b: False)
    first = _pack(tmp_path / "a", served_channel, [channel.packages["hello-data"]])
    second = _pack(
        tmp_path / "b", served_channel, [channel.packages["hello"], channel.packages["hello-data"]]
    )
    out = tmp_path / "out"
    assert unpack_main([str(first), "-o", str(out)]) == 0
    (out / "env" / "mine.txt").write_text("mine")
    assert unpack_main([str(second), "-o", str(out), "--force"]) == 0
    assert f"replaced the environment that was at {out / 'env'} (--force)" in capsys.readouterr().err
    assert not (out / "env" / "mine.txt").exists()  # a fresh install, not a merge
    names = {
        channel.packages[n].file_name.rsplit(".", 2)[0]
        if channel.packages[n].file_name.endswith(".tar.bz2")
        else channel.packages[n].file_name.rsplit(".", 1)[0]
        for n in ("hello", "hello-data")
    }
    assert {p.stem for p in (out / "env" / "conda-meta").glob("*.json")} == names
    assert sorted(p.name for p in out.iterdir()) == ["activate.sh", "env"]  # nothing left beside it


def test_force_keeps_the_old_environment_when_the_new_one_fails(
    tmp_path: Path, served_channel: str, channel: Channel, capsys: pytest.CaptureFixture[str]
) -> None:
    tar = _pack(tmp_path, served_channel, [channel.packages["hello-data"]])
    out = tmp_path / "out"
    assert unpack_main([str(tar), "-o", str(out)]) == 0
    before = prefix_tree(out / "env")
    broken = tmp_path / "broken.tar"
    data = bytearray(tar.read_bytes())
    data[-20000:-10000] = bytes(10000)  # damages a package
    broken.write_bytes(bytes(data))
    assert unpack_main([str(broken), "-o", str(out), "--force"]) == 1
    assert prefix_tree(out / "env") == before
    assert sorted(p.name for p in out.iterdir()) == ["activate.sh", "env"]


def test_force_replaces_only_environments(
    tmp_path: Path, served_channel: str, channel: Channel, capsys: pytest.CaptureFixture[str]
) -> None:
    tar = _pack(tmp_path, served_channel, [channel.packages["hello-data"]])
    out = tmp_path / "out"
    (out / "env").mkdir(parents=True)
    (out / "env" / "thesis.tex").write_text("years of work")
    err = _fails([str(tar), "-o", str(out), "--force"], capsys)
    assert (
        "is not an environment (it has no conda-meta folder): --force and --update only take environments"
        in err
    )
    assert (out / "env" / "thesis.tex").read_text() == "years of work"
    (out / "other").write_text("a file")
    err = _fails([str(tar), "-o", str(out), "-e", "other", "--force"], capsys)
    assert "already exists as a link or a file" in err
