"""Load the zstandard C extension that the zipapp bundles for the running interpreter.

zstandard has no abi3 build, and one site-packages cannot hold every build we ship: macOS x86_64 and
arm64 (and musl and glibc Linux before 3.11) use the same file names. So ``build_zipapp.py`` puts each
build's ``zstandard`` package in a folder of its own, ``_pixi_pack_native/<target>/zstandard``, beside
(not inside) the site-packages that shiv extracts at start-up. Only the build this interpreter needs is
extracted, on first use, next to shiv's copy of site-packages (so it goes wherever SHIV_ROOT goes), and
imported from there. A source checkout or a pip install has no bundled builds.
"""

from __future__ import annotations

import contextlib
import importlib.machinery
import importlib.util
import shutil
import sys
import tempfile
import zipfile
from pathlib import Path
from types import ModuleType

from pixi_pack.platforms import (
    BUNDLED_LINUX_ARCHES,
    BUNDLED_MACOS_ARCHES,
    BUNDLED_WINDOWS_ARCHES,
    glibc_version,
)

NATIVE_DIR = "_pixi_pack_native"
"""Name of the folder beside ``pixi_pack`` in the zipapp's site-packages."""

BUNDLED_MODULE = "_pixi_pack_zstandard"
"""The name the bundled build is imported under: a ``zstandard`` the process imports stays its own."""

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
        arch = BUNDLED_LINUX_ARCHES.get(machine)
    elif sys.platform == "darwin":
        system, arch = "macosx", BUNDLED_MACOS_ARCHES.get(machine)
    elif sys.platform == "win32":
        system, arch = "win", BUNDLED_WINDOWS_ARCHES.get(machine)
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


def _free_threaded() -> bool:
    import sysconfig

    return bool(sysconfig.get_config_var("Py_GIL_DISABLED"))


def running_zipapp() -> Path | None:
    """The zipapp this process runs from, if any: shiv's bootstrap is imported from it."""
    bootstrap = sys.modules.get("_bootstrap")
    archive = getattr(getattr(bootstrap, "__loader__", None), "archive", None)
    if not isinstance(archive, str):
        return None
    path = Path(archive)
    return path if path.is_file() else None


def bundled_targets(zipapp: Path | None = None) -> list[str]:
    """The builds the zipapp carries (empty outside a zipapp)."""
    zipapp = zipapp or running_zipapp()
    if zipapp is None:
        return []
    with zipfile.ZipFile(zipapp) as archive:
        names = archive.namelist()
    return sorted({n.split("/")[1] for n in names if n.startswith(f"{NATIVE_DIR}/") and n.count("/") >= 3})


def load_bundled_zstandard(native_root: Path | None = None) -> ModuleType | None:
    """Import the bundled ``zstandard`` for this interpreter; ``None`` if there is none for it.

    ``native_root`` holds the builds as ``<target>/zstandard``; by default, the one build this
    interpreter needs is extracted from the running zipapp. A build that is there but won't load (a
    glibc too old, a foreign libc, a ``noexec`` temporary folder) raises :class:`ImportError` saying
    why, and leaves nothing of it in ``sys.modules``. It is imported as :data:`BUNDLED_MODULE`, never
    as ``zstandard``.
    """
    if BUNDLED_MODULE in sys.modules:
        return sys.modules[BUNDLED_MODULE]
    target = running_target()
    if target is None:
        return None
    root = native_root or _extract_from_zipapp(target)
    if root is None:
        return None
    package = root / target / "zstandard"
    init = package / "__init__.py"
    if not init.is_file() or not _has_loadable_extension(package):
        return None
    spec = importlib.util.spec_from_file_location(
        BUNDLED_MODULE, init, submodule_search_locations=[str(package)]
    )
    if spec is None or spec.loader is None:
        return None
    module = importlib.util.module_from_spec(spec)
    # Its relative imports (``from .backend_c import *``) find it here while it runs.
    sys.modules[BUNDLED_MODULE] = module
    try:
        spec.loader.exec_module(module)
    except (ImportError, OSError) as exc:
        for name in [n for n in sys.modules if n == BUNDLED_MODULE or n.startswith(f"{BUNDLED_MODULE}.")]:
            del sys.modules[name]
        msg = f"the bundled zstandard for {target} in {package} would not load: {exc}"
        raise ImportError(msg) from exc
    return module


def _extract_from_zipapp(target: str) -> Path | None:
    """Extract ``target``'s build next to shiv's site-packages, once; returns the folder holding it.

    Concurrent first runs each extract to a temporary folder and rename it into place; the first
    rename wins and the others drop theirs.
    """
    zipapp = running_zipapp()
    if zipapp is None:
        return None
    root = Path(__file__).resolve().parents[3] / "native"  # <SHIV_ROOT>/<name>_<id>/native
    if (root / target / "zstandard" / "__init__.py").is_file():
        return root
    prefix = f"{NATIVE_DIR}/{target}/"
    try:
        with zipfile.ZipFile(zipapp) as archive:
            members = [info for info in archive.infolist() if info.filename.startswith(prefix)]
            if not members:
                return None
            root.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=f".{target}.", dir=root))
            try:
                for info in members:
                    destination = staging.joinpath(*info.filename[len(prefix) :].split("/"))
                    destination.parent.mkdir(parents=True, exist_ok=True)
                    destination.write_bytes(archive.read(info))
                with contextlib.suppress(OSError):
                    staging.rename(root / target)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
    except (OSError, zipfile.BadZipFile):
        return None
    return root


def _has_loadable_extension(package: Path) -> bool:
    """Whether the build's ``backend_c`` carries a file suffix this interpreter imports (not a debug build...)."""
    suffixes = importlib.machinery.EXTENSION_SUFFIXES
    return any((package / f"backend_c{suffix}").is_file() for suffix in suffixes)
