"""One-pass stream hashing and verification.

sha256 is always computed; md5 (more than twice as slow) only where a caller needs it: to check a
record that has no sha256, or to write a record's md5 field.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from pixi_pack.errors import IntegrityError

CHUNK_SIZE = 1 << 20


class Readable(Protocol):
    """Anything read in pieces: a file, a decompressing stream, a range of a file, a tar member."""

    def read(self, size: int = -1, /) -> bytes: ...


class Writable(Protocol):
    """Anything written in pieces: a file, a range of a file being assembled."""

    def write(self, data: bytes, /) -> int: ...


@dataclass(frozen=True)
class Digests:
    """What one pass over a file measured."""

    sha256: str
    md5: str | None
    """Only when asked for."""
    size: int


class HashingReader:
    """Reads from a stream while hashing every byte that passes."""

    def __init__(self, stream: Readable, *, md5: bool = False) -> None:
        self._stream = stream
        self._sha256 = hashlib.sha256()
        self._md5 = _new_md5() if md5 else None
        self._size = 0

    def read(self, size: int = -1) -> bytes:
        data = self._stream.read(size)
        self._sha256.update(data)
        if self._md5 is not None:
            self._md5.update(data)
        self._size += len(data)
        return data

    def digests(self) -> Digests:
        md5 = self._md5.hexdigest() if self._md5 is not None else None
        return Digests(self._sha256.hexdigest(), md5, self._size)


def _new_md5() -> hashlib._Hash:
    try:
        return hashlib.md5(usedforsecurity=False)
    except TypeError:  # pragma: no cover - interpreters built without the flag
        return hashlib.md5()


def needs_md5(sha256: str | None, md5: str | None) -> bool:
    """Whether checking against these expectations needs an md5 (only when there is no sha256)."""
    return not sha256 and bool(md5)


def copy_and_hash(
    source: Readable,
    destination: Writable,
    on_bytes: Callable[[int], None] | None = None,
    *,
    md5: bool = False,
) -> Digests:
    """Copy ``source`` to ``destination`` and return the digests of what was copied."""
    reader = HashingReader(source, md5=md5)
    while chunk := reader.read(CHUNK_SIZE):
        destination.write(chunk)
        if on_bytes is not None:
            on_bytes(len(chunk))
    return reader.digests()


def hash_stream(source: Readable, *, md5: bool = False) -> Digests:
    reader = HashingReader(source, md5=md5)
    while reader.read(CHUNK_SIZE):
        pass
    return reader.digests()


def hash_file(path: Path, *, md5: bool = False) -> Digests:
    with open(path, "rb") as f:
        return hash_stream(f, md5=md5)


def hash_file_range(path: Path, offset: int, length: int, *, stop: threading.Event | None = None) -> Digests:
    """The sha256 of ``length`` bytes of ``path`` from ``offset``: a self-extracting file's payload.

    The bytes are read into one buffer, reused: a fresh 1 MiB ``bytes`` per read makes the kernel map
    and zero new pages for each, a second of system time per GB. Reading ends early when the file does,
    or once ``stop`` is set; the digests then cover fewer bytes, as ``size`` says.
    """
    digest = hashlib.sha256()
    buffer = memoryview(bytearray(CHUNK_SIZE))
    size = 0
    with open(path, "rb", buffering=0) as f:
        f.seek(offset)
        while size < length and not (stop is not None and stop.is_set()):
            count = f.readinto(buffer[: min(CHUNK_SIZE, length - size)])
            if not count:
                break
            digest.update(buffer[:count])
            size += count
    return Digests(digest.hexdigest(), None, size)


def check_digests(
    digests: Digests,
    *,
    what: str,
    sha256: str | None,
    md5: str | None = None,
    size: int | None = None,
) -> None:
    """Raise :class:`IntegrityError` if ``digests`` disagree with what was expected.

    sha256 is checked when known; md5 only when it is all there is. A size, when known, is checked too.
    The message names the expected hash only: the actual hash of a file that failed (a local secret
    named by a hostile lockfile) is never printed.
    """
    if sha256:
        if digests.sha256 != sha256.lower():
            msg = f"{what}: sha256 mismatch (expected {sha256.lower()})"
            raise IntegrityError(msg)
    elif md5:
        if digests.md5 is None:
            raise ValueError("md5 was not computed")  # a bug: the caller should ask for it (needs_md5)
        if digests.md5 != md5.lower():
            msg = f"{what}: md5 mismatch (expected {md5.lower()})"
            raise IntegrityError(msg)
    if size is not None and digests.size != size:
        msg = f"{what}: size mismatch (expected {size} bytes, got {digests.size})"
        raise IntegrityError(msg)
