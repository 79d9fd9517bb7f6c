"""The reference installer, run as its own process like pixi-unpack: ``rattler.install`` of packages
from a local channel into a fresh prefix, with a fresh package cache.

    python benchmarks/rattler_install.py CHANNEL PREFIX CACHE FILE_NAME...

Kept apart from run.py so the process imports nothing but rattler.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import rattler


def records(channel: Path, file_names: Sequence[str]) -> list[rattler.RepoDataRecord]:
    """The repodata records of ``file_names`` in ``channel``, with ``file://`` URLs."""
    wanted = set(file_names)
    found = []
    for subdir in ("linux-64", "noarch"):
        repodata = rattler.RepoData.from_path(channel / subdir / "repodata.json")
        found += [
            r for r in repodata.into_repo_data(rattler.Channel(channel.as_uri())) if r.file_name in wanted
        ]
    if len(found) != len(wanted):
        missing = wanted - {r.file_name for r in found}
        msg = f"not in the channel: {sorted(missing)}"
        raise SystemExit(msg)
    return found


def install(channel: Path, prefix: Path, cache: Path, file_names: Sequence[str]) -> None:
    coro = rattler.install(records(channel, file_names), prefix, cache_dir=cache, show_progress=False)
    asyncio.run(coro)


if __name__ == "__main__":
    channel, prefix, cache, *names = sys.argv[1:]
    install(Path(channel).resolve(), Path(prefix).resolve(), Path(cache).resolve(), names)
    # py-rattler 0.28's runtime threads can abort the interpreter while it finalizes ("PyGILState_Release:
    # thread state ... must be current"); the work is done and flushed, so skip finalization.
    sys.stdout.flush()
    os._exit(0)
