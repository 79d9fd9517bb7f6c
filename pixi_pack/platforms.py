"""Conda subdirs and everything that differs between them, in one place."""

from __future__ import annotations

import os
import platform
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pixi_pack.errors import PixiPackError

KNOWN_SUBDIRS = (
    "noarch",
    "linux-32",
    "linux-64",
    "linux-aarch64",
    "linux-armv6l",
    "linux-armv7l",
    "linux-ppc64le",
    "linux-ppc64",
    "linux-s390x",
    "linux-riscv64",
    "osx-64",
    "osx-arm64",
    "win-32",
    "win-64",
    "win-arm64",
    "emscripten-wasm32",
    "wasi-wasm32",
    "zos-z",
)

_MACHINES = {
    "x86_64": "64",
    "amd64": "64",
    "i386": "32",
    "i686": "32",
    "x86": "32",
    "aarch64": "aarch64",
    "arm64": "arm64",
    "ppc64le": "ppc64le",
    "ppc64": "ppc64",
    "s390x": "s390x",
    "riscv64": "riscv64",
    "armv6l": "armv6l",
    "armv7l": "armv7l",
}


ARCH_OF_SUBDIR = {
    "64": "x86_64",
    "32": "x86",
    "aarch64": "aarch64",
    "arm64": "arm64",
    "ppc64le": "ppc64le",
    "ppc64": "ppc64",
    "s390x": "s390x",
    "armv6l": "armv6l",
    "armv7l": "armv7l",
    "riscv64": "riscv64",
    "wasm32": "wasm32",
    "z": "z",
}
"""A subdir's architecture part -> the ``arch`` conda writes in ``index.json`` (``64`` -> ``x86_64``)."""

_SUFFIX_OF_ARCH = {arch: suffix for suffix, arch in ARCH_OF_SUBDIR.items()}


def subdir_of(platform_name: str, arch: str) -> str:
    """The subdir of an old ``index.json`` that has only ``platform`` and ``arch`` (``linux``, ``x86_64``)."""
    return f"{platform_name}-{_SUFFIX_OF_ARCH.get(arch, arch)}"


WHEEL_LINUX_ARCHES = {
    "linux-64": ("x86_64",),
    "linux-32": ("i686", "i386"),
    "linux-aarch64": ("aarch64",),
    "linux-ppc64le": ("ppc64le",),
    "linux-ppc64": ("ppc64",),
    "linux-s390x": ("s390x",),
    "linux-armv7l": ("armv7l",),
    "linux-armv6l": ("armv6l",),
    "linux-riscv64": ("riscv64",),
}
"""The architecture part of a manylinux/musllinux wheel tag, per subdir."""
WHEEL_MACOS_ARCHES = {
    "osx-64": ("x86_64", "intel", "universal2", "universal"),
    "osx-arm64": ("arm64", "universal2"),
}
"""The architecture part of a macOS wheel tag, per subdir."""
WHEEL_WINDOWS_PLATFORMS = {"win-64": "win_amd64", "win-32": "win32", "win-arm64": "win_arm64"}
"""The Windows wheel platform tag, per subdir."""

BUNDLED_LINUX_ARCHES = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "aarch64", "arm64": "aarch64"}
"""``platform.machine()`` -> the architecture of the zstandard build the zipapp bundles, on Linux."""
BUNDLED_MACOS_ARCHES = {"x86_64": "x86_64", "arm64": "arm64"}
"""The same on macOS."""
BUNDLED_WINDOWS_ARCHES = {"amd64": "amd64", "x86_64": "amd64"}
"""The same on Windows."""


def current_subdir() -> str:
    """The conda subdir of the running interpreter, e.g. ``linux-64`` or ``osx-arm64``."""
    machine = platform.machine().lower()
    if sys.platform.startswith("linux"):
        os_name = "linux"
    elif sys.platform == "darwin":
        os_name = "osx"
        machine = "arm64" if machine in ("arm64", "aarch64") else machine
    elif sys.platform in ("win32", "cygwin"):
        os_name = "win"
        machine = "arm64" if machine in ("arm64", "aarch64") else machine
    else:
        msg = f"unsupported operating system: {sys.platform}"
        raise PixiPackError(msg)
    arch = _MACHINES.get(machine)
    if os_name == "linux" and arch == "arm64":
        arch = "aarch64"
    subdir = f"{os_name}-{arch}"
    if arch is None or subdir not in KNOWN_SUBDIRS:
        msg = f"unsupported machine: {sys.platform} on {platform.machine()}"
        raise PixiPackError(msg)
    return subdir


def validate_subdir(subdir: str) -> str:
    """Return ``subdir`` if conda knows it, else raise an error listing the known ones."""
    if subdir not in KNOWN_SUBDIRS:
        msg = f"unknown platform: {subdir} (known: {', '.join(KNOWN_SUBDIRS)})"
        raise PixiPackError(msg)
    return subdir


def is_windows(subdir: str) -> bool:
    """Whether packages for ``subdir`` use the Windows prefix layout."""
    return subdir.startswith("win-")


def bin_dir(subdir: str) -> str:
    """Where executables go, relative to the prefix."""
    return "Scripts" if is_windows(subdir) else "bin"


def site_packages_dir(subdir: str, python_version: str) -> str:
    """The default site-packages folder, relative to the prefix, for a ``X.Y`` python version."""
    if is_windows(subdir):
        return "Lib/site-packages"
    return f"lib/python{python_version}/site-packages"


_VERSION_SEGMENTS = re.compile(r"[._-]")


def python_major_minor(version: str) -> tuple[int, int] | None:
    """``(X, Y)`` when the first two segments of a conda version are plain numbers (rattler's rule)."""
    version = version.lower().partition("+")[0]
    if "!" in version:
        version = version.split("!", 1)[1]
    segments = _VERSION_SEGMENTS.split(version)
    if len(segments) < 2 or not segments[0].isdigit() or not segments[1].isdigit():
        return None
    return int(segments[0]), int(segments[1])


@dataclass(frozen=True)
class PythonInfo:
    """Where the environment's python keeps things, relative to the prefix (rattler's ``PythonInfo``).

    Both noarch python conda packages and PyPI wheels are installed by this layout.
    """

    version: tuple[int, int]
    site_packages: str
    bin_dir: str
    executable: str
    """Relative path of the interpreter: ``bin/pythonX.Y`` (``python.exe`` on Windows)."""

    @classmethod
    def from_record(cls, record: Mapping[str, Any], subdir: str) -> PythonInfo | None:
        """The layout of the python conda package ``record``; ``None`` if its version has no X.Y form."""
        version = python_major_minor(str(record.get("version", "")))
        if version is None:
            return None
        x_y = f"{version[0]}.{version[1]}"
        site = str(record.get("python_site_packages_path") or site_packages_dir(subdir, x_y))
        executable = "python.exe" if is_windows(subdir) else f"bin/python{x_y}"
        return cls(version, site.strip("/"), bin_dir(subdir), executable)

    def target_path(self, path: str) -> str:
        """Where the path ``path`` of a noarch python package goes."""
        if path.startswith("site-packages/"):
            return f"{self.site_packages}/{path[len('site-packages/') :]}"
        if path.startswith("python-scripts/"):
            return f"{self.bin_dir}/{path[len('python-scripts/') :]}"
        return path


def path_entries(subdir: str) -> tuple[str, ...]:
    """Folders (relative to the prefix, "" for the prefix itself) that activation puts on PATH."""
    if is_windows(subdir):
        return ("", "Library/mingw-w64/bin", "Library/usr/bin", "Library/bin", "Scripts", "bin")
    return ("bin",)


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


# --- activation shells -----------------------------------------------------------------------------

#: Shell name -> (script extension, flavour of script); the names upstream's ``--shell`` accepts too.
SHELLS = {
    "bash": ("sh", "posix"),
    "zsh": ("sh", "posix"),
    "sh": ("sh", "posix"),
    "dash": ("sh", "posix"),
    "ksh": ("sh", "posix"),
    "fish": ("fish", "fish"),
    "cmd": ("bat", "cmd"),
    "powershell": ("ps1", "powershell"),
    "pwsh": ("ps1", "powershell"),
    "xonsh": ("xsh", "xonsh"),
    "nushell": ("nu", "nushell"),
    "nu": ("nu", "nushell"),
}


def default_shell(platform: str) -> str:
    """rattler_shell's default: cmd.exe on Windows, bash elsewhere."""
    return "cmd" if is_windows(platform) else "bash"
