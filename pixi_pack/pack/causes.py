"""What a failed connection comes down to, in words a user can act on.

requests wraps the error that matters (a failed DNS lookup, a refused connection, a certificate that did
not verify) two or three levels deep, in urllib3's retry and connection errors; their own messages carry
object addresses and the retry policy. This finds the first cause that names the problem.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator

import requests
import urllib3.exceptions


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and every exception behind it: causes, contexts, urllib3's ``reason`` and exception args."""
    seen: set[int] = set()
    pending = [exc]
    while pending:
        current = pending.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        behind = [current.__cause__, current.__context__, getattr(current, "reason", None)]
        behind += [arg for arg in current.args if isinstance(arg, BaseException)]
        pending += [b for b in behind if isinstance(b, BaseException)]


def connection_failure(exc: BaseException, host: str) -> tuple[str, bool]:
    """Why connecting to ``host`` failed, and whether trying again may help.

    A certificate that does not verify will not verify on the next try either; everything else (DNS
    while a network comes up, a refused or reset connection, a timeout) may be transient.
    """
    causes = list(_chain(exc))
    for cause in causes:
        if isinstance(cause, ssl.SSLCertVerificationError):
            detail = cause.verify_message or cause.reason or "certificate verify failed"
            return f"TLS: certificate verify failed for {host} ({detail})", False
        if isinstance(cause, socket.gaierror):
            return f"could not resolve host {host} ({cause.strerror or cause})", True
        if isinstance(cause, ConnectionRefusedError):
            return f"connection refused by {host}", True
        if isinstance(cause, ConnectionResetError):
            return f"connection reset by {host}", True
    for cause in causes:
        if isinstance(cause, (requests.Timeout, urllib3.exceptions.TimeoutError, socket.timeout)):
            return f"timed out waiting for {host}", True
        if isinstance(cause, ssl.SSLError):
            return f"TLS: {cause.reason or cause} ({host})", True
        if isinstance(cause, OSError) and cause.strerror:
            return f"{cause.strerror} ({host})", True
    return f"connection to {host} failed ({type(exc).__name__})", True
