"""Temporary names: exclusive, unpredictable, pid-tagged, and removable once their process is gone."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import NoReturn

import pytest

from pixi_pack.io import tempfiles


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_names_are_fresh_and_tagged(tmp_path: Path) -> None:
    fd1, first = tempfiles.create_file(tmp_path, "environment.tar")
    fd2, second = tempfiles.create_file(tmp_path, "environment.tar")
    os.close(fd1)
    os.close(fd2)
    assert first != second
    assert first.name.startswith(f".environment.tar-{os.getpid()}-") and first.name.endswith(".part")
    assert first.stat().st_size == 0 and (first.stat().st_mode & 0o777) == 0o600
    folder = tempfiles.create_dir(tmp_path, "env")
    assert folder.is_dir() and folder.name.endswith(".partial")


def test_a_planted_symlink_is_never_written_through(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("keep")
    # Plant symlinks at every name the old scheme would have used; the new names are random anyway.
    for guess in (f".environment.tar.{os.getpid()}.part", "environment.tar.part", ".activate.sh.tmp"):
        (tmp_path / guess).symlink_to(victim)
    fd, created = tempfiles.create_file(tmp_path, "environment.tar")
    with os.fdopen(fd, "wb") as out:
        out.write(b"data")
    assert victim.read_text() == "keep"
    assert not created.is_symlink()


def test_remove_stale_takes_only_dead_processes_entries(tmp_path: Path) -> None:
    dead = _dead_pid()
    stale_file = tmp_path / f".environment.tar-{dead}-abcdef12.part"
    stale_file.write_bytes(b"x")
    stale_dir = tmp_path / f".env-{dead}-abcdef12.partial"
    (stale_dir / "sub").mkdir(parents=True)
    fd, mine = tempfiles.create_file(tmp_path, "environment.tar")
    os.close(fd)
    alive = tmp_path / ".environment.tar-1-abcdef12.part"  # pid 1 is alive
    alive.write_bytes(b"x")
    other_tag = tmp_path / f".other-{dead}-abcdef12.part"
    other_tag.write_bytes(b"x")
    plain = tmp_path / "environment.tar"
    plain.write_bytes(b"x")
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep").write_text("keep")
    link = tmp_path / f".env-{dead}-zzzzzz99.partial"
    link.symlink_to(victim)

    removed = tempfiles.remove_stale(tmp_path, "environment.tar") + tempfiles.remove_stale(tmp_path, "env")

    assert sorted(removed) == sorted([stale_file, stale_dir, link])
    assert mine.exists() and alive.exists() and other_tag.exists() and plain.exists()
    assert (victim / "keep").read_text() == "keep"


def test_remove_stale_of_a_missing_folder_is_nothing(tmp_path: Path) -> None:
    assert tempfiles.remove_stale(tmp_path / "absent", "env") == []


def test_replacing_renames_over_the_target_with_a_new_files_mode(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("keep")
    target = tmp_path / "out"
    target.symlink_to(victim)
    with tempfiles.replacing(target, mode=0o777) as out:
        out.write(b"new")
    assert not target.is_symlink()
    assert target.read_bytes() == b"new"
    assert victim.read_text() == "keep"
    assert stat.S_IMODE(target.stat().st_mode) == 0o777 & ~tempfiles.umask()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "victim"]


def test_replacing_removes_its_file_when_the_body_fails(tmp_path: Path) -> None:
    target = tmp_path / "out"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), tempfiles.replacing(target) as out:
        out.write(b"half")
        raise RuntimeError
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


@pytest.mark.parametrize("mask", [0o022, 0o027, 0o077, 0o002])
def test_umask_is_read_without_changing_it(mask: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Read each time (a program may change it between calls), from /proc where Linux has it."""
    previous = os.umask(mask)
    try:
        assert tempfiles.umask() == mask
        monkeypatch.setattr("builtins.open", _no_proc)
        assert tempfiles.umask() == mask  # the set-and-restore fallback
        assert os.umask(mask) == mask
    finally:
        os.umask(previous)


def _no_proc(*args: object, **kwargs: object) -> NoReturn:
    raise FileNotFoundError("/proc/self/status")


def test_read_limited_reads_up_to_its_bound(tmp_path: Path) -> None:
    from pixi_pack.io.files import TooLargeError, read_limited

    path = tmp_path / "f"
    path.write_bytes(b"12345")
    assert read_limited(path, 5) == b"12345"
    with pytest.raises(TooLargeError):
        read_limited(path, 4)
