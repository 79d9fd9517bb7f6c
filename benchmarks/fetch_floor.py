"""The floor of pixi-pack's download: the same files fetched over HTTP and written to disk, nothing else.

    python benchmarks/fetch_floor.py OUT_DIR WORKERS URL...

Plain ``urllib`` in a few threads, 1 MiB reads; no hashing, no retries, no tar.
"""

from __future__ import annotations

import shutil
import sys
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

CHUNK = 1 << 20


def fetch(url: str, out_dir: Path) -> int:
    target = out_dir / url.rsplit("/", 1)[-1]
    with urllib.request.urlopen(url) as response, open(target, "wb") as out:
        shutil.copyfileobj(response, out, CHUNK)
    return target.stat().st_size


def fetch_all(urls: list[str], out_dir: Path, workers: int) -> int:
    out_dir.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return sum(pool.map(lambda url: fetch(url, out_dir), urls))


if __name__ == "__main__":
    out, workers, *urls = sys.argv[1:]
    fetch_all(urls, Path(out), int(workers))
