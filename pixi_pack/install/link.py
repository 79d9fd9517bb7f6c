"""Install conda packages into a prefix, file for file as rattler (and so upstream pixi-unpack) does.

The work has three stages. First every package's ``info/`` is read, in parallel
(:func:`~pixi_pack.formats.package_info.load_package`). Then, with all the packages known, one plan decides where
each file goes (:func:`~pixi_pack.install.plan.plan_paths`). Last, each package's payload is streamed straight
from its archive into its final places (in parallel, each file written once, placeholders already
replaced) by a :class:`_PackageInstaller`, and its ``conda-meta/<dist>.json`` is written
(:mod:`pixi_pack.install.condameta`). Nothing depends on thread timing, so the result is the same on every run.

rattler's behaviour was read in ``crates/rattler/src/install/`` (``mod.rs``, ``link.rs``,
``entry_point.rs``, ``installer/mod.rs``) and upstream pixi-pack's ``src/unpack.rs``.
"""

from __future__ import annotations

import gc
import hashlib
import logging
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pixi_pack.errors import InstallError, PixiPackError
from pixi_pack.formats.package import Member, invalid_package, iter_payload, link_stays_inside
from pixi_pack.formats.package_info import EntryPoint, Package, PathEntry, load_package
from pixi_pack.install.condameta import (
    WrittenPath,
    entry_point_item,
    paths_data_item,
    prefix_record,
    start_prefix,
    write_json_atomically,
)
from pixi_pack.install.plan import entry_point_paths, environment_python, plan_paths
from pixi_pack.install.prefix import ReplacingReader, prefix_for_platform, python_shebang, replace_prefix
from pixi_pack.install.tree import TreeWriter
from pixi_pack.io.hashing import HashingReader, Readable, hash_file
from pixi_pack.models import PackageSource
from pixi_pack.platforms import PythonInfo, is_windows

logger = logging.getLogger("pixi_pack")

#: Files with a placeholder up to this size are patched in memory; bigger ones are streamed through a
#: :class:`~pixi_pack.install.prefix.ReplacingReader`, so memory stays bounded whatever a package holds.
PATCHED_IN_MEMORY_UP_TO = 16 << 20


# --- the whole installation ---------------------------------------------------------------------------


def install_packages(
    packages: Sequence[PackageSource],
    build_dir: Path,
    target_prefix: Path,
    platform: str,
    *,
    workers: int | None = None,
    verify: Callable[[PackageSource], None] | None = None,
    on_installed: Callable[[PackageSource], None] | None = None,
) -> None:
    """Install ``packages`` into ``build_dir`` as if it were ``target_prefix``.

    ``build_dir`` (empty, or absent) receives the files; placeholders, shebangs, entry points and
    ``conda-meta`` name ``target_prefix``, where the caller moves the result. Link scripts are not run,
    as rattler and upstream pixi-unpack do not run them. ``verify``, if given, checks each package
    before anything is read from it (each package in the same task that then reads its ``info/``, so
    there is no separate pass); a failure stops everything before any file is written. On failure
    ``build_dir`` is emptied again and the error names the package. ``on_installed`` is called (from
    this thread) as each package is done. While it runs, the interpreter's GIL switch interval is short
    and the cyclic garbage collector off, for the whole process (both restored on return).
    """
    made_build_dir = not build_dir.exists()
    build_dir.mkdir(parents=True, exist_ok=True)
    if not made_build_dir and any(build_dir.iterdir()):
        msg = f"cannot install into {build_dir}: the folder is not empty"
        raise InstallError(msg)
    try:
        _install(
            packages,
            build_dir,
            target_prefix,
            platform,
            max(1, workers or os.cpu_count() or 1),
            verify,
            on_installed,
        )
    except BaseException:
        _undo(build_dir, made_build_dir)
        raise


def _undo(build_dir: Path, made_build_dir: bool) -> None:
    """Leave ``build_dir`` as it was before: absent, or empty."""
    if made_build_dir:
        shutil.rmtree(build_dir, ignore_errors=True)
        return
    for child in build_dir.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)


def _install(
    packages: Sequence[PackageSource],
    build_dir: Path,
    target_prefix: Path,
    platform: str,
    workers: int,
    verify: Callable[[PackageSource], None] | None,
    on_installed: Callable[[PackageSource], None] | None,
) -> None:
    def load(source: PackageSource) -> Package:
        if verify is not None:
            verify(source)
        return load_package(source)

    with _interpreter_tuned_for_installing(), ThreadPoolExecutor(workers, "pixi-unpack-install") as pool:
        loaded = _run_all(pool, packages, load)
        python = environment_python(loaded, platform)
        ordered = plan_paths(loaded, python, platform)
        _warn_link_scripts(ordered, platform)
        context = _Context(build_dir, str(target_prefix), platform, python, set())
        start_prefix(TreeWriter(build_dir, context.known_dirs))
        by_source = {id(p.source): p for p in ordered}

        def install_one(source: PackageSource) -> None:
            package = by_source[id(source)]
            paths = _PackageInstaller(package, context).run()
            meta = build_dir / "conda-meta" / f"{package.dist}.json"
            write_json_atomically(meta, prefix_record(package, paths, target_prefix))

        # Start the costliest packages first so they do not finish last, alone.
        _run_all(pool, sorted(packages, key=_expected_cost, reverse=True), install_one, on_installed)


#: Seconds a thread may hold the GIL while another waits for it (Python's default is 5 ms).
GIL_SLICE = 0.0005


@contextmanager
def _interpreter_tuned_for_installing() -> Iterator[None]:
    """Short GIL slices and no cyclic garbage collection while installing; both restored after.

    A thread writing small files lets go of the GIL at every ``open``/``write`` and must then wait for
    it while a thread parsing tar headers or placeholders runs Python: for up to 5 ms each time by
    default, which made the biggest package's thread wait more than it worked. :data:`GIL_SLICE`
    (0.5 ms) measured best on the benchmark corpus (0.1 ms: more time lost switching). The per-file
    objects die by reference counting, yet the collector ran every 700 of them, for 5 % of an install's
    wall time (1.08 -> 1.02 s on the corpus, interleaved); the few cycles left (825 objects after the
    corpus's 25 packages) are collected once it is back on.
    """
    previous = sys.getswitchinterval()
    collecting = gc.isenabled()
    sys.setswitchinterval(min(previous, GIL_SLICE))
    gc.disable()
    try:
        yield
    finally:
        sys.setswitchinterval(previous)
        if collecting:
            gc.enable()


#: How much more a byte of ``.tar.bz2`` costs to install than a byte of ``.conda`` (bz2 decompresses
#: at ~10 MB/s of input here, zstd at ~250 MB/s; writing the files costs the same for both).
_BZ2_COST_FACTOR = 8


def _expected_cost(source: PackageSource) -> int:
    size = int(source.record.get("size") or 0)
    return size * _BZ2_COST_FACTOR if source.file_name.endswith(".tar.bz2") else size


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


def _warn_link_scripts(packages: Iterable[Package], platform: str) -> None:
    for package in packages:
        name = package.index["name"]
        folder, ext = ("Scripts", "bat") if is_windows(platform) else ("bin", "sh")
        for kind in ("pre-link", "post-link"):
            if f"{folder}/.{name}-{kind}.{ext}" in package.final.values():
                logger.warning(
                    "%s has a %s script, which is not run (rattler and pixi-unpack do not run them either)",
                    package.dist,
                    kind,
                )


# --- writing one package ------------------------------------------------------------------------------


@dataclass
class _Context:
    build_dir: Path
    target_prefix: str
    platform: str
    python: PythonInfo | None
    known_dirs: set[str]


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
        # Each folder a listed path lies in -> the first such path, to refuse a member in its place.
        self.listed_inside: dict[str, str] = {}
        for path in sorted(self.by_path):
            for folder in _parents(path):
                self.listed_inside.setdefault(folder, path)
        self.written: dict[str, WrittenPath] = {}
        self.symlinks: dict[str, str] = {}
        self.file_meta: dict[str, tuple[int, int]] = {}
        self.deferred: list[tuple[Member, PathEntry]] = []
        self.deferred_paths: set[str] = set()
        about = package.info.about_mtime
        self.patched_mtime = float(about + 1) if about is not None else time.time()

    @property
    def file_name(self) -> str:
        return self.package.source.file_name

    def run(self) -> list[dict[str, Any]]:
        """Write the package's files; returns its ``paths_data`` entries, sorted like rattler's."""
        for folder in self._directories():
            self.writer.make_dirs(folder)
        self._stream_payload()
        self._finish_deferred()
        items = self._write_entry_points()
        items += [paths_data_item(w, self.package.final[w.entry.path]) for w in self.written.values()]
        items += [{"_path": folder, "path_type": "directory"} for folder in self._directories()]
        return sorted(items, key=lambda item: item["_path"].split("/"))

    def _directories(self) -> list[str]:
        """The folders ``info/paths.json`` lists, at their place in the prefix."""
        return [self.package.final[e.path] for e in self.package.entries if e.path_type == "directory"]

    def _stream_payload(self) -> None:
        """Write the members as they stream past; hard links and ``no_link`` symlinks are deferred."""
        with self.package.source.open() as stream, iter_payload(stream, self.file_name) as members:
            for member, data in members:
                self._member(member, data)
        missing = sorted(set(self.by_path) - set(self.written) - self.deferred_paths)
        if missing:
            what = f"info/paths.json lists {missing[0]} but the archive does not hold it"
            raise invalid_package(self.file_name, what)

    def _destination(self, entry: PathEntry) -> str:
        return self.package.installed[self.package.final[entry.path]]

    def _member(self, member: Member, data: bytes | Readable | None) -> None:
        if member.kind == "symlink":
            self.symlinks[member.path] = member.target
        elif member.kind == "file":
            self.file_meta[member.path] = (member.mode, member.mtime)
        entry = self.by_path.get(member.path)
        if entry is None:
            return
        self._check_member(member, entry)
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

    def _check_member(self, member: Member, entry: PathEntry) -> None:
        if member.path in self.written or member.path in self.deferred_paths:
            raise invalid_package(self.file_name, f"it holds {member.path} twice")
        what = {"file": "a regular file", "hardlink": "a hard link"}.get(member.kind, f"a {member.kind}")
        if entry.path_type == "softlink" and member.kind != "symlink":
            raise invalid_package(
                self.file_name,
                f"info/paths.json says {member.path} is a symlink but the archive holds {what}",
            )
        if member.kind == "file" and entry.size is not None and member.size != entry.size:
            raise invalid_package(
                self.file_name,
                f"info/paths.json says {member.path} is {entry.size} bytes but the archive holds {member.size}",
            )
        if member.kind != "directory" and member.path in self.listed_inside:
            # The plan would send the inner path to __clobbers__, but one package cannot mean both.
            inner = self.listed_inside[member.path]
            raise invalid_package(self.file_name, f"it lists {inner} inside {member.path}, which is {what}")
        if member.kind == "hardlink" and member.target not in self.file_meta:
            raise invalid_package(
                self.file_name,
                f"the hard link {member.path} refers to {member.target}, which is not an earlier file",
            )

    def _directory(self, member: Member, entry: PathEntry) -> None:
        """An old package listing a folder in ``info/files``: create it, as conda does."""
        installed = self._destination(entry)
        self.writer.make_dirs(installed)
        self.written[member.path] = WrittenPath(entry, installed, "directory")

    def _symlink(self, member: Member, entry: PathEntry, installed: str) -> None:
        final = self.package.final[entry.path]
        if not link_stays_inside(final, member.target):
            # conda and rattler install these (rattler's default ExternalSymlinkPolicy); nothing is ever
            # written through one, as TreeWriter refuses any path that goes through a symlink.
            logger.warning(
                "%s: the symlink %s points outside the environment (-> %s); installed as it is",
                self.package.dist,
                final,
                member.target,
            )
        self.writer.symlink(installed, member.target, member.mtime)
        target_hash = hashlib.sha256(member.target.encode("utf-8", "surrogateescape")).hexdigest()
        kind = "softlink" if entry.path_type in ("softlink", "") else entry.path_type
        written = WrittenPath(entry, installed, kind, sha256=entry.sha256, size=entry.size)
        if kind == "softlink":
            written.sha256_in_prefix = target_hash if target_hash != entry.sha256 else None
            written.size = entry.size if entry.size is not None else len(member.target.encode())
        self.written[member.path] = written

    def _file(self, member: Member, entry: PathEntry, installed: str, data: bytes | Readable) -> None:
        if entry.placeholder:
            if isinstance(data, bytes) or member.size <= PATCHED_IN_MEMORY_UP_TO:
                self._patched(member, entry, installed, data if isinstance(data, bytes) else data.read())
            else:
                self._patched_stream(member, entry, installed, data)
            return
        if isinstance(data, bytes):
            digest = entry.sha256 or hashlib.sha256(data).hexdigest()
            size = entry.size if entry.size is not None and entry.sha256 else len(data)
            self.writer.write(installed, data, member.mode, member.mtime)
        elif entry.sha256 is None:
            hashing = HashingReader(data)
            self.writer.write(installed, hashing, member.mode, member.mtime)
            digests = hashing.digests()
            digest, size = digests.sha256, digests.size
        else:
            self.writer.write(installed, data, member.mode, member.mtime)
            digest, size = entry.sha256, entry.size if entry.size is not None else member.size
        in_prefix = None if digest == entry.sha256 else digest
        self.written[member.path] = WrittenPath(entry, installed, "hardlink", entry.sha256, in_prefix, size)

    def _patched(self, member: Member, entry: PathEntry, installed: str, content: bytes) -> None:
        assert entry.placeholder is not None
        context = self.context
        new = replace_prefix(
            content, entry.placeholder, context.target_prefix, entry.file_mode or "text", context.platform
        )
        self.writer.write(installed, new, member.mode, self.patched_mtime)
        if _needs_codesign(context.platform, entry, member.mode, content != new, new[:4]):
            self._codesigned(member, entry, installed)
            return
        self._record_patched(member, entry, installed, hashlib.sha256(new).hexdigest(), len(new))

    def _patched_stream(self, member: Member, entry: PathEntry, installed: str, data: Readable) -> None:
        assert entry.placeholder is not None
        context = self.context
        replacing = ReplacingReader(
            data, entry.placeholder, context.target_prefix, entry.file_mode or "text", context.platform
        )
        hashing = HashingReader(replacing)
        self.writer.write(installed, hashing, member.mode, self.patched_mtime)
        if _needs_codesign(context.platform, entry, member.mode, replacing.changed, replacing.head):
            self._codesigned(member, entry, installed)
            return
        digests = hashing.digests()
        self._record_patched(member, entry, installed, digests.sha256, digests.size)

    def _codesigned(self, member: Member, entry: PathEntry, installed: str) -> None:
        path = self.writer.path(installed)
        _codesign(path, self.package.dist)
        digests = hash_file(path)
        self._record_patched(member, entry, installed, digests.sha256, digests.size)

    def _record_patched(
        self, member: Member, entry: PathEntry, installed: str, digest: str, size: int
    ) -> None:
        in_prefix = None if digest == entry.sha256 else digest
        self.written[member.path] = WrittenPath(
            entry, installed, "hardlink", entry.sha256, in_prefix, size, True
        )

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
                raise invalid_package(
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
                    found[member.path] = data if isinstance(data, bytes) else data.read()
        missing = sorted(wanted - found.keys())
        if missing:
            raise invalid_package(
                self.file_name, f"a link refers to {missing[0]}, which is not a file of the package"
            )
        return found

    def _copied_symlink(self, member: Member, entry: PathEntry, installed: str, content: bytes) -> None:
        """rattler copies the file a ``no_link`` symlink resolves to instead of linking."""
        self.writer.write(installed, content, member.mode, member.mtime)
        digest = entry.sha256 or "0" * 64
        self.written[member.path] = WrittenPath(
            entry,
            installed,
            "softlink",
            entry.sha256,
            None if entry.sha256 else digest,
            entry.size if entry.size is not None else len(content),
        )

    def _write_entry_points(self) -> list[dict[str, Any]]:
        python = self.context.python
        if not self.package.noarch_python or python is None:
            return []
        items = []
        for point in self.package.entry_points:
            items += self._write_entry_point(point, python)
            if is_windows(self.context.platform):
                _warn_no_launcher(self.package.dist, point, python)
        return items

    def _write_entry_point(self, point: EntryPoint, python: PythonInfo) -> list[dict[str, Any]]:
        platform = self.context.platform
        windows = is_windows(platform)
        prefix = prefix_for_platform(self.context.target_prefix, platform).rstrip("/")
        shebang = "" if windows else python_shebang(f"{prefix}/{python.executable}")
        script = entry_point_script(point, shebang).encode()
        path_type = "windows_python_entry_point_script" if windows else "unix_python_entry_point"
        items = []
        for path in entry_point_paths(point, python, platform):
            installed = self.package.installed[path]
            self.writer.write(installed, script, 0o775, None)
            items.append(entry_point_item(installed, path, path_type, script))
        return items


def _warn_no_launcher(dist: str, point: EntryPoint, python: PythonInfo) -> None:
    logger.warning(
        "%s: no %s.exe launcher was created for the entry point %s (rattler embeds one that "
        "pixi-pack cannot ship); run `python %s\\%s-script.py` instead",
        dist,
        point.command,
        point.command,
        python.bin_dir,
        point.command,
    )


def _parents(path: str) -> Iterator[str]:
    """The folders ``path`` lies in: ``a``, ``a/b`` for ``a/b/c``."""
    parts = path.split("/")
    for end in range(1, len(parts)):
        yield "/".join(parts[:end])


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
