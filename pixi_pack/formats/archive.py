"""The pack as a tar: a deterministic writer, and a reader that trusts no member.

Member order is fixed so a reader streaming the tar meets what it needs first: ``pixi-pack.json``,
``environment.yml``, then each ``channel/<subdir>/repodata.json`` before that subdir's packages, then
``pypi/``. Owners, mtimes and modes are normalised, so the same inputs give the same bytes.
"""

from __future__ import annotations

import errno
import io
import os
import shutil
import tarfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from pixi_pack.errors import ArchiveError
from pixi_pack.models import CHANNEL_DIR, ENVIRONMENT_FILE, METADATA_FILE, PYPI_DIR, REPODATA_FILE

#: 1980-01-01, the earliest date zip can store too; a fixed mtime keeps archives reproducible.
FIXED_MTIME = 315532800
_BLOCK = 512
_WRITE_BUFFER = 1 << 20
#: What a kernel copy fails with when it cannot copy between these two files (try another way).
_NO_KERNEL_COPY = (errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EBADF)


def _sort_key(relative: PurePosixPath) -> tuple[int, tuple[tuple[int, str], ...]]:
    top = {METADATA_FILE: 0, ENVIRONMENT_FILE: 1, CHANNEL_DIR: 2, PYPI_DIR: 3}.get(relative.parts[0], 4)
    # Within a folder, repodata.json comes before the packages it describes.
    return top, tuple((0 if part == REPODATA_FILE else 1, part) for part in relative.parts)


def pack_members(root: Path) -> list[PurePosixPath]:
    """Every file and folder below ``root``, relative, in archive order."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        base = PurePosixPath(Path(dirpath).relative_to(root).as_posix())
        for name in dirnames + filenames:
            found.append(base / name if str(base) != "." else PurePosixPath(name))
    return sorted(found, key=_sort_key)


def tar_header(name: str, size: int | None) -> bytes:
    """The header block(s) of one member, as ``tarfile`` writes them: a file of ``size`` bytes, or a
    folder when ``size`` is None."""
    info = tarfile.TarInfo(name)
    info.mtime = FIXED_MTIME
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.type = tarfile.DIRTYPE if size is None else tarfile.REGTYPE
    info.mode = 0o755 if size is None else 0o644
    info.size = size or 0
    return info.tobuf(tarfile.GNU_FORMAT, "utf-8", "surrogateescape")


def _tar_end(written: int) -> int:
    """Bytes after the last member: two zero blocks, then zeros up to a whole 10 KiB record."""
    end = 2 * _BLOCK
    return end + -(written + end) % tarfile.RECORDSIZE


def write_tar(root: Path, out: BinaryIO) -> None:
    """Write the folder ``root`` as an uncompressed, deterministic tar to ``out``.

    The bytes are what ``tarfile`` writes in GNU format (headers, data padded to 512-byte blocks, two
    zero blocks, padding to a 10 KiB record); the data is copied by the kernel where it can be.
    """
    written = 0
    for relative in pack_members(root):
        path = root / relative
        size = None if path.is_dir() else path.stat().st_size
        header = tar_header(relative.as_posix(), size)
        out.write(header)
        written += len(header)
        if size is not None:
            with open(path, "rb") as f:
                _copy(f, out, size)
            padding = -size % _BLOCK
            out.write(bytes(padding))
            written += size + padding
    out.write(bytes(_tar_end(written)))


@dataclass(frozen=True)
class TarSlot:
    """Where one member goes in a tar: its header at ``offset``, then its data."""

    name: str
    offset: int
    header: bytes
    size: int
    """Bytes of data (0 for a folder); the zeros that pad it to a whole block follow."""

    @property
    def data_offset(self) -> int:
        return self.offset + len(self.header)


@dataclass(frozen=True)
class TarLayout:
    """The tar :func:`write_tar` would write of a folder, laid out before the folder's files exist."""

    slots: dict[str, TarSlot]
    """The members whose place is known, in archive order: every member before the first file of
    unknown size (a later member's place depends on that size)."""
    placed_end: int
    """Where the placed members end (padding included): the first unplaced member's offset."""
    length: int | None
    """The whole tar's length, or None while a size is unknown."""


def tar_layout(files: Mapping[str, int | None]) -> TarLayout:
    """Lay out a tar of ``files`` (posix path -> size in bytes, None if not known yet).

    Folders are implied by the paths. Write each slot's header at its offset and the file's data after
    it, leave every other byte zero (a file extended past them reads as zeros), and the file holds the
    bytes :func:`write_tar` writes for the same tree.
    """
    names = {PurePosixPath(name) for name in files}
    names.update(parent for name in list(names) for parent in name.parents if parent.parts)
    slots: dict[str, TarSlot] = {}
    offset = 0
    for path in sorted(names, key=_sort_key):
        name = path.as_posix()
        size = files.get(name, 0)
        if size is None:
            return TarLayout(slots, offset, None)
        header = tar_header(name, size if name in files else None)
        slots[name] = TarSlot(name, offset, header, size)
        offset += len(header) + size + -size % _BLOCK
    return TarLayout(slots, offset, offset + _tar_end(offset))


def write_at(fd: int, data: bytes | memoryview, offset: int) -> None:
    """Write all of ``data`` at ``offset`` of the file ``fd`` (its position neither used nor moved)."""
    view = memoryview(data)
    while view:
        done = os.pwrite(fd, view, offset)
        view = view[done:]
        offset += done


class RangeReader:
    """Reads ``size`` bytes of the open file ``fd`` from ``offset``, its file position neither used nor
    moved (threads may share the fd)."""

    def __init__(self, fd: int, offset: int, size: int) -> None:
        self._fd = fd
        self._pos = offset
        self._end = offset + size

    def read(self, size: int = -1) -> bytes:
        left = self._end - self._pos
        count = left if size < 0 else min(size, left)
        data = os.pread(self._fd, count, self._pos) if count > 0 else b""
        self._pos += len(data)
        return data


def copy_range(in_fd: int, in_offset: int, out_fd: int, out_offset: int, size: int) -> None:
    """Copy ``size`` bytes between two files at the given offsets: in the kernel where it can be."""
    copied = 0
    if hasattr(os, "copy_file_range"):
        while copied < size:
            try:
                done = os.copy_file_range(
                    in_fd, out_fd, size - copied, in_offset + copied, out_offset + copied
                )
            except OSError as exc:
                if copied == 0 and exc.errno in _NO_KERNEL_COPY:
                    break
                raise
            if done == 0:
                break  # the source ended early: the loop below finds out
            copied += done
    while copied < size:
        chunk = os.pread(in_fd, min(size - copied, _WRITE_BUFFER), in_offset + copied)
        if not chunk:
            msg = f"short copy: {copied} of {size} bytes"
            raise OSError(errno.EIO, msg)
        write_at(out_fd, chunk, out_offset + copied)
        copied += len(chunk)


def _copy(source: BinaryIO, out: BinaryIO, size: int) -> None:
    """Copy ``size`` bytes of ``source`` to ``out``: in the kernel where both ends allow it."""
    try:
        out_fd = out.fileno()
    except (AttributeError, OSError, io.UnsupportedOperation):
        out_fd = None
    if out_fd is not None:
        out.flush()
        for kernel_copy in _KERNEL_COPIES:
            if _copy_in_kernel(kernel_copy, source.fileno(), out_fd, size):
                return
    shutil.copyfileobj(source, out, _WRITE_BUFFER)


def _copy_file_range(in_fd: int, out_fd: int, count: int) -> int:
    return os.copy_file_range(in_fd, out_fd, count)


def _sendfile(in_fd: int, out_fd: int, count: int) -> int:
    return os.sendfile(out_fd, in_fd, None, count)


# copy_file_range (Linux, between files) first, sendfile (also into pipes) next.
_KERNEL_COPIES = [
    copy
    for name, copy in (("copy_file_range", _copy_file_range), ("sendfile", _sendfile))
    if hasattr(os, name)
]


def _copy_in_kernel(copy: Callable[[int, int, int], int], in_fd: int, out_fd: int, size: int) -> bool:
    """Copy with ``copy``; False (nothing copied) if this kind of copy is not possible between the two."""
    copied = 0
    while copied < size:
        try:
            done = copy(in_fd, out_fd, min(size - copied, 1 << 30))
        except OSError as exc:
            if copied == 0 and exc.errno in _NO_KERNEL_COPY:
                return False
            raise
        if done == 0:
            msg = f"short copy: {copied} of {size} bytes"
            raise OSError(errno.EIO, msg)
        copied += done
    return True


class FileSlice(io.RawIOBase):
    """A read-only, seekable view of ``length`` bytes of a file from ``offset``, with its own handle."""

    def __init__(self, path: Path, offset: int, length: int) -> None:
        super().__init__()
        # Unbuffered: readinto() then reads straight into the caller's buffer. A fresh 1 MiB object per
        # read cost more in page faults than the hashing or decompressing of the bytes themselves.
        self._file = open(path, "rb", buffering=0)  # noqa: SIM115 - closed in close()
        self._file_pos = -1
        self._offset = offset
        self._length = length
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, pos: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._length}[whence]
        self._pos = max(0, base + pos)
        return self._pos

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        count = min(len(buffer), self._length - self._pos)
        if count <= 0:
            return 0
        where = self._offset + self._pos
        if self._file_pos != where:
            self._file.seek(where)
        with memoryview(buffer) as view:
            done = self._file.readinto(view[:count]) or 0
        self._pos += done
        self._file_pos = where + done
        return done

    def close(self) -> None:
        if not self.closed:
            self._file.close()
        super().close()


class PackReader:
    """The members of a pack, from a tar (possibly inside a larger file) or from a folder."""

    def __init__(self, path: Path, offset: int = 0, length: int | None = None) -> None:
        self.path = path
        self._dir = path if path.is_dir() else None
        self._members: dict[str, tuple[int, int]] = {}
        if self._dir is None:
            total = path.stat().st_size
            self._offset = offset
            self._length = total - offset if length is None else length
            if offset < 0 or self._length < 0 or offset + self._length > total:
                msg = f"{path} is truncated: expected {self._length} bytes of pack from offset {offset}, file has {total}"
                raise ArchiveError(msg)
            self._index()

    def _index(self) -> None:
        with FileSlice(self.path, self._offset, self._length) as raw:
            try:
                with tarfile.open(fileobj=raw, mode="r:") as tar:
                    for member in tar:
                        self._add(member)
                    end = tar.offset
            except tarfile.TarError as exc:
                msg = f"{self.path} is not a valid pack: {exc} (is the file complete?)"
                raise ArchiveError(msg) from exc
            # tarfile stops quietly at a missing header; a complete tar ends with two zero blocks.
            raw.seek(end)
            if raw.read(2 * _BLOCK) != bytes(2 * _BLOCK):
                msg = f"{self.path} is truncated: the tar has no end-of-archive marker (download it again)"
                raise ArchiveError(msg)

    def _add(self, member: tarfile.TarInfo) -> None:
        name = safe_member_name(member.name)
        if member.isdir():
            return
        if not member.isfile():
            msg = f"refusing pack member {member.name!r}: only regular files and folders may be in a pack"
            raise ArchiveError(msg)
        if member.offset_data + member.size > self._length:
            msg = f"{self.path} is truncated: member {name} ends past the end of the pack"
            raise ArchiveError(msg)
        if name in self._members:
            msg = f"refusing pack: member {name} appears twice"
            raise ArchiveError(msg)
        self._members[name] = (self._offset + member.offset_data, member.size)

    def names(self) -> list[str]:
        """All file members (no folders), as posix paths relative to the pack root."""
        if self._dir is None:
            return list(self._members)
        root = self._dir
        return sorted(
            PurePosixPath(Path(d, f).relative_to(root).as_posix()).as_posix()
            for d, _, files in os.walk(root)
            for f in files
        )

    def exists(self, name: str) -> bool:
        if self._dir is not None:
            return (self._dir / name).is_file()
        return name in self._members

    def size(self, name: str) -> int:
        if self._dir is not None:
            return (self._dir / name).stat().st_size
        return self._members[name][1]

    def open(self, name: str) -> BinaryIO:
        """A fresh seekable reader of one member."""
        if self._dir is not None:
            return open(self._dir / safe_member_name(name), "rb")
        if name not in self._members:
            msg = f"the pack has no {name}"
            raise ArchiveError(msg)
        offset, size = self._members[name]
        return io.BufferedReader(FileSlice(self.path, offset, size), 1 << 16)

    def read_text(self, name: str) -> str:
        try:
            with self.open(name) as f:
                return f.read().decode("utf-8")
        except FileNotFoundError as exc:
            msg = f"the pack has no {name} (is this a pack made by pixi-pack?)"
            raise ArchiveError(msg) from exc
        except UnicodeDecodeError as exc:
            msg = f"{name} in the pack is not UTF-8 text"
            raise ArchiveError(msg) from exc

    def iter_names(self, prefix: str) -> Iterator[str]:
        return (n for n in self.names() if n.startswith(prefix))


def safe_member_name(name: str) -> str:
    """Normalise a member name and refuse any that could land outside the destination."""
    posix = PurePosixPath(name.replace("\\", "/"))
    drive = bool(posix.parts) and ":" in posix.parts[0]
    if posix.is_absolute() or name.startswith(("/", "\\")) or drive:
        msg = f"refusing pack member {name!r}: absolute path"
        raise ArchiveError(msg)
    parts = [p for p in posix.parts if p != "."]
    if ".." in parts or not parts:
        msg = f"refusing pack member {name!r}: path leaves the pack"
        raise ArchiveError(msg)
    return "/".join(parts)
