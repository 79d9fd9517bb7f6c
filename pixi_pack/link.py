"""Install conda packages into a prefix, file for file as rattler (and so upstream pixi-unpack) does.

The work has three stages. First every package's ``info/`` is read (in parallel). Then, with all the
packages known, one plan decides where each file goes: noarch python paths are mapped into the
environment's site-packages, and a path that several packages hold goes to the one last in dependency
order, the others' copies to ``__clobbers__/<name>/<path>`` (the final layout rattler's clobber registry
reaches). Last, the payloads are streamed straight from the archives into their final places (in
parallel, each file written once, placeholders already replaced) and ``conda-meta/<dist>.json`` is
written for each package. Nothing depends on thread timing, so the result is the same on every run.

rattler's behaviour was read in ``crates/rattler/src/install/`` (``mod.rs``, ``link.rs``,
``entry_point.rs``, ``python.rs``, ``clobber_registry.rs``, ``installer/mod.rs``), its path resolver
(``crates/path_resolver``), ``rattler_conda_types`` (``prefix_record.rs``, ``package/paths.rs``,
``repo_data/topological_sort.rs``) and upstream pixi-pack's ``src/unpack.rs``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, cast

from .errors import ArchiveError, InstallError, PixiPackError
from .extract import (
    Member,
    PackageInfo,
    TreeWriter,
    iter_payload,
    link_stays_inside,
    normalize_member_path,
    read_info,
)
from .models import PackageSource
from .prefix import is_windows_platform, prefix_for_platform, python_shebang, replace_prefix

logger = logging.getLogger("pixi_pack")

CLOBBERS_DIR = "__clobbers__"
#: What upstream pixi-unpack writes to ``conda-meta/history`` (rattler itself leaves it empty).
HISTORY = "// not relevant for pixi but for `conda run -p`"
#: rattler marks every prefix it creates as a cache directory, so backup tools skip it.
CACHEDIR_TAG = (
    "Signature: 8a477f597d28d172789f06886806bc55\n"
    "# This file is a cache directory tag created by rattler.\n"
    "# For information about cache directory tags, see:\n"
    "#\thttps://bford.info/cachedir/\n"
)
_MATCHSPEC_NAME_END = re.compile(r"[\s><=!~;\[]")
_DOTTED = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*\Z")
_VERSION_SEGMENTS = re.compile(r"[._-]")
#: Files up to this size are read into memory and written by the writer threads.
_SMALL_FILE = 512 << 10
_PENDING_WRITES = 256


# --- what a package holds -----------------------------------------------------------------------------


@dataclass(frozen=True)
class PathEntry:
    """One entry of ``info/paths.json`` (or one rebuilt from ``info/files`` for old packages)."""

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


@dataclass
class Package:
    """A package being installed: its source, metadata, and where each of its files goes."""

    source: PackageSource
    index: Mapping[str, Any]
    info: PackageInfo
    entries: list[PathEntry]
    entry_points: list[EntryPoint]
    final: dict[str, str] = field(default_factory=dict)
    """Package path -> path in the prefix (noarch python paths mapped)."""
    installed: dict[str, str] = field(default_factory=dict)
    """Path in the prefix -> where this package's copy is written (itself, or under ``__clobbers__``)."""
    shadowed: set[str] = field(default_factory=set)
    """Package paths not written because an entry point of the same package takes their place."""

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


def parse_paths_json(document: object, file_name: str) -> list[PathEntry]:
    """The entries of an ``info/paths.json`` document; their paths are checked, not trusted."""
    entries = document.get("paths") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise _invalid(file_name, "info/paths.json has no 'paths' list")
    result = []
    for item in entries:
        if not isinstance(item, dict) or not isinstance(item.get("_path"), str):
            raise _invalid(file_name, "info/paths.json has an entry without '_path'")
        path_type = item.get("path_type", "hardlink")
        if path_type not in ("hardlink", "softlink", "directory"):
            raise _invalid(file_name, f"info/paths.json gives {item['_path']} the unknown type {path_type!r}")
        placeholder = item.get("prefix_placeholder")
        result.append(
            PathEntry(
                path=_safe_path(item["_path"], file_name),
                path_type=path_type,
                sha256=item.get("sha256"),
                size=item.get("size_in_bytes"),
                placeholder=placeholder,
                file_mode=item.get("file_mode", "text") if placeholder else None,
                no_link=bool(item.get("no_link", False)),
            )
        )
    return result


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
    raise _invalid(file_name, f"info/has_prefix has a malformed line: {line!r}")


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
    raise _invalid(file_name, f"info/has_prefix has an unterminated quote: {text!r}")


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
        raise _invalid(file_name, f"info/link.json has an invalid entry point {spec!r}")
    return EntryPoint(command, module, function)


def _safe_path(path: str, file_name: str) -> str:
    try:
        clean = normalize_member_path(path)
    except ValueError as exc:
        raise _invalid(file_name, f"info/paths.json: {exc}") from exc
    if not clean:
        raise _invalid(file_name, "info/paths.json lists an empty path")
    return clean


def _invalid(file_name: str, what: str) -> ArchiveError:
    return ArchiveError(f"{file_name} is not a valid conda package: {what}; download it again or rebuild it")


def load_package(source: PackageSource) -> Package:
    """Read a package's ``info/`` and parse what installing it needs."""
    with source.open() as stream:
        info = read_info(stream, source.file_name)
    index = info.json("index.json", source.file_name)
    if not isinstance(index, dict) or not all(
        isinstance(index.get(k), str) for k in ("name", "version", "build")
    ):
        raise _invalid(source.file_name, "info/index.json lacks name, version or build")
    if "paths.json" in info.files:
        entries = parse_paths_json(info.json("paths.json", source.file_name), source.file_name)
    else:
        entries = parse_legacy_paths(info, source.file_name)
    entry_points: list[EntryPoint] = []
    if index.get("noarch") == "python" and "link.json" in info.files:
        link = info.json("link.json", source.file_name)
        noarch = link.get("noarch") if isinstance(link, dict) else None
        specs = noarch.get("entry_points", []) if isinstance(noarch, dict) else []
        entry_points = [parse_entry_point(str(spec), source.file_name) for spec in specs or []]
    return Package(source, index, info, entries, entry_points)


# --- dependency order ---------------------------------------------------------------------------------


def matchspec_name(spec: str) -> str:
    """The (lower-cased) package name a dependency string starts with, as rattler scans it."""
    match = _MATCHSPEC_NAME_END.search(spec)
    return (spec[: match.start()] if match else spec).lower()


def sort_topologically(
    names: Sequence[str], depends: Mapping[str, Sequence[str]], noarch: Mapping[str, bool]
) -> list[str]:
    """Dependencies before dependents, exactly as rattler's ``PackageRecord::sort_topologically``.

    ``depends`` maps each name to its dependency strings, ``noarch`` tells which are noarch; cycles are
    broken by dropping an edge from an arch to a noarch package where there is one.
    """
    deps = {name: [matchspec_name(d) for d in depends.get(name, ())] for name in names}
    breaks = _break_cycles(_find_cycles(deps), noarch)
    order: list[str] = []
    visited: set[str] = set()
    dependencies = {d for name in names for d in deps[name] if (name, d) not in breaks}
    stack: list[tuple[bool, str]] = [(False, root) for root in sorted(set(names) - dependencies)]
    while True:
        while stack:
            install, name = stack.pop()
            if install:
                order.append(name)
                continue
            if name in visited:
                continue
            visited.add(name)
            if name not in deps:
                continue
            stack.append((True, name))
            stack.extend((False, d) for d in sorted(d for d in deps[name] if (name, d) not in breaks))
        unvisited = sorted(n for n in names if n not in visited)
        if not unvisited:
            return order
        stack.extend((False, n) for n in unvisited)


def _find_cycles(deps: Mapping[str, Sequence[str]]) -> list[list[str]]:
    cycles: list[list[str]] = []
    visited: set[str] = set()
    for start in sorted(deps):
        if start in visited:
            continue
        path: list[str] = []
        # Iterative DFS: (node, index of the next dependency to visit).
        stack: list[tuple[str, int]] = [(start, -1)]
        while stack:
            node, i = stack.pop()
            if i < 0:
                if node in path:
                    cycles.append(path[path.index(node) :])
                    continue
                if node in visited:
                    continue
                visited.add(node)
                path.append(node)
                i = 0
            children = deps.get(node, ())
            if i < len(children):
                stack.append((node, i + 1))
                stack.append((children[i], -1))
            else:
                path.pop()
    return cycles


def _break_cycles(cycles: Sequence[Sequence[str]], noarch: Mapping[str, bool]) -> set[tuple[str, str]]:
    breaks: set[tuple[str, str]] = set()
    for cycle in cycles:
        for i, first in enumerate(cycle):
            second = cycle[(i + 1) % len(cycle)]
            first_arch, second_arch = not noarch.get(first, False), not noarch.get(second, False)
            if first_arch and not second_arch:
                breaks.add((first, second))
                break
            if (not first_arch and second_arch) or i == len(cycle) - 1:
                breaks.add((second, first))
                break
    return breaks


# --- where files go -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PythonInfo:
    """The environment's python, for noarch python packages (rattler's ``PythonInfo``)."""

    version: tuple[int, int]
    site_packages: str
    bin_dir: str
    executable: str
    """Relative path of the interpreter: ``bin/pythonX.Y`` (``python.exe`` on Windows)."""

    @classmethod
    def from_record(cls, record: Mapping[str, Any], platform: str) -> PythonInfo:
        version = str(record.get("version", ""))
        major_minor = python_major_minor(version)
        if major_minor is None:
            msg = f"cannot install noarch python packages: the python version {version!r} has no X.Y form"
            raise InstallError(msg)
        major, minor = major_minor
        windows = is_windows_platform(platform)
        default_site = "Lib/site-packages" if windows else f"lib/python{major}.{minor}/site-packages"
        site = str(record.get("python_site_packages_path") or default_site)
        executable = "python.exe" if windows else f"bin/python{major}.{minor}"
        return cls(major_minor, site.strip("/"), "Scripts" if windows else "bin", executable)

    def target_path(self, path: str) -> str:
        if path.startswith("site-packages/"):
            return f"{self.site_packages}/{path[len('site-packages/') :]}"
        if path.startswith("python-scripts/"):
            return f"{self.bin_dir}/{path[len('python-scripts/') :]}"
        return path


def python_major_minor(version: str) -> tuple[int, int] | None:
    """``(X, Y)`` when the first two segments of a conda version are plain numbers (rattler's rule)."""
    version = version.lower().partition("+")[0]
    if "!" in version:
        version = version.split("!", 1)[1]
    segments = _VERSION_SEGMENTS.split(version)
    if len(segments) < 2 or not segments[0].isdigit() or not segments[1].isdigit():
        return None
    return int(segments[0]), int(segments[1])


def entry_point_paths(point: EntryPoint, python: PythonInfo, platform: str) -> list[str]:
    if is_windows_platform(platform):
        return [f"{python.bin_dir}/{point.command}-script.py"]
    return [f"{python.bin_dir}/{point.command}"]


def plan_paths(packages: Sequence[Package], python: PythonInfo | None, platform: str) -> list[Package]:
    """Fill in ``final`` and ``installed`` for every package; returns them in dependency order."""
    by_name = {p.name: p for p in packages}
    if len(by_name) != len(packages):
        names = sorted(p.name for p in packages)
        twice = next(a for a, b in zip(names, names[1:]) if a == b)
        msg = f"cannot install two packages named {twice}"
        raise InstallError(msg)
    order = sort_topologically(
        sorted(by_name),
        {n: p.depends for n, p in by_name.items()},
        {n: p.index.get("noarch") not in (None, False) for n, p in by_name.items()},
    )
    owned: dict[str, list[str]] = {}
    for name in order:
        package = by_name[name]
        _map_package_paths(package, python, platform)
        scripts = _entry_point_targets(package, python, platform)
        # rattler writes entry points after the files, so an entry point replaces a file at its path.
        package.shadowed = {e.path for e in package.entries if package.final[e.path] in scripts}
        files = [package.final[e.path] for e in package.entries if e.path_type != "directory"]
        owned[name] = list(dict.fromkeys([*files, *scripts]))
    live = resolve_clobbers(order, owned)
    for name in order:
        package = by_name[name]
        for path in owned[name]:
            package.installed[path] = path if (name, path) in live else f"{CLOBBERS_DIR}/{name}/{path}"
    return [by_name[n] for n in order]


def _map_package_paths(package: Package, python: PythonInfo | None, platform: str) -> None:
    if package.noarch_python and python is None:
        msg = f"could not install {package.dist}: it is a noarch python package but the environment has no python"
        raise InstallError(msg)
    for entry in package.entries:
        final = python.target_path(entry.path) if package.noarch_python and python else entry.path
        package.final[entry.path] = final


def _entry_point_targets(package: Package, python: PythonInfo | None, platform: str) -> list[str]:
    if not package.noarch_python or python is None:
        return []
    return [path for point in package.entry_points for path in entry_point_paths(point, python, platform)]


def resolve_clobbers(order: Sequence[str], owned: Mapping[str, Sequence[str]]) -> set[tuple[str, str]]:
    """The ``(package, path)`` pairs that end up at their own path; all others go to ``__clobbers__``.

    This is the layout rattler's path resolver settles on once it re-prioritises by dependency order:
    walking down a path, the first folder or file that is a file of the highest-ranked package holding
    anything at or below it decides; that package's file stays, everything else at or below is moved.
    """
    rank = {name: i for i, name in enumerate(order)}
    exact: dict[str, set[str]] = {}
    for name in order:
        for path in owned[name]:
            exact.setdefault(path, set()).add(name)
    below: dict[str, set[str]] = {}
    for name in order:
        for path in owned[name]:
            for parent in _parents(path):
                if parent in exact:
                    below.setdefault(parent, set()).add(name)
    live = set()
    for name in order:
        for path in owned[name]:
            if _stays(name, path, exact, below, rank):
                live.add((name, path))
    return live


def _parents(path: str) -> Iterator[str]:
    index = path.find("/")
    while index >= 0:
        yield path[:index]
        index = path.find("/", index + 1)


def _stays(
    name: str,
    path: str,
    exact: Mapping[str, set[str]],
    below: Mapping[str, set[str]],
    rank: Mapping[str, int],
) -> bool:
    if len(exact[path]) == 1 and path not in below and not any(p in exact for p in _parents(path)):
        return True
    for node in [*_parents(path), path]:
        holders = exact.get(node)
        if not holders:
            continue
        winner = max(holders | below.get(node, set()), key=rank.__getitem__)
        if winner in holders:
            return node == path and winner == name
    return False


# --- writing one package -------------------------------------------------------------------------------


@dataclass
class _Context:
    build_dir: Path
    target_prefix: str
    platform: str
    python: PythonInfo | None
    known_dirs: set[str]
    writes: ThreadPoolExecutor
    """Creating a file costs far more than reading it from the archive: small files are written here."""
    write_slots: threading.BoundedSemaphore
    """Bounds the small files held in memory while they wait for a writer."""


@dataclass
class _Written:
    """What happened to one payload member, for ``paths_data`` and for later copies of its bytes."""

    entry: PathEntry
    installed: str
    kind: str
    sha256: str | None = None
    sha256_in_prefix: str | None = None
    size: int | None = None
    patched: bool = False


class _PackageInstaller:
    """Streams one package's payload into the prefix following its plan."""

    def __init__(self, package: Package, context: _Context) -> None:
        self.package = package
        self.context = context
        self.writer = TreeWriter(context.build_dir, context.known_dirs)
        self.by_path = {
            e.path: e
            for e in package.entries
            if e.path_type != "directory" and e.path not in package.shadowed
        }
        self.written: dict[str, _Written] = {}
        self.symlinks: dict[str, str] = {}
        self.file_meta: dict[str, tuple[int, int]] = {}
        self.deferred: list[tuple[Member, PathEntry]] = []
        self.deferred_paths: set[str] = set()
        self.pending: list[Future[None]] = []
        about = package.info.about_mtime
        self.patched_mtime = float(about + 1) if about is not None else time.time()

    @property
    def file_name(self) -> str:
        return self.package.source.file_name

    def run(self) -> list[dict[str, Any]]:
        """Write the package's files; returns its ``paths_data`` entries, sorted like rattler's."""
        try:
            for entry in self.package.entries:
                if entry.path_type == "directory":
                    self.writer.make_dirs(self.package.final[entry.path])
            with self.package.source.open() as stream, iter_payload(stream, self.file_name) as members:
                for member, data in members:
                    self._member(member, data)
            self._wait_for_writes()
            missing = sorted(set(self.by_path) - set(self.written) - self.deferred_paths)
            if missing:
                what = f"info/paths.json lists {missing[0]} but the archive does not hold it"
                raise _invalid(self.file_name, what)
            self._finish_deferred()
            items = self._write_entry_points()
            self._wait_for_writes()
        except BaseException:
            self._wait_for_writes(report=False)
            raise
        items += [_paths_item(w, self.package.final[w.entry.path]) for w in self.written.values()]
        for entry in self.package.entries:
            if entry.path_type == "directory":
                items.append({"_path": self.package.final[entry.path], "path_type": "directory"})
        return sorted(items, key=lambda item: item["_path"].split("/"))

    def _destination(self, entry: PathEntry) -> str:
        return self.package.installed[self.package.final[entry.path]]

    def _member(self, member: Member, data: BinaryIO | None) -> None:
        if member.kind == "symlink":
            self.symlinks[member.path] = member.target
        elif member.kind == "file":
            self.file_meta[member.path] = (member.mode, member.mtime)
        entry = self.by_path.get(member.path)
        if entry is None:
            return
        if member.path in self.written or member.path in self.deferred_paths:
            raise _invalid(self.file_name, f"it holds {member.path} twice")
        if entry.path_type == "softlink" and member.kind != "symlink":
            what = "a regular file" if member.kind == "file" else f"a {member.kind}"
            raise _invalid(
                self.file_name,
                f"info/paths.json says {member.path} is a symlink but the archive holds {what}",
            )
        if member.kind == "directory":
            self._directory(member, entry)
        elif member.kind == "hardlink" or (member.kind == "symlink" and entry.no_link):
            self.deferred.append((member, entry))
            self.deferred_paths.add(member.path)
        elif member.kind == "symlink":
            self._symlink(member, entry, self._destination(entry))
        else:
            assert data is not None
            self._file(member, entry, self._destination(entry), data)

    def _directory(self, member: Member, entry: PathEntry) -> None:
        """An old package listing a folder in ``info/files``: create it, as conda does."""
        installed = self._destination(entry)
        self.writer.make_dirs(installed)
        self.written[member.path] = _Written(entry, installed, "directory")

    def _symlink(self, member: Member, entry: PathEntry, installed: str) -> None:
        final = self.package.final[entry.path]
        if not link_stays_inside(final, member.target):
            msg = (
                f"{self.file_name} holds a symlink that points outside the environment: "
                f"{final} -> {member.target}; refusing to install it"
            )
            raise ArchiveError(msg)
        self.writer.symlink(installed, member.target, member.mtime)
        target_hash = hashlib.sha256(member.target.encode("utf-8", "surrogateescape")).hexdigest()
        kind = "softlink" if entry.path_type in ("softlink", "") else entry.path_type
        written = _Written(entry, installed, kind, sha256=entry.sha256, size=entry.size)
        if kind == "softlink":
            written.sha256_in_prefix = target_hash if target_hash != entry.sha256 else None
            written.size = entry.size if entry.size is not None else len(member.target.encode())
        self.written[member.path] = written

    def _file(self, member: Member, entry: PathEntry, installed: str, data: BinaryIO | bytes) -> None:
        if entry.placeholder:
            content = data if isinstance(data, bytes) else data.read()
            self._patched(member, entry, installed, content)
            return
        if not isinstance(data, bytes) and member.size <= _SMALL_FILE:
            data = data.read()
        if isinstance(data, bytes):
            digest = entry.sha256 or hashlib.sha256(data).hexdigest()
            size = entry.size if entry.size is not None and entry.sha256 else len(data)
            self._write_soon(installed, data, member.mode, member.mtime)
        elif entry.sha256 is None:
            hashing = _HashingReader(data)
            self.writer.write(installed, cast(BinaryIO, hashing), member.mode, member.mtime)
            digest, size = hashing.hexdigest(), hashing.size
        else:
            self.writer.write(installed, data, member.mode, member.mtime)
            digest, size = entry.sha256, entry.size if entry.size is not None else member.size
        in_prefix = None if digest == entry.sha256 else digest
        self.written[member.path] = _Written(entry, installed, "hardlink", entry.sha256, in_prefix, size)

    def _patched(self, member: Member, entry: PathEntry, installed: str, content: bytes) -> None:
        assert entry.placeholder is not None
        context = self.context
        new = replace_prefix(
            content, entry.placeholder, context.target_prefix, entry.file_mode or "text", context.platform
        )
        if _needs_codesign(context.platform, entry, member.mode, content, new):
            self.writer.write(installed, new, member.mode, self.patched_mtime)
            new = _codesign(self.writer.path(installed), self.package.dist)
        else:
            self._write_soon(installed, new, member.mode, self.patched_mtime)
        digest = hashlib.sha256(new).hexdigest()
        in_prefix = None if digest == entry.sha256 else digest
        self.written[member.path] = _Written(
            entry, installed, "hardlink", entry.sha256, in_prefix, len(new), True
        )

    def _write_soon(self, installed: str, data: bytes, mode: int, mtime: float) -> None:
        """Hand a file to the writer threads; :meth:`_wait_for_writes` collects the outcome."""
        slots = self.context.write_slots
        slots.acquire()

        def write() -> None:
            try:
                self.writer.write(installed, data, mode, mtime)
            finally:
                slots.release()

        try:
            self.pending.append(self.context.writes.submit(write))
        except BaseException:
            slots.release()
            raise

    def _wait_for_writes(self, *, report: bool = True) -> None:
        """Wait for the files handed to the writer threads; raise the first failure if ``report``."""
        pending, self.pending = self.pending, []
        errors = [error for error in (future.exception() for future in pending) if error is not None]
        if errors and report:
            raise errors[0]

    def _finish_deferred(self) -> None:
        """Hard-link members and ``no_link`` symlinks: both need another member's original bytes."""
        if not self.deferred:
            return
        sources = {m.path: self._content_source(m) for m, _ in self.deferred}
        originals = self._original_bytes({s for s in sources.values() if s not in self._verbatim()})
        for member, entry in self.deferred:
            installed = self._destination(entry)
            source = sources[member.path]
            if source in originals:
                content = originals[source]
            else:
                content = self.writer.path(self.written[source].installed).read_bytes()
            if member.kind == "symlink":
                mode, mtime = self.file_meta.get(source, (0o644, member.mtime))
                self._copied_symlink(Member(member.path, "file", mode, mtime), entry, installed, content)
            else:
                self._file(member, entry, installed, content)

    def _verbatim(self) -> set[str]:
        return {p for p, w in self.written.items() if w.kind == "hardlink" and not w.patched}

    def _content_source(self, member: Member) -> str:
        """The member whose bytes a hard link or a ``no_link`` symlink stands for."""
        if member.kind == "hardlink":
            return member.target
        path, hops = member.path, 0
        while path in self.symlinks:
            target = self.symlinks[path]
            if not link_stays_inside(path, target) or hops > 40:
                raise _invalid(
                    self.file_name,
                    f"the no_link symlink {member.path} does not lead to a file of the package",
                )
            path = _join_link(path, target)
            hops += 1
        return path

    def _original_bytes(self, wanted: set[str]) -> dict[str, bytes]:
        """Read the named members' bytes in another pass over the payload (rarely needed)."""
        found: dict[str, bytes] = {}
        if not wanted:
            return found
        with self.package.source.open() as stream, iter_payload(stream, self.file_name) as members:
            for member, data in members:
                if member.path in wanted and member.kind == "file" and data is not None:
                    found[member.path] = data.read()
        missing = sorted(wanted - found.keys())
        if missing:
            raise _invalid(
                self.file_name, f"a link refers to {missing[0]}, which is not a file of the package"
            )
        return found

    def _copied_symlink(self, member: Member, entry: PathEntry, installed: str, content: bytes) -> None:
        """rattler copies the file a ``no_link`` symlink resolves to instead of linking."""
        self.writer.write(installed, content, member.mode, member.mtime)
        digest = entry.sha256 or "0" * 64
        self.written[member.path] = _Written(
            entry,
            installed,
            "softlink",
            entry.sha256,
            None if entry.sha256 else digest,
            entry.size if entry.size is not None else len(content),
        )

    def _write_entry_points(self) -> list[dict[str, Any]]:
        context, package = self.context, self.package
        if not package.noarch_python or context.python is None:
            return []
        items = []
        windows = is_windows_platform(context.platform)
        prefix = prefix_for_platform(context.target_prefix, context.platform).rstrip("/")
        python = f"{prefix}/{context.python.executable}"
        for point in package.entry_points:
            script = entry_point_script(point, "" if windows else python_shebang(python)).encode()
            for path in entry_point_paths(point, context.python, context.platform):
                installed = package.installed[path]
                self.writer.write(installed, script, 0o775, None)
                path_type = "windows_python_entry_point_script" if windows else "unix_python_entry_point"
                item: dict[str, Any] = {"_path": installed}
                if installed != path:
                    item["original_path"] = path
                item.update(
                    path_type=path_type, sha256=hashlib.sha256(script).hexdigest(), size_in_bytes=len(script)
                )
                items.append(item)
            if windows:
                logger.warning(
                    "%s: no %s.exe launcher was created for the entry point %s (rattler embeds one that "
                    "pixi-pack cannot ship); run `python %s\\%s-script.py` instead",
                    package.dist,
                    point.command,
                    point.command,
                    context.python.bin_dir,
                    point.command,
                )
        return items


def _paths_item(written: _Written, final: str) -> dict[str, Any]:
    entry = written.entry
    item: dict[str, Any] = {"_path": written.installed}
    if written.installed != final:
        item["original_path"] = final
    item["path_type"] = written.kind
    if entry.no_link:
        item["no_link"] = True
    if written.sha256:
        item["sha256"] = written.sha256
    if written.sha256_in_prefix:
        item["sha256_in_prefix"] = written.sha256_in_prefix
    if written.size is not None:
        item["size_in_bytes"] = written.size
    if written.patched:
        item["file_mode"] = entry.file_mode
    if entry.placeholder:
        item["prefix_placeholder"] = entry.placeholder
    return item


def _join_link(link: str, target: str) -> str:
    parts = link.split("/")[:-1]
    for part in target.split("/"):
        if part == "..":
            parts.pop()
        elif part not in ("", "."):
            parts.append(part)
    return "/".join(parts)


def entry_point_script(point: EntryPoint, shebang: str) -> str:
    """The script rattler writes for an entry point (``python_entry_point_template``)."""
    import_name = point.function.split(".", 1)[0]
    return (
        f"{shebang}\n"
        "# -*- coding: utf-8 -*-\n"
        "import re\n"
        "import sys\n\n"
        f"from {point.module} import {import_name}\n\n"
        "if __name__ == '__main__':\n"
        "\tsys.argv[0] = re.sub(r'(-script\\.pyw?|\\.exe)?$', '', sys.argv[0])\n"
        f"\tsys.exit({point.function}())\n"
    )


class _HashingReader:
    """Hashes what passes through, for files whose sha256 paths.json does not give."""

    def __init__(self, source: BinaryIO | bytes) -> None:
        self._source = source
        self._hash = hashlib.sha256()
        self.size = 0

    def read(self, size: int = -1) -> bytes:
        if isinstance(self._source, bytes):
            data, self._source = self._source, b""
        else:
            data = self._source.read(size)
        self._hash.update(data)
        self.size += len(data)
        return data

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


_MACHO_MAGIC = {
    b"\xca\xfe\xba\xbe",
    b"\xbe\xba\xfe\xca",
    b"\xfe\xed\xfa\xce",
    b"\xce\xfa\xed\xfe",
    b"\xfe\xed\xfa\xcf",
    b"\xcf\xfa\xed\xfe",
}


def _needs_codesign(platform: str, entry: PathEntry, mode: int, old: bytes, new: bytes) -> bool:
    """macOS kills binaries whose signature a prefix rewrite broke; rattler re-signs them ad hoc."""
    if not platform.startswith(("osx-", "ios-")) or entry.file_mode != "binary" or old == new:
        return False
    return bool(mode & 0o111) or new[:4] in _MACHO_MAGIC


def _codesign(path: Path, dist: str) -> bytes:
    if sys.platform != "darwin":
        logger.warning("%s: cannot re-sign %s (codesign needs macOS)", dist, path.name)
        return path.read_bytes()
    import subprocess

    command = ["/usr/bin/codesign", "--sign", "-", "--force", "--preserve-metadata=entitlements", str(path)]
    result = subprocess.run(command, capture_output=True, check=False)
    if result.returncode != 0:
        msg = f"could not re-sign {path.name} after replacing its prefix: {result.stderr.decode(errors='replace')}"
        raise InstallError(msg)
    return path.read_bytes()


# --- conda-meta ---------------------------------------------------------------------------------------

_RECORD_KEYS = (
    "arch",
    "build",
    "build_number",
    "constrains",
    "depends",
    "extra_depends",
    "features",
    "flags",
    "legacy_bz2_md5",
    "legacy_bz2_size",
    "license",
    "license_family",
    "md5",
    "name",
    "noarch",
    "platform",
    "purls",
    "python_site_packages_path",
    "run_exports",
    "sha256",
    "size",
    "subdir",
    "timestamp",
    "track_features",
    "version",
)
_OMIT_EMPTY = frozenset({"constrains", "extra_depends", "flags", "track_features"})


def prefix_record(
    package: Package, paths: Sequence[Mapping[str, Any]], target_prefix: Path
) -> dict[str, Any]:
    """The ``conda-meta/<dist>.json`` document, laid out as rattler serialises a ``PrefixRecord``.

    The repodata fields come from the pack's record (name, version and build from ``index.json`` if it
    lacks them), in rattler's order and with its omissions. ``url`` is the record's own if it has one,
    else where the package sits in the pack's channel layout next to the environment. There is no
    package cache, so ``extracted_package_dir``, ``package_tarball_full_path`` and ``link`` are left out.
    """
    record, index = package.source.record, package.index
    document: dict[str, Any] = {}
    for key in _RECORD_KEYS:
        value = record.get(
            key, index.get(key) if key in ("name", "version", "build", "build_number") else None
        )
        if key == "depends" and value is None:
            value = []
        if key == "subdir" and value is None:
            value = index.get("subdir", "")
        if key == "track_features" and value:
            # rattler reads a list or a comma/space separated string and writes it space separated.
            parts = value if isinstance(value, list) else re.split("[, ]", str(value))
            value = " ".join(str(part).strip() for part in parts)
        if value is None or (key in _OMIT_EMPTY and not value) or (key == "noarch" and value is False):
            continue
        document[key] = value
    subdir = str(document.get("subdir") or "noarch")
    fallback = (target_prefix.absolute().parent / "channel" / subdir / package.source.file_name).as_uri()
    document["fn"] = package.source.file_name
    document["url"] = str(record.get("url") or fallback)
    if record.get("channel"):
        document["channel"] = str(record["channel"])
    document["requested_specs"] = []
    document["files"] = [item["_path"] for item in paths]
    document["paths_data"] = {"paths_version": 1, "paths": list(paths)}
    return document


def write_json_atomically(path: Path, document: Mapping[str, Any]) -> None:
    """Write ``document`` as rattler does (pretty, two spaces, no final newline) via a temp file."""
    text = json.dumps(document, indent=2, ensure_ascii=False)
    fd, temp = tempfile.mkstemp(prefix=".tmp-", suffix=".json", dir=path.parent)
    try:
        with open(fd, "w", encoding="utf-8", newline="\n") as out:
            out.write(text)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    Path(path).chmod(0o644)


# --- the whole installation ---------------------------------------------------------------------------


def install_packages(
    packages: Sequence[PackageSource],
    build_dir: Path,
    target_prefix: Path,
    platform: str,
    *,
    workers: int | None = None,
    on_installed: Callable[[PackageSource], None] | None = None,
) -> None:
    """Install ``packages`` into ``build_dir`` as if it were ``target_prefix``.

    ``build_dir`` (empty, or absent) receives the files; placeholders, shebangs, entry points and
    ``conda-meta`` name ``target_prefix``, where the caller moves the result. Link scripts are not run,
    as rattler and upstream pixi-unpack do not run them. On failure ``build_dir`` is emptied again and
    the error names the package. ``on_installed`` is called (from this thread) as each package is done.
    """
    made_build_dir = not build_dir.exists()
    build_dir.mkdir(parents=True, exist_ok=True)
    if not made_build_dir and any(build_dir.iterdir()):
        msg = f"cannot install into {build_dir}: the folder is not empty"
        raise InstallError(msg)
    try:
        _install(
            packages, build_dir, target_prefix, platform, max(1, workers or os.cpu_count() or 1), on_installed
        )
    except BaseException:
        if made_build_dir:
            shutil.rmtree(build_dir, ignore_errors=True)
        else:
            for child in build_dir.iterdir():
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child, ignore_errors=True)
                else:
                    child.unlink(missing_ok=True)
        raise


def _install(
    packages: Sequence[PackageSource],
    build_dir: Path,
    target_prefix: Path,
    platform: str,
    workers: int,
    on_installed: Callable[[PackageSource], None] | None,
) -> None:
    with (
        ThreadPoolExecutor(workers, "pixi-unpack-install") as pool,
        ThreadPoolExecutor(2 * workers, "pixi-unpack-write") as writes,
    ):
        loaded = _run_all(pool, packages, load_package)
        python = _python_info(loaded, platform)
        ordered = plan_paths(loaded, python, platform)
        _warn_link_scripts(ordered, platform)
        slots = threading.BoundedSemaphore(_PENDING_WRITES)
        context = _Context(build_dir, str(target_prefix), platform, python, set(), writes, slots)
        _prepare_prefix(context)
        by_source = {id(p.source): p for p in ordered}

        def install_one(source: PackageSource) -> None:
            package = by_source[id(source)]
            paths = _PackageInstaller(package, context).run()
            meta = build_dir / "conda-meta" / f"{package.dist}.json"
            write_json_atomically(meta, prefix_record(package, paths, target_prefix))

        # Like rattler, start the biggest packages first so they do not finish last.
        biggest_first = sorted(packages, key=lambda s: -int(s.record.get("size") or 0))
        _run_all(pool, biggest_first, install_one, on_installed)


def _run_all(
    pool: ThreadPoolExecutor,
    sources: Sequence[PackageSource],
    task: Callable[[PackageSource], Any],
    done: Callable[[PackageSource], None] | None = None,
) -> list[Any]:
    """``task`` for every source, results in order; the first failure cancels the rest and is raised."""
    futures = {pool.submit(task, source): i for i, source in enumerate(sources)}
    results: list[Any] = [None] * len(sources)
    pending = set(futures)
    while pending:
        finished, pending = wait(pending, return_when=FIRST_EXCEPTION)
        for future in sorted(finished, key=futures.__getitem__):
            source = sources[futures[future]]
            error = future.exception()
            if error is not None:
                for other in pending:
                    other.cancel()
                wait(pending)
                raise _with_context(error, source) from error
            results[futures[future]] = future.result()
            if done is not None:
                done(source)
    return results


def _with_context(error: BaseException, source: PackageSource) -> BaseException:
    stem = source.file_name.rsplit(".conda", 1)[0].rsplit(".tar.bz2", 1)[0]
    if isinstance(error, PixiPackError):
        message = str(error)
        if source.file_name in message or stem in message:
            return error
        return type(error)(f"could not install {stem}: {message}")
    if isinstance(error, OSError):
        return InstallError(f"could not install {stem}: {error}")
    return error


def _python_info(packages: Iterable[Package], platform: str) -> PythonInfo | None:
    python = next((p for p in packages if p.name == "python"), None)
    if python is None:
        return None
    record = {**python.index, **python.source.record}
    return PythonInfo.from_record(record, platform)


def _warn_link_scripts(packages: Iterable[Package], platform: str) -> None:
    for package in packages:
        name = package.index["name"]
        folder, ext = ("Scripts", "bat") if is_windows_platform(platform) else ("bin", "sh")
        for kind in ("pre-link", "post-link"):
            if f"{folder}/.{name}-{kind}.{ext}" in package.final.values():
                logger.warning(
                    "%s has a %s script, which is not run (rattler and pixi-unpack do not run them either)",
                    package.dist,
                    kind,
                )


def _prepare_prefix(context: _Context) -> None:
    """``conda-meta/history`` and ``CACHEDIR.TAG``, as rattler's ``Prefix::create`` and pixi-unpack make them."""
    writer = TreeWriter(context.build_dir, context.known_dirs)
    writer.make_dirs("conda-meta")
    writer.write("conda-meta/history", HISTORY.encode(), 0o644, None)
    writer.write("CACHEDIR.TAG", CACHEDIR_TAG.encode(), 0o644, None)
