"""Load the zstandard C extension that the zipapp bundles for the running interpreter.

zstandard has no abi3 build, and one site-packages cannot hold every build we ship: macOS x86_64 and
arm64 (and musl and glibc Linux before 3.11) use the same file names. So ``build_zipapp.py`` puts each
build's ``zstandard`` package in a folder of its own, ``_pixi_pack_native/<target>/zstandard``, and this
module imports the one that matches. A source checkout or a pip install has no such folder and gets
``None``.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

NATIVE_DIR = "_pixi_pack_native"
"""Name of the folder beside ``pixi_pack`` in the zipapp's site-packages."""

LINUX_ARCHES = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "aarch64", "arm64": "aarch64"}
MACOS_ARCHES = {"x86_64": "x86_64", "arm64": "arm64"}
WINDOWS_ARCHES = {"amd64": "amd64", "x86_64": "amd64"}

MIN_GLIBC = (2, 17)
"""manylinux2014, what every bundled glibc build asks for."""


def target_name(python_tag: str, system: str, arch: str) -> str:
    """The folder of one build: ``cp39-manylinux-x86_64``, ``cp313-macosx-arm64``, ``cp312-win-amd64``."""
    return f"{python_tag}-{system}-{arch}"


def running_target() -> str | None:
    """The folder name that fits this interpreter, or ``None`` when no bundled build can."""
    if sys.implementation.name != "cpython" or sys.maxsize <= 2**32 or _free_threaded():
        return None
    python_tag = f"cp{sys.version_info[0]}{sys.version_info[1]}"
    import platform

    machine = platform.machine().lower()
    if sys.platform.startswith("linux"):
        glibc = glibc_version()
        system = "musllinux" if glibc is None else "manylinux"
        if glibc is not None and glibc < MIN_GLIBC:
            return None
        arch = LINUX_ARCHES.get(machine)
    elif sys.platform == "darwin":
        system, arch = "macosx", MACOS_ARCHES.get(machine)
    elif sys.platform == "win32":
        system, arch = "win", WINDOWS_ARCHES.get(machine)
    else:
        return None
    return None if arch is None else target_name(python_tag, system, arch)


def describe_running() -> str:
    """``CPython 3.12.1 on linux x86_64 (glibc 2.36)``, for error messages."""
    import platform

    libc = ""
    if sys.platform.startswith("linux"):
        glibc = glibc_version()
        libc = " (musl or another non-glibc libc)" if glibc is None else f" (glibc {glibc[0]}.{glibc[1]})"
    threading = " free-threaded" if _free_threaded() else ""
    return (
        f"{platform.python_implementation()} {platform.python_version()}{threading} "
        f"on {sys.platform} {platform.machine()}{libc}"
    )


def glibc_version() -> tuple[int, int] | None:
    """The C library's version if it is glibc; ``None`` for musl and others (as ``packaging`` does)."""
    try:
        value = os.confstr("CS_GNU_LIBC_VERSION")
    except (AttributeError, OSError, ValueError):
        return None
    if not value or not value.startswith("glibc "):
        return None
    parts = value.split()[1].split(".")
    try:
        return int(parts[0]), int(parts[1])
    except (IndexError, ValueError):
        return None


def _free_threaded() -> bool:
    import sysconfig

    return bool(sysconfig.get_config_var("Py_GIL_DISABLED"))


def bundled_targets(native_root: Path | None = None) -> list[str]:
    """The builds this zipapp carries (empty outside the zipapp)."""
    root = native_root or default_native_root()
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / "zstandard").is_dir())


def default_native_root() -> Path:
    return Path(__file__).resolve().parent.parent / NATIVE_DIR


def load_bundled_zstandard(native_root: Path | None = None) -> ModuleType | None:
    """Import the bundled ``zstandard`` for this interpreter; ``None`` if there is none or it won't load.

    A build that is there but fails to load (a glibc too old, a foreign libc) counts as absent, so the
    caller can go on to the next way of decompressing.
    """
    root = native_root or default_native_root()
    if "zstandard" in sys.modules:
        loaded = sys.modules["zstandard"]
        origin = getattr(loaded, "__file__", None) or ""
        return loaded if origin.startswith(str(root)) else None
    target = running_target()
    if target is None:
        return None
    package = root / target / "zstandard"
    init = package / "__init__.py"
    if not init.is_file() or not _has_loadable_extension(package):
        return None
    spec = importlib.util.spec_from_file_location(
        "zstandard", init, submodule_search_locations=[str(package)]
    )
    if spec is None or spec.loader is None:
        return None
    module = importlib.util.module_from_spec(spec)
    sys.modules["zstandard"] = module
    try:
        spec.loader.exec_module(module)
    except (ImportError, OSError):
        for name in [n for n in sys.modules if n == "zstandard" or n.startswith("zstandard.")]:
            del sys.modules[name]
        return None
    return module


def _has_loadable_extension(package: Path) -> bool:
    """Whether the build's ``backend_c`` carries a file suffix this interpreter imports (not a debug build...)."""
    suffixes = importlib.machinery.EXTENSION_SUFFIXES
    return any((package / f"backend_c{suffix}").is_file() for suffix in suffixes)
