"""The pack tar: byte-for-byte what tarfile writes, whichever way the data is copied."""

from __future__ import annotations

import errno
import io
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from pixi_pack.formats import archive
from pixi_pack.formats.archive import FIXED_MTIME, copy_range, pack_members, tar_layout, write_at, write_tar


def _tree(root: Path) -> Path:
    (root / "channel" / "noarch").mkdir(parents=True)
    (root / "pixi-pack.json").write_text('{"version": "1"}\n')
    (root / "environment.yml").write_text("channels: []\n")
    (root / "channel" / "noarch" / "repodata.json").write_text("{}\n")
    long_name = "a-" + "very-long-package-name-" * 6 + "1.0-0.conda"  # > 100 bytes with its folder
    (root / "channel" / "noarch" / long_name).write_bytes(os.urandom(3 * 1024 * 1024 + 7))
    (root / "channel" / "noarch" / "empty-1.0-0.tar.bz2").write_bytes(b"")
    return root


def reference_tar(root: Path) -> bytes:
    """The tar of the folder ``root`` (a ``--directory-only`` pack) written by tarfile itself."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.GNU_FORMAT) as tar:
        for relative in pack_members(root):
            path = root / relative
            info = tarfile.TarInfo(relative.as_posix())
            info.mtime, info.uid, info.gid, info.uname, info.gname = FIXED_MTIME, 0, 0, "", ""
            if path.is_dir():
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            else:
                info.mode, info.size = 0o644, path.stat().st_size
                with path.open("rb") as f:
                    tar.addfile(info, f)
    return out.getvalue()


def test_in_memory_file_and_pipe_give_tarfiles_bytes(tmp_path: Path) -> None:
    root = _tree(tmp_path / "pack")
    expected = reference_tar(root)

    memory = io.BytesIO()
    write_tar(root, memory)
    assert memory.getvalue() == expected

    on_disk = tmp_path / "pack.tar"
    with on_disk.open("wb") as f:
        write_tar(root, f)
    assert on_disk.read_bytes() == expected

    code = "import sys; from pathlib import Path; from pixi_pack.formats.archive import write_tar; write_tar(Path(sys.argv[1]), sys.stdout.buffer)"
    piped = subprocess.run([sys.executable, "-c", code, str(root)], capture_output=True, check=True)
    assert piped.stdout == expected


def test_falls_back_when_the_kernel_cannot_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _tree(tmp_path / "pack")

    def refuse(in_fd: int, out_fd: int, count: int) -> int:
        raise OSError(22, "Invalid argument")

    monkeypatch.setattr(archive, "_KERNEL_COPIES", [refuse])
    out = tmp_path / "pack.tar"
    with out.open("wb") as f:
        write_tar(root, f)
    assert out.read_bytes() == reference_tar(root)


def test_layout_written_out_of_order_gives_tarfiles_bytes(tmp_path: Path) -> None:
    root = _tree(tmp_path / "pack")
    files = {r.as_posix(): (root / r).stat().st_size for r in pack_members(root) if (root / r).is_file()}
    layout = tar_layout(files)
    assert layout.length is not None
    out = tmp_path / "pack.tar"
    fd = os.open(out, os.O_RDWR | os.O_CREAT)
    try:
        for slot in reversed(list(layout.slots.values())):
            if slot.name in files:
                write_at(fd, (root / slot.name).read_bytes(), slot.data_offset)
            write_at(fd, slot.header, slot.offset)
        os.ftruncate(fd, layout.length)
    finally:
        os.close(fd)
    assert out.read_bytes() == reference_tar(root)


def test_layout_places_members_up_to_the_first_unknown_size(tmp_path: Path) -> None:
    root = _tree(tmp_path / "pack")
    files: dict[str, int | None] = {
        r.as_posix(): (root / r).stat().st_size for r in pack_members(root) if (root / r).is_file()
    }
    complete = tar_layout(files)
    files["channel/noarch/empty-1.0-0.tar.bz2"] = None
    partial = tar_layout(files)
    assert partial.length is None
    names = list(complete.slots)
    assert list(partial.slots) == names[: names.index("channel/noarch/empty-1.0-0.tar.bz2")]
    assert len(partial.slots) == 6
    assert partial.placed_end == complete.slots["channel/noarch/empty-1.0-0.tar.bz2"].offset
    assert all(complete.slots[name] == slot for name, slot in partial.slots.items())


def test_copy_range_falls_back_when_the_kernel_cannot_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "source"
    source.write_bytes(os.urandom(3 << 20))

    def refuse(*args: object) -> int:
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    for kernel in (True, False):
        if not kernel:
            monkeypatch.setattr(os, "copy_file_range", refuse, raising=False)
        target = tmp_path / f"target-{kernel}"
        target.write_bytes(b"x" * 10)
        with source.open("rb") as src, target.open("r+b") as dst:
            copy_range(src.fileno(), 5, dst.fileno(), 3, (3 << 20) - 5)
        assert target.read_bytes() == b"xxx" + source.read_bytes()[5:]
        with source.open("rb") as src, target.open("r+b") as dst, pytest.raises(OSError, match="short copy"):
            copy_range(src.fileno(), 5, dst.fileno(), 3, 3 << 20)
