"""zstd decompression: which backend is chosen, and each backend on real zstd data.

Backends are hidden the conda-package-streaming way: ``sys.modules[name] = None`` makes an import fail,
and PATH decides whether the ``zstd`` command is found.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import textwrap
import threading
import time
import types
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO

import pytest
import zstandard

from pixi_pack.errors import PixiPackError
from pixi_pack.io import _vendor_loader, zstd

ZSTD_COMMAND = shutil.which("zstd")
needs_zstd_command = pytest.mark.skipif(ZSTD_COMMAND is None, reason="no zstd command on PATH")

DATA = b"".join(b"line %d of some compressible text\n" % i for i in range(200_000))


def compressed(data: bytes = DATA) -> bytes:
    return bytes(zstandard.ZstdCompressor(level=3).compress(data))


@pytest.fixture
def no_modules(monkeypatch: pytest.MonkeyPatch) -> None:
    """Neither compression.zstd nor zstandard can be imported, and no bundled build is loaded yet."""
    monkeypatch.setitem(sys.modules, "compression.zstd", None)
    monkeypatch.setitem(sys.modules, "zstandard", None)
    monkeypatch.delitem(sys.modules, _vendor_loader.BUNDLED_MODULE, raising=False)


@pytest.fixture
def command_only(no_modules: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    """Only the zstd command is left, alone on PATH."""
    if ZSTD_COMMAND is None:
        pytest.skip("no zstd command on PATH")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "zstd").symlink_to(ZSTD_COMMAND)
    monkeypatch.setenv("PATH", str(bin_dir))
    return str(bin_dir / "zstd")


def test_default_backend_decompresses() -> None:
    backend = zstd.select_backend()
    assert backend.name in ("compression.zstd", "zstandard", "zstandard (bundled)")
    source = io.BytesIO(compressed())
    with zstd.Decompressor().open(source) as reader:
        assert reader.read() == DATA
    assert not source.closed


def test_backend_is_chosen_once(monkeypatch: pytest.MonkeyPatch) -> None:
    decompressor = zstd.Decompressor()
    first = decompressor.backend()
    monkeypatch.setitem(sys.modules, "zstandard", None)
    assert decompressor.backend() is first


def test_stdlib_comes_first(monkeypatch: pytest.MonkeyPatch) -> None:
    """Python 3.14's compression.zstd wins over zstandard; faked here with zstandard underneath."""
    opened: list[BinaryIO] = []

    def zstd_file(source: BinaryIO, mode: str) -> BinaryIO:
        assert mode == "rb"
        opened.append(source)
        reader: BinaryIO = zstandard.ZstdDecompressor().stream_reader(source, closefd=False)
        return reader

    fake = types.ModuleType("compression.zstd")
    fake.ZstdFile = zstd_file  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "compression.zstd", fake)
    backend = zstd.select_backend()
    assert backend.name == "compression.zstd"
    source = io.BytesIO(compressed())
    assert backend.open(source).read() == DATA
    assert opened == [source]


@pytest.mark.skipif(sys.version_info < (3, 14), reason="compression.zstd is new in Python 3.14")
def test_real_stdlib_backend() -> None:
    backend = zstd.select_backend()
    assert backend.name == "compression.zstd"
    assert backend.open(io.BytesIO(compressed())).read() == DATA


def test_zstandard_when_no_stdlib(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "compression.zstd", None)
    assert zstd.select_backend().name == "zstandard"


def test_command_backend_streams(command_only: str) -> None:
    backend = zstd.select_backend()
    assert backend.name == f"zstd command ({command_only})"
    source = io.BytesIO(compressed())
    reader = backend.open(source)
    parts = []
    while True:
        chunk = reader.read(65536)
        if not chunk:
            break
        parts.append(chunk)
    reader.close()
    assert b"".join(parts) == DATA
    assert not source.closed


def test_command_backend_reads_concatenated_frames(command_only: str) -> None:
    data = compressed(b"first\n") + compressed(b"second\n")
    assert zstd.select_backend().open(io.BytesIO(data)).read() == b"first\nsecond\n"


def test_command_backend_truncated_stream_is_an_error(command_only: str) -> None:
    data = compressed()
    reader = zstd.select_backend().open(io.BytesIO(data[: len(data) // 2]))
    with pytest.raises(PixiPackError, match="zstd could not decompress the stream"):
        reader.read()
    reader.close()


def test_command_backend_garbage_is_an_error(command_only: str) -> None:
    reader = zstd.select_backend().open(io.BytesIO(b"not zstd at all" * 100))
    with pytest.raises(PixiPackError, match="zstd could not decompress"):
        reader.read()
    reader.close()


def test_command_backend_source_error_is_reported(command_only: str) -> None:
    class Broken(io.BytesIO):
        def read(self, size: int | None = -1) -> bytes:
            raise OSError("disk on fire")

    reader = zstd.select_backend().open(Broken())
    with pytest.raises(PixiPackError, match="disk on fire"):
        reader.read()
    reader.close()


def test_command_backend_early_close_does_not_hang(command_only: str) -> None:
    reader = zstd.select_backend().open(io.BytesIO(compressed()))
    assert reader.read(10) == DATA[:10]
    before = threading.active_count()
    reader.close()
    assert threading.active_count() <= before


def test_nothing_available_names_interpreter_and_platform(
    no_modules: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(PixiPackError) as info:
        zstd.select_backend()
    message = str(info.value)
    assert message.startswith("cannot read .conda packages: no zstd decompressor for CPython ")
    assert f"{sys.version_info[0]}.{sys.version_info[1]}" in message
    assert sys.platform in message
    assert "`zstd` command on PATH" in message
    assert "the zipapp bundles" not in message  # a source checkout bundles nothing


def test_error_lists_bundled_targets(
    no_modules: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    zipapp = tmp_path / "fake.pyz"
    with zipfile.ZipFile(zipapp, "w") as archive:
        for target in ("cp39-manylinux-x86_64", "cp313-manylinux-x86_64", "cp310-macosx-arm64"):
            archive.writestr(f"_pixi_pack_native/{target}/zstandard/__init__.py", "")
        archive.writestr("_pixi_pack_native/LICENSE.zstandard", "")
    monkeypatch.setattr(_vendor_loader, "running_zipapp", lambda: zipapp)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(
        PixiPackError, match=r"bundles zstandard for CPython 3\.9-3\.13 on macosx-arm64, manylinux-x86_64"
    ):
        zstd.select_backend()


@pytest.mark.parametrize(
    ("platform", "machine", "glibc", "expected"),
    [
        ("linux", "x86_64", (2, 36), "manylinux-x86_64"),
        ("linux", "aarch64", (2, 17), "manylinux-aarch64"),
        ("linux", "x86_64", None, "musllinux-x86_64"),
        ("linux", "arm64", None, "musllinux-aarch64"),
        ("linux", "x86_64", (2, 12), None),
        ("linux", "ppc64le", (2, 36), None),
        ("darwin", "arm64", None, "macosx-arm64"),
        ("darwin", "x86_64", None, "macosx-x86_64"),
        ("win32", "AMD64", None, "win-amd64"),
        ("win32", "ARM64", None, None),
        ("freebsd14", "amd64", None, None),
    ],
)
def test_running_target(
    monkeypatch: pytest.MonkeyPatch,
    platform: str,
    machine: str,
    glibc: tuple[int, int] | None,
    expected: str | None,
) -> None:
    import platform as platform_module

    monkeypatch.setattr(sys, "platform", platform)
    monkeypatch.setattr(platform_module, "machine", lambda: machine)
    monkeypatch.setattr(_vendor_loader, "glibc_version", lambda: glibc)
    python_tag = f"cp{sys.version_info[0]}{sys.version_info[1]}"
    assert _vendor_loader.running_target() == (None if expected is None else f"{python_tag}-{expected}")


def test_glibc_version_here() -> None:
    if not sys.platform.startswith("linux"):
        pytest.skip("Linux only")
    from pixi_pack.platforms import glibc_version

    version = glibc_version()
    assert version is None or version >= (2, 17)


@pytest.fixture
def native_root(tmp_path: Path) -> Iterator[Path]:
    """A ``_pixi_pack_native`` folder holding the installed zstandard as this interpreter's build."""
    target = _vendor_loader.running_target()
    if target is None:
        pytest.skip("no bundled target for this interpreter")
    installed = Path(zstandard.__file__).parent
    package = tmp_path / "native" / target / "zstandard"
    package.mkdir(parents=True)
    shutil.copy2(installed / "__init__.py", package)
    for extension in installed.glob("backend_c.*"):
        shutil.copy2(extension, package)
    yield tmp_path / "native"


def _run_isolated(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter, so the C extension loads once and from where we say."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PYTHONPATH": str(Path(zstd.__file__).parents[1])},
    )


def test_load_bundled_zstandard(native_root: Path) -> None:
    code = """
        import io, sys
        from pathlib import Path
        from pixi_pack.io import _vendor_loader
        module = _vendor_loader.load_bundled_zstandard(Path(sys.argv[1]))
        assert module is sys.modules["_pixi_pack_zstandard"]
        assert "zstandard" not in sys.modules  # a zstandard the process imports stays its own
        print(module.__file__)
        print(sys.modules["_pixi_pack_zstandard.backend_c"].__file__)
        data = module.ZstdCompressor().compress(b"bundled")
        print(module.ZstdDecompressor().decompress(data).decode())
    """
    result = _run_isolated(code, str(native_root))
    assert result.returncode == 0, result.stderr
    init, extension, text = result.stdout.splitlines()
    assert init.startswith(str(native_root))
    assert extension.startswith(str(native_root))
    assert text == "bundled"


def test_broken_bundled_build_raises(native_root: Path) -> None:
    for extension in native_root.glob("*/zstandard/backend_c.*"):
        extension.write_bytes(b"\x7fELF not really")
    code = """
        import sys
        from pathlib import Path
        from pixi_pack.io import _vendor_loader
        try:
            _vendor_loader.load_bundled_zstandard(Path(sys.argv[1]))
        except ImportError as exc:
            print(exc)
        assert not [name for name in sys.modules if "zstandard" in name]
    """
    result = _run_isolated(code, str(native_root))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"the bundled zstandard for {_vendor_loader.running_target()} in ")
    assert "would not load: " in result.stdout


def test_broken_bundled_build_is_named_in_the_error(
    no_modules: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def broken() -> None:
        raise ImportError("the bundled zstandard for cp39-musllinux-x86_64 in /x would not load: denied")

    monkeypatch.setattr(_vendor_loader, "load_bundled_zstandard", broken)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(
        PixiPackError, match=r"; the bundled zstandard for cp39-musllinux-x86_64 .* denied \(if"
    ):
        zstd.select_backend()


def test_no_bundled_build_for_this_target(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, _vendor_loader.BUNDLED_MODULE, raising=False)
    (tmp_path / "cp27-manylinux-x86_64" / "zstandard").mkdir(parents=True)
    assert _vendor_loader.load_bundled_zstandard(tmp_path) is None
    assert _vendor_loader.bundled_targets() == []  # not running from a zipapp


def test_backend_is_chosen_once_when_threads_race(monkeypatch: pytest.MonkeyPatch) -> None:
    """Installs ask for the backend from a thread pool; a half-loaded choice must never be seen."""
    calls: list[int] = []
    chosen = zstd.Backend("slow", lambda source: source)

    def slow_select() -> zstd.Backend:
        calls.append(threading.get_ident())
        time.sleep(0.05)
        return chosen

    decompressor = zstd.Decompressor(slow_select)
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda _: decompressor.backend(), range(8)))
    assert len(calls) == 1
    assert all(r is chosen for r in results)
