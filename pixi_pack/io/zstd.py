"""Streaming zstd decompression, whatever this interpreter offers.

In order of preference: the standard library's ``compression.zstd`` (Python 3.14+); the ``zstandard``
C extension, the build the zipapp bundles for this interpreter and platform or an installed one; the
``zstd`` command on PATH, streamed through a pipe. No correct pure-Python decoder exists, so without any
of them reading a ``.conda`` package is an error that says what is missing.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import BinaryIO, cast

from pixi_pack.errors import PixiPackError

CHUNK_SIZE = 1 << 20


@dataclass(frozen=True)
class Backend:
    """One way to decompress."""

    name: str
    """What it is, for logs and messages: ``compression.zstd``, ``zstandard (bundled)``, ``zstd command (...)``."""
    open: Callable[[BinaryIO], BinaryIO]
    """Wraps a zstd stream into a reader of its decompressed bytes; closing it leaves the source open."""


def select_backend() -> Backend:
    """Pick the first backend that works here, or raise a :class:`PixiPackError` naming what's missing."""
    problems: list[str] = []
    for candidate in (_stdlib_backend, _zstandard_backend, _command_backend):
        found = candidate(problems)
        if found is not None:
            return found
    from pixi_pack.io._vendor_loader import bundled_targets, describe_running

    bundled = bundled_targets()
    shipped = f"the zipapp bundles zstandard for {_summarize(bundled)}; " if bundled else ""
    msg = (
        f"cannot read .conda packages: no zstd decompressor for {describe_running()}: "
        f"{shipped}this interpreter has no compression.zstd (Python 3.14+) nor a usable zstandard module, "
        "and there is no `zstd` command on PATH; install zstd (the command) or zstandard (the Python "
        "package), or run with another Python"
    )
    for problem in problems:
        msg += f"; {problem}"
    raise PixiPackError(msg)


class Decompressor:
    """Decompresses zstd streams with the backend :func:`select_backend` picks the first time one is needed.

    The backend is kept for this object's life, for every thread using it: the command line makes one
    per command, a library call that is not given one makes its own.
    """

    def __init__(self, select: Callable[[], Backend] = select_backend) -> None:
        self._select = select
        self._backend: Backend | None = None
        # The first readers of a parallel install may ask at the same time, and loading the bundled
        # zstandard must finish before anyone uses it.
        self._lock = threading.Lock()

    def backend(self) -> Backend:
        """The backend, chosen on the first call."""
        with self._lock:
            if self._backend is None:
                self._backend = self._select()
            return self._backend

    def open(self, source: BinaryIO) -> BinaryIO:
        """A file object that yields the decompressed bytes of the zstd stream ``source``."""
        return self.backend().open(source)


def _summarize(targets: list[str]) -> str:
    """``cp39-manylinux-x86_64, cp310-...`` -> ``CPython 3.9-3.13 on manylinux-x86_64, macosx-arm64, ...``."""
    versions = sorted({t.split("-", 1)[0] for t in targets}, key=lambda tag: int(tag[3:]))
    platforms = sorted({t.split("-", 1)[1] for t in targets})
    low, high = versions[0], versions[-1]
    return f"CPython {low[2]}.{low[3:]}-{high[2]}.{high[3:]} on {', '.join(platforms)}"


def _stdlib_backend(problems: list[str]) -> Backend | None:
    try:
        module = importlib.import_module("compression.zstd")
    except ImportError:
        return None
    return Backend("compression.zstd", lambda source: cast(BinaryIO, module.ZstdFile(source, "rb")))


def _zstandard_backend(problems: list[str]) -> Backend | None:
    from pixi_pack.io._vendor_loader import load_bundled_zstandard

    try:
        module = load_bundled_zstandard()
    except ImportError as exc:
        problems.append(f"{exc} (if its folder is on a noexec mount, set SHIV_ROOT or TMPDIR elsewhere)")
        module = None
    name = "zstandard (bundled)"
    if module is None:
        module = _import_zstandard()
        name = "zstandard"
    if module is None:
        return None

    def open_reader(source: BinaryIO) -> BinaryIO:
        # One decompressor per reader: a ZstdDecompressor must not be shared between threads.
        decompressor = module.ZstdDecompressor()
        return cast(BinaryIO, decompressor.stream_reader(source, read_across_frames=True, closefd=False))

    return Backend(name, open_reader)


def _import_zstandard() -> ModuleType | None:
    try:
        import zstandard
    except ImportError:
        return None
    return zstandard


def _command_backend(problems: list[str]) -> Backend | None:
    executable = shutil.which("zstd")
    if executable is None:
        return None
    command = [executable, "--decompress", "--stdout", "--quiet"]

    def open_reader(source: BinaryIO) -> BinaryIO:
        return cast(BinaryIO, io.BufferedReader(CommandReader(command, source), CHUNK_SIZE))

    return Backend(f"zstd command ({executable})", open_reader)


class CommandReader(io.RawIOBase):
    """The standard output of ``command`` while a thread feeds it ``source``; its failure is an error.

    The end of the output is only reported once the command has exited successfully, so a corrupt or
    truncated stream can't pass for a short one.
    """

    def __init__(self, command: list[str], source: BinaryIO) -> None:
        super().__init__()
        self._command = command[0]
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed by close()
        try:
            self._process = subprocess.Popen(
                command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr, bufsize=0
            )
        except OSError as exc:
            self._stderr.close()
            msg = f"could not run {command[0]}: {exc.strerror or exc}"
            raise PixiPackError(msg) from exc
        self._feed_error: BaseException | None = None
        self._done = False
        self._feeder = threading.Thread(target=self._feed, args=(source,), daemon=True)
        self._feeder.start()

    def _feed(self, source: BinaryIO) -> None:
        stdin = self._process.stdin
        assert stdin is not None
        try:
            while True:
                chunk = source.read(CHUNK_SIZE)
                if not chunk:
                    break
                stdin.write(chunk)
        except BrokenPipeError:
            pass  # the command stopped reading; its exit status says why
        except BaseException as exc:  # re-raised by the reading thread
            self._feed_error = exc
        finally:
            with contextlib.suppress(OSError):
                stdin.close()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        if self._done:
            return 0
        stdout = cast(io.FileIO, self._process.stdout)  # unbuffered: returns what the pipe has
        count = stdout.readinto(buffer)
        if count:
            return count
        self._finish()
        return 0

    def _finish(self) -> None:
        self._done = True
        self._feeder.join()
        code = self._process.wait()
        if self._feed_error is not None:
            msg = f"could not feed the zstd stream to {self._command}: {self._feed_error}"
            raise PixiPackError(msg) from self._feed_error
        if code != 0:
            self._stderr.seek(0)
            detail = self._stderr.read().decode(errors="replace").strip() or f"exit status {code}"
            msg = f"zstd could not decompress the stream: {detail}"
            raise PixiPackError(msg)

    def close(self) -> None:
        if not self.closed:
            if self._process.poll() is None:
                self._process.kill()
            self._feeder.join()
            self._process.wait()
            if self._process.stdout is not None:
                self._process.stdout.close()
            self._stderr.close()
        super().close()
