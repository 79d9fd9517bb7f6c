"""Where a package comes from, as a lockfile or an option spells it: a URL, or a path."""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]+://")


def is_url(location: str) -> bool:
    """Whether ``location`` starts with a URL scheme (``https://``, ``s3://``, ``file://``, ...).

    A scheme has two characters or more, so a Windows drive (``C://pkgs``) reads as a path.
    """
    return _URL.match(location) is not None


#: A conda token in a URL's path: ``https://conda.anaconda.org/t/<token>/channel/...``.
_TOKEN = re.compile(r"/t/[^/]+(?=/)")


def public_url(location: str) -> str | None:
    """``location`` as it may be written down for others: credentials, conda tokens and the query
    (which may hold a signature) taken out.

    ``None`` for a path, which says nothing true on another machine.
    """
    if not is_url(location):
        return None
    try:
        parts = urlsplit(location)
    except ValueError:  # a malformed host ("[..." without "]"): nothing of it is worth writing down
        return None
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 address
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    netloc = f"{host}:{port}" if port else host
    return urlunsplit((parts.scheme, netloc, _TOKEN.sub("", parts.path, count=1), "", ""))


def redacted_url(location: str) -> str:
    """``location`` for a message or a log: its credentials, conda token and query shown as ``***``
    (a path as it is)."""
    if not is_url(location):
        return location
    try:
        parts = urlsplit(location)
    except ValueError:  # a malformed host ("[..." without "]")
        return f"{location.split('://', 1)[0]}://***"
    netloc = f"***@{parts.netloc.rpartition('@')[2]}" if "@" in parts.netloc else parts.netloc
    path = _TOKEN.sub("/t/***", parts.path, count=1)
    return urlunsplit((parts.scheme, netloc, path, "***" if parts.query else "", ""))


def channel_url(url: str, subdir: str, file_name: str) -> str | None:
    """The channel a package URL belongs to, as rattler records it (``https://host/conda-forge/``)."""
    tail = f"/{subdir}/{file_name}"
    return url[: -len(tail) + 1] if url.endswith(tail) else None
