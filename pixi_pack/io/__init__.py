"""Bytes in, bytes out: tar streams, zstd, hashing and exclusive temporary files; no conda knowledge."""
