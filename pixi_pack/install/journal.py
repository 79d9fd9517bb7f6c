"""The journal of an in-place update: what to move, remove and rename into an environment, replayable.

An update first stages every new file in ``conda-meta/.pixi-pack-update/`` (nothing in the environment
changes), then writes the list of steps to ``conda-meta/.pixi-pack-transaction`` in one rename, then
takes the steps, then removes both. A run killed before the journal exists left only the staging
folder: the next run removes it, and the environment is the old one. A run killed after it left the
journal: the next run takes the steps again, to the end, and the environment is the new one. Each step
can be taken twice: a file is moved or removed only while it is the file the journal saw (same device
and inode), and a staged file is renamed only while it is still staged.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from pixi_pack.errors import InstallError
from pixi_pack.io import tempfiles
from pixi_pack.io.files import read_limited

logger = logging.getLogger("pixi_pack")

JOURNAL = "conda-meta/.pixi-pack-transaction"
STAGING = "conda-meta/.pixi-pack-update"
_JOURNAL_LIMIT = 256 << 20
_KINDS = ("move", "remove", "install", "rmdir")


@dataclass(frozen=True)
class Step:
    """One step: ``move`` ``source`` to ``target`` (both in the environment), ``remove`` ``target``,
    ``install`` the staged ``source`` at ``target``, or ``rmdir`` ``target`` and its parents if empty.
    ``inode`` is what ``move`` and ``remove`` expect to find at their path."""

    kind: str
    target: str
    source: str = ""
    inode: tuple[int, int] | None = None


def identify(prefix: Path, path: str) -> tuple[int, int] | None:
    """The (device, inode) of ``path`` in ``prefix``, not following a link; ``None`` if nothing is there."""
    try:
        stat = os.lstat(inside(prefix, path))
    except FileNotFoundError:
        return None
    return stat.st_dev, stat.st_ino


def inside(prefix: Path, path: str) -> Path:
    """``prefix / path``, refused unless ``path`` is a plain relative path that stays in ``prefix``
    (no ``..``, no absolute path, no folder on the way that is a link leading out)."""
    pure = PurePosixPath(path)
    if (
        not path
        or "\0" in path
        or "\\" in path
        or pure.is_absolute()
        or ".." in pure.parts
        or "." in pure.parts
    ):
        msg = f"refusing the path {path!r}: not a plain path inside the environment"
        raise InstallError(msg)
    full = prefix.joinpath(*pure.parts)
    real_parent, real_prefix = os.path.realpath(full.parent), os.path.realpath(prefix)
    if real_parent != real_prefix and not real_parent.startswith(real_prefix + os.sep):
        msg = f"refusing the path {path!r}: a folder on its way leads out of the environment"
        raise InstallError(msg)
    return full


def write_journal(prefix: Path, steps: Sequence[Step]) -> None:
    """Commit to the update: from now on the next run completes it."""
    document = {
        "version": 1,
        "steps": [
            {
                "kind": s.kind,
                "target": s.target,
                "source": s.source,
                "inode": list(s.inode) if s.inode else None,
            }
            for s in steps
        ],
    }
    with tempfiles.replacing(prefix / JOURNAL, mode=0o644) as out:
        out.write(json.dumps(document).encode("utf-8"))
        out.flush()
        os.fsync(out.fileno())


def read_journal(prefix: Path) -> list[Step] | None:
    """The steps of an update that was committed and did not finish; ``None`` if there is none."""
    path = prefix / JOURNAL
    try:
        document = json.loads(read_limited(path, _JOURNAL_LIMIT))
        steps = [_step(item) for item in document["steps"]]
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError, RecursionError) as exc:  # TooLargeError is a ValueError
        msg = f"{path} is damaged ({exc}): the update it records cannot be completed; unpack the pack with --force"
        raise InstallError(msg) from exc
    return steps


def _step(item: Any) -> Step:
    kind, target, source, inode = item["kind"], item["target"], item["source"], item["inode"]
    if kind not in _KINDS or not isinstance(target, str) or not isinstance(source, str):
        raise ValueError(f"a step is not one of {', '.join(_KINDS)}")
    if inode is not None and not (len(inode) == 2 and all(isinstance(i, int) for i in inode)):
        raise ValueError("an inode is not a pair of numbers")
    return Step(kind, target, source, None if inode is None else (inode[0], inode[1]))


def apply(prefix: Path, steps: Iterable[Step]) -> None:
    """Take every step, then remove the journal and the staging folder."""
    staging = prefix / STAGING
    steps = list(steps)
    for step in steps:  # every path is checked before the first step is taken
        inside(prefix, step.target)
        if step.kind == "move":
            inside(prefix, step.source)
        elif step.kind == "install":
            inside(staging, step.source)
    for step in steps:
        _take(prefix, staging, step)
    (prefix / JOURNAL).unlink(missing_ok=True)
    shutil.rmtree(staging, ignore_errors=True)


def _take(prefix: Path, staging: Path, step: Step) -> None:
    target = inside(prefix, step.target)
    if step.kind == "rmdir":
        _remove_empty(prefix, target)
        return
    if step.kind == "install":
        source = staging.joinpath(*PurePosixPath(step.source).parts)
        if not os.path.lexists(source):
            return  # taken before
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir() and not source.is_symlink():
            if target.is_dir():
                return
        elif target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)  # a file of the new environment takes a folder's place, as a fresh install
        os.replace(source, target)
        return
    source = inside(prefix, step.source) if step.kind == "move" else target
    if identify(prefix, step.source or step.target) != step.inode:
        return  # taken before, or the file is not the one the journal saw
    if step.kind == "remove":
        source.unlink()
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(source, target)


def _remove_empty(prefix: Path, folder: Path) -> None:
    while folder != prefix and prefix in folder.parents:
        try:
            folder.rmdir()
        except OSError:
            return
        folder = folder.parent


def staged_files(staging: Path) -> Iterator[str]:
    """What is staged, as paths relative to the staging folder: files, links and empty folders."""
    for root, dirs, files in os.walk(staging):
        folder = Path(root)
        relative = folder.relative_to(staging)
        links = sorted(d for d in dirs if (folder / d).is_symlink())
        for name in sorted(files) + links:
            yield (relative / name).as_posix()
        if not dirs and not files and folder != staging:
            yield relative.as_posix()
        dirs[:] = sorted(d for d in dirs if d not in links)


def complete_pending(prefix: Path) -> bool:
    """Finish an update of ``prefix`` that a killed run committed, or drop one it had only staged.

    Returns whether an update was completed.
    """
    steps = read_journal(prefix)
    if steps is None:
        if (prefix / STAGING).exists():
            shutil.rmtree(prefix / STAGING, ignore_errors=True)
            logger.info(
                "removed the staged files of an update of %s that was interrupted before it began", prefix
            )
        return False
    logger.warning("completing the update of %s that an interrupted run had begun", prefix)
    apply(prefix, steps)
    return True
