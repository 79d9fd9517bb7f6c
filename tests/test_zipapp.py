"""The zipapp as built by ``build_zipapp.py``: exact contents, reproducibility, and that it runs on every
CPython 3.9-3.13 found here with nothing but the standard library outside it.

The zipapp is built once per source state (a hash of the sources, the build script and the build
interpreter) into a cache under the temporary directory, and reused by the self-extracting tests.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
import zlib
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]
WHEEL_CACHE = Path(tempfile.gettempdir()) / "pixi-pack-test-zipapp" / "wheels"
"""Outside the work tree, so a fresh clone on the same machine (CI) doesn't download the wheels again."""
NATIVE = "_pixi_pack_native"
PYTHON_TAGS = ("cp39", "cp310", "cp311", "cp312", "cp313")
NATIVE_PLATFORMS = (
    "macosx-arm64",
    "macosx-x86_64",
    "manylinux-aarch64",
    "manylinux-x86_64",
    "musllinux-aarch64",
    "musllinux-x86_64",
    "win-amd64",
)
SITE_PACKAGES_TOP = {
    "_yaml",
    "certifi",
    "certifi-2026.10.19.post1.dist-info",
    "charset_normalizer",
    "charset_normalizer-3.5.3.dist-info",
    "idna",
    "idna-3.20.dist-info",
    "installer",
    "installer-0.7.0.dist-info",
    "pixi_pack",
    "pyyaml-6.0.3.dist-info",
    "requests",
    "requests-2.32.5.dist-info",
    "tomli",
    "tomli-2.5.0.dist-info",
    "urllib3",
    "urllib3-2.6.3.dist-info",
    "yaml",
}


def builder() -> ModuleType:
    """``build_zipapp.py``, imported from the repository root."""
    spec = importlib.util.spec_from_file_location("build_zipapp", ROOT / "build_zipapp.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _source_files() -> list[Path]:
    is_source = builder()._is_source
    files = [p for p in (ROOT / "pixi_pack").rglob("*") if p.is_file() and is_source(p.relative_to(ROOT))]
    return sorted(files)


def _source_key() -> str:
    import shiv

    digest = hashlib.sha256()
    for path in [ROOT / "build_zipapp.py", *_source_files()]:
        digest.update(path.relative_to(ROOT).as_posix().encode() + b"\0" + path.read_bytes())
    digest.update(f"{sys.version} {shiv.__version__} {zlib.ZLIB_RUNTIME_VERSION}".encode())
    return digest.hexdigest()[:16]


def build(output: Path) -> str:
    """Run ``build_zipapp.py`` as ``make zipapp`` does, writing ``output``; returns what it printed."""
    command = [
        sys.executable,
        str(ROOT / "build_zipapp.py"),
        "--output",
        str(output),
        "--cache",
        str(WHEEL_CACHE),
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    assert result.returncode == 0, f"build_zipapp.py failed:\n{result.stdout}{result.stderr}"
    return result.stdout


@functools.cache
def zipapp_path() -> Path:
    """The zipapp of the current sources, built at most once per source state."""
    cache = Path(tempfile.gettempdir()) / "pixi-pack-test-zipapp"
    target = cache / f"pixi-pack-{_source_key()}.pyz"
    if not target.is_file():
        cache.mkdir(exist_ok=True)
        for stale in cache.glob("pixi-pack-*.pyz"):
            if stale.stat().st_mtime < time.time() - 3600:  # another session may still use a fresh one
                stale.unlink(missing_ok=True)
        with tempfile.TemporaryDirectory(dir=cache) as work:
            build(Path(work) / "pixi-pack.pyz")
            os.replace(Path(work) / "pixi-pack.pyz", target)
    return target


@pytest.fixture(scope="session")
def zipapp() -> Path:
    return zipapp_path()


def _python_version(executable: Path) -> tuple[int, int] | None:
    result = subprocess.run(
        [str(executable), "-I", "-c", "import sys; print(*sys.version_info[:2])"],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        return None
    major, minor = result.stdout.split()
    return int(major), int(minor)


@functools.cache
def interpreters() -> tuple[tuple[str, Path], ...]:
    """(id, path) of every CPython >= 3.9 here: pyenv's versions and the system's python3."""
    versions = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    candidates = [(p.parents[1].name, p) for p in sorted(versions.glob("*/bin/python3"))]
    candidates.append(("system", Path("/usr/bin/python3")))
    found = []
    for name, path in candidates:
        version = _python_version(path) if path.is_file() else None
        if version is not None and version >= (3, 9):
            found.append((name, path))
    return tuple(found) or (("current", Path(sys.executable)),)


INTERPRETERS = [pytest.param(path, id=name) for name, path in interpreters()]


def clean_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """A bare environment (as ``env -i``) with a private SHIV_ROOT, so ~/.shiv is left alone."""
    return {"SHIV_ROOT": str(tmp_path / "shiv-root"), "LC_ALL": "C.UTF-8", **extra}


def test_file_list(zipapp: Path) -> None:
    with zipfile.ZipFile(zipapp) as archive:
        infos = archive.infolist()
    names = [info.filename for info in infos]
    assert names == [
        *sorted(n for n in names if n.startswith((f"{NATIVE}/", "site-packages/"))),
        "_bootstrap/__init__.py",
        "_bootstrap/environment.py",
        "_bootstrap/filelock.py",
        "_bootstrap/interpreter.py",
        "environment.json",
        "__main__.py",
    ]
    site = [n[len("site-packages/") :] for n in names if n.startswith("site-packages/")]
    assert {n.split("/")[0] for n in site} == SITE_PACKAGES_TOP
    native = sorted(n for n in names if n.startswith(NATIVE + "/"))
    expected_native = [f"{NATIVE}/LICENSE.zstandard"]
    for tag in PYTHON_TAGS:
        for platform in NATIVE_PLATFORMS:
            expected_native.append(f"{NATIVE}/{tag}-{platform}/zstandard/__init__.py")
            expected_native.append(f"{NATIVE}/{tag}-{platform}/zstandard/backend_c.{_suffix(tag, platform)}")
    assert native == sorted(expected_native)
    pixi_pack = sorted(n for n in names if n.startswith("site-packages/pixi_pack/"))
    assert pixi_pack == sorted(f"site-packages/{p.relative_to(ROOT).as_posix()}" for p in _source_files())
    compiled = [
        n for n in names if n.endswith((".so", ".pyd", ".pyc", ".dylib")) and not n.startswith(f"{NATIVE}/")
    ]
    assert compiled == []
    assert not [n for n in names if "__pycache__" in n or "backend_cffi" in n or "_cffi" in n]
    assert {(info.date_time, info.external_attr >> 16, info.create_system) for info in infos} == {
        ((1980, 1, 1, 6, 0, 0), 0o100644, 3)
    }


def _suffix(tag: str, platform: str) -> str:
    """The extension's file suffix in zstandard's wheel for this target."""
    version = tag[2:]
    if platform == "win-amd64":
        return f"{tag}-win_amd64.pyd"
    if platform.startswith("macosx"):
        return f"cpython-{version}-darwin.so"
    arch = platform.split("-")[1]
    libc = "musl" if platform.startswith("musllinux") and int(version) >= 311 else "gnu"
    return f"cpython-{version}-{arch}-linux-{libc}.so"


def test_natives_are_stripped(zipapp: Path) -> None:
    with zipfile.ZipFile(zipapp) as archive:
        sizes = {i.filename: i.file_size for i in archive.infolist() if "/backend_c." in i.filename}
        elf = [archive.read(n)[:4] for n in sizes if "linux" in n]
    assert len(sizes) == len(PYTHON_TAGS) * len(NATIVE_PLATFORMS)
    assert max(sizes.values()) < 1_500_000
    assert set(elf) == {b"\x7fELF"}


def test_reproducible(zipapp: Path, tmp_path: Path) -> None:
    """A second build is byte-identical; the digest is printed as sha256sum does and kept in SHA256SUMS."""
    again = tmp_path / "dist" / "pixi-pack.pyz"
    printed = build(again)
    assert again.read_bytes() == zipapp.read_bytes()
    digest = hashlib.sha256(again.read_bytes()).hexdigest()
    assert printed == f"{digest}  pixi-pack.pyz\n"
    assert (tmp_path / "dist" / "SHA256SUMS").read_text() == f"{digest}  pixi-pack.pyz\n"
    check = subprocess.run(
        ["sha256sum", "--check", "SHA256SUMS"], cwd=tmp_path / "dist", capture_output=True, check=False
    )
    assert check.returncode == 0


@pytest.mark.parametrize("python", INTERPRETERS)
def test_version_in_bare_interpreter(python: Path, zipapp: Path, tmp_path: Path) -> None:
    import pixi_pack

    no_zstandard = subprocess.run(
        [str(python), "-I", "-c", "import zstandard"], env=clean_env(tmp_path), check=False
    )
    assert no_zstandard.returncode != 0, "zstandard is importable outside the zipapp: the test proves nothing"
    result = subprocess.run(
        [str(python), "-I", str(zipapp), "--version"],
        env=clean_env(tmp_path),
        capture_output=True,
        text=True,
        check=False,
    )
    assert (result.returncode, result.stdout, result.stderr) == (
        0,
        f"pixi-pack {pixi_pack.__version__}\n",
        "",
    )
    assert list((tmp_path / "shiv-root").iterdir())  # extracted there, not in ~/.shiv


ZSTD_PROBE = """
import io, sys
from pixi_pack.io import zstd
decompressor = zstd.Decompressor()
backend = decompressor.backend()
frame = bytes.fromhex("28b52ffd04585900006865726520616761696e0a7f7c14ae")  # zstd of "here again\\n"
print(backend.name)
print(sys.modules["_pixi_pack_zstandard.backend_c"].__file__)
print(decompressor.open(io.BytesIO(frame)).read().decode(), end="")
"""


@pytest.mark.parametrize("python", INTERPRETERS)
def test_bundled_zstandard_loads(python: Path, zipapp: Path, tmp_path: Path) -> None:
    """Each interpreter gets its own bundled build, from the zipapp's per-target folder."""
    version = _python_version(python)
    assert version is not None
    env = clean_env(tmp_path, SHIV_INTERPRETER="1")
    for _ in range(2):  # extracted by the first run, reused by the second
        command = [str(python), "-I", str(zipapp), "-c", ZSTD_PROBE]
        result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        assert result.returncode == 0, result.stderr
    name, extension, text = result.stdout.splitlines()
    assert name == "zstandard (bundled)"
    target = f"cp{version[0]}{version[1]}-manylinux-x86_64"
    assert f"/native/{target}/zstandard/backend_c." in extension
    assert text == "here again"
    extracted = list((tmp_path / "shiv-root").glob("*/native/*"))
    assert [p.name for p in extracted] == [target]  # only the build this interpreter needs


def test_runs_as_pixi_unpack(zipapp: Path, tmp_path: Path) -> None:
    renamed = tmp_path / "pixi-unpack.pyz"
    shutil.copyfile(zipapp, renamed)
    result = subprocess.run(
        [sys.executable, "-I", str(renamed), "--help"],
        env=clean_env(tmp_path),
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: pixi-unpack")


def test_strip_elf(tmp_path: Path) -> None:
    """The stripped extension still loads, and keeps every byte the loader maps."""
    import zstandard

    installed = Path(zstandard.__file__).parent
    extension = next(installed.glob("backend_c.*"))
    data = extension.read_bytes()
    stripped = builder().strip_elf(data)
    assert 0 < len(stripped) < len(data)
    assert stripped[:0x28] == data[:0x28]
    assert stripped[0x28:0x30] == bytes(8)  # no section headers
    assert stripped[0x3A:0x40] == bytes(6)
    assert stripped[0x40:] == data[0x40 : len(stripped)]
    assert builder().strip_elf(stripped) == stripped
    package = tmp_path / "zstandard"
    package.mkdir()
    shutil.copyfile(installed / "__init__.py", package / "__init__.py")
    (package / extension.name).write_bytes(stripped)
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import zstandard; print(zstandard.__file__); "
        "print(zstandard.ZstdDecompressor().decompress(zstandard.ZstdCompressor().compress(b'ok')))"
    )
    result = subprocess.run(
        [sys.executable, "-I", "-c", code, str(tmp_path)], capture_output=True, text=True, check=False
    )
    assert (result.returncode, result.stdout) == (0, f"{package / '__init__.py'}\nb'ok'\n"), result.stderr


def test_strip_elf_leaves_other_files() -> None:
    strip_elf = builder().strip_elf
    for data in (b"", b"MZ\x90\x00 a PE file", b"\xcf\xfa\xed\xfe mach-o", b"\x7fELF\x01 32-bit"):
        assert strip_elf(data) == data


def test_pins_cover_every_target() -> None:
    module = builder()
    pins = module.pinned_wheels()
    targets = sorted(module.native_target(name) for name in pins if name.startswith("zstandard-"))
    assert targets == sorted(f"{t}-{p}" for t in PYTHON_TAGS for p in NATIVE_PLATFORMS)
    assert all(re.fullmatch(r"[0-9a-f]{64}", digest) for digest in pins.values())


_OLD_PYTHONS = sorted(Path.home().glob(".pyenv/versions/[23].[0-8].*/bin/python"))


@pytest.mark.skipif(not _OLD_PYTHONS, reason="no Python older than 3.9 under ~/.pyenv/versions")
@pytest.mark.parametrize("python", _OLD_PYTHONS, ids=lambda p: p.parent.parent.name)
def test_an_old_python_gets_one_clear_line(python: Path) -> None:
    result = subprocess.run(
        [str(python), str(zipapp_path()), "pack", "--help"], capture_output=True, text=True, check=False
    )
    version = python.parent.parent.name.rsplit(".", 1)[0]
    assert result.returncode == 1
    assert result.stderr == (
        f"error: pixi-pack needs Python >= 3.9, and {python} is Python {version}: run it with a newer python\n"
    )
