"""The payload of a self-extracting file (``--payload-*``): hashed while the environment is built, checked
before it moves into place, and a mismatch leaves nothing behind whatever failed first."""

from __future__ import annotations

import hashlib
import tarfile
import threading
from pathlib import Path

import pytest
from conftest import Channel
from lockfiles import conda, write_lock

from pixi_pack.cli import pack_main, unpack_main
from pixi_pack.errors import IntegrityError, PixiPackError
from pixi_pack.install import payload as payload_module
from pixi_pack.install import unpack as unpack_module
from pixi_pack.install.unpack import unpack
from pixi_pack.io.hashing import hash_file_range
from pixi_pack.models import UnpackOptions
from pixi_pack.platforms import current_subdir

HEAD = b"#!/bin/sh\n# a stub stands here\n"
TAIL = b"PK and the zipapp would follow"
HELLO = "channel/linux-64/hello-1.2.3-h0_0.conda"


@pytest.fixture
def tar(tmp_path: Path, served_channel: str, channel: Channel) -> Path:
    """A pack of the default channel."""
    if current_subdir() != "linux-64":
        pytest.skip("the packs are for linux-64")
    project = tmp_path / "project"
    write_lock(
        project / "pixi.lock",
        {"default": {"linux-64": [conda(p, served_channel) for p in channel.packages.values()]}},
        [served_channel],
    )
    out = tmp_path / "environment.tar"
    assert pack_main([str(project), "-p", "linux-64", "-o", str(out)]) == 0
    return out


def embed(tar: Path, destination: Path, *, flip: int | None = None) -> UnpackOptions:
    """``tar`` between a head and a tail as in ``environment.sh``, the byte at ``flip`` of the tar changed
    after its sha256 was taken; the options that unpack it into ``destination.parent / "out"``."""
    data = bytearray(tar.read_bytes())
    sha256 = hashlib.sha256(data).hexdigest()
    if flip is not None:
        data[flip] ^= 0x01
    destination.write_bytes(HEAD + bytes(data) + TAIL)
    return UnpackOptions(
        pack=destination,
        output_directory=destination.parent / "out",
        payload_offset=len(HEAD),
        payload_length=len(data),
        payload_sha256=sha256,
    )


def member_range(tar: Path, name: str) -> tuple[int, int]:
    """Where the bytes of member ``name`` start in ``tar``, and how many there are."""
    with tarfile.open(tar) as archive:
        member = archive.getmember(name)
    return member.offset_data, member.size


def assert_nothing_left(out: Path) -> None:
    """No environment, no activation script, no temporary build folder."""
    assert not out.exists() or list(out.iterdir()) == []


def test_intact_payload_unpacks(tar: Path, tmp_path: Path) -> None:
    options = embed(tar, tmp_path / "environment.sh")
    unpack(options)
    out = options.output_directory
    assert sorted(p.name for p in out.iterdir()) == ["activate.sh", "env"]
    assert (out / "env" / "share" / "hello-data" / "readme.txt").read_text() == "readme\n"


def test_damaged_package_data_leaves_nothing(tar: Path, tmp_path: Path) -> None:
    start, size = member_range(tar, HELLO)
    options = embed(tar, tmp_path / "environment.sh", flip=start + size // 2)
    with pytest.raises(IntegrityError, match=r"the pack inside .*: sha256 mismatch.*download it again"):
        unpack(options)
    assert_nothing_left(options.output_directory)


def test_mismatch_is_the_error_when_extracting_failed_first(tar: Path, tmp_path: Path) -> None:
    """A ``.conda`` whose zip directory is damaged cannot be read at all: the cause is the damage."""
    start, size = member_range(tar, HELLO)
    end_of_central_directory = start + size - 22
    assert tar.read_bytes()[end_of_central_directory : end_of_central_directory + 4] == b"PK\x05\x06"
    options = embed(tar, tmp_path / "environment.sh", flip=end_of_central_directory)
    with pytest.raises(IntegrityError, match="sha256 mismatch") as raised:
        unpack(options)
    assert isinstance(raised.value.__cause__, PixiPackError)
    assert not isinstance(raised.value.__cause__, IntegrityError)
    assert_nothing_left(options.output_directory)


def test_damaged_metadata_is_reported_as_damage(tar: Path, tmp_path: Path) -> None:
    start, _ = member_range(tar, "pixi-pack.json")
    options = embed(tar, tmp_path / "environment.sh", flip=start)  # the opening "{"
    with pytest.raises(IntegrityError, match="sha256 mismatch") as raised:
        unpack(options)
    assert "pixi-pack.json" in str(raised.value.__cause__)
    assert_nothing_left(options.output_directory)


def test_wrong_digest_commits_nothing(tar: Path, tmp_path: Path) -> None:
    """Good bytes, but not the ones the stub names: the whole build runs and is thrown away."""
    options = embed(tar, tmp_path / "environment.sh")
    options = UnpackOptions(
        pack=options.pack,
        output_directory=options.output_directory,
        payload_offset=options.payload_offset,
        payload_length=options.payload_length,
        payload_sha256="0" * 64,
    )
    with pytest.raises(IntegrityError, match="sha256 mismatch"):
        unpack(options)
    assert_nothing_left(options.output_directory)


def test_truncated_file_is_reported_as_damage(
    tar: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    options = embed(tar, tmp_path / "environment.sh")
    assert options.pack is not None and options.payload_length is not None
    data = options.pack.read_bytes()
    options.pack.write_bytes(data[: len(HEAD) + options.payload_length // 2])
    argv = [
        str(options.pack), "-o", str(options.output_directory),
        "--payload-offset", str(options.payload_offset),
        "--payload-length", str(options.payload_length),
        "--payload-sha256", str(options.payload_sha256),
    ]  # fmt: skip
    assert unpack_main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: the pack inside") and "download it again" in err
    assert "Traceback" not in err
    assert_nothing_left(options.output_directory)


def test_interrupt_stops_the_hash_and_leaves_nothing(
    tar: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    options = embed(tar, tmp_path / "environment.sh")
    stops: list[threading.Event] = []

    def hash_until_stopped(path: Path, offset: int, length: int, *, stop: threading.Event) -> object:
        stops.append(stop)
        assert stop.wait(30)
        return hash_file_range(path, offset, length, stop=stop)

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(payload_module, "hash_file_range", hash_until_stopped)
    monkeypatch.setattr(unpack_module, "install_packages", interrupted)
    with pytest.raises(KeyboardInterrupt):
        unpack(options)
    assert len(stops) == 1 and stops[0].is_set()
    assert_nothing_left(options.output_directory)


def test_payload_of_a_folder_pack_is_refused(tar: Path, tmp_path: Path) -> None:
    folder = tmp_path / "folder"
    folder.mkdir()
    options = UnpackOptions(pack=folder, output_directory=tmp_path / "out", payload_sha256="0" * 64)
    with pytest.raises(PixiPackError, match="is a folder"):
        unpack(options)
