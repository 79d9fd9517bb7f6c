"""The bare-Python floor of unpacking: the archives' files written with no check, plan or record at all.

    python benchmarks/python_floor.py PREFIX ARCHIVE...

Each package's payload is read with pixi_pack's own tar reader (``io/tarstream.py``) and its members are
written with bare ``os.open``/``write``/``utime``/``close``, by two forked processes taking the archives
in the order given (costliest first), as ``ctools_floor.sh`` runs tar. There is no sha256, no
``paths.json``, no plan and no ``conda-meta``: between this and pixi-unpack lies what those cost, and
between this and the C tools what CPython costs per file. A reference row, not a way to install.
"""

from __future__ import annotations

import bz2
import multiprocessing
import os
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

import zstandard

from pixi_pack.io.tarstream import DIRECTORY, HARDLINK, REGULAR, SYMLINK, TarStream

_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
_CHUNK = 1 << 20


def _payload(archive: str) -> Callable[[int], bytes]:
    if archive.endswith(".conda"):
        package = zipfile.ZipFile(archive)
        member = next(name for name in package.namelist() if name.startswith("pkg-"))
        return zstandard.ZstdDecompressor().stream_reader(package.open(member)).read
    return bz2.open(archive).read  # tar -xjf writes its info/ too


def extract(job: tuple[str, str]) -> None:
    prefix, archive = job
    made: set[str] = set()
    tar = TarStream(_payload(archive))
    for entry in tar:
        target = f"{prefix}/{entry.name}"
        if entry.type == DIRECTORY:
            Path(target).mkdir(parents=True, exist_ok=True)
            continue
        folder = target.rpartition("/")[0]
        if folder not in made:
            Path(folder).mkdir(parents=True, exist_ok=True)
            made.add(folder)
        if entry.type == REGULAR:
            fd = _create(target, entry.mode & 0o777)
            while chunk := tar.read(_CHUNK):
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view) :]
            os.utime(fd, (entry.mtime, entry.mtime))
            os.close(fd)
        elif entry.type == SYMLINK:
            Path(target).symlink_to(entry.linkname)
        elif entry.type == HARDLINK:
            os.link(f"{prefix}/{entry.linkname}", target)


def _create(target: str, mode: int) -> int:
    """A new file at ``target``. Another ``.tar.bz2``'s ``info/`` file may be there, which tar replaces
    too; the other process may be replacing it at the same moment, so this tries until it wins."""
    while True:
        try:
            return os.open(target, _FLAGS, mode)
        except FileExistsError:
            Path(target).unlink(missing_ok=True)


def main(argv: list[str]) -> int:
    prefix, *archives = argv
    Path(prefix).mkdir(parents=True, exist_ok=True)
    with multiprocessing.get_context("fork").Pool(2) as pool:
        for _ in pool.imap_unordered(extract, [(prefix, a) for a in archives], chunksize=1):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
