"""Read a pixi.lock: pure functions from its text to the packages of one environment and platform.

Supported layouts: the conda-lock-like versions 1-3 (``metadata:`` + ``package:``), versions 4 and 5
(records with ``kind:``), and versions 6 and 7 (records keyed by ``conda:``/``pypi:``, fields derived
from the file name when omitted, the rules of rattler_lock's ``derived_fields``).
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import yaml

from pixi_pack.errors import EnvironmentNotFoundError, LockfileError
from pixi_pack.formats.locations import is_url, redacted_url
from pixi_pack.formats.records import (
    RecordError,
    check_conda_file_name,
    check_dist_file_name,
    check_record,
    check_sha256,
)
from pixi_pack.io.files import expanded
from pixi_pack.models import CONDA_EXTENSIONS, CondaPackage, LockedEnvironment, PypiPackage
from pixi_pack.platforms import ARCH_OF_SUBDIR, KNOWN_SUBDIRS

LOCKFILE_NAME = "pixi.lock"
SUPPORTED_VERSIONS = (1, 2, 3, 4, 5, 6, 7)

# The fields of rattler's PackageRecord: what goes into repodata.json. Everything else in a lock
# record (location, channel, file_name, input, sources, ...) describes the lock, not the package.
_RECORD_FIELDS = (
    "name",
    "version",
    "build",
    "build_number",
    "subdir",
    "noarch",
    "arch",
    "platform",
    "depends",
    "constrains",
    "extra_depends",
    "features",
    "flags",
    "track_features",
    "license",
    "license_family",
    "md5",
    "sha256",
    "legacy_bz2_md5",
    "legacy_bz2_size",
    "size",
    "timestamp",
    "purls",
    "run_exports",
    "python_site_packages_path",
)


def find_lockfile(manifest_path: Path) -> Path:
    """The pixi.lock that belongs to a manifest (pixi.toml, pyproject.toml) or a project folder."""
    if manifest_path.is_dir():
        lockfile = manifest_path / LOCKFILE_NAME
    elif manifest_path.exists():
        lockfile = manifest_path.parent / LOCKFILE_NAME
    else:
        msg = f"manifest not found: {manifest_path} (give a pixi.toml, a pyproject.toml or a project folder)"
        raise LockfileError(msg)
    if not lockfile.is_file():
        msg = f"lockfile not found: {lockfile} (run `pixi lock` in the project first)"
        raise LockfileError(msg)
    return lockfile


#: libyaml's safe loader where PyYAML was built with it: several times faster on a large lockfile.
_SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


#: Where an alias might start: after a key, a list dash, a flow opener or a separator. A hit is checked
#: by a full event scan, since plain scalars (``numpy *_mkl``) can look the same.
_MAYBE_ALIAS = re.compile(r"(?:^|[\s\[{,])[*&][^\s,\[\]{}]", re.MULTILINE)


def _has_alias(text: str) -> bool:
    """Whether the YAML uses anchors or aliases: pixi never writes them, and an alias bomb (billion
    laughs) expands to more than memory holds."""
    if _MAYBE_ALIAS.search(text) is None:
        return False
    return any(
        isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None)
        for event in yaml.parse(text, Loader=_SafeLoader)
    )


def parse_lockfile(text: str, source: str = LOCKFILE_NAME) -> dict[str, Any]:
    """Parse the YAML of a lockfile and check it is a version we read."""
    try:
        if _has_alias(text):
            msg = f"could not parse {source}: it uses YAML anchors or aliases, which pixi never writes"
            raise LockfileError(msg)
        data = yaml.load(text, Loader=_SafeLoader)
    except (yaml.YAMLError, RecursionError) as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or type(exc).__name__
        msg = f"could not parse {source}: {problem}{where} (is it a pixi.lock?)"
        raise LockfileError(msg) from exc
    if not isinstance(data, dict):
        msg = f"could not parse {source}: not a pixi lockfile"
        raise LockfileError(msg)
    version = lockfile_version(data)
    if version not in SUPPORTED_VERSIONS:
        msg = (
            f"unsupported lockfile version {version} in {source}: pixi-pack reads versions "
            f"{SUPPORTED_VERSIONS[0]}-{SUPPORTED_VERSIONS[-1]} (upgrade pixi-pack, or re-lock with a matching pixi)"
        )
        raise LockfileError(msg)
    return data


def lockfile_version(data: Mapping[str, Any]) -> int:
    version = data.get("version")
    if version is None and "metadata" in data and "package" in data:
        return 1
    if isinstance(version, int):
        return version
    msg = f"lockfile has no valid version field: {version!r}"
    raise LockfileError(msg)


def load_lockfile(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        msg = f"could not read lockfile {path}: {exc.strerror or exc}"
        raise LockfileError(msg) from exc
    except UnicodeDecodeError as exc:
        msg = f"could not read lockfile {path}: it is not UTF-8 text (byte {exc.start})"
        raise LockfileError(msg) from exc
    return parse_lockfile(text, str(path))


def platform_subdir(data: Mapping[str, Any], platform: str) -> str:
    """The conda subdir of a platform: itself, or for lockfile v7 a named platform's ``subdir``."""
    for entry in data.get("platforms") or ():
        if isinstance(entry, dict) and entry.get("name") == platform:
            return str(entry.get("subdir", platform))
    if platform in KNOWN_SUBDIRS:
        return platform
    msg = f"unknown platform: {platform} (not a conda subdir, and the lockfile names no such platform)"
    raise LockfileError(msg)


def resolve_platform(manifest_path: Path, environment: str, platform: str) -> str:
    """The conda subdir for ``--platform``: a subdir as given, or a platform named in the lockfile."""
    del environment  # platforms are named for the whole lockfile
    if platform in KNOWN_SUBDIRS:
        return platform
    return platform_subdir(load_lockfile(find_lockfile(manifest_path)), platform)


def select_environment(
    data: Mapping[str, Any], environment: str, platform: str, lockfile_dir: Path
) -> LockedEnvironment:
    """The packages of ``environment`` for ``platform``, in lockfile order.

    Relative package paths are resolved against ``lockfile_dir``.
    """
    if lockfile_version(data) <= 3:
        return _select_legacy(data, environment, platform, lockfile_dir)
    environments = _mapping(data.get("environments") or {}, "environments", lockfile_dir)
    if environment not in environments:
        msg = f"environment not found in lockfile: {environment} (available: {_names(environments)})"
        raise EnvironmentNotFoundError(msg)
    env = _mapping(environments[environment] or {}, f"environments.{environment}", lockfile_dir)
    platforms = _mapping(env.get("packages") or {}, f"environments.{environment}.packages", lockfile_dir)
    if platform not in platforms:
        msg = f"platform not found in lockfile: {platform} (available for {environment}: {_names(platforms)})"
        raise LockfileError(msg)
    channels = tuple(
        _channel_url(c)
        for c in _list(env.get("channels") or [], f"environments.{environment}.channels", lockfile_dir)
    )
    records = [
        _mapping(r, "packages[]", lockfile_dir)
        for r in _list(data.get("packages") or [], "packages", lockfile_dir)
    ]
    index = _RecordIndex(records, lockfile_version(data))
    conda: list[CondaPackage] = []
    pypi: list[PypiPackage] = []
    sources: list[str] = []
    where = f"environments.{environment}.packages.{platform}"
    for ref in _list(platforms[platform] or [], where, lockfile_dir):
        ref = _mapping(ref, f"{where}[]", lockfile_dir)
        if "conda_source" in ref:
            sources.append(str(ref["conda_source"]))
        elif "conda" in ref:
            record = index.find("conda", ref)
            if _is_archive(str(ref["conda"])):
                conda.append(conda_package(str(ref["conda"]), record, lockfile_dir))
            else:
                sources.append(str(record.get("name", ref["conda"])))
        elif "pypi" in ref:
            pypi.append(_pypi_package(str(ref["pypi"]), index.find("pypi", ref), lockfile_dir))
        else:
            msg = f"unknown package reference in environment {environment}: {ref!r}"
            raise LockfileError(msg)
    return LockedEnvironment(environment, platform, channels, tuple(conda), tuple(pypi), tuple(sources))


def _mapping(value: Any, field: str, lockfile_dir: Path) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        msg = f"{lockfile_dir / LOCKFILE_NAME}: field {field!r} must be a mapping, not {type(value).__name__}"
        raise LockfileError(msg)
    return value


def _list(value: Any, field: str, lockfile_dir: Path) -> list[Any]:
    if not isinstance(value, list):
        msg = f"{lockfile_dir / LOCKFILE_NAME}: field {field!r} must be a list, not {type(value).__name__}"
        raise LockfileError(msg)
    return value


def _names(mapping: Mapping[str, Any]) -> str:
    return ", ".join(sorted(mapping)) or "none"


def _channel_url(channel: Any) -> str:
    return str(channel["url"] if isinstance(channel, dict) else channel)


class _RecordIndex:
    """The lockfile's top-level ``packages:``, looked up by location."""

    def __init__(self, records: Iterable[Mapping[str, Any]], version: int) -> None:
        self._by_location: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
        for record in records:
            kind, location = _record_key(record, version)
            self._by_location.setdefault((kind, location), []).append(record)

    def find(self, kind: str, ref: Mapping[str, Any]) -> Mapping[str, Any]:
        location = str(ref[kind])
        candidates = self._by_location.get((kind, location), [])
        # A location locked more than once (v7 variants, extras) is told apart by the reference's
        # other keys.
        extra = {k: v for k, v in ref.items() if k != kind}
        matching = [r for r in candidates if all(r.get(k) == v for k, v in extra.items() if k in r)]
        if not matching:
            msg = f"lockfile is inconsistent: no package record for {kind} {redacted_url(location)}"
            raise LockfileError(msg)
        return matching[0]


def _record_key(record: Mapping[str, Any], version: int) -> tuple[str, str]:
    if version >= 6:
        for kind in ("conda", "pypi", "conda_source"):
            if kind in record:
                return kind, str(record[kind])
        msg = f"lockfile has a package record without location: {record!r}"
        raise LockfileError(msg)
    kind = str(record.get("kind", "conda"))
    location = record.get("url", record.get("path"))
    if location is None:
        msg = f"lockfile has a package record without url or path: {record!r}"
        raise LockfileError(msg)
    return kind, str(location)


def _is_archive(location: str) -> bool:
    return location.endswith(CONDA_EXTENSIONS)


def _check_url(location: str) -> None:
    """Refuse a URL location whose host or port cannot be read (an unclosed ``[``, a port that is not
    a number from 0 to 65535): every later step splits it."""
    if "://" not in location:
        return
    try:
        urlsplit(location).port  # noqa: B018  (reading it checks it)
    except ValueError as exc:
        raise RecordError("url", f"is not a valid URL ({exc})") from None


def _file_name(location: str) -> str:
    path = urlsplit(location).path if "://" in location else location.replace("\\", "/")
    return unquote(posixpath.basename(path.rstrip("/")))


def resolve_location(location: str, base_dir: Path) -> str:
    """An absolute URL or filesystem path for a lockfile location (``direct+`` dropped)."""
    if location.startswith("direct+"):
        location = location[len("direct+") :]
    if is_url(location):
        return location
    path = expanded(location)
    if re.match(r"^[A-Za-z]:[\\/]", location):
        return location
    return str(path if path.is_absolute() else (base_dir / path).resolve())


def _split_archive_name(file_name: str) -> tuple[str, str, str] | None:
    stem = next((file_name[: -len(e)] for e in CONDA_EXTENSIONS if file_name.endswith(e)), None)
    if stem is None:
        return None
    parts = stem.rsplit("-", 2)
    if len(parts) != 3 or not all(parts):
        return None
    return parts[0], parts[1], parts[2]


def _derived_subdir(location: str) -> str | None:
    if not re.match(r"^(https?|file)://", location):
        return None
    segments = urlsplit(location).path.rstrip("/").split("/")
    if len(segments) >= 2 and segments[-2] in KNOWN_SUBDIRS:
        return segments[-2]
    return None


def _build_number_of(build: str) -> int:
    match = re.search(r"(\d+)$", build)
    return int(match.group(1)) if match else 0


def conda_package(
    location: str, lock_record: Mapping[str, Any], lockfile_dir: Path, *, source: str | None = None
) -> CondaPackage:
    """A checked :class:`CondaPackage` from a record as a lockfile (or an installed prefix) keeps it.

    What the record lacks is derived as rattler does: name, version and build from the file name, the
    subdir from the URL, ``noarch``, ``platform`` and ``arch`` from the subdir. ``source`` names the
    record in errors (default: the lockfile and the location).
    """
    shown = redacted_url(location)
    where = source or f"lockfile record for {shown}"
    named = source or f"{lockfile_dir / LOCKFILE_NAME}: the package {shown}"
    try:
        _check_url(location)
    except RecordError as exc:
        raise LockfileError(f"{named}: {exc}") from exc
    file_name = str(lock_record.get("file_name") or lock_record.get("fn") or _file_name(location))
    derived = _split_archive_name(_file_name(location)) or _split_archive_name(file_name)
    record: dict[str, Any] = {k: lock_record[k] for k in _RECORD_FIELDS if lock_record.get(k) is not None}
    if derived is not None:
        record.setdefault("name", derived[0])
        record.setdefault("version", derived[1])
        record.setdefault("build", derived[2])
    for key in ("name", "version", "build"):
        if key not in record:
            msg = f"{where} has no {key} and its file name does not tell"
            raise LockfileError(msg)
        record[key] = str(record[key])
    derived_subdir = _derived_subdir(location)
    subdir = record.get("subdir") or derived_subdir
    if not subdir:
        msg = f"{where} has no subdir"
        raise LockfileError(msg)
    record["subdir"] = subdir
    record.setdefault("build_number", _build_number_of(record["build"]))
    if "noarch" not in record and (derived_subdir or subdir) == "noarch":
        record["noarch"] = "python" if "py" in record["build"] else "generic"
    if isinstance(subdir, str) and subdir != "noarch" and "-" in subdir:  # else check_record refuses it
        os_name, _, arch = subdir.partition("-")
        record.setdefault("platform", os_name)
        if arch in ARCH_OF_SUBDIR:
            record.setdefault("arch", ARCH_OF_SUBDIR[arch])
    record.setdefault("depends", [])
    try:
        check_conda_file_name(file_name)
        record = check_record(record)
    except RecordError as exc:
        raise LockfileError(f"{named}: {exc}") from exc
    return CondaPackage(resolve_location(location, lockfile_dir), file_name, str(record["subdir"]), record)


def _pypi_package(location: str, record: Mapping[str, Any], lockfile_dir: Path) -> PypiPackage:
    hashes = record.get("hash")
    sha256 = record.get("sha256") or (hashes.get("sha256") if isinstance(hashes, dict) else None)
    try:
        _check_url(location)
        file_name = _file_name(location)
        if file_name.endswith(".whl"):  # the only kind packed, under pypi/<file_name>
            check_dist_file_name(file_name)
        for key in ("name", "version"):
            if not isinstance(record.get(key, ""), str):
                raise RecordError(key, "must be a string")
        checked_sha256 = check_sha256(sha256) if sha256 is not None else None
    except RecordError as exc:
        msg = f"{lockfile_dir / LOCKFILE_NAME}: the PyPI package {redacted_url(location)}: {exc}"
        raise LockfileError(msg) from exc
    return PypiPackage(
        location=resolve_location(location, lockfile_dir),
        file_name=file_name,
        name=str(record.get("name", "")),
        version=str(record.get("version", "")),
        sha256=checked_sha256,
    )


def _select_legacy(
    data: Mapping[str, Any], environment: str, platform: str, lockfile_dir: Path
) -> LockedEnvironment:
    """Versions 1-3: one environment, ``package:`` entries tagged with their platform."""
    if environment != "default":
        msg = f"environment not found in lockfile: {environment} (available: default)"
        raise EnvironmentNotFoundError(msg)
    metadata = data.get("metadata") or {}
    platforms: Sequence[str] = metadata.get("platforms") or sorted(
        {str(p.get("platform")) for p in data.get("package") or ()}
    )
    if platform not in platforms:
        msg = f"platform not found in lockfile: {platform} (available for default: {', '.join(sorted(platforms))})"
        raise LockfileError(msg)
    conda: list[CondaPackage] = []
    pypi: list[PypiPackage] = []
    for entry in data.get("package") or ():
        if entry.get("platform") != platform:
            continue
        location = str(entry["url"])
        if entry.get("manager", "conda") == "conda":
            record = dict(entry)
            record.update(entry.get("hash") or {})
            record["depends"] = [
                f"{name} {spec}".strip() for name, spec in (entry.get("dependencies") or {}).items()
            ]
            conda.append(conda_package(location, record, lockfile_dir))
        else:
            pypi.append(_pypi_package(location, entry, lockfile_dir))
    channels = tuple(_channel_url(c) for c in metadata.get("channels") or ())
    return LockedEnvironment(environment, platform, channels, tuple(conda), tuple(pypi))
