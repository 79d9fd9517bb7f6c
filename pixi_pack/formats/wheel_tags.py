"""Wheel file names and tags: which wheels fit a conda platform and a Python version."""

from __future__ import annotations

import os
import platform as host
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pixi_pack.formats.channel import normalize_project_name
from pixi_pack.platforms import (
    WHEEL_LINUX_ARCHES,
    WHEEL_MACOS_ARCHES,
    WHEEL_WINDOWS_PLATFORMS,
    python_major_minor,
)

_WHEEL_NAME = re.compile(
    r"^(?P<name>[^-]+)-(?P<version>[^-]+)(?:-(?P<build>\d[^-]*))?-(?P<py>[^-]+)-(?P<abi>[^-]+)-(?P<plat>[^-]+)\.whl$"
)

_LEGACY_MANYLINUX = {"manylinux1": (2, 5), "manylinux2010": (2, 12), "manylinux2014": (2, 17)}


@dataclass(frozen=True)
class WheelName:
    """What a wheel's file name says (PEP 427), tag sets expanded."""

    name: str
    """The project name, normalized (PEP 503): ``my-pkg``."""
    version: str
    python_tags: tuple[str, ...]
    abi_tags: tuple[str, ...]
    platform_tags: tuple[str, ...]


def parse_wheel_name(file_name: str) -> WheelName | None:
    """``my_pkg-1.0-py3-none-any.whl`` -> its parts; ``None`` if it is not a wheel file name."""
    match = _WHEEL_NAME.match(file_name)
    if match is None:
        return None
    return WheelName(
        normalize_project_name(match["name"]),
        match["version"],
        tuple(match["py"].split(".")),
        tuple(match["abi"].split(".")),
        tuple(match["plat"].split(".")),
    )


@dataclass(frozen=True)
class Target:
    """What a wheel must fit."""

    platform: str
    """The pack's conda subdir."""
    python: tuple[int, int]
    """The environment's Python version, from its conda record."""
    glibc: tuple[int, int] | None = None
    """The machine's glibc, for manylinux tags; ``None`` when unknown (or musl)."""
    macos: tuple[int, int] | None = None
    """The machine's macOS version, for macosx tags; ``None`` when unknown."""


def incompatibility(wheel: WheelName, target: Target) -> str | None:
    """Why ``wheel`` cannot be installed for ``target``, or ``None`` when one of its tags fits."""
    major, minor = target.python
    if not any(_python_fits(py, abi, target.python) for py in wheel.python_tags for abi in wheel.abi_tags):
        tags = ", ".join(f"{py}-{abi}" for py in wheel.python_tags for abi in wheel.abi_tags)
        return f"it is built for {tags}, the environment has CPython {major}.{minor}"
    problems = [_platform_problem(tag, target) for tag in wheel.platform_tags]
    if any(problem is None for problem in problems):
        return None
    specific = [p for p in problems if p]
    if specific:
        return specific[0]
    return f"it is built for {', '.join(wheel.platform_tags)}, the pack is for {target.platform}"


def _python_fits(python_tag: str, abi: str, version: tuple[int, int]) -> bool:
    """The rules of packaging.tags for CPython: ``py3``/``py3X`` (X <= minor), ``cp3X`` + abi."""
    match = re.fullmatch(r"(py|cp)(\d)(\d*)", python_tag)
    if match is None or int(match[2]) != version[0]:
        return False
    implementation, tag_minor = match[1], int(match[3]) if match[3] else None
    if abi == "none":
        if implementation == "py":
            return tag_minor is None or tag_minor <= version[1]
        return tag_minor == version[1]
    if implementation != "cp" or tag_minor is None:
        return False
    if abi == "abi3":
        return tag_minor <= version[1]
    own_abi = f"cp{version[0]}{version[1]}"
    return tag_minor == version[1] and (abi == own_abi or (abi == f"{own_abi}m" and version < (3, 8)))


def _platform_problem(tag: str, target: Target) -> str | None:
    """``None`` when the platform tag fits; ``""`` when it is for another platform; else why not."""
    if tag == "any":
        return None
    if target.platform in WHEEL_WINDOWS_PLATFORMS:
        return None if tag == WHEEL_WINDOWS_PLATFORMS[target.platform] else ""
    for arch in WHEEL_LINUX_ARCHES.get(target.platform, ()):
        if tag == f"linux_{arch}":
            return None
        if tag.endswith(f"_{arch}"):
            return _linux_problem(tag[: -len(arch) - 1], target.glibc)
    for arch in WHEEL_MACOS_ARCHES.get(target.platform, ()):
        match = re.fullmatch(rf"macosx_(\d+)_(\d+)_{arch}", tag)
        if match is not None:
            needed = (int(match[1]), int(match[2]))
            if target.macos is not None and needed > target.macos:
                return f"it needs macOS >= {_dotted(needed)}, this machine has {_dotted(target.macos)}"
            return None
    return ""


def _linux_problem(libc_tag: str, glibc: tuple[int, int] | None) -> str | None:
    needed = _LEGACY_MANYLINUX.get(libc_tag)
    match = re.fullmatch(r"(many|musl)linux_(\d+)_(\d+)", libc_tag)
    if needed is None and match is None:
        return ""
    if match is not None and match[1] == "musl":
        # conda-forge's python links glibc; a musl wheel only has a chance where glibc is absent.
        return None if glibc is None else "it is built for musl libc, this machine uses glibc"
    if needed is None and match is not None:
        needed = (int(match[2]), int(match[3]))
    if glibc is not None and needed is not None and needed > glibc:
        return f"it needs glibc >= {_dotted(needed)}, this machine has glibc {_dotted(glibc)}"
    return None


def _dotted(version: tuple[int, int]) -> str:
    return f"{version[0]}.{version[1]}"


def host_target(platform: str, python: tuple[int, int]) -> Target:
    """The target on this machine: its glibc or macOS version when the pack is for this system."""
    glibc = macos = None
    if platform.startswith("linux-") and sys.platform.startswith("linux"):
        try:
            found = os.confstr("CS_GNU_LIBC_VERSION") or ""
        except (ValueError, OSError):
            found = ""
        match = re.fullmatch(r"glibc (\d+)\.(\d+).*", found)
        glibc = (int(match[1]), int(match[2])) if match else None
    elif platform.startswith("osx-") and sys.platform == "darwin":
        match = re.match(r"(\d+)\.(\d+)", host.mac_ver()[0] + ".0")
        macos = (int(match[1]), int(match[2])) if match else None
    return Target(platform, python, glibc, macos)


def python_version(record: Mapping[str, Any]) -> tuple[int, int] | None:
    """``(3, 12)`` from a python conda record's version ``3.12.1``; ``None`` if it does not say."""
    return python_major_minor(str(record.get("version", "")))
