"""Temporary files and folders beside their target: exclusive, unpredictable, and owned by a process.

Every temporary name is ``.<tag>-<pid>-<random><suffix>``. It is created with ``O_CREAT | O_EXCL |
O_NOFOLLOW`` (``tempfile.mkstemp``/``mkdtemp``), so a file or symlink planted at a guessed name is never
opened or written through. The pid in the name says whose it is: a later run removes the leftovers of a
process that is gone (one killed with SIGKILL) with :func:`remove_stale`. :func:`replacing` is the one
way a file is written whole and renamed into place.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

_STALE = re.compile(
    r"^\.(?P<tag>[A-Za-z0-9_.+-]+?)-(?P<pid>[0-9]{1,10})-[A-Za-z0-9_]{6,}(?P<suffix>\.[a-z]+)?$"
)


_umask_lock = threading.Lock()


def umask() -> int:
    """The process's umask.

    Temporary files and folders are created private (0600, 0700); what is renamed into place gets the
    mode a plain new file or folder would have had: ``0o666`` or ``0o777`` less this. Linux tells it in
    ``/proc/self/status``; elsewhere reading it means setting it and setting it back, under a lock.
    """
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _umask_lock:
        current = os.umask(0o077)
        os.umask(current)
        return current


def _prefix(tag: str) -> str:
    return f".{tag}-{os.getpid()}-"


def create_file(directory: Path, tag: str, suffix: str = ".part") -> tuple[int, Path]:
    """Create an empty file (mode 0600) in ``directory`` under a fresh name, open for reading and writing.

    Returns the descriptor, which the caller writes through (never reopen the name: the folder may be
    writable by others), and the path, to rename into place or remove.
    """
    fd, name = tempfile.mkstemp(prefix=_prefix(tag), suffix=suffix, dir=directory)
    return fd, Path(name)


@contextmanager
def replacing(target: Path, *, mode: int = 0o666) -> Iterator[BinaryIO]:
    """A new temporary file beside ``target``, open for writing: renamed over ``target`` when the body
    succeeds, removed when it fails. It gets ``mode`` less the umask (modes do not apply on Windows).

    Nothing is ever written through an existing ``target`` or a name planted beside it.
    """
    fd, partial = create_file(target.parent, target.name)
    try:
        with open(fd, "wb") as out:
            yield out
            if hasattr(os, "fchmod"):
                os.fchmod(out.fileno(), mode & ~umask())
        os.replace(partial, target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def create_dir(directory: Path | None, tag: str, suffix: str = ".partial") -> Path:
    """Create an empty folder (mode 0700) in ``directory`` (None: the system's temporary folder) under a
    fresh name; the caller owns it."""
    return Path(tempfile.mkdtemp(prefix=_prefix(tag), suffix=suffix, dir=directory))


def swap_in(new: Path, target: Path, tag: str) -> Path:
    """Put the folder ``new`` at ``target``, where a folder already is; return where the old one is now.

    On Linux the two are exchanged in one step (``renameat2(RENAME_EXCHANGE)``), so ``target`` is always
    a complete folder, the old one or the new one, and the old one ends up at ``new``. Elsewhere, or where
    the file system cannot exchange, the old folder is first renamed to a fresh temporary sibling tagged
    ``tag`` (which :func:`remove_stale` removes if this process dies before the caller does). The caller
    removes the folder returned.
    """
    if _exchange(new, target):
        return new
    aside = create_dir(target.parent, tag, suffix=".old")
    os.replace(target, aside)  # over the empty folder just made
    try:
        os.replace(new, target)
    except BaseException:
        os.replace(aside, target)
        raise
    return aside


def _exchange(a: Path, b: Path) -> bool:
    """Exchange two paths atomically; ``False`` where this system or file system cannot."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    error = ctypes.get_errno()
    if error in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EPERM):
        return False
    raise OSError(error, os.strerror(error), str(b))


def _alive(pid: int) -> bool:
    if pid == os.getpid() or os.name == "nt":  # on Windows os.kill(pid, 0) would end the process
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True  # someone else's process, or not a pid we can ask about: leave it alone
    return True


def remove_stale(directory: Path, tag: str) -> list[Path]:
    """Remove the temporary files and folders tagged ``tag`` in ``directory`` whose process is gone.

    Only entries named as this module names them, owned by the current user, are considered; a
    symlink is removed, never followed. Returns what was removed.
    """
    removed: list[Path] = []
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return removed
    for entry in entries:
        match = _STALE.match(entry.name)
        if match is None or match["tag"] != tag or _alive(int(match["pid"])):
            continue
        try:
            if entry.stat(follow_symlinks=False).st_uid != os.getuid():  # type: ignore[attr-defined,unused-ignore]
                continue
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                Path(entry.path).unlink()
        except OSError:
            continue
        removed.append(Path(entry.path))
    return removed
