"""Where a package comes from, as a lockfile or an option spells it: a URL, or a path."""

from __future__ import annotations

import re

_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]+://")


def is_url(location: str) -> bool:
    """Whether ``location`` starts with a URL scheme (``https://``, ``s3://``, ``file://``, ...).

    A scheme has two characters or more, so a Windows drive (``C://pkgs``) reads as a path.
    """
    return _URL.match(location) is not None
