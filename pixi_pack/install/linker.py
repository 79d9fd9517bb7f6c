"""One package into the prefix: its payload streamed from the archive into the places its plan says.

A :class:`PackageLinker` reads the archive once, front to back. Each member listed in ``info/paths.json``
is checked against its entry and written by a function of its kind (:func:`write_file`,
:func:`write_symlink`) that returns what ``paths_data`` records of it (a
:class:`~pixi_pack.install.condameta.WrittenPath`). Hard links and ``no_link`` symlinks need another
member's original bytes, so they wait for the end of the stream. Entry point scripts come last, as
rattler writes them. Every write goes through the one :class:`~pixi_pack.install.tree.TreeWriter`,
which never follows a symlink.

Read from rattler's ``crates/rattler/src/install/link.rs`` and ``entry_point.rs``.
"""

from __future__ import annotations

import hashlib
import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pixi_pack.errors import InstallError
from pixi_pack.formats.package import Member, invalid_package, iter_payload, link_stays_inside
from pixi_pack.formats.package_info import PathEntry, with_entries
from pixi_pack.install.condameta import WrittenPath, entry_point_item, paths_data_item
from pixi_pack.install.entrypoints import entry_point_script, launcher_exe, windows_interpreter
from pixi_pack.install.plan import PackagePlan
from pixi_pack.install.prefix import ReplacingReader, prefix_for_platform, python_shebang, replace_prefix
from pixi_pack.install.tree import TreeWriter
from pixi_pack.io import tempfiles
from pixi_pack.io.hashing import HashingReader, Readable, hash_file
from pixi_pack.io.zstd import Decompressor
from pixi_pack.platforms import PythonInfo, is_windows

logger = logging.getLogger("pixi_pack")

#: Files with a placeholder up to this size are patched in memory; bigger ones are streamed through a
#: :class:`~pixi_pack.install.prefix.ReplacingReader`, so memory stays bounded whatever a package holds.
PATCHED_IN_MEMORY_UP_TO = 16 << 20


@dataclass(frozen=True)
class Target:
    """The prefix every package of one install goes to."""

    writer: TreeWriter
    """Writes below the build folder (shared by all packages and threads)."""
    prefix: str
    """Where the environment will live: placeholders, shebangs and entry points name it."""
    platform: str
    python: PythonInfo | None
    zstd: Decompressor


class PackageLinker:
    """Streams one package's payload into the prefix following its :class:`PackagePlan`."""

    def __init__(self, plan: PackagePlan, target: Target) -> None:
        # The plan's package may have released its entries (a big install): read them again.
        plan = replace(plan, package=with_entries(plan.package, zstd=target.zstd))
        self._plan = plan
        self._target = target
        self._file_name = plan.package.source.file_name
        self._by_path = {
            e.path: e
            for e in plan.package.entries
            if e.path_type != "directory" and e.path not in plan.shadowed
        }
        # Each folder a listed path lies in -> the first such path, to refuse a member in its place.
        self._listed_inside: dict[str, str] = {}
        for path in sorted(self._by_path):
            folder = path.rpartition("/")[0]
            # A folder already seen has its parents seen too: stop there.
            while folder and folder not in self._listed_inside:
                self._listed_inside[folder] = path
                folder = folder.rpartition("/")[0]
        about = plan.package.about_mtime
        self._patched_mtime = float(about + 1) if about is not None else time.time()
        # What the stream has shown so far: written paths, symlink targets, file modes and mtimes.
        self._written: dict[str, WrittenPath] = {}
        self._symlinks: dict[str, str] = {}
        self._file_meta: dict[str, tuple[int, int]] = {}
        self._deferred: dict[str, tuple[Member, PathEntry]] = {}

    def run(self) -> list[dict[str, Any]]:
        """Write the package's files; returns its ``paths_data`` entries, sorted like rattler's."""
        folders = [self._plan.final(e.path) for e in self._plan.package.entries if e.path_type == "directory"]
        for folder in folders:
            self._target.writer.make_dirs(folder)
        self._stream_payload()
        self._finish_deferred()
        items = self._write_entry_points()
        items += [paths_data_item(w, self._plan.final(w.entry.path)) for w in self._written.values()]
        items += [{"_path": folder, "path_type": "directory"} for folder in folders]
        return sorted(items, key=lambda item: item["_path"].split("/"))

    @contextmanager
    def _payload(self) -> Iterator[Iterator[tuple[Member, bytes | Readable | None]]]:
        source, zstd = self._plan.package.source, self._target.zstd
        with source.open() as stream, iter_payload(stream, self._file_name, zstd=zstd) as members:
            yield members

    def _stream_payload(self) -> None:
        """Write the members as they stream past; hard links and ``no_link`` symlinks are deferred."""
        # The common member, a small verbatim file at its own place, goes straight to write_file, without
        # the general path's other calls (it runs once per file); anything else takes _member. Both make
        # the same checks: the fast lane only takes a member that passes each of them.
        by_path, written, deferred, file_meta = self._by_path, self._written, self._deferred, self._file_meta
        listed_inside, moved, writer = self._listed_inside, self._plan.moved, self._target.writer
        at_own_path = self._plan.python is None  # not a noarch python package, whose paths are mapped
        with self._payload() as members:
            for member, data in members:
                path = member.path
                entry = by_path.get(path)
                if (
                    at_own_path
                    and entry is not None
                    and type(data) is bytes
                    and entry.placeholder is None
                    and entry.sha256 is not None
                    and entry.path_type == "hardlink"
                    and (entry.size is None or entry.size == member.size)
                    and path not in written
                    and path not in deferred
                    and path not in listed_inside
                    and path not in moved
                ):
                    file_meta[path] = (member.mode, member.mtime)
                    written[path] = write_file(writer, member, entry, path, data)
                    continue
                self._member(member, data)
        missing = sorted(set(self._by_path) - set(self._written) - set(self._deferred))
        if missing:
            what = f"info/paths.json lists {missing[0]} but the archive does not hold it"
            raise invalid_package(self._file_name, what)

    def _destination(self, entry: PathEntry) -> str:
        return self._plan.place(self._plan.final(entry.path))

    def _member(self, member: Member, data: bytes | Readable | None) -> None:
        if member.kind == "symlink":
            self._symlinks[member.path] = member.target
        elif member.kind == "file":
            self._file_meta[member.path] = (member.mode, member.mtime)
        entry = self._by_path.get(member.path)
        if entry is None:
            return
        self._check_member(member, entry)
        if member.kind == "hardlink" or (member.kind == "symlink" and entry.no_link):
            self._deferred[member.path] = (member, entry)
            return
        installed = self._destination(entry)
        if member.kind == "directory":
            # An old package listing a folder in ``info/files``: create it, as conda does.
            self._target.writer.make_dirs(installed)
            written = WrittenPath(entry=entry, installed=installed, kind="directory")
        elif member.kind == "symlink":
            written = self._symlink(member, entry, installed)
        else:
            assert data is not None
            written = self._file(member, entry, installed, data)
        self._written[member.path] = written

    def _check_member(self, member: Member, entry: PathEntry) -> None:
        if member.path in self._written or member.path in self._deferred:
            raise invalid_package(self._file_name, f"it holds {member.path} twice")
        if entry.path_type == "softlink" and member.kind != "symlink":
            raise invalid_package(
                self._file_name,
                f"info/paths.json says {member.path} is a symlink but the archive holds {_what(member)}",
            )
        if member.kind == "file" and entry.size is not None and member.size != entry.size:
            raise invalid_package(
                self._file_name,
                f"info/paths.json says {member.path} is {entry.size} bytes but the archive holds {member.size}",
            )
        if member.kind != "directory" and member.path in self._listed_inside:
            # The plan would send the inner path to __clobbers__, but one package cannot mean both.
            inner = self._listed_inside[member.path]
            raise invalid_package(
                self._file_name, f"it lists {inner} inside {member.path}, which is {_what(member)}"
            )
        if member.kind == "hardlink" and member.target not in self._file_meta:
            raise invalid_package(
                self._file_name,
                f"the hard link {member.path} refers to {member.target}, which is not an earlier file",
            )

    def _symlink(self, member: Member, entry: PathEntry, installed: str) -> WrittenPath:
        final = self._plan.final(entry.path)
        if not link_stays_inside(final, member.target):
            # conda and rattler install these (rattler's default ExternalSymlinkPolicy); nothing is ever
            # written through one, as TreeWriter refuses any path that goes through a symlink.
            logger.warning(
                "%s: the symlink %s points outside the environment (-> %s); installed as it is",
                self._plan.package.dist,
                final,
                member.target,
            )
        return write_symlink(self._target.writer, member, entry, installed)

    def _file(self, member: Member, entry: PathEntry, installed: str, data: bytes | Readable) -> WrittenPath:
        if entry.placeholder is None:
            return write_file(self._target.writer, member, entry, installed, data)
        dist = self._plan.package.dist
        return write_patched(
            self._target, member, entry, installed, data, mtime=self._patched_mtime, dist=dist
        )

    def _finish_deferred(self) -> None:
        """Hard-link members and ``no_link`` symlinks: both need another member's original bytes."""
        if not self._deferred:
            return
        sources = {path: self._content_source(member) for path, (member, _) in self._deferred.items()}
        verbatim = {p for p, w in self._written.items() if w.kind == "hardlink" and not w.patched}
        originals = self._original_bytes({s for s in sources.values() if s not in verbatim})
        writer = self._target.writer
        for path, (member, entry) in self._deferred.items():
            installed = self._destination(entry)
            source = sources[path]
            if source in originals:
                content = originals[source]
            else:
                content = writer.path(self._written[source].installed).read_bytes()
            if member.kind == "symlink":
                # rattler copies the file a ``no_link`` symlink resolves to instead of linking.
                mode, mtime = self._file_meta.get(source, (0o644, member.mtime))
                writer.write(installed, content, mode, mtime)
                self._written[path] = WrittenPath(
                    entry=entry,
                    installed=installed,
                    kind="softlink",
                    sha256=entry.sha256,
                    sha256_in_prefix=None if entry.sha256 else "0" * 64,
                    size=entry.size if entry.size is not None else len(content),
                )
            else:
                self._written[path] = self._file(member, entry, installed, content)

    def _content_source(self, member: Member) -> str:
        """The member whose bytes a hard link or a ``no_link`` symlink stands for."""
        if member.kind == "hardlink":
            return member.target
        path, hops = member.path, 0
        while path in self._symlinks:
            target = self._symlinks[path]
            if not link_stays_inside(path, target) or hops > 40:
                raise invalid_package(
                    self._file_name,
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
        with self._payload() as members:
            for member, data in members:
                if member.path in wanted and member.kind == "file" and data is not None:
                    found[member.path] = data if isinstance(data, bytes) else data.read()
        missing = sorted(wanted - found.keys())
        if missing:
            raise invalid_package(
                self._file_name, f"a link refers to {missing[0]}, which is not a file of the package"
            )
        return found

    def _write_entry_points(self) -> list[dict[str, Any]]:
        python, platform = self._target.python, self._target.platform
        if python is None:
            return []
        windows = is_windows(platform)
        prefix = prefix_for_platform(self._target.prefix, platform).rstrip("/")
        shebang = "" if windows else python_shebang(f"{prefix}/{python.executable}")
        interpreter = windows_interpreter(self._target.prefix, gui=False)
        # As rattler: Windows scripts are plain new files (the umask applies), Unix ones 0775.
        mode = 0o666 & ~tempfiles.umask() if windows and self._plan.scripts else 0o775
        items = []
        for point, paths in self._plan.scripts:
            script = entry_point_script(point, shebang)
            for path in paths:
                if path.endswith(".exe"):
                    data = launcher_exe(platform, interpreter, script, gui=False)
                    path_type = "windows_python_entry_point_exe"
                else:
                    data = script.encode()
                    path_type = "windows_python_entry_point_script" if windows else "unix_python_entry_point"
                installed = self._plan.place(path)
                self._target.writer.write(installed, data, mode, None)
                items.append(entry_point_item(installed, path, path_type, data))
        return items


# --- one member -----------------------------------------------------------------------------------------


def write_symlink(writer: TreeWriter, member: Member, entry: PathEntry, installed: str) -> WrittenPath:
    """A symlink, as it is in the archive."""
    writer.symlink(installed, member.target, member.mtime)
    kind = "softlink" if entry.path_type in ("softlink", "") else entry.path_type
    if kind != "softlink":
        return WrittenPath(entry=entry, installed=installed, kind=kind, sha256=entry.sha256, size=entry.size)
    target_hash = hashlib.sha256(member.target.encode("utf-8", "surrogateescape")).hexdigest()
    return WrittenPath(
        entry=entry,
        installed=installed,
        kind=kind,
        sha256=entry.sha256,
        sha256_in_prefix=target_hash if target_hash != entry.sha256 else None,
        size=entry.size if entry.size is not None else len(member.target.encode()),
    )


def write_file(
    writer: TreeWriter, member: Member, entry: PathEntry, installed: str, data: bytes | Readable
) -> WrittenPath:
    """A file without a placeholder, its bytes as they are (hashed on the way where the entry has no sha256)."""
    if isinstance(data, bytes):
        digest = entry.sha256 or hashlib.sha256(data).hexdigest()
        size = entry.size if entry.size is not None and entry.sha256 else len(data)
        writer.write(installed, data, member.mode, member.mtime)
    elif entry.sha256 is None:
        hashing = HashingReader(data)
        writer.write(installed, hashing, member.mode, member.mtime)
        digests = hashing.digests()
        digest, size = digests.sha256, digests.size
    else:
        writer.write(installed, data, member.mode, member.mtime)
        digest, size = entry.sha256, entry.size if entry.size is not None else member.size
    return WrittenPath(
        entry=entry,
        installed=installed,
        kind="hardlink",
        sha256=entry.sha256,
        sha256_in_prefix=None if digest == entry.sha256 else digest,
        size=size,
    )


def write_patched(
    target: Target,
    member: Member,
    entry: PathEntry,
    installed: str,
    data: bytes | Readable,
    *,
    mtime: float,
    dist: str,
) -> WrittenPath:
    """A file with a placeholder, the target prefix put in its place (streamed above a size), re-signed on macOS."""
    assert entry.placeholder is not None
    mode = entry.file_mode or "text"
    if not isinstance(data, bytes) and member.size > PATCHED_IN_MEMORY_UP_TO:
        replacing = ReplacingReader(data, entry.placeholder, target.prefix, mode, target.platform)
        hashing = HashingReader(replacing)
        target.writer.write(installed, hashing, member.mode, mtime)
        changed, head = replacing.changed, replacing.head
        digests = hashing.digests()
        digest, size = digests.sha256, digests.size
    else:
        content = data if isinstance(data, bytes) else data.read()
        new = replace_prefix(content, entry.placeholder, target.prefix, mode, target.platform)
        target.writer.write(installed, new, member.mode, mtime)
        changed, head = content != new, new[:4]
        digest, size = hashlib.sha256(new).hexdigest(), len(new)
    if _needs_codesign(target.platform, entry, member.mode, changed, head):
        path = target.writer.path(installed)
        _codesign(path, dist)
        digests = hash_file(path)
        digest, size = digests.sha256, digests.size
    return WrittenPath(
        entry=entry,
        installed=installed,
        kind="hardlink",
        sha256=entry.sha256,
        sha256_in_prefix=None if digest == entry.sha256 else digest,
        size=size,
        patched=True,
    )


def _what(member: Member) -> str:
    return {"file": "a regular file", "hardlink": "a hard link"}.get(member.kind, f"a {member.kind}")


def _join_link(link: str, target: str) -> str:
    parts = link.split("/")[:-1]
    for part in target.split("/"):
        if part == "..":
            parts.pop()
        elif part not in ("", "."):
            parts.append(part)
    return "/".join(parts)


_MACHO_MAGIC = {
    b"\xca\xfe\xba\xbe",
    b"\xbe\xba\xfe\xca",
    b"\xfe\xed\xfa\xce",
    b"\xce\xfa\xed\xfe",
    b"\xfe\xed\xfa\xcf",
    b"\xcf\xfa\xed\xfe",
}


def _needs_codesign(platform: str, entry: PathEntry, mode: int, changed: bool, head: bytes) -> bool:
    """macOS kills binaries whose signature a prefix rewrite broke; rattler re-signs them ad hoc."""
    if not platform.startswith(("osx-", "ios-")) or entry.file_mode != "binary" or not changed:
        return False
    return bool(mode & 0o111) or head[:4] in _MACHO_MAGIC


def _codesign(path: Path, dist: str) -> None:
    if sys.platform != "darwin":
        logger.warning("%s: cannot re-sign %s (codesign needs macOS)", dist, path.name)
        return
    import subprocess

    command = ["/usr/bin/codesign", "--sign", "-", "--force", "--preserve-metadata=entitlements", str(path)]
    result = subprocess.run(command, capture_output=True, check=False)
    if result.returncode != 0:
        msg = f"could not re-sign {path.name} after replacing its prefix: {result.stderr.decode(errors='replace')}"
        raise InstallError(msg)
