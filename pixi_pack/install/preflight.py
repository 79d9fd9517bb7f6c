"""Checks pixi-unpack makes before it writes anything: does this host have what the packages need
(virtual packages), and does the output's file system have room for them.

Virtual packages describe the system (``__glibc``, ``__osx``, ``__linux``, ``__unix``, ``__win``,
``__archspec``, ``__cuda``); no pack carries them. A package that depends on ``__glibc >=2.28`` fails at
run time on a glibc 2.17 host, long after the unpack "succeeded": it is refused now, with what the
package needs and what this host has. ``__cuda`` only warns, as the driver is often absent where the
environment is unpacked (a build node, a container image).
"""

from __future__ import annotations

import logging
import os
import platform as stdlib_platform
import re
import shutil
import sys
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from pixi_pack.errors import PixiPackError
from pixi_pack.formats.matchspec import is_virtual, parse_spec
from pixi_pack.formats.package_info import load_package
from pixi_pack.io.zstd import Decompressor
from pixi_pack.models import PackageSource
from pixi_pack.platforms import glibc_version
from pixi_pack.progress import human_bytes

logger = logging.getLogger("pixi_pack")

#: Virtual packages whose absence or version is only worth a warning.
_WARN_ONLY = {"__cuda"}


class PreflightError(PixiPackError):
    """This host cannot run the environment, or the output has no room for it; nothing was written."""


@dataclass(frozen=True)
class Host:
    """The virtual packages of this machine, as conda and rattler detect them: name -> (version, build)."""

    packages: Mapping[str, tuple[str, str]] = field(default_factory=dict)

    def describe(self, name: str) -> str:
        found = self.packages.get(name)
        if found is None:
            return f"this host has no {name.lstrip('_')}"
        return f"this host has {name.lstrip('_')} {found[0]}"


def this_host() -> Host:
    """The virtual packages of the running machine."""
    found: dict[str, tuple[str, str]] = {}
    machine = stdlib_platform.machine().lower() or "unknown"
    found["__archspec"] = ("1", machine)
    if sys.platform.startswith("linux"):
        found["__unix"] = ("0", "0")
        found["__linux"] = (_leading_version(stdlib_platform.release()) or "0", "0")
        glibc = glibc_version()
        if glibc is not None:
            found["__glibc"] = (f"{glibc[0]}.{glibc[1]}", "0")
    elif sys.platform == "darwin":
        found["__unix"] = ("0", "0")
        found["__osx"] = (_leading_version(stdlib_platform.mac_ver()[0]) or "0", "0")
    elif sys.platform in ("win32", "cygwin"):
        found["__win"] = ("0", "0")
    return Host(found)


def _leading_version(text: str) -> str | None:
    match = re.match(r"\d+(?:\.\d+)*", text)
    return match.group(0) if match else None


def check_virtual_packages(sources: Sequence[PackageSource], host: Host) -> None:
    """Refuse the pack if a package depends on a virtual package this host lacks or has too old.

    Every unmet requirement is named; ``__cuda`` and virtual packages this check does not know only warn.
    """
    problems = []
    for source in sources:
        dist = f"{source.record.get('name')}-{source.record.get('version')}-{source.record.get('build')}"
        for text in source.record.get("depends") or []:
            try:
                spec = parse_spec(str(text))
            except PixiPackError:
                continue  # install reports malformed specs as rattler does: not here
            if not is_virtual(spec.name):
                continue
            found = host.packages.get(spec.name)
            record = None if found is None else {"name": spec.name, "version": found[0], "build": found[1]}
            if record is not None and spec.matches(record):
                continue
            if spec.name in _WARN_ONLY or spec.name not in _KNOWN:
                logger.warning(
                    "%s needs %s, which cannot be checked here: make sure the host has it", dist, text
                )
                continue
            if spec.name == "__archspec" and record is not None:
                logger.warning(
                    "%s needs %s; %s: make sure it runs there", dist, text, host.describe(spec.name)
                )
                continue
            problems.append(f"{dist} needs {text}, and {host.describe(spec.name)}")
    if problems:
        msg = "this host cannot run the environment: " + "; ".join(problems)
        msg += " (nothing was written; unpack on a matching host, or pass --ignore-virtual-packages)"
        raise PreflightError(msg)


_KNOWN = {"__glibc", "__linux", "__osx", "__unix", "__win", "__archspec"}


def installed_size(
    sources: Sequence[PackageSource], *, zstd: Decompressor, wheel_sizes: Callable[[], int]
) -> int:
    """The bytes the environment will take: every package's ``paths.json`` sizes, and the wheels'."""

    def size(source: PackageSource) -> int:
        try:
            package = load_package(source, zstd=zstd)
        except PixiPackError:
            return 0  # not verified yet: the install says what is wrong with it, hash first
        return sum(e.size or 0 for e in package.entries)

    with ThreadPoolExecutor(
        max_workers=min(4, os.cpu_count() or 1), thread_name_prefix="pixi-preflight"
    ) as pool:
        return sum(pool.map(size, sources)) + wheel_sizes()


#: Room kept free beyond the files' sizes: folders, conda-meta, the file system's own blocks.
_MARGIN = 1.05
#: Free space above this many times the packed size needs no closer look: conda packages expand by
#: 2-6x. Below it, every package's ``info/`` is read to add up its ``paths.json`` sizes.
PLENTY = 20


def check_free_space(output_dir: Path, packed: int, needed: Callable[[], int]) -> None:
    """Refuse when the file system of ``output_dir`` has less free space than the environment needs.

    ``packed`` is the packages' size in the pack; ``needed()`` their installed size, asked for only
    when the free space is not plainly enough (reading it costs a pass over every package's ``info/``).
    """
    try:
        free = shutil.disk_usage(output_dir).free
    except OSError as exc:
        logger.debug("could not tell the free space of %s: %s", output_dir, exc)
        return
    if free >= packed * PLENTY:
        return
    size = needed()
    if free < size * _MARGIN:
        msg = (
            f"the environment needs {human_bytes(size)}, and {output_dir} has {human_bytes(free)} free: "
            f"free some space or unpack elsewhere (nothing was written)"
        )
        raise PreflightError(msg)
