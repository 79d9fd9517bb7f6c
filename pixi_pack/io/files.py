"""Reading a whole small file with a bound (a hostile input cannot make it read without end), and a
path with its leading ``~`` expanded."""

from __future__ import annotations

import os
from pathlib import Path


class TooLargeError(ValueError):
    """The file holds more than the bound allows."""


def read_limited(path: Path, limit: int) -> bytes:
    """The bytes of ``path``, at most ``limit`` of them; :class:`TooLargeError` if there are more.

    :class:`OSError` as the system reports it.
    """
    with open(path, "rb") as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        msg = f"{path} is larger than {limit} bytes"
        raise TooLargeError(msg)
    return data


def expanded(location: str) -> Path:
    """``location`` with a leading ``~`` or ``~user`` expanded where it can be; a ``~user`` that is not
    known stays as it is (``Path.expanduser`` would raise RuntimeError)."""
    return Path(os.path.expanduser(location))  # noqa: PTH111
