"""One-pass stream hashing and verification."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from .errors import IntegrityError

CHUNK_SIZE = 1 << 20


@dataclass(frozen=True)
class Digests:
    """What one pass over a file measured."""

    sha256: str
    md5: str
    size: int


class HashingReader:
    """Reads from a stream while hashing every byte that passes (sha256 and md5)."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self._sha256 = hashlib.sha256()
        self._md5 = hashlib.md5(usedforsecurity=False) if _MD5_FLAG else hashlib.md5()
        self._size = 0

    def read(self, size: int = -1) -> bytes:
        data = self._stream.read(size)
        self._sha256.update(data)
        self._md5.update(data)
        self._size += len(data)
        return data

    def digests(self) -> Digests:
        return Digests(self._sha256.hexdigest(), self._md5.hexdigest(), self._size)


try:
    hashlib.md5(usedforsecurity=False)
    _MD5_FLAG = True
except TypeError:  # pragma: no cover - interpreters built without the flag
    _MD5_FLAG = False


def copy_and_hash(source: BinaryIO, destination: BinaryIO, on_bytes: object = None) -> Digests:
    """Copy ``source`` to ``destination`` and return the digests of what was copied."""
    reader = HashingReader(source)
    while chunk := reader.read(CHUNK_SIZE):
        destination.write(chunk)
        if callable(on_bytes):
            on_bytes(len(chunk))
    return reader.digests()


def hash_stream(source: BinaryIO) -> Digests:
    reader = HashingReader(source)
    while reader.read(CHUNK_SIZE):
        pass
    return reader.digests()


def hash_file(path: Path) -> Digests:
    with open(path, "rb") as f:
        return hash_stream(f)


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
    """
    if sha256:
        if digests.sha256 != sha256.lower():
            msg = f"{what}: sha256 mismatch (expected {sha256.lower()}, got {digests.sha256})"
            raise IntegrityError(msg)
    elif md5 and digests.md5 != md5.lower():
        msg = f"{what}: md5 mismatch (expected {md5.lower()}, got {digests.md5})"
        raise IntegrityError(msg)
    if size is not None and digests.size != size:
        msg = f"{what}: size mismatch (expected {size} bytes, got {digests.size})"
        raise IntegrityError(msg)
