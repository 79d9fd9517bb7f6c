"""``hash_file_range``: the sha256 of a slice of a file, as a self-extracting file's payload is checked."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

from pixi_pack.io.hashing import CHUNK_SIZE, hash_file_range


def test_hashes_exactly_the_slice(tmp_path: Path) -> None:
    data = bytes(range(256)) * (3 * CHUNK_SIZE // 256) + b"tail"
    path = tmp_path / "file"
    path.write_bytes(data)
    for offset, length in [(0, len(data)), (7, CHUNK_SIZE), (CHUNK_SIZE - 1, CHUNK_SIZE + 2), (5, 0)]:
        digests = hash_file_range(path, offset, length)
        assert digests.sha256 == hashlib.sha256(data[offset : offset + length]).hexdigest()
        assert digests.size == length
        assert digests.md5 is None


def test_a_short_file_gives_fewer_bytes(tmp_path: Path) -> None:
    path = tmp_path / "file"
    path.write_bytes(b"0123456789")
    digests = hash_file_range(path, 4, 100)
    assert digests.size == 6
    assert digests.sha256 == hashlib.sha256(b"456789").hexdigest()


def test_stops_when_asked(tmp_path: Path) -> None:
    path = tmp_path / "file"
    path.write_bytes(bytes(3 * CHUNK_SIZE))
    stop = threading.Event()
    stop.set()
    assert hash_file_range(path, 0, 3 * CHUNK_SIZE, stop=stop).size == 0
