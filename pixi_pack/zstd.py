"""Streaming zstd decompression, whatever this interpreter offers."""

from __future__ import annotations

from typing import BinaryIO, cast

from .errors import PixiPackError


def decompressing_reader(source: BinaryIO) -> BinaryIO:
    """A file object that yields the decompressed bytes of the zstd stream ``source``."""
    try:
        import zstandard
    except ImportError as exc:
        msg = "cannot read .conda packages: the zstandard module is not available"
        raise PixiPackError(msg) from exc
    return cast(BinaryIO, zstandard.ZstdDecompressor().stream_reader(source, closefd=False))
