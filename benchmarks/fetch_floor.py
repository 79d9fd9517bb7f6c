"""The floor of pixi-pack's download: the same files fetched over HTTP and written to disk, nothing else.

    python benchmarks/fetch_floor.py OUT_DIR WORKERS [--sha256] URL...

Plain ``urllib`` in a few threads, 1 MiB reads; no retries, no tar. With ``--sha256`` each file is
hashed as it arrives, the one check pixi-pack cannot skip: what verification alone adds to the floor.
"""

from __future__ import annotations

import hashlib
import sys
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

CHUNK = 1 << 20


def fetch(url: str, out_dir: Path, sha256: bool) -> int:
    target = out_dir / url.rsplit("/", 1)[-1]
    digest = hashlib.sha256() if sha256 else None
    with urllib.request.urlopen(url) as response, open(target, "wb") as out:
        while chunk := response.read(CHUNK):
            if digest is not None:
                digest.update(chunk)
            out.write(chunk)
    return target.stat().st_size


def fetch_all(urls: list[str], out_dir: Path, workers: int, sha256: bool = False) -> int:
    out_dir.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return sum(pool.map(lambda url: fetch(url, out_dir, sha256), urls))


if __name__ == "__main__":
    out, workers, *rest = sys.argv[1:]
    hashing = "--sha256" in rest
    fetch_all([u for u in rest if u != "--sha256"], Path(out), int(workers), hashing)
