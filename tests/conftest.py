"""Shared fixtures: a real HTTP server on 127.0.0.1, real data, small channels of built packages, a real
relocatable python, and py-rattler as the reference installer."""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import http.server
import json
import os
import shutil
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
import rattler
from builders import (
    BuiltPackage,
    Symlink,
    binary_prefix,
    build_package,
    executable,
    text_prefix,
    write_channel,
)
from pythonpkg import build_python_package, can_build_python_package

from pixi_pack.formats.package import read_info
from pixi_pack.models import PackageSource

REALDATA = Path(__file__).resolve().parents[1].parent / "shared" / "realdata"


def realdata_path(*parts: str) -> Path:
    """A path under the shared real data folder; skips the test when it is absent."""
    path = REALDATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data not available: {path}")
    return path


def source_of(path: Path, record: dict[str, Any] | None = None) -> PackageSource:
    """A PackageSource as unpack builds one: the pack's record (by default read from the package and
    hashed), a fresh reader per call."""
    if record is None:
        with path.open("rb") as stream:
            record = json.loads(read_info(stream, path.name).files["index.json"])
        data = path.read_bytes()
        record.update(
            sha256=hashlib.sha256(data).hexdigest(), md5=hashlib.md5(data).hexdigest(), size=len(data)
        )
    return PackageSource(path.name, record, lambda: path.open("rb"))


@pytest.fixture
def realdata() -> Path:
    """The shared real data folder (packages/, channels/, locks/); skips the test when it is absent."""
    return realdata_path()


def rattler_records(packages: Sequence[BuiltPackage]) -> list[rattler.RepoDataRecord]:
    """``rattler.RepoDataRecord``s of local archives (``file://`` URLs), md5 included, for ``rattler.install``."""
    records = []
    for package in packages:
        record = asyncio.run(rattler.RepoDataRecord.from_package_archive(package.path))
        record.md5 = bytes.fromhex(package.md5)
        records.append(record)
    return records


def rattler_install(packages: Sequence[BuiltPackage], prefix: Path, cache_dir: Path) -> Path:
    """Install ``packages`` (no solve: give them all) with py-rattler, the reference installer."""
    coro = rattler.install(rattler_records(packages), prefix, cache_dir=cache_dir, show_progress=False)
    asyncio.run(coro)
    return prefix


def rattler_solve(
    channel_url: str, specs: Sequence[str], cache_dir: Path, platform: str = "linux-64"
) -> list[rattler.RepoDataRecord]:
    """Solve ``specs`` against one channel (``http://`` or ``file://``) with py-rattler."""
    gateway = rattler.Gateway(cache_dir=cache_dir)
    coro = rattler.solve(
        [channel_url],
        list(specs),
        gateway=gateway,
        platforms=[rattler.Subdir(platform), rattler.Subdir("noarch")],
    )
    records: list[rattler.RepoDataRecord] = asyncio.run(coro)
    return records


PREFIX_NOISE = frozenset({"conda-meta", "CACHEDIR.TAG", "__pycache__"})
"""Names :func:`prefix_tree` skips by default: installer bookkeeping and byte-code caches."""


def prefix_tree(prefix: Path, ignore: frozenset[str] = PREFIX_NOISE) -> dict[str, tuple[str, str]]:
    """A comparable picture of an installed prefix: relative path -> (kind, detail).

    ``("file", "<mode> <sha256>")``, ``("link", "<target>")`` or ``("dir", "")``; names in ``ignore`` are
    skipped at any depth. Compare the trees rattler and pixi-unpack produce for the same packages.
    """
    tree: dict[str, tuple[str, str]] = {}
    for folder, dirs, names in os.walk(prefix):
        dirs[:] = [d for d in dirs if d not in ignore]
        base = Path(folder)
        for name in [*dirs, *names]:
            if name in ignore:
                continue
            path = base / name
            rel = path.relative_to(prefix).as_posix()
            if path.is_symlink():
                tree[rel] = ("link", str(path.readlink()))
            elif path.is_dir():
                tree[rel] = ("dir", "")
            else:
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
                tree[rel] = ("file", f"{path.stat().st_mode & 0o777:o} {digest}")
    return dict(sorted(tree.items()))


@dataclass
class _Failure:
    status: int
    times: int | None


@dataclass
class HttpServer:
    """A real HTTP server serving ``root`` on 127.0.0.1, with failure injection and optional auth."""

    root: Path
    """The folder served; ``GET /a/b`` answers ``root/a/b``."""
    url: str = ""
    """Base URL, without trailing slash (``http://127.0.0.1:<port>``)."""
    requests: list[str] = field(default_factory=list)
    """Paths of the GET/HEAD requests received, in order, query string removed."""
    headers: list[dict[str, str]] = field(default_factory=list)
    """The headers of each request in ``requests``."""
    required_headers: dict[str, str] = field(default_factory=dict)
    """Headers a request must carry exactly, or get 401."""
    _failures: dict[str, _Failure] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def fail(self, path: str, status: int, times: int | None = None) -> None:
        """Answer ``status`` for ``path`` (``/a/b`` or ``a/b``) the next ``times`` requests, or always."""
        self._failures["/" + path.lstrip("/")] = _Failure(status, times)

    def require_auth(self, user: str, password: str) -> None:
        """Require HTTP basic auth with these credentials on every request."""
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        self.required_headers["Authorization"] = f"Basic {token}"

    def require_bearer(self, token: str) -> None:
        """Require ``Authorization: Bearer <token>`` on every request."""
        self.required_headers["Authorization"] = f"Bearer {token}"

    def url_for(self, path: Path | str) -> str:
        """The URL of a file or folder under ``root`` (absolute or relative to it)."""
        rel = Path(path).relative_to(self.root) if Path(path).is_absolute() else Path(path)
        return f"{self.url}/{rel.as_posix()}".rstrip("/")

    def _answer(self, path: str, headers: dict[str, str]) -> int | None:
        """Records the request; returns the status to fail with, or None to serve the file."""
        with self._lock:
            self.requests.append(path)
            self.headers.append(headers)
            for name, value in self.required_headers.items():
                if headers.get(name) != value:
                    return 401
            failure = self._failures.get(path)
            if failure is None or failure.times == 0:
                return None
            if failure.times is not None:
                failure.times -= 1
            return failure.status


class _Handler(http.server.SimpleHTTPRequestHandler):
    state: HttpServer

    def __init__(self, *args: Any, state: HttpServer, **kwargs: Any) -> None:
        self.state = state
        super().__init__(*args, **kwargs)

    def do_GET(self) -> None:
        if self._check():
            super().do_GET()

    def do_HEAD(self) -> None:
        if self._check():
            super().do_HEAD()

    def _check(self) -> bool:
        path = unquote(urlsplit(self.path).path)
        status = self.state._answer(path, dict(self.headers.items()))
        if status is None:
            return True
        self.send_response(status)
        if status == 401:
            self.send_header("WWW-Authenticate", 'Basic realm="test"')
        self.send_header("Content-Length", "0")
        self.end_headers()
        return False

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: tests read ``HttpServer.requests`` instead."""


@pytest.fixture
def http_server(tmp_path: Path) -> Iterator[HttpServer]:
    """A real HTTP server on 127.0.0.1:<free port> serving ``tmp_path / "www"``, stopped at teardown."""
    state = HttpServer(root=tmp_path / "www")
    state.root.mkdir()
    handler = functools.partial(_Handler, state=state, directory=str(state.root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), name="test-http-server", daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@dataclass(frozen=True)
class Channel:
    """A channel folder laid out by :func:`write_channel`, with the packages it holds by name."""

    root: Path
    packages: dict[str, BuiltPackage]

    @property
    def url(self) -> str:
        """The channel as a ``file://`` URL (no trailing slash)."""
        return self.root.as_uri()


def default_packages(out_dir: Path) -> list[BuiltPackage]:
    """A small, installable set (no python needed), one package of each kind.

    - ``hello`` (linux-64, .conda): ``bin/hello`` prints its prefix (text placeholder), ``lib/libhello.so``
      holds a binary placeholder, ``bin/hello-link`` -> ``hello``, ``share/hello/data.txt``; depends on
      ``hello-data``.
    - ``hello-data`` (noarch generic, .tar.bz2): ``share/hello-data/readme.txt``.
    - ``hello-old`` (linux-64, .tar.bz2, no paths.json): ``bin/hello-old`` prints its prefix.
    """
    hello = build_package(
        out_dir,
        "hello",
        "1.2.3",
        "h0_0",
        depends=["hello-data >=1"],
        files={
            "bin/hello": text_prefix('#!/bin/sh\necho "@PREFIX@"\n', mode=0o755),
            "bin/hello-link": Symlink("hello"),
            "lib/libhello.so": binary_prefix(b"\x7fELF\0fake\0@PREFIX@/lib\0tail\0"),
            "share/hello/data.txt": "hello data\n",
            "share/hello/run.sh": executable("#!/bin/sh\nexit 0\n"),
        },
    )
    data = build_package(
        out_dir,
        "hello-data",
        "1.0",
        "0",
        noarch="generic",
        fmt="tar.bz2",
        files={"share/hello-data/readme.txt": "readme\n"},
    )
    old = build_package(
        out_dir,
        "hello-old",
        "0.1",
        "0",
        fmt="tar.bz2",
        paths_json=False,
        files={"bin/hello-old": text_prefix('#!/bin/sh\necho "@PREFIX@"\n', mode=0o755)},
    )
    return [hello, data, old]


@pytest.fixture(scope="session")
def channel(tmp_path_factory: pytest.TempPathFactory) -> Channel:
    """The :func:`default_packages` laid out as a channel, built once per session. Do not modify it."""
    base = tmp_path_factory.mktemp("default-channel")
    packages = default_packages(base / "build")
    write_channel(base / "channel", packages)
    return Channel(base / "channel", {p.name: p for p in packages})


@pytest.fixture
def served_channel(http_server: HttpServer, channel: Channel) -> str:
    """The default channel copied under ``http_server.root / "channel"``; returns its URL."""
    shutil.copytree(channel.root, http_server.root / "channel")
    return http_server.url_for("channel")


@pytest.fixture(scope="session")
def python_package(tmp_path_factory: pytest.TempPathFactory) -> BuiltPackage:
    """A real relocatable CPython (the running one, trimmed) as ``python-X.Y.Z-h0_0_cpython.conda``.

    Built once per session (about a second); skips where it cannot be built (not Linux, no shared
    libpython, no patchelf). Do not modify the archive.
    """
    reason = can_build_python_package()
    if reason is not None:
        pytest.skip(reason)
    return build_python_package(tmp_path_factory.mktemp("python-package"))


@pytest.fixture(scope="session")
def python_channel(tmp_path_factory: pytest.TempPathFactory, python_package: BuiltPackage) -> Channel:
    """A channel with ``python`` and ``pyhello``, a noarch python package with a ``pyhello`` entry point.

    ``pyhello`` holds ``site-packages/pyhello/__init__.py`` (``main()`` prints ``pyhello <sys.prefix>``)
    and ``python-scripts/pyhello-script`` (a plain script printing ``pyhello-script``).
    """
    base = tmp_path_factory.mktemp("python-channel")
    source = "import sys\n\n\ndef main():\n    print('pyhello', sys.prefix)\n    return 0\n"
    pyhello = build_package(
        base / "build",
        "pyhello",
        "1.0",
        "pyh0_0",
        noarch="python",
        depends=["python >=3.8"],
        entry_points=["pyhello = pyhello:main"],
        files={
            "site-packages/pyhello/__init__.py": source,
            "python-scripts/pyhello-script": executable("#!/bin/sh\necho pyhello-script\n"),
        },
    )
    packages = [python_package, pyhello]
    write_channel(base / "channel", packages)
    return Channel(base / "channel", {p.name: p for p in packages})
