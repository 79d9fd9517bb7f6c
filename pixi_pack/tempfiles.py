"""Temporary files and folders beside their target: exclusive, unpredictable, and owned by a process.

Every temporary name is ``.<tag>-<pid>-<random><suffix>``. It is created with ``O_CREAT | O_EXCL |
O_NOFOLLOW`` (``tempfile.mkstemp``/``mkdtemp``), so a file or symlink planted at a guessed name is never
opened or written through. The pid in the name says whose it is: a later run removes the leftovers of a
process that is gone (one killed with SIGKILL) with :func:`remove_stale`.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

_STALE = re.compile(
    r"^\.(?P<tag>[A-Za-z0-9_.+-]+?)-(?P<pid>[0-9]{1,10})-[A-Za-z0-9_]{6,}(?P<suffix>\.[a-z]+)?$"
)


def _prefix(tag: str) -> str:
    return f".{tag}-{os.getpid()}-"


def create_file(directory: Path, tag: str, suffix: str = ".part") -> tuple[int, Path]:
    """Create an empty file (mode 0600) in ``directory`` under a fresh name, open for reading and writing.

    Returns the descriptor, which the caller writes through (never reopen the name: the folder may be
    writable by others), and the path, to rename into place or remove.
    """
    fd, name = tempfile.mkstemp(prefix=_prefix(tag), suffix=suffix, dir=directory)
    return fd, Path(name)


def create_dir(directory: Path, tag: str, suffix: str = ".partial") -> Path:
    """Create an empty folder (mode 0700) in ``directory`` under a fresh name; the caller owns it."""
    return Path(tempfile.mkdtemp(prefix=_prefix(tag), suffix=suffix, dir=directory))


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
