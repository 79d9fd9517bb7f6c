"""What a hostile or flaky server gets: bounded reads, no expansion, retries, one error line, cancellation."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import http.server
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pixi_pack.errors import DownloadError, IntegrityError
from pixi_pack.pack.fetch import Cancelled, Expected, Fetcher

BODY = b"package bytes " * 100
EXPECTED = Expected(sha256=hashlib.sha256(BODY).hexdigest(), size=len(BODY))

Behaviour = Callable[[http.server.BaseHTTPRequestHandler], None]


class _Server:
    def __init__(self, behaviour: Behaviour) -> None:
        self.requests = 0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                outer.requests += 1
                with contextlib.suppress(OSError):  # the client hung up: what some tests want
                    behaviour(self)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/pkg.conda"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


@pytest.fixture
def serve() -> Iterator[Callable[[Behaviour], _Server]]:
    servers: list[_Server] = []

    def start(behaviour: Behaviour) -> _Server:
        servers.append(_Server(behaviour))
        return servers[-1]

    yield start
    for server in servers:
        server.httpd.shutdown()
        server.httpd.server_close()


@pytest.fixture(autouse=True)
def _no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("pixi_pack.pack.fetch.BACKOFF_SECONDS", 0.01)


def test_a_body_that_breaks_off_is_retried_then_one_error(
    serve: Callable[[Behaviour], _Server], tmp_path: Path
) -> None:
    def broken(handler: http.server.BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Length", str(len(BODY)))
        handler.end_headers()
        handler.wfile.write(BODY[:10])
        handler.wfile.flush()
        handler.close_connection = True

    server = serve(broken)
    with pytest.raises(DownloadError) as caught:
        Fetcher().fetch(server.url, tmp_path / "pkg.conda", what="pkg-1.0-0", expected=EXPECTED)
    message = str(caught.value)
    assert message.startswith(f"could not download pkg-1.0-0 from {server.url}: transfer broke off")
    assert "tried 4 times" in message and server.requests == 4
    assert list(tmp_path.iterdir()) == []


def test_a_redirect_loop_says_so(serve: Callable[[Behaviour], _Server], tmp_path: Path) -> None:
    def loop(handler: http.server.BaseHTTPRequestHandler) -> None:
        handler.send_response(302)
        handler.send_header("Location", handler.path)
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    server = serve(loop)
    with pytest.raises(DownloadError, match=r"redirect loop \(more than 30 redirects\)"):
        Fetcher().fetch(server.url, tmp_path / "pkg.conda", what="pkg-1.0-0", expected=EXPECTED)


def test_an_endless_body_is_read_only_to_the_locked_size(
    serve: Callable[[Behaviour], _Server], tmp_path: Path
) -> None:
    read = {"sent": 0}

    def endless(handler: http.server.BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.end_headers()
        handler.close_connection = True
        while read["sent"] < 1 << 30:
            handler.wfile.write(b"x" * 65536)
            read["sent"] += 65536

    server = serve(endless)
    with pytest.raises(IntegrityError, match="mismatch"):
        Fetcher().fetch(server.url, tmp_path / "pkg.conda", what="pkg-1.0-0", expected=EXPECTED)
    assert read["sent"] < 64 << 20  # the server was cut off long before its gigabyte
    assert server.requests == 1  # the content is wrong: not worth retrying


def test_a_compressed_transfer_is_hashed_as_sent_never_expanded(
    serve: Callable[[Behaviour], _Server], tmp_path: Path
) -> None:
    seen: dict[str, str | None] = {}
    packed = gzip.compress(BODY)

    def gzipped(handler: http.server.BaseHTTPRequestHandler) -> None:
        seen["accept"] = handler.headers.get("Accept-Encoding")
        handler.send_response(200)
        handler.send_header("Content-Encoding", "gzip")
        handler.send_header("Content-Length", str(len(packed)))
        handler.end_headers()
        handler.wfile.write(packed)

    server = serve(gzipped)
    with pytest.raises(IntegrityError, match="sha256 mismatch"):
        Fetcher().fetch(server.url, tmp_path / "pkg.conda", what="pkg-1.0-0", expected=EXPECTED)
    assert seen["accept"] == "identity"


def test_cancel_stops_a_trickling_download(serve: Callable[[Behaviour], _Server], tmp_path: Path) -> None:
    def trickle(handler: http.server.BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Length", str(len(BODY)))
        handler.end_headers()
        for byte in BODY:
            handler.wfile.write(bytes([byte]))
            handler.wfile.flush()
            time.sleep(0.05)

    server = serve(trickle)
    fetcher = Fetcher()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            fetcher.fetch(server.url, tmp_path / "pkg.conda", what="pkg-1.0-0", expected=EXPECTED)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    time.sleep(0.3)
    fetcher.cancel()
    thread.join(timeout=5)  # the whole body would take 70 s
    assert not thread.is_alive()
    assert len(errors) == 1 and isinstance(errors[0], Cancelled)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(Cancelled):  # and every later fetch
        fetcher.fetch(server.url, tmp_path / "pkg.conda", what="pkg-1.0-0", expected=EXPECTED)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\xff\xfe{}", "not valid JSON"),
        (b"[" * 200_000, "not valid JSON"),
        (b"[]", "expected a JSON object of host -> credentials"),
        (b'{"example.com": 5}', '"example.com" must be an object of credentials'),
        (b'{"example.com": {"BearerToken": 5}}', '"example.com".BearerToken must be a string'),
        (
            b'{"a": {"BasicHTTP": {"username": "u", "password": 1}}}',
            '"a".BasicHTTP.password must be a string',
        ),
        (b'{"a": {"BasicHTTP": []}}', '"a".BasicHTTP must be an object'),
        (
            b'{"s3://b": {"S3Credentials": {"access_key_id": "k", "secret_access_key": "s", "session_token": 1}}}',
            '"s3://b".S3Credentials.session_token must be a string',
        ),
    ],
)
def test_a_hostile_auth_file_is_our_error(tmp_path: Path, content: bytes, message: str) -> None:
    from pixi_pack.errors import PixiPackError
    from pixi_pack.pack.auth import load_auth_file

    path = tmp_path / "auth.json"
    path.write_bytes(content)
    with pytest.raises(PixiPackError, match=f"authentication file {path}") as caught:
        load_auth_file(path)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"concurrency = 5\n", "[concurrency] must be a table"),
        (b"[concurrency]\ndownloads = true\n", "concurrency.downloads must be a positive integer"),
        (b"\xff = 1\n", "failed to parse config file"),
        (b"[s3-options.b]\nregion = 5\n", "s3-options.b.region must be a str"),
        (b"mirrors = 1\n", "[mirrors] must map URLs to lists of URLs"),
    ],
)
def test_a_hostile_config_is_our_error(tmp_path: Path, content: bytes, message: str) -> None:
    from pixi_pack.errors import PixiPackError
    from pixi_pack.lock.config import load_config

    path = tmp_path / "config.toml"
    path.write_bytes(content)
    with pytest.raises(PixiPackError) as caught:
        load_config(path)
    assert message in str(caught.value) and str(path) in str(caught.value)


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=20,
)
_kinds = st.sampled_from(["BearerToken", "CondaToken", "BasicHTTP", "S3Credentials", "username", "x"])


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    document=_json
    | st.dictionaries(st.text(max_size=8), st.dictionaries(_kinds, _json, max_size=3), max_size=3),
    raw=st.binary(max_size=64),
)
def test_fuzz_auth_file(tmp_path: Path, document: object, raw: bytes) -> None:
    import json

    from pixi_pack.errors import PixiPackError
    from pixi_pack.pack.auth import load_auth_file

    path = tmp_path / "auth.json"
    for content in (json.dumps(document).encode(), raw):
        path.write_bytes(content)
        with contextlib.suppress(PixiPackError):
            load_auth_file(path)


_toml_piece = st.sampled_from(
    [
        "[mirrors]",
        "[concurrency]",
        "[s3-options.b]",
        "[s3-options]",
        "downloads",
        "mirrors",
        "concurrency",
        "region",
        "endpoint-url",
        "force-path-style",
        "=",
        " ",
        "\n",
        "1",
        "-1",
        "true",
        '"x"',
        "[",
        "]",
        '["a"]',
        "{",
        "}",
        ",",
        '"https://a"',
        "[[",
        "]]",
        "\xff",
        ".",
    ]
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pieces=st.lists(_toml_piece, max_size=30), raw=st.binary(max_size=64))
def test_fuzz_config(tmp_path: Path, pieces: list[str], raw: bytes) -> None:
    from pixi_pack.errors import PixiPackError
    from pixi_pack.lock.config import load_config

    path = tmp_path / "config.toml"
    for content in ("".join(pieces).encode("utf-8", "surrogateescape"), raw):
        path.write_bytes(content)
        with contextlib.suppress(PixiPackError):
            load_config(path)


# --- a failed connection names its cause --------------------------------------------------------------


def _fetch_error(url: str, tmp_path: Path) -> str:
    fetcher = Fetcher()
    try:
        with pytest.raises(DownloadError) as caught:
            fetcher.fetch(url, tmp_path / "pkg.conda", what="pkg", expected=EXPECTED)
    finally:
        fetcher.close()
    assert not (tmp_path / "pkg.conda").exists()
    return str(caught.value)


def test_a_refused_connection_is_named(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    message = _fetch_error(f"http://127.0.0.1:{port}/pkg.conda", tmp_path)
    assert f"connection refused by 127.0.0.1:{port} (tried 4 times)" in message


_UNRESOLVED = "could not resolve host conda.example.invalid ("
_MALFORMED = "the URL is malformed"


@pytest.mark.parametrize(
    ("url", "cause"),
    [
        ("https://conda.example.invalid/t/secret-token/pkg.conda", _UNRESOLVED),
        ("https://user:secret-token@conda.example.invalid/pkg.conda", _UNRESOLVED),
        ("https://conda.example.invalid/pkg.conda?signature=secret-token", _UNRESOLVED),
        ("http://[secret-token/pkg.conda", _MALFORMED),
        ("http://127.0.0.1:99999/pkg.conda", _MALFORMED),
        ("http://u:secret-token@h:port/pkg.conda", _MALFORMED),
    ],
)
def test_a_failed_url_is_named_without_its_secrets(tmp_path: Path, url: str, cause: str) -> None:
    """One message with its cause, never a traceback, and nothing of a token, a password or a signed
    query (CI logs keep them); a host or port that cannot be read is a malformed URL."""
    message = _fetch_error(url, tmp_path)
    assert message.startswith("could not download pkg from http")
    assert message.count(cause) == 1
    assert "secret-token" not in message


def test_a_silent_server_is_a_timeout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("pixi_pack.pack.fetch.TIMEOUT_SECONDS", 0.2)
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # accepts (the kernel does), never answers
        port = silent.getsockname()[1]
        message = _fetch_error(f"http://127.0.0.1:{port}/pkg.conda", tmp_path)
    assert f"timed out waiting for 127.0.0.1:{port} (tried 4 times)" in message


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl not installed")
def test_an_untrusted_certificate_is_named_and_not_retried(tmp_path: Path) -> None:
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
    )
    handshakes = 0

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_error(500)

        def log_message(self, format: str, *args: object) -> None:
            pass

    class TlsServer(http.server.ThreadingHTTPServer):
        def get_request(self) -> tuple[socket.socket, Any]:
            nonlocal handshakes
            sock, address = super().get_request()
            handshakes += 1
            return context.wrap_socket(sock, server_side=True), address

        def handle_error(self, request: Any, client_address: Any) -> None:
            pass  # the client rejecting our certificate

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    httpd = TlsServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        message = _fetch_error(f"https://127.0.0.1:{httpd.server_address[1]}/pkg.conda", tmp_path)
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert f"TLS: certificate verify failed for 127.0.0.1:{httpd.server_address[1]} (" in message
    assert "tried" not in message
    assert handshakes == 1
