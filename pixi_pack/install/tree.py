"""Write files, symlinks and folders below a root without ever following a symlink."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from pixi_pack.io import tempfiles
from pixi_pack.io.hashing import Readable


class TreeWriter:
    """Creates files, symlinks and folders below ``root`` without ever following a symlink.

    Every parent folder is created here or checked to be a real folder, so a member can never be
    written through a link. Several writers may share ``root`` (and ``known_dirs``) from different threads.
    """

    def __init__(self, root: Path, known_dirs: set[str] | None = None) -> None:
        self.root = root
        root_str = os.fspath(root)
        # The root with a trailing separator: file paths are made by concatenation, not Path.
        self._prefix = "" if root_str == "." else root_str.rstrip("/" + _SEP) + _SEP
        self._known_dirs = known_dirs if known_dirs is not None else set()
        # A mode the umask leaves as it is can be given to open(); others need an fchmod after.
        self._umask = tempfiles.umask()

    def path(self, rel: str) -> Path:
        return self.root / rel if rel else self.root

    def make_dirs(self, rel: str) -> None:
        """Create the folder ``rel`` and its parents (``""`` is the root, which must exist)."""
        if not rel or rel in self._known_dirs:
            return
        parent = rel.rpartition("/")[0]
        self.make_dirs(parent)
        full = self.path(rel)
        try:
            full.mkdir()
        except FileExistsError:
            if not stat.S_ISDIR(os.lstat(full).st_mode):
                msg = f"cannot create folder {rel}: something else is already there"
                raise FileExistsError(msg) from None
        self._known_dirs.add(rel)

    def _full(self, rel: str) -> str:
        """``path(rel)`` as a string, without building a :class:`Path` (this is on the per-file path)."""
        return self._prefix + (rel if _SEP == "/" else rel.replace("/", _SEP))

    def write(self, rel: str, data: bytes | Readable, mode: int, mtime: float | None) -> None:
        """Write a new file from bytes or a stream, with exactly ``mode``, then set its mtime.

        The file is created with ``mode`` where the umask leaves it whole (0644 and 0755 under the usual
        022), so only other modes cost an ``fchmod``.
        """
        self.make_dirs(rel.rpartition("/")[0])
        full = self._full(rel)
        exact = not mode & ~0o777 and not mode & self._umask
        fd = os.open(full, _NEW_FILE_FLAGS, mode if exact else 0o600)
        try:
            if isinstance(data, (bytes, bytearray, memoryview)):
                _write_all(fd, data)
            else:
                read = data.read
                while chunk := read(_WRITE_CHUNK):
                    _write_all(fd, chunk)
            if not exact:
                _set_mode(fd, full, mode)
            if mtime is not None and _UTIME_FD:
                os.utime(fd, (mtime, mtime))
        finally:
            os.close(fd)
        if mtime is not None and not _UTIME_FD:
            os.utime(full, (mtime, mtime))

    def symlink(self, rel: str, target: str, mtime: float | None) -> None:
        self.make_dirs(rel.rpartition("/")[0])
        self.path(rel).symlink_to(target)
        if mtime is not None and os.utime in os.supports_follow_symlinks:
            os.utime(self.path(rel), (mtime, mtime), follow_symlinks=False)


_SEP = os.sep
_WRITE_CHUNK = 1 << 20
_NEW_FILE_FLAGS = (
    os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0) | getattr(os, "O_NOFOLLOW", 0)
)
_UTIME_FD = os.utime in os.supports_fd


def _write_all(fd: int, data: bytes | bytearray | memoryview) -> None:
    view = memoryview(data).cast("B") if isinstance(data, memoryview) else data
    written = os.write(fd, view)
    if written == len(view):
        return
    view = memoryview(view)
    while written < len(view):
        written += os.write(fd, view[written:])


def _set_mode(fd: int, path: str, mode: int) -> None:
    if hasattr(os, "fchmod"):
        os.fchmod(fd, mode)
    else:
        Path(path).chmod(mode)
