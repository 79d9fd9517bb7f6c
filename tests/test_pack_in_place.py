"""A pack assembled in place (each package downloaded straight into its slot of the output file) has
exactly the bytes of the tar of the same files, whatever order the downloads finish in; a download that
does not fit its slot fails the pack and leaves nothing behind."""

from __future__ import annotations

import base64
import errno
import hashlib
import io
import os
import re
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
from builders import build_package, build_wheel
from conftest import Channel, HttpServer
from lockfiles import CondaEntry, LockEntry, conda, conda_at, pypi, write_lock
from test_archive import reference_tar

from pixi_pack.cli import pack_main
from pixi_pack.pack import selfextract


def _without(entry: CondaEntry, *keys: str) -> CondaEntry:
    return CondaEntry(
        entry.location, {k: v for k, v in entry.record.items() if k not in keys}, entry.explicit
    )


def _project(tmp_path: Path, entries: list[LockEntry], channel_url: str) -> Path:
    project = tmp_path / "project"
    write_lock(project / "pixi.lock", {"default": {"linux-64": entries}}, [channel_url])
    return project


def _entries(kind: str, served_channel: str, channel: Channel, http_server: HttpServer) -> list[LockEntry]:
    entries: list[LockEntry] = [conda(p, served_channel) for p in channel.packages.values()]
    if kind == "unsized conda package":
        # The first package in the archive without a size: every member after it is placed at the end.
        entries[0] = _without(entries[0], "size")  # type: ignore[arg-type]
    if kind == "wheels":
        folder = http_server.root / "wheels"
        entries.append(
            pypi(build_wheel(folder, "plain", "2.1"), f"{http_server.url}/wheels/plain-2.1-py3-none-any.whl")
        )
        unhashed = build_wheel(folder, "other", "0.1")
        entries.append(pypi(unhashed, http_server.url_for(unhashed.path), with_hash=False))
    return entries


@pytest.mark.parametrize("kind", ["conda only", "unsized conda package", "wheels"])
def test_pack_is_the_tar_of_the_folder_pack(
    tmp_path: Path, served_channel: str, channel: Channel, http_server: HttpServer, kind: str
) -> None:
    project = _project(tmp_path, _entries(kind, served_channel, channel, http_server), served_channel)
    folder, out = tmp_path / "folder", tmp_path / "environment.tar"
    assert pack_main([str(project), "-p", "linux-64", "--directory-only", "-o", str(folder)]) == 0
    assert pack_main([str(project), "-p", "linux-64", "-o", str(out)]) == 0
    expected = reference_tar(folder)
    assert out.read_bytes() == expected
    piped = subprocess.run(
        [sys.executable, "-m", "pixi_pack", "pack", str(project), "-p", "linux-64", "-o", "-", "-q"],
        capture_output=True,
        check=True,
    )
    assert piped.stdout == expected
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # no .part, no work folder


def _fake_pyz(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("__main__.py", "print('unpacker')\n")
        archive.writestr("site-packages/pixi_pack/cli.py", "")
    return path


@pytest.mark.parametrize("kind", ["conda only", "wheels"])
def test_executable_is_stub_tar_and_zipapp(
    tmp_path: Path, served_channel: str, channel: Channel, http_server: HttpServer, kind: str
) -> None:
    project = _project(tmp_path, _entries(kind, served_channel, channel, http_server), served_channel)
    pyz = _fake_pyz(tmp_path / "unpacker.pyz")
    folder, out = tmp_path / "folder", tmp_path / "environment.sh"
    assert pack_main([str(project), "-p", "linux-64", "--directory-only", "-o", str(folder)]) == 0
    args = [str(project), "-p", "linux-64", "--create-executable", "--pixi-unpack-source", str(pyz)]
    assert pack_main([*args, "-o", str(out)]) == 0
    data = out.read_bytes()
    offset = int(re.search(rb"--payload-offset (\d+)", data[:4096]).group(1))  # type: ignore[union-attr]
    length = int(re.search(rb"--payload-length (\d+)", data[:4096]).group(1))  # type: ignore[union-attr]
    sha256 = re.search(rb"--payload-sha256 ([0-9a-f]{64})", data[:4096]).group(1).decode()  # type: ignore[union-attr]
    payload = data[offset : offset + length]
    assert payload == reference_tar(folder)
    assert hashlib.sha256(payload).hexdigest() == sha256
    assert data[offset + length :] == pyz.read_bytes()
    # The same bytes as the streaming writer (used for stdout) makes of the same tar.
    tar = tmp_path / "payload.tar"
    tar.write_bytes(payload)
    streamed = io.BytesIO()
    selfextract.write_executable(tar, pyz, streamed, form="sh")
    assert streamed.getvalue() == data
    assert out.stat().st_mode & 0o777 == 0o755
    piped = subprocess.run(
        [sys.executable, "-m", "pixi_pack", "pack", *args, "-o", "-", "-q"], capture_output=True
    )
    assert piped.returncode == 0, piped.stderr
    assert piped.stdout == data


@pytest.mark.parametrize("change", ["longer", "shorter"])
@pytest.mark.parametrize("hashed", [True, False])
def test_a_download_that_does_not_fit_its_slot_fails_cleanly(
    tmp_path: Path,
    served_channel: str,
    channel: Channel,
    http_server: HttpServer,
    capsys: pytest.CaptureFixture[str],
    change: str,
    hashed: bool,
) -> None:
    entries: list[LockEntry] = [conda(p, served_channel) for p in channel.packages.values()]
    if not hashed:
        # md5 only: a record with no hash at all is refused before anything is fetched.
        entries = [_without(e, "sha256") for e in entries]  # type: ignore[arg-type]
    project = _project(tmp_path, entries, served_channel)
    package = channel.packages["hello"]
    served = http_server.root / "channel" / "linux-64" / package.file_name
    data = served.read_bytes()
    served.write_bytes(data + b"x" * 1000 if change == "longer" else data[:-100])
    out = tmp_path / "out" / "environment.tar"
    assert pack_main([str(project), "-p", "linux-64", "-o", str(out)]) == 1
    err = capsys.readouterr().err.splitlines()[-1]
    assert err.startswith("error: ") and package.dist_name in err
    assert ("sha256 mismatch" if hashed else "md5 mismatch") in err or "size mismatch" in err
    assert list(out.parent.iterdir()) == []


def test_damaged_cache_entries_are_fetched_again(
    tmp_path: Path,
    served_channel: str,
    channel: Channel,
    http_server: HttpServer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    project = _project(
        tmp_path, [conda(p, served_channel) for p in channel.packages.values()], served_channel
    )
    cache, first, second = tmp_path / "cache", tmp_path / "a.tar", tmp_path / "b.tar"
    assert pack_main([str(project), "-p", "linux-64", "-o", str(first), "--use-cache", str(cache)]) == 0
    for package in channel.packages.values():
        assert (cache / package.subdir / package.file_name).read_bytes() == package.path.read_bytes()
    same_size = cache / "linux-64" / channel.packages["hello"].file_name
    damaged = bytearray(same_size.read_bytes())
    damaged[100] ^= 1
    same_size.write_bytes(bytes(damaged))
    shorter = cache / "noarch" / channel.packages["hello-data"].file_name
    shorter.write_bytes(shorter.read_bytes()[:-1])
    requests = len(http_server.requests)
    assert pack_main([str(project), "-p", "linux-64", "-o", str(second), "--use-cache", str(cache)]) == 0
    assert len(http_server.requests) == requests + 2
    assert f"\nwarning: cached {same_size} is damaged, downloading it again\n" in capsys.readouterr().err
    assert second.read_bytes() == first.read_bytes()
    assert same_size.read_bytes() == channel.packages["hello"].path.read_bytes()


def test_a_file_listed_twice_is_packed_once(
    tmp_path: Path, served_channel: str, channel: Channel, http_server: HttpServer
) -> None:
    hello = channel.packages["hello"]
    entries: list[LockEntry] = [conda(p, served_channel) for p in channel.packages.values()]
    entries.append(CondaEntry(hello.path.as_uri(), dict(hello.record)))
    project = _project(tmp_path, entries, served_channel)
    out = tmp_path / "environment.tar"
    assert pack_main([str(project), "-p", "linux-64", "-o", str(out)]) == 0
    with tarfile.open(out) as tar:
        names = tar.getnames()
        member = tar.extractfile(f"channel/linux-64/{hello.file_name}")
        assert member is not None and member.read() == hello.path.read_bytes()
    assert names.count(f"channel/linux-64/{hello.file_name}") == 1
    assert f"/channel/linux-64/{hello.file_name}" not in http_server.requests  # fetched once, from the last


@pytest.mark.skipif(not hasattr(os, "posix_fallocate"), reason="no posix_fallocate here")
def test_a_full_disk_stops_the_pack_before_any_download(
    tmp_path: Path,
    served_channel: str,
    channel: Channel,
    http_server: HttpServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    project = _project(
        tmp_path, [conda(p, served_channel) for p in channel.packages.values()], served_channel
    )
    out = tmp_path / "out" / "environment.tar"
    out.parent.mkdir()

    def full(fd: int, offset: int, length: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "posix_fallocate", full)
    assert pack_main([str(project), "-p", "linux-64", "-o", str(out)]) == 1
    assert (
        capsys.readouterr().err.splitlines()[-1] == f"error: could not write {out}: No space left on device"
    )
    assert http_server.requests == []
    assert list(out.parent.iterdir()) == []

    def unsupported(fd: int, offset: int, length: int) -> None:
        raise OSError(errno.EOPNOTSUPP, os.strerror(errno.EOPNOTSUPP))

    monkeypatch.setattr(os, "posix_fallocate", unsupported)
    assert pack_main([str(project), "-p", "linux-64", "-o", str(out)]) == 0


def test_windows_executable_goes_through_the_staging_folder(tmp_path: Path) -> None:
    """environment.ps1 carries its payload as base64 text, so it is written from a staged tar."""
    packages = [
        build_package(tmp_path / "pkgs" / "win-64", "a", "1.0", "0"),
        build_package(tmp_path / "pkgs" / "noarch", "b", "1.0", "0", noarch="generic"),
    ]
    project = tmp_path / "project"
    entries: list[LockEntry] = [conda_at(p, p.path.as_uri()) for p in packages]
    write_lock(project / "pixi.lock", {"default": {"win-64": entries}}, [])
    pyz = _fake_pyz(tmp_path / "unpacker.pyz")
    folder, out = tmp_path / "folder", tmp_path / "environment.ps1"
    assert pack_main([str(project), "-p", "win-64", "--directory-only", "-o", str(folder)]) == 0
    args = [str(project), "-p", "win-64", "--create-executable", "--pixi-unpack-source", str(pyz)]
    assert pack_main([*args, "-o", str(out)]) == 0
    text = out.read_bytes()
    length = int(re.search(rb"\$PayloadLength = (\d+)", text).group(1))  # type: ignore[union-attr]
    sha256 = re.search(rb"\$PayloadSha256 = '([0-9a-f]{64})'", text).group(1).decode()  # type: ignore[union-attr]
    decoded = base64.b64decode(text.split(b"<#\r\n", 1)[1].rsplit(b"#>", 1)[0])
    assert decoded[:length] == reference_tar(folder)
    assert hashlib.sha256(decoded[:length]).hexdigest() == sha256
    assert decoded[length:] == pyz.read_bytes()
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_a_missing_local_package_is_named_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    package = build_package(tmp_path / "pkgs" / "linux-64", "a", "1.0", "0")
    project = tmp_path / "project"
    write_lock(project / "pixi.lock", {"default": {"linux-64": [conda_at(package, package.path)]}}, [])
    package.path.unlink()
    assert pack_main([str(project), "-p", "linux-64", "-o", str(tmp_path / "environment.tar")]) == 1
    err = capsys.readouterr().err.splitlines()[-1]
    assert err == f"error: could not read a-1.0-0 from {package.path}: No such file or directory"


def test_a_failed_download_stops_the_executable_cleanly(
    tmp_path: Path,
    served_channel: str,
    channel: Channel,
    http_server: HttpServer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    project = _project(
        tmp_path, [conda(p, served_channel) for p in channel.packages.values()], served_channel
    )
    http_server.fail(f"/channel/noarch/{channel.packages['hello-data'].file_name}", 404)
    out = tmp_path / "out" / "environment.sh"
    out.parent.mkdir()
    pyz = _fake_pyz(tmp_path / "unpacker.pyz")
    args = ["-p", "linux-64", "--create-executable", "--pixi-unpack-source", str(pyz), "-o", str(out)]
    assert pack_main([str(project), *args]) == 1
    assert "404" in capsys.readouterr().err.splitlines()[-1]
    assert list(out.parent.iterdir()) == []
