"""What a conda package holds, as its ``info/`` folder tells: files, placeholders and entry points.

:func:`load_package` reads ``info/index.json``, then ``info/paths.json`` (or, for old packages,
``files``, ``has_prefix``, ``no_link`` and ``no_softlink``) and, for noarch python packages, the entry
points of ``info/link.json`` into a :class:`Package`. Nothing here writes, and every path is checked
before it is trusted. The rules follow rattler_conda_types' ``package/paths.rs``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from itertools import repeat
from typing import Any, NamedTuple

from pixi_pack.errors import ArchiveError
from pixi_pack.formats.package import PackageInfo, invalid_package, normalize_member_path, read_info
from pixi_pack.formats.paths_bulk import PATH_TYPES, plain_fields, typed_paths
from pixi_pack.formats.records import RecordError, check_index, check_sha256, check_size
from pixi_pack.io.zstd import Decompressor
from pixi_pack.models import PackageSource

_DOTTED = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*\Z")
_LOWER_SHA256 = re.compile(r"[0-9a-f]{64}\Z")


class PathEntry(NamedTuple):
    """One entry of ``info/paths.json`` (or one rebuilt from ``info/files`` for old packages).

    A tuple, not a frozen dataclass: there is one per file, and a tuple is made several times faster
    and is half the size.
    """

    path: str
    path_type: str
    """``hardlink``, ``softlink`` or ``directory``; ``""`` when only the payload can tell (old packages)."""
    sha256: str | None = None
    size: int | None = None
    placeholder: str | None = None
    file_mode: str | None = None
    no_link: bool = False


@dataclass(frozen=True)
class EntryPoint:
    """``command = module:function`` from ``info/link.json``."""

    command: str
    module: str
    function: str


@dataclass(frozen=True)
class Package:
    """A package to install, as its archive describes it: its source, ``index.json`` and payload listing.

    An install of many files holds only some packages' ``entries`` at once (``keep`` of
    :func:`load_package`, then :func:`with_entries` when the package's turn comes); ``file_paths`` is
    always there, for the plan.
    """

    source: PackageSource
    index: Mapping[str, Any]
    about_mtime: int | None
    """The mtime of ``info/about.json``, which rattler uses to date the files it rewrites."""
    entries: Sequence[PathEntry]
    entry_points: Sequence[EntryPoint]
    file_paths: str = ""
    """The paths of the entries that are not folders, in order, NUL-separated (a path never holds NUL):
    one string for the whole package instead of an object per path."""
    released: bool = False
    """``entries`` were not kept, to bound memory; :func:`with_entries` reads them."""

    def paths(self) -> list[str]:
        """The paths of the entries that are not folders, in order (from ``file_paths``)."""
        return self.file_paths.split("\0") if self.file_paths else []

    @property
    def name(self) -> str:
        return str(self.source.record.get("name") or self.index["name"]).lower()

    @property
    def dist(self) -> str:
        record, index = self.source.record, self.index
        name = record.get("name") or index["name"]
        return f"{name}-{record.get('version') or index['version']}-{record.get('build') or index['build']}"

    @property
    def noarch_python(self) -> bool:
        return self.index.get("noarch") == "python"

    @property
    def depends(self) -> list[str]:
        depends = self.source.record.get("depends", self.index.get("depends", []))
        return [str(d) for d in depends or []]


def load_package(
    source: PackageSource, *, zstd: Decompressor | None = None, keep: Callable[[int], bool] | None = None
) -> Package:
    """Read a package's ``info/`` and parse what installing it needs.

    ``keep``, if given, is asked with the number of ``info/paths.json`` entries whether to keep them.
    If not, only each entry's path and type are checked, for ``file_paths``, and the package comes back
    released: :func:`with_entries` reads and checks the rest when the package is installed.
    """
    with source.open() as stream:
        info = read_info(stream, source.file_name, zstd=zstd)
    file_name = source.file_name
    index = parse_index_json(info.json("index.json", file_name), file_name)
    if "paths.json" in info.files:
        document = info.json("paths.json", file_name)
        items = _paths_list(document, file_name)
        if keep is not None and not keep(len(items)):
            file_paths = _listed_file_paths(items, file_name)
            entry_points = _entry_points(info, index, file_name)
            return Package(source, index, info.about_mtime, (), entry_points, file_paths, released=True)
        entries = parse_paths_json(document, file_name)
    else:
        entries = parse_legacy_paths(info, file_name)
    file_paths = "\0".join(e.path for e in entries if e.path_type != "directory")
    entry_points = _entry_points(info, index, file_name)
    return Package(source, index, info.about_mtime, tuple(entries), entry_points, file_paths)


def _entry_points(info: PackageInfo, index: Mapping[str, Any], file_name: str) -> tuple[EntryPoint, ...]:
    if index.get("noarch") != "python" or "link.json" not in info.files:
        return ()
    return tuple(parse_link_json(info.json("link.json", file_name), file_name))


def with_entries(package: Package, *, zstd: Decompressor | None = None) -> Package:
    """``package`` with its ``entries``, read again from its archive if they were released.

    The archive must still describe the package that was planned, or nothing of it is installed.
    """
    if not package.released:
        return package
    fresh = load_package(package.source, zstd=zstd)
    if fresh.file_paths != package.file_paths or fresh.index != package.index:
        raise invalid_package(package.source.file_name, "its info/ changed while it was being installed")
    return fresh


def planned_fields(package: Package) -> dict[str, Any]:
    """A package as JSON, to cross from the worker process that read it: its entries too, unless it
    was released (:func:`with_entries` then reads them when the package is installed)."""
    return {
        "index": package.index,
        "about_mtime": package.about_mtime,
        "entry_points": [[e.command, e.module, e.function] for e in package.entry_points],
        "file_paths": package.file_paths,
        "entries": None if package.released else package.entries,
    }


def from_planned_fields(source: PackageSource, fields: Mapping[str, Any]) -> Package:
    """The :class:`Package` of ``source`` that :func:`planned_fields` describes."""
    entry_points = tuple(EntryPoint(*e) for e in fields["entry_points"])
    entries = fields["entries"]
    return Package(
        source,
        fields["index"],
        fields["about_mtime"],
        () if entries is None else tuple(PathEntry(*e) for e in entries),
        entry_points,
        fields["file_paths"],
        released=entries is None,
    )


def parse_index_json(document: object, file_name: str) -> dict[str, Any]:
    """``info/index.json`` with every field that is used checked, as a repodata record's are."""
    if not isinstance(document, dict):
        raise invalid_package(file_name, "info/index.json is not a JSON object")
    try:
        return check_index(document)
    except RecordError as exc:
        raise invalid_package(file_name, f"info/index.json: {exc}") from exc


def parse_link_json(document: object, file_name: str) -> list[EntryPoint]:
    """The ``noarch.entry_points`` of an ``info/link.json`` document."""
    if not isinstance(document, dict):
        raise invalid_package(file_name, "info/link.json is not a JSON object")
    noarch = document.get("noarch")
    if noarch is None:
        return []
    if not isinstance(noarch, dict):
        raise invalid_package(file_name, f"info/link.json: field 'noarch' must be an object, not {noarch!r}")
    specs = noarch.get("entry_points") or []
    if not isinstance(specs, list) or not all(isinstance(spec, str) for spec in specs):
        raise invalid_package(
            file_name, "info/link.json: field 'noarch.entry_points' must be a list of strings"
        )
    return [parse_entry_point(spec, file_name) for spec in specs]


_FILE_MODES = ("text", "binary")


def parse_paths_json(document: object, file_name: str) -> list[PathEntry]:
    """The entries of an ``info/paths.json`` document: every field's type checked, no path trusted."""
    items = _paths_list(document, file_name)
    plain = _plain_entries(items)
    if plain is not None:
        return plain
    return [_path_entry(item, i, file_name) for i, item in enumerate(items)]


def _plain_entries(items: list[object]) -> list[PathEntry] | None:
    """The entries, when every one is plain (:func:`~pixi_pack.formats.paths_bulk.plain_fields`)."""
    fields = plain_fields(items)
    if fields is None:
        return None
    plain = zip(*fields, repeat(None), repeat(None), repeat(False))
    return list(map(tuple.__new__, repeat(PathEntry), plain))  # PathEntry(*fields), without its __new__


def _paths_list(document: object, file_name: str) -> list[object]:
    entries = document.get("paths") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise invalid_package(file_name, "info/paths.json has no 'paths' list")
    return entries


def _listed_file_paths(items: list[object], file_name: str) -> str:
    """The NUL-joined paths of the entries that are not folders, each path and type checked as
    :func:`_typed_path` checks them: in bulk when every path is already clean, else entry by entry."""
    typed = typed_paths(items)
    if typed is not None:
        paths, kinds = typed
        return "\0".join(
            paths if "directory" not in kinds else (p for p, k in zip(paths, kinds) if k != "directory")
        )
    checked = (_typed_path(item, i, file_name) for i, item in enumerate(items))
    return "\0".join(path for path, kind in checked if kind != "directory")


def _typed_path(item: object, i: int, file_name: str) -> tuple[str, str]:
    """An entry's checked path and ``path_type``."""
    if not isinstance(item, dict) or not isinstance(item.get("_path"), str):
        raise invalid_package(file_name, f"info/paths.json: entry {i} has no '_path' string")
    path = _safe_path(item["_path"], file_name)
    path_type = item.get("path_type", "hardlink")
    if path_type not in PATH_TYPES:
        what = f"info/paths.json: {path}: field 'path_type' must be one of {', '.join(PATH_TYPES)}"
        raise invalid_package(file_name, f"{what}, not {path_type!r}"[:400])
    return path, path_type


def _path_entry(item: object, i: int, file_name: str) -> PathEntry:
    path, path_type = _typed_path(item, i, file_name)
    assert isinstance(item, dict)
    sha256 = item.get("sha256")
    size = item.get("size_in_bytes")
    placeholder = item.get("prefix_placeholder")
    no_link = item.get("no_link", False)
    if (
        placeholder is None
        and no_link is False
        and (size is None or (type(size) is int and size >= 0))
        and (sha256 is None or (type(sha256) is str and _LOWER_SHA256.match(sha256) is not None))
    ):
        return PathEntry(path, path_type, sha256, size)  # the common entry, every field already right

    def bad(field: str, problem: str) -> ArchiveError:
        return invalid_package(file_name, f"info/paths.json: {path}: field {field!r} {problem}"[:400])

    try:
        sha256 = None if sha256 is None else check_sha256(sha256)
        size = None if size is None else check_size(size)
    except RecordError as exc:
        raise invalid_package(file_name, f"info/paths.json: {path}: {exc}") from exc
    if placeholder is not None and (
        not isinstance(placeholder, str) or not placeholder or "\0" in placeholder
    ):
        raise bad("prefix_placeholder", f"must be a non-empty string, not {placeholder!r}")
    file_mode = item.get("file_mode", "text")
    if placeholder and file_mode not in _FILE_MODES:
        raise bad("file_mode", f"must be text or binary, not {file_mode!r}")
    if not isinstance(no_link, bool):
        raise bad("no_link", f"must be true or false, not {no_link!r}")
    return PathEntry(
        path=path,
        path_type=path_type,
        sha256=sha256,
        size=size,
        placeholder=placeholder,
        file_mode=file_mode if placeholder else None,
        no_link=no_link,
    )


def parse_legacy_paths(info: PackageInfo, file_name: str) -> list[PathEntry]:
    """Entries rebuilt from ``info/files``, ``info/has_prefix``, ``info/no_link`` and ``info/no_softlink``.

    The types (file or symlink) are only known once the payload is read, as in rattler's fallback.
    """
    files = [line for line in (info.text("files") or "").splitlines() if line]
    no_link = {
        line for name in ("no_link", "no_softlink") for line in (info.text(name) or "").splitlines() if line
    }
    prefixes = {}
    for line in (info.text("has_prefix") or "").splitlines():
        if line.strip():
            placeholder, mode, path = parse_has_prefix_line(line, file_name)
            prefixes[path] = (placeholder, mode)
    return [
        PathEntry(
            path=_safe_path(path, file_name),
            path_type="",
            placeholder=prefixes[path][0] if path in prefixes else None,
            file_mode=prefixes[path][1] if path in prefixes else None,
            no_link=path in no_link,
        )
        for path in files
    ]


def parse_has_prefix_line(line: str, file_name: str) -> tuple[str, str, str]:
    """``(placeholder, text|binary, path)`` from a ``has_prefix`` line; quoted fields may hold spaces."""
    fields = _split_quoted(line.strip(), file_name)
    if len(fields) == 1:
        return "/opt/anaconda1anaconda2anaconda3", "text", fields[0]
    if len(fields) == 3 and fields[1].lower() in ("text", "binary"):
        return fields[0], fields[1].lower(), fields[2]
    raise invalid_package(file_name, f"info/has_prefix has a malformed line: {line!r}")


def _split_quoted(text: str, file_name: str) -> list[str]:
    fields: list[str] = []
    i = 0
    while i < len(text):
        if text[i].isspace():
            i += 1
        elif text[i] == '"':
            value, i = _read_quoted(text, i + 1, file_name)
            fields.append(value)
        else:
            end = i
            while end < len(text) and not text[end].isspace():
                end += 1
            fields.append(text[i:end])
            i = end
    return fields


def _read_quoted(text: str, i: int, file_name: str) -> tuple[str, int]:
    value: list[str] = []
    while i < len(text):
        char = text[i]
        if char == "\\" and i + 1 < len(text):
            value.append(text[i + 1])
            i += 2
        elif char == '"':
            return "".join(value), i + 1
        else:
            value.append(char)
            i += 1
    raise invalid_package(file_name, f"info/has_prefix has an unterminated quote: {text!r}")


def parse_entry_point(spec: str, file_name: str) -> EntryPoint:
    """``cmd = pkg.module:func`` with rattler's checks (a plain command name, dotted python names)."""
    command, sep, target = spec.partition("=")
    module, sep2, function = target.partition(":")
    command, module, function = command.strip(), module.strip(), function.strip()
    bad = (
        not sep
        or not sep2
        or not command
        or command.startswith(".")
        or any(c in command for c in "/\\\0")
        or not _DOTTED.match(module)
        or not _DOTTED.match(function)
    )
    if bad:
        raise invalid_package(file_name, f"info/link.json has an invalid entry point {spec!r}")
    return EntryPoint(command, module, function)


def _safe_path(path: str, file_name: str) -> str:
    try:
        clean = normalize_member_path(path)
    except ValueError as exc:
        raise invalid_package(file_name, f"info/paths.json: {exc}") from exc
    if not clean:
        raise invalid_package(file_name, "info/paths.json lists an empty path")
    return clean
