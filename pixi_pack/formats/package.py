"""Read conda packages (``.conda`` and ``.tar.bz2``) as streams, trusting none of their paths.

A ``.conda`` is a zip holding ``info-<stem>.tar.zst`` (the ``info/`` folder) and ``pkg-<stem>.tar.zst``
(the payload); a ``.tar.bz2`` is one tar with ``info/`` beside the payload. :func:`read_info` returns the
few ``info/`` files an installer needs, :func:`iter_payload` yields the payload members one at a time,
already checked: no absolute path, no ``..``, no device file, no empty link target. Files are written
with :class:`TreeWriter`, which never follows a symlink. :func:`pixi_pack.install.link.install_packages` puts
these together.
"""

from __future__ import annotations

import bz2
import io
import json
import zipfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import BinaryIO, NamedTuple, NoReturn

from pixi_pack.errors import ArchiveError, MissingMemberError, PixiPackError
from pixi_pack.io.hashing import Readable
from pixi_pack.io.readahead import ReadAhead
from pixi_pack.io.tarstream import (
    DIRECTORY,
    HARDLINK,
    READ_SIZE,
    REGULAR,
    SYMLINK,
    TarEntry,
    TarFormatError,
    TarStream,
)
from pixi_pack.io.zstd import Decompressor

#: The ``info/`` files an installer reads; everything else in ``info/`` (recipes, tests, licenses) is skipped.
INFO_FILES = (
    "index.json",
    "paths.json",
    "link.json",
    "files",
    "has_prefix",
    "no_link",
    "no_softlink",
)
_INFO_LIMIT = 64 << 20
_INFO_READ_SIZE = 64 << 10
_CHUNK = 1 << 20
#: Files up to this size come out of :func:`iter_payload` as ``bytes``; bigger ones as a stream.
WHOLE_FILE_LIMIT = _CHUNK
#: rattler clamps member mtimes to 1980-01-01 so every filesystem (and zip) can store them.
SAFE_MTIME_FLOOR = 315_532_800


class Member(NamedTuple):
    """A payload member whose path was checked to stay inside the package (a tuple: one per file)."""

    path: str
    """Normalised, relative, ``/``-separated; never empty, absolute or holding ``..``."""
    kind: str
    """``file``, ``symlink``, ``hardlink`` (to an earlier member) or ``directory``."""
    mode: int
    """Permission bits (``& 0o777``)."""
    mtime: int
    """Modification time, clamped to :data:`SAFE_MTIME_FLOOR`."""
    size: int = 0
    target: str = ""
    """The verbatim target of a symlink, or the normalised path of a hard link's source member."""


@dataclass(frozen=True)
class PackageInfo:
    """The ``info/`` files of a package that an installer needs."""

    files: Mapping[str, bytes]
    """``info/<name>`` contents by ``<name>`` (see :data:`INFO_FILES`); absent files are missing."""
    about_mtime: int | None = None
    """The mtime of ``info/about.json``, which rattler uses to date the files it rewrites."""

    def json(self, name: str, file_name: str) -> object:
        """The parsed JSON file ``info/<name>``; raises :class:`ArchiveError` if it is not JSON."""
        try:
            return json.loads(self.files[name])
        except (ValueError, RecursionError) as exc:
            raise invalid_package(file_name, f"info/{name} is not valid JSON ({exc})") from exc

    def text(self, name: str) -> str | None:
        data = self.files.get(name)
        return None if data is None else data.decode("utf-8", errors="surrogateescape")


def invalid_package(file_name: str, what: str) -> ArchiveError:
    """The error for a package whose contents contradict the conda package format."""
    return ArchiveError(f"{file_name} is not a valid conda package: {what}; download it again or rebuild it")


def package_format(file_name: str) -> str:
    """``conda`` or ``tar.bz2`` from the file name; anything else is refused."""
    if file_name.endswith(".conda"):
        return "conda"
    if file_name.endswith(".tar.bz2"):
        return "tar.bz2"
    msg = f"{file_name} is not a conda package: the name must end with .conda or .tar.bz2"
    raise ArchiveError(msg)


def buffered(source: BinaryIO) -> BinaryIO:
    """``source`` with a read buffer: zip and tar readers make many small reads."""
    if isinstance(source, io.RawIOBase):
        return io.BufferedReader(source, _CHUNK)
    return source


# --- member checks -----------------------------------------------------------------------------------


def normalize_member_path(name: str) -> str:
    """``name`` as a clean relative path, or ``""`` for the archive root; raises on unsafe names.

    Backslashes count as separators too, so a ``..`` cannot hide behind one on Windows.
    """
    if _is_clean(name):
        return name
    if "\0" in name:
        msg = f"member name {name!r} holds a NUL byte"
        raise ValueError(msg)
    if name.startswith(("/", "\\")) or (len(name) >= 2 and name[1] == ":"):
        msg = f"member {name!r} has an absolute path"
        raise ValueError(msg)
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if any(".." in part.split("\\") for part in parts):
        msg = f"member {name!r} points outside the package with '..'"
        raise ValueError(msg)
    return "/".join(parts)


def _is_clean(name: str) -> bool:
    """The common case, decided by a few substring tests: already a normalised, safe relative path."""
    return (
        bool(name)
        and ".." not in name
        and "\\" not in name
        and "//" not in name
        and "/./" not in name
        and "\0" not in name
        and name[0] not in "/."
        and name[-1] not in "/."
        and name[1:2] != ":"
    )


def link_stays_inside(link_path: str, target: str) -> bool:
    """Whether the symlink ``link_path`` -> ``target`` resolves (lexically) inside the tree it is in."""
    if not target or target.startswith(("/", "\\")) or (len(target) >= 2 and target[1] == ":"):
        return False
    parts = link_path.split("/")[:-1]
    for part in target.replace("\\", "/").split("/"):
        if part == "..":
            if not parts:
                return False
            parts.pop()
        elif part not in ("", "."):
            parts.append(part)
    return True


def _member(entry: TarEntry, file_name: str) -> Member | None:
    """The checked :class:`Member` for a tar header, or None for the archive's root folder."""
    try:
        path = normalize_member_path(entry.name)
    except ValueError as exc:
        raise invalid_package(file_name, str(exc)) from exc
    mtime = max(int(entry.mtime), SAFE_MTIME_FLOOR)
    mode = entry.mode & 0o777
    kind = entry.type
    if kind == DIRECTORY:
        return Member(path, "directory", mode, mtime) if path else None
    if not path:
        raise invalid_package(file_name, f"member {entry.name!r} has no name")
    if kind == REGULAR:
        return Member(path, "file", mode, mtime, entry.size)
    if kind == SYMLINK:
        if not entry.linkname:
            raise invalid_package(file_name, f"the symlink {path} has an empty target")
        if "\0" in entry.linkname:
            raise invalid_package(file_name, f"the symlink {path} has a NUL byte in its target")
        return Member(path, "symlink", mode, mtime, target=entry.linkname)
    if kind == HARDLINK:
        try:
            source = normalize_member_path(entry.linkname)
        except ValueError as exc:
            raise invalid_package(file_name, f"hard link {path}: {exc}") from exc
        if not source:
            raise invalid_package(file_name, f"the hard link {path} has an empty target")
        return Member(path, "hardlink", mode, mtime, target=source)
    what = {b"3": "a device file", b"4": "a device file", b"6": "a FIFO"}.get(kind, "a special file")
    raise invalid_package(file_name, f"member {path} is {what}")


# --- reading -----------------------------------------------------------------------------------------


def _unreadable(file_name: str, exc: BaseException) -> NoReturn:
    msg = (
        f"could not read {file_name}: {exc or type(exc).__name__}; the file is damaged or not a conda package"
    )
    raise ArchiveError(msg) from exc


def _is_read_error(exc: Exception) -> bool:
    """Whether ``exc`` is how a reader of damaged archive data fails (not a bug of ours)."""
    if isinstance(exc, (zipfile.BadZipFile, EOFError, OSError, ValueError, RuntimeError)):
        return True
    # The zstd backend's own error type.
    return type(exc).__module__.split(".")[0] in ("zstandard", "compression", "zstd", "_zstd")


@contextmanager
def _reading(file_name: str) -> Iterator[None]:
    try:
        yield
    except PixiPackError:
        raise
    except Exception as exc:
        if _is_read_error(exc):
            _unreadable(file_name, exc)
        raise


def _guarded(read: Callable[[int], bytes], file_name: str) -> Callable[[int], bytes]:
    """``read`` with its failures turned into an :class:`ArchiveError` naming the package."""

    def guarded_read(size: int) -> bytes:
        with _reading(file_name):
            return read(size)

    return guarded_read


class _LargeFile:
    """The data of a member too big to hand over whole, read from the tar stream as it is consumed."""

    def __init__(self, tar: TarStream, file_name: str) -> None:
        self._tar = tar
        self._file_name = file_name

    def read(self, size: int = -1) -> bytes:
        try:
            return self._tar.read(size)
        except TarFormatError as exc:
            _unreadable(self._file_name, exc)


def _conda_members(archive: zipfile.ZipFile, file_name: str) -> tuple[zipfile.ZipInfo, zipfile.ZipInfo]:
    """The ``info-*.tar.zst`` and ``pkg-*.tar.zst`` members, after checking the zip's layout."""
    info, pkg = [], []
    for item in archive.infolist():
        name = item.filename
        if "/" in name or "\\" in name:
            raise invalid_package(
                file_name, f"the zip member {name!r} is inside a folder (members must be at the top level)"
            )
        if item.flag_bits & 0x1:
            raise invalid_package(file_name, f"the zip member {name} is encrypted")
        if name.endswith(".tar.zst") and name.startswith("info-"):
            info.append(item)
        elif name.endswith(".tar.zst") and name.startswith("pkg-"):
            pkg.append(item)
    if len(info) != 1 or len(pkg) != 1:
        what = "it must hold exactly one info-*.tar.zst and one pkg-*.tar.zst"
        if not info:
            raise MissingMemberError(str(invalid_package(file_name, what)), member="info-*.tar.zst")
        raise invalid_package(file_name, what)
    return info[0], pkg[0]


@contextmanager
def _open_tar(source: BinaryIO, file_name: str, part: str, zstd: Decompressor | None) -> Iterator[TarStream]:
    """A streaming tar reader over ``part``, ``info`` or ``pkg``: one of the two tars of a ``.conda``; for
    the one tar of a ``.tar.bz2``, ``pkg`` reads it ahead in a thread and ``info`` in small pieces."""
    with ExitStack() as stack:
        with _reading(file_name):
            source = buffered(source)
            read: Callable[[int], bytes]
            if package_format(file_name) == "tar.bz2":
                read = stack.enter_context(bz2.BZ2File(source)).read
                if part == "pkg":
                    read = stack.enter_context(ReadAhead(read, _CHUNK)).read
            else:
                archive = stack.enter_context(zipfile.ZipFile(source))
                info, pkg = _conda_members(archive, file_name)
                member = stack.enter_context(archive.open(info if part == "info" else pkg))
                decompressed = (zstd or Decompressor()).open(member)  # type: ignore[arg-type]
                stack.callback(decompressed.close)
                read = decompressed.read
        # info/ is small and comes first: reading it should not decompress a MiB of payload.
        yield TarStream(_guarded(read, file_name), _INFO_READ_SIZE if part == "info" else READ_SIZE)


def _entries(tar: TarStream, file_name: str) -> Iterator[TarEntry]:
    """The tar's headers; a malformed one is an :class:`ArchiveError` naming the package."""
    entries = iter(tar)
    while True:
        try:
            entry = next(entries, None)
        except TarFormatError as exc:
            _unreadable(file_name, exc)
        if entry is None:
            return
        yield entry


def _read_all(tar: TarStream, file_name: str) -> bytes:
    try:
        return tar.read_all()
    except TarFormatError as exc:
        _unreadable(file_name, exc)


def read_info(source: BinaryIO, file_name: str, *, zstd: Decompressor | None = None) -> PackageInfo:
    """The :data:`INFO_FILES` of a package (and ``info/about.json``'s mtime).

    A ``.tar.bz2`` is read only as far as needed: up to the first payload member once everything an
    installer needs has been seen (conda writes ``info/`` first), else to the end. ``zstd`` reads a
    ``.conda``'s tars (a :class:`~pixi_pack.io.zstd.Decompressor` of this call if not given).
    """
    files: dict[str, bytes] = {}
    about_mtime: int | None = None
    is_conda = package_format(file_name) == "conda"
    with _open_tar(source, file_name, "info", zstd) as tar:
        for entry in _entries(tar, file_name):
            name = entry.name[2:] if entry.name.startswith("./") else entry.name
            if not name.startswith("info/"):
                if not is_conda and _info_complete(files):
                    break
                continue
            key = name[len("info/") :]
            if key == "about.json":
                about_mtime = max(int(entry.mtime), SAFE_MTIME_FLOOR)
            if key in INFO_FILES and entry.type == REGULAR:
                if key in files:
                    raise invalid_package(file_name, f"it holds info/{key} twice")
                if entry.size > _INFO_LIMIT:
                    raise invalid_package(file_name, f"info/{key} is {entry.size} bytes")
                files[key] = _read_all(tar, file_name)
    if "index.json" not in files:
        what = str(invalid_package(file_name, "info/index.json is missing"))
        raise MissingMemberError(what, member="info/index.json")
    return PackageInfo(files, about_mtime)


def _info_complete(files: Mapping[str, bytes]) -> bool:
    if "index.json" not in files or "paths.json" not in files:
        return False
    try:
        noarch = json.loads(files["index.json"]).get("noarch")
    except (ValueError, AttributeError, RecursionError):
        return True
    return noarch != "python" or "link.json" in files


@contextmanager
def iter_payload(
    source: BinaryIO, file_name: str, *, zstd: Decompressor | None = None
) -> Iterator[Iterator[tuple[Member, bytes | Readable | None]]]:
    """The payload members in archive order, each with its data (files only).

    A file's data is ``bytes`` up to :data:`WHOLE_FILE_LIMIT`, else a reader that is only valid until
    the next member is taken. ``info/`` is not part of the payload.
    """
    is_conda = package_format(file_name) == "conda"

    def members(tar: TarStream) -> Iterator[tuple[Member, bytes | Readable | None]]:
        # One generator, with the tar's errors caught around the loop: this runs once per file.
        try:
            for entry in tar:
                member = _member(entry, file_name)
                if member is None or (
                    not is_conda and (member.path == "info" or member.path.startswith("info/"))
                ):
                    continue
                data: bytes | Readable | None = None
                if member.kind == "file":
                    data = tar.read_all() if member.size <= WHOLE_FILE_LIMIT else _LargeFile(tar, file_name)
                yield member, data
        except TarFormatError as exc:
            _unreadable(file_name, exc)

    with _open_tar(source, file_name, "pkg", zstd) as tar:
        yield members(tar)
