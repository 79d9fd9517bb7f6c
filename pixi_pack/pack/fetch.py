"""Getting files: http(s) with mirrors, auth and retries, ``file://`` URLs and local paths; a cache.

Every file is hashed as it streams and checked at the end. A file destination is written under a
temporary name and renamed into place only once checked, so a failed or corrupt download never leaves a
file behind; a :class:`Slot` destination (a fixed range of a file being assembled) is written in place,
and its owner discards the whole file if any fetch fails.
"""

from __future__ import annotations

import datetime
import http.client
import logging
import os
import socket
import threading
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import unquote, urlsplit
from urllib.request import url2pathname

import requests
import urllib3

from pixi_pack import __version__
from pixi_pack.errors import DownloadError, IntegrityError, PixiPackError
from pixi_pack.formats.archive import RangeReader, copy_range, write_at
from pixi_pack.formats.locations import redacted_url
from pixi_pack.io import tempfiles
from pixi_pack.io.hashing import Digests, Readable, check_digests, copy_and_hash, hash_stream, needs_md5
from pixi_pack.models import MirrorConfig
from pixi_pack.pack import s3
from pixi_pack.pack.auth import http_request, load_auth_file
from pixi_pack.pack.causes import connection_failure

logger = logging.getLogger("pixi_pack")

RETRIES = 3
BACKOFF_SECONDS = 0.5
TIMEOUT_SECONDS = 300
_TRANSIENT_STATUS = {408, 425, 429, 500, 502, 503, 504}


@dataclass(frozen=True)
class Expected:
    """What a fetched file must match; any of them may be unknown."""

    sha256: str | None = None
    md5: str | None = None
    size: int | None = None


@dataclass(frozen=True)
class Slot:
    """A destination inside a larger file: ``size`` bytes at ``offset`` of the open file ``fd``.

    Nothing is ever written outside the range: bytes past ``size`` are hashed (so the error says what
    arrived) but dropped.
    """

    fd: int
    offset: int
    size: int
    path: Path
    """The file being assembled, for messages."""


class _SlotWriter:
    """A write-only stream into a :class:`Slot`, from its start."""

    def __init__(self, slot: Slot) -> None:
        self._slot = slot
        self._written = 0

    def write(self, data: bytes) -> int:
        room = self._slot.size - self._written
        if room > 0:
            write_at(self._slot.fd, memoryview(data)[:room], self._slot.offset + self._written)
        self._written += len(data)
        return len(data)


class _Transient(Exception):
    """A failure worth retrying (connection trouble, 5xx, 429)."""


class Cancelled(DownloadError):
    """:meth:`Fetcher.cancel` was called: the fetch stopped."""


class _Bounded:
    """A source read up to ``limit`` bytes (the expected size and one more, which proves it too long), that
    stops with :class:`Cancelled` once ``cancelled`` is set."""

    def __init__(self, source: BinaryIO, limit: int | None, cancelled: threading.Event) -> None:
        self._source = source
        self._left = limit
        self._cancelled = cancelled

    def read(self, size: int = -1) -> bytes:
        if self._cancelled.is_set():
            raise Cancelled("download cancelled")
        if self._left is not None:
            if self._left <= 0:
                return b""
            size = self._left if size < 0 else min(size, self._left)
        data = self._source.read(size)
        if self._left is not None:
            self._left -= len(data)
        return data


class Fetcher:
    """Fetches files for one pack: one HTTP session, the config's mirrors and auth, an optional cache."""

    def __init__(self, config: MirrorConfig | None = None, cache_dir: Path | None = None) -> None:
        self._config = config or MirrorConfig()
        self._cache_dir = cache_dir
        if cache_dir is not None:
            _tag_cache(cache_dir)
        self._auth = load_auth_file(self._config.auth_file)
        self._session = requests.Session()
        self._session.headers["User-Agent"] = f"pixi-pack/{__version__} (Python)"
        # What is hashed is what was sent: a compressed transfer is never expanded before its check.
        self._session.headers["Accept-Encoding"] = "identity"
        self._cancelled = threading.Event()
        self._lock = threading.Lock()
        self._open: set[requests.Response] = set()
        adapter = requests.adapters.HTTPAdapter(
            pool_connections=self._config.concurrency, pool_maxsize=self._config.concurrency
        )
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)

    @property
    def concurrency(self) -> int:
        """How many downloads may run at once."""
        return self._config.concurrency

    def close(self) -> None:
        self._session.close()

    def cancel(self) -> None:
        """Stop every fetch, in progress or to come: each raises :class:`Cancelled`. Thread-safe.

        Transfers blocked on the network are woken by shutting their sockets down.
        """
        self._cancelled.set()
        with self._lock:
            responses = list(self._open)
        for response in responses:
            _shutdown(response)

    def mirrors_for(self, url: str) -> list[str]:
        """The URLs to try for ``url``, in order: its mirrors when configured (longest prefix wins)."""
        best = max((p for p in self._config.mirrors if url.startswith(p)), key=len, default=None)
        if best is None:
            return [url]
        return [m + url[len(best) :] for m in self._config.mirrors[best]] or [url]

    def fetch(
        self,
        location: str,
        destination: Path | Slot,
        *,
        what: str,
        expected: Expected = Expected(),
        cache_key: str | None = None,
        on_bytes: Callable[[int], None] | None = None,
    ) -> Digests:
        """Put the file at ``location`` (URL or absolute path) at ``destination``, verified.

        A slot's size must be the expected size. With a cache, a verified copy is stored there too.
        """
        cached = self._cache_dir / cache_key if self._cache_dir and cache_key else None
        if cached is not None and cached.is_file():
            try:
                return self._copy_local(cached, destination, what=what, expected=expected, on_bytes=on_bytes)
            except IntegrityError:
                logger.warning("cached %s is damaged, downloading it again", cached)
        digests = self._fetch_uncached(location, destination, what=what, expected=expected, on_bytes=on_bytes)
        if cached is not None:
            _store(destination, cached)
        return digests

    def _fetch_uncached(
        self,
        location: str,
        destination: Path | Slot,
        *,
        what: str,
        expected: Expected,
        on_bytes: Callable[[int], None] | None,
    ) -> Digests:
        try:
            parts = urlsplit(location) if "://" in location else None
        except ValueError as exc:  # e.g. a host opened with "[" and never closed
            msg = f"could not download {what} from {redacted_url(location)}: the URL is malformed ({exc})"
            raise DownloadError(msg) from exc
        scheme = parts.scheme.lower() if parts is not None else ""
        if scheme in ("http", "https", "s3"):
            return self._download(location, destination, what=what, expected=expected, on_bytes=on_bytes)
        if scheme == "file":
            assert parts is not None
            path = Path(url2pathname(unquote(parts.path)))
            return self._copy_local(path, destination, what=what, expected=expected, on_bytes=on_bytes)
        if scheme:
            msg = (
                f"could not download {what} from {redacted_url(location)}: unsupported URL scheme {scheme}://"
            )
            raise DownloadError(msg)
        return self._copy_local(Path(location), destination, what=what, expected=expected, on_bytes=on_bytes)

    def _copy_local(
        self,
        source: Path,
        destination: Path | Slot,
        *,
        what: str,
        expected: Expected,
        on_bytes: Callable[[int], None] | None,
    ) -> Digests:
        described = f"{what} from {source}"
        try:
            with open(source, "rb") as src:
                if isinstance(destination, Slot) and os.fstat(src.fileno()).st_size == destination.size:
                    return _copy_to_slot(
                        src.fileno(), destination, what=described, expected=expected, on_bytes=on_bytes
                    )
                return _write_verified(src, destination, what=described, expected=expected, on_bytes=on_bytes)
        except OSError as exc:
            msg = f"could not read {what} from {source}: {exc.strerror or exc}"
            raise DownloadError(msg) from exc

    def _download(
        self,
        url: str,
        destination: Path | Slot,
        *,
        what: str,
        expected: Expected,
        on_bytes: Callable[[int], None] | None,
    ) -> Digests:
        errors: list[str] = []
        for candidate in self.mirrors_for(url):
            for attempt in range(RETRIES + 1):
                try:
                    return self._download_once(candidate, destination, what, expected, on_bytes)
                except _Transient as exc:
                    if self._cancelled.is_set():
                        raise Cancelled("download cancelled") from exc
                    if attempt == RETRIES:
                        errors.append(_reason(candidate, url, f"{exc} (tried {RETRIES + 1} times)"))
                        break
                    delay = BACKOFF_SECONDS * 2**attempt
                    logger.debug("retrying %s in %.1f s: %s", redacted_url(candidate), delay, exc)
                    if self._cancelled.wait(delay):
                        raise Cancelled("download cancelled") from exc
                except Cancelled:
                    raise
                except DownloadError as exc:
                    errors.append(_reason(candidate, url, str(exc)))
                    break
        msg = f"could not download {what} from {redacted_url(url)}: " + "; ".join(errors)
        raise DownloadError(msg)

    def _download_once(
        self,
        url: str,
        destination: Path | Slot,
        what: str,
        expected: Expected,
        on_bytes: Callable[[int], None] | None,
    ) -> Digests:
        if self._cancelled.is_set():
            raise Cancelled("download cancelled")
        request_url, headers = self._authenticate(url)
        try:
            response = self._session.get(request_url, headers=headers, stream=True, timeout=TIMEOUT_SECONDS)
        except requests.TooManyRedirects as exc:
            raise DownloadError(f"redirect loop (more than {self._session.max_redirects} redirects)") from exc
        except (requests.exceptions.InvalidURL, requests.exceptions.InvalidSchema) as exc:
            # Not requests' text: it repeats the whole URL, credentials and all.
            raise DownloadError("the URL is malformed (its host or port cannot be read)") from exc
        except (requests.ConnectionError, requests.Timeout) as exc:
            reason, transient = connection_failure(exc, _host(request_url))
            raise (_Transient if transient else DownloadError)(reason) from exc
        with self._lock:
            self._open.add(response)
        try:
            return self._receive(response, url, destination, what, expected, on_bytes)
        finally:
            with self._lock:
                self._open.discard(response)

    def _receive(
        self,
        response: requests.Response,
        url: str,
        destination: Path | Slot,
        what: str,
        expected: Expected,
        on_bytes: Callable[[int], None] | None,
    ) -> Digests:
        with response:
            if response.status_code in _TRANSIENT_STATUS:
                raise _Transient(f"HTTP {response.status_code} {response.reason}")
            if response.status_code >= 400:
                hint = " (check credentials: --auth-file)" if response.status_code in (401, 403) else ""
                raise DownloadError(f"HTTP {response.status_code} {response.reason}{hint}")
            raw: Any = response.raw
            raw.decode_content = False
            size = destination.size if isinstance(destination, Slot) else expected.size
            source = _Bounded(raw, None if size is None else size + 1, self._cancelled)
            try:
                return _write_verified(
                    source,
                    destination,
                    what=f"{what} from {redacted_url(url)}",
                    expected=expected,
                    on_bytes=on_bytes,
                )
            except (
                requests.RequestException,
                urllib3.exceptions.HTTPError,
                http.client.HTTPException,
                OSError,
            ) as exc:
                if self._cancelled.is_set():
                    raise Cancelled("download cancelled") from exc
                if isinstance(exc, OSError) and not isinstance(exc, ConnectionError) and exc.errno:
                    written = destination.path if isinstance(destination, Slot) else destination
                    msg = f"could not write {written}: {exc.strerror or exc}"
                    raise PixiPackError(msg) from exc
                raise _Transient(f"transfer broke off ({type(exc).__name__})") from exc

    def download_file(self, url: str, destination: Path) -> None:
        """Fetch any URL or path to ``destination`` without a known hash (used for the unpacker)."""
        self.fetch(url, destination, what=redacted_url(url))

    def _authenticate(self, url: str) -> tuple[str, dict[str, str]]:
        parts = urlsplit(url)
        if parts.scheme == "s3":
            location = s3.locate(url, self._config.s3_options)
            s3_credentials = s3.credentials_from(self._auth.get(f"s3://{parts.netloc}"))
            if s3_credentials is None:  # a public bucket
                return location.url, {}
            now = datetime.datetime.now(datetime.timezone.utc)
            return location.url, s3.sign_get(location.url, location.region, s3_credentials, now)
        return http_request(self._auth, url)


def _shutdown(response: requests.Response) -> None:
    """Wake a thread blocked reading ``response``: shut its socket down (closing it would not)."""
    raw: Any = response.raw
    try:
        sock = raw._fp.fp.raw._sock
    except AttributeError:  # already closed, or not a plain socket
        return
    with suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


def _host(url: str) -> str:
    """``host[:port]`` of ``url``, never its credentials or path (a token may sit in either)."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    return f"{parts.hostname or '?'}{f':{port}' if port else ''}"


def _reason(candidate: str, url: str, reason: str) -> str:
    return reason if candidate == url else f"mirror {redacted_url(candidate)}: {reason}"


def _write_verified(
    source: Readable,
    destination: Path | Slot,
    *,
    what: str,
    expected: Expected,
    on_bytes: Callable[[int], None] | None,
) -> Digests:
    md5 = needs_md5(expected.sha256, expected.md5)
    if isinstance(destination, Slot):
        digests = copy_and_hash(source, _SlotWriter(destination), on_bytes, md5=md5)
        check_digests(digests, what=what, sha256=expected.sha256, md5=expected.md5, size=destination.size)
        return digests
    destination.parent.mkdir(parents=True, exist_ok=True)
    with tempfiles.replacing(destination, mode=0o600) as out:
        digests = copy_and_hash(source, out, on_bytes, md5=md5)
        check_digests(digests, what=what, sha256=expected.sha256, md5=expected.md5, size=expected.size)
    return digests


def _copy_to_slot(
    source_fd: int, slot: Slot, *, what: str, expected: Expected, on_bytes: Callable[[int], None] | None
) -> Digests:
    """Copy a local file of the slot's size into it (in the kernel where it can be), then check what
    landed in the slot."""
    copy_range(source_fd, 0, slot.fd, slot.offset, slot.size)
    md5 = needs_md5(expected.sha256, expected.md5)
    digests = hash_stream(RangeReader(slot.fd, slot.offset, slot.size), md5=md5)
    if on_bytes is not None:
        on_bytes(slot.size)
    check_digests(digests, what=what, sha256=expected.sha256, md5=expected.md5, size=slot.size)
    return digests


#: The standard cache directory tag (https://bford.info/cachedir/): backup tools skip the folder.
CACHEDIR_TAG = (
    "Signature: 8a477f597d28d172789f06886806bc55\n"
    "# This file is a cache directory tag created by pixi-pack.\n"
    "# For information about cache directory tags, see https://bford.info/cachedir/\n"
)


def _tag_cache(cache_dir: Path) -> None:
    """Create ``cache_dir`` with its ``CACHEDIR.TAG``, unless it has one; a failure only warns."""
    tag = cache_dir / "CACHEDIR.TAG"
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(tag, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o644)
    except FileExistsError:
        return
    except OSError as exc:
        logger.warning("could not tag the cache %s: %s", cache_dir, exc.strerror or exc)
        return
    with open(fd, "w", encoding="ascii") as out:
        out.write(CACHEDIR_TAG)


def _store(source: Path | Slot, destination: Path) -> None:
    """Put a verified copy of ``source`` in the cache at ``destination``; a failure only warns."""
    try:
        destination.parent.mkdir(parents=True, exist_ok=True)
        with tempfiles.replacing(destination, mode=0o600) as out:
            if isinstance(source, Slot):
                copy_range(source.fd, source.offset, out.fileno(), 0, source.size)
            else:
                with open(source, "rb") as src:
                    copy_range(src.fileno(), 0, out.fileno(), 0, os.fstat(src.fileno()).st_size)
    except OSError as exc:
        logger.warning("could not store %s in the cache: %s", destination, exc.strerror or exc)
