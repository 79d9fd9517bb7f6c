"""Write pixi.lock files (format v4 to v7) that point at packages built by the tests.

The writers follow rattler_lock's serializers: v6/v7 key conda records by ``conda: <location>`` and leave
out name, version, build, build_number, subdir and noarch when the location already gives them; v4/v5
write ``kind: conda|pypi`` records with ``url:`` (PyPI also ``path:``; rattler reads conda records of
v4/v5 only with a URL, so the v4/v5 writers refuse a plain path there). A location is whatever
string the test chooses: an http(s) URL, a ``file://`` URL, an absolute path or a path relative to the
lockfile's folder.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import yaml
from builders import BuiltPackage, BuiltWheel

from pixi_pack.platforms import KNOWN_SUBDIRS

Environments = Mapping[str, Mapping[str, Sequence["LockEntry"]]]
"""environment name -> platform -> entries, in the order the lockfile lists them."""


@dataclass(frozen=True)
class CondaEntry:
    """A conda package as a lockfile locks it."""

    location: str
    """URL or path written after ``conda:`` (or ``url:``/``path:`` in v4/v5)."""
    record: Mapping[str, Any]
    """The repodata record (name, version, build, subdir, sha256, md5, depends, ...)."""
    explicit: bool = False
    """Write name, version, build, build_number and subdir even when the location gives them."""
    package: BuiltPackage | None = field(default=None, compare=False)
    """The archive, when the entry was made from one."""


@dataclass(frozen=True)
class PypiEntry:
    """A PyPI distribution as a lockfile locks it."""

    location: str
    """URL or path written after ``pypi:`` (``direct+https://...`` allowed)."""
    name: str
    version: str
    sha256: str | None = None
    requires_dist: tuple[str, ...] = ()
    requires_python: str | None = None


LockEntry = Union[CondaEntry, PypiEntry]


def conda(package: BuiltPackage, channel_url: str, *, explicit: bool = False) -> CondaEntry:
    """The entry of ``package`` served from a channel laid out by ``write_channel`` at ``channel_url``."""
    return CondaEntry(package.url(channel_url), dict(package.record), explicit, package)


def conda_at(package: BuiltPackage, location: str | Path, *, explicit: bool = False) -> CondaEntry:
    """The entry of ``package`` at any location (relative path, absolute path, ``file://`` URL...)."""
    return CondaEntry(str(location), dict(package.record), explicit, package)


def pypi(wheel: BuiltWheel, location: str | Path, *, with_hash: bool = True) -> PypiEntry:
    """The entry of ``wheel`` at ``location`` (URL or path), with its sha256 unless ``with_hash=False``."""
    sha256 = wheel.sha256 if with_hash else None
    return PypiEntry(
        str(location), wheel.name, wheel.version, sha256, wheel.requires_dist, wheel.requires_python
    )


def write_lock_v7(
    path: Path,
    environments: Environments,
    channels: Sequence[str],
    *,
    indexes: Sequence[str] | None = None,
) -> Path:
    """Write a format-7 pixi.lock (v6 plus a top-level ``platforms:`` list)."""
    return write_lock(path, environments, channels, version=7, indexes=indexes)


def write_lock_v6(
    path: Path,
    environments: Environments,
    channels: Sequence[str],
    *,
    indexes: Sequence[str] | None = None,
) -> Path:
    """Write a format-6 pixi.lock."""
    return write_lock(path, environments, channels, version=6, indexes=indexes)


def write_lock_v5(path: Path, environments: Environments, channels: Sequence[str]) -> Path:
    """Write a format-5 pixi.lock (``kind:`` records)."""
    return write_lock(path, environments, channels, version=5)


def write_lock_v4(path: Path, environments: Environments, channels: Sequence[str]) -> Path:
    """Write a format-4 pixi.lock (same record layout as v5)."""
    return write_lock(path, environments, channels, version=4)


def write_lock(
    path: Path,
    environments: Environments,
    channels: Sequence[str],
    *,
    version: int = 6,
    indexes: Sequence[str] | None = None,
) -> Path:
    """Write a pixi.lock of format ``version`` (4 to 7); every environment uses ``channels``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(lock_text(environments, channels, version=version, indexes=indexes))
    return path


def lock_text(
    environments: Environments,
    channels: Sequence[str],
    *,
    version: int = 6,
    indexes: Sequence[str] | None = None,
) -> str:
    """The YAML text of a pixi.lock; see :func:`write_lock`."""
    if version not in (4, 5, 6, 7):
        msg = f"cannot write lockfile version {version}"
        raise ValueError(msg)
    document: dict[str, Any] = {"version": version}
    if version >= 7:
        platforms = sorted({platform for env in environments.values() for platform in env})
        document["platforms"] = [{"name": platform} for platform in platforms]
    document["environments"] = {
        name: _environment(platforms_, channels, indexes) for name, platforms_ in environments.items()
    }
    unique: dict[tuple[str, str], LockEntry] = {}
    for env in environments.values():
        for entries in env.values():
            for entry in entries:
                unique.setdefault((type(entry).__name__, entry.location), entry)
    ordered = sorted(unique.values(), key=lambda e: (_entry_name(e).lower(), e.location))
    write = _record_v6 if version >= 6 else _record_v5
    document["packages"] = [write(entry) for entry in ordered]
    return yaml.dump(document, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=10_000)


def _environment(
    platforms: Mapping[str, Sequence[LockEntry]], channels: Sequence[str], indexes: Sequence[str] | None
) -> dict[str, Any]:
    env: dict[str, Any] = {"channels": [{"url": url} for url in channels]}
    if indexes:
        env["indexes"] = list(indexes)
    env["packages"] = {
        platform: [{_kind(entry): entry.location} for entry in entries]
        for platform, entries in platforms.items()
    }
    return env


def _kind(entry: LockEntry) -> str:
    return "conda" if isinstance(entry, CondaEntry) else "pypi"


def _entry_name(entry: LockEntry) -> str:
    return str(entry.record["name"]) if isinstance(entry, CondaEntry) else entry.name


def _record_v6(entry: LockEntry) -> dict[str, Any]:
    if isinstance(entry, PypiEntry):
        return _pypi_record(entry, {"pypi": entry.location})
    record = entry.record
    derived = _derived(entry.location)
    out: dict[str, Any] = {"conda": entry.location}
    build = str(record["build"])
    for key in ("name", "version", "build"):
        if entry.explicit or str(record[key]) != derived.get(key):
            out[key] = record[key]
    build_number = int(record.get("build_number", 0))
    if entry.explicit or build_number != (_build_number_from_build(build) or 0):
        out["build_number"] = build_number
    if entry.explicit or record["subdir"] != derived.get("subdir"):
        out["subdir"] = record["subdir"]
    noarch = record.get("noarch")
    derived_noarch = _derive_noarch(derived.get("subdir") or record["subdir"], derived.get("build") or build)
    if noarch != derived_noarch:
        out["noarch"] = noarch
    for key in ("sha256", "md5", "legacy_bz2_md5"):
        if record.get(key):
            out[key] = record[key]
    for key in ("depends", "constrains", "track_features"):
        if record.get(key):
            out[key] = list(record[key])
    for key in ("features", "license", "license_family", "purls", "size", "legacy_bz2_size", "timestamp"):
        if record.get(key) is not None:
            out[key] = record[key]
    if record.get("python_site_packages_path") is not None:
        out["python_site_packages_path"] = record["python_site_packages_path"]
    return out


def _record_v5(entry: LockEntry) -> dict[str, Any]:
    location_key = "url" if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", entry.location) else "path"
    if isinstance(entry, PypiEntry):
        head = {"kind": "pypi", "name": entry.name, "version": entry.version, location_key: entry.location}
        return _pypi_record(entry, head, with_name=False)
    if location_key == "path":
        msg = f"{entry.location}: lockfile v4/v5 hold only URLs for conda packages (use a file:// URL)"
        raise ValueError(msg)
    record = entry.record
    out: dict[str, Any] = {"kind": "conda", "name": record["name"], "version": record["version"]}
    out["build"] = record["build"]
    if record.get("build_number"):
        out["build_number"] = record["build_number"]
    out["subdir"] = record["subdir"]
    if record.get("noarch"):
        out["noarch"] = record["noarch"]
    out[location_key] = entry.location
    for key in ("sha256", "md5"):
        if record.get(key):
            out[key] = record[key]
    for key in ("depends", "constrains"):
        if record.get(key):
            out[key] = list(record[key])
    for key in ("license", "license_family", "size", "timestamp"):
        if record.get(key) is not None:
            out[key] = record[key]
    return out


def _pypi_record(entry: PypiEntry, head: dict[str, Any], *, with_name: bool = True) -> dict[str, Any]:
    out = dict(head)
    if with_name:
        out.update(name=entry.name, version=entry.version)
    if entry.sha256:
        out["sha256"] = entry.sha256
    if entry.requires_dist:
        out["requires_dist"] = list(entry.requires_dist)
    if entry.requires_python:
        out["requires_python"] = entry.requires_python
    return out


def _derived(location: str) -> dict[str, str]:
    """The fields rattler_lock derives from a location (file name; subdir from URLs only)."""
    parts = location.rstrip("/").split("/")
    match = re.match(r"^(.+)-([^-]+)-([^-]+)\.(conda|tar\.bz2)$", parts[-1])
    if not match:
        return {}
    derived = {"name": match[1], "version": match[2], "build": match[3]}
    is_url = re.match(r"^(https?|file)://", location) is not None
    if is_url and len(parts) >= 2 and parts[-2] in KNOWN_SUBDIRS:
        derived["subdir"] = parts[-2]
    return derived


def _build_number_from_build(build: str) -> int | None:
    match = re.search(r"\d+$", build)
    return int(match[0]) if match else None


def _derive_noarch(subdir: str, build: str) -> str | None:
    if subdir != "noarch":
        return None
    return "python" if "py" in build else "generic"


def rattler_locations(path: Path) -> dict[str, dict[str, list[str]]]:
    """Load ``path`` with ``rattler.LockFile.from_path``: environment -> platform -> package locations.

    The oracle for "rattler reads this lockfile the way we meant it"; raises whatever rattler raises.
    """
    import rattler

    lock = rattler.LockFile.from_path(path)
    return {
        name: {
            platform.name: [package.location for package in packages]
            for platform, packages in env.packages_by_platform().items()
        }
        for name, env in lock.environments()
    }


def write_lock_with_rattler(path: Path, environments: Environments, channels: Sequence[str]) -> Path:
    """Write the lockfile with py-rattler itself (format v7, what pixi writes today).

    Conda entries need an archive (``entry.package``) and a URL location; py-rattler cannot write a
    PyPI hash, so PyPI entries come out without ``sha256``.
    """
    import asyncio

    import rattler

    platforms = sorted({platform for env in environments.values() for platform in env})
    lock = rattler.LockFile([rattler.LockPlatform(p) for p in platforms])
    for name, env in environments.items():
        lock.set_channels(name, [rattler.LockChannel(url) for url in channels])
        for platform, entries in env.items():
            for entry in entries:
                if isinstance(entry, PypiEntry):
                    lock_platform = rattler.LockPlatform(platform)
                    lock.add_pypi_package(name, lock_platform, entry.name, entry.version, entry.location)
                    continue
                if entry.package is None:
                    msg = f"{entry.location}: write_lock_with_rattler needs the package archive"
                    raise ValueError(msg)
                local = asyncio.run(rattler.RepoDataRecord.from_package_archive(entry.package.path))
                local.md5 = bytes.fromhex(entry.package.md5)
                channel = entry.location.rsplit("/", 2)[0]
                record = rattler.RepoDataRecord(local, entry.package.file_name, entry.location, channel)
                lock.add_conda_package(name, rattler.LockPlatform(platform), record)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock.to_path(path)
    return path


class _Dumper(yaml.SafeDumper):
    """Plain block YAML, as pixi writes it; never emits aliases for repeated objects."""

    def ignore_aliases(self, data: Any) -> bool:
        return True
