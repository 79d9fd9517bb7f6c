"""Read conda packages (``.conda`` and ``.tar.bz2``) as streams, trusting none of their paths.

A ``.conda`` is a zip holding ``info-<stem>.tar.zst`` (the ``info/`` folder) and ``pkg-<stem>.tar.zst``
(the payload); a ``.tar.bz2`` is one tar with ``info/`` beside the payload. :func:`read_info` returns the
few ``info/`` files an installer needs, :func:`iter_payload` yields the payload members one at a time,
already checked: no absolute path, no ``..``, no device file, no empty link target. Files are written
with :class:`TreeWriter`, which never follows a symlink. :func:`pixi_pack.link.install_packages` puts
these together.
"""

from __future__ import annotations

import io
import json
import os
import stat
import tarfile
import zipfile
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, NoReturn

from .errors import ArchiveError, PixiPackError
from .zstd import decompressing_reader

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
_CHUNK = 1 << 20
#: rattler clamps member mtimes to 1980-01-01 so every filesystem (and zip) can store them.
SAFE_MTIME_FLOOR = 315_532_800


@dataclass(frozen=True)
class Member:
    """A payload member whose path was checked to stay inside the package."""

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
        except (ValueError, UnicodeDecodeError) as exc:
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


def _member(info: tarfile.TarInfo, file_name: str) -> Member | None:
    """The checked :class:`Member` for a tar header, or None for the archive's root folder."""
    try:
        path = normalize_member_path(info.name)
    except ValueError as exc:
        raise invalid_package(file_name, str(exc)) from exc
    mtime = max(int(info.mtime), SAFE_MTIME_FLOOR)
    mode = info.mode & 0o777
    if info.isdir():
        return Member(path, "directory", mode, mtime) if path else None
    if not path:
        raise invalid_package(file_name, f"member {info.name!r} has no name")
    if info.isreg():
        return Member(path, "file", mode, mtime, info.size)
    if info.issym():
        if not info.linkname:
            raise invalid_package(file_name, f"the symlink {path} has an empty target")
        if "\0" in info.linkname:
            raise invalid_package(file_name, f"the symlink {path} has a NUL byte in its target")
        return Member(path, "symlink", mode, mtime, target=info.linkname)
    if info.islnk():
        try:
            source = normalize_member_path(info.linkname)
        except ValueError as exc:
            raise invalid_package(file_name, f"hard link {path}: {exc}") from exc
        if not source:
            raise invalid_package(file_name, f"the hard link {path} has an empty target")
        return Member(path, "hardlink", mode, mtime, target=source)
    kind = (
        "a device file" if info.ischr() or info.isblk() else "a FIFO" if info.isfifo() else "a special file"
    )
    raise invalid_package(file_name, f"member {path} is {kind}")


# --- reading -----------------------------------------------------------------------------------------


class _GuardedReader(io.RawIOBase):
    """Turns any failure while reading archive data into an :class:`ArchiveError` naming the package."""

    def __init__(self, raw: BinaryIO, file_name: str) -> None:
        super().__init__()
        self._raw = raw
        self._file_name = file_name

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        try:
            return self._raw.read(size)
        except PixiPackError:
            raise
        except Exception as exc:
            _unreadable(self._file_name, exc)

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def _unreadable(file_name: str, exc: BaseException) -> NoReturn:
    msg = (
        f"could not read {file_name}: {exc or type(exc).__name__}; the file is damaged or not a conda package"
    )
    raise ArchiveError(msg) from exc


@contextmanager
def _reading(file_name: str) -> Iterator[None]:
    try:
        yield
    except PixiPackError:
        raise
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError, ValueError, RuntimeError) as exc:
        _unreadable(file_name, exc)
    except Exception as exc:  # the zstd backend's own error type
        if type(exc).__module__.split(".")[0] in ("zstandard", "compression", "zstd", "_zstd"):
            _unreadable(file_name, exc)
        raise


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
        raise invalid_package(file_name, "it must hold exactly one info-*.tar.zst and one pkg-*.tar.zst")
    return info[0], pkg[0]


@contextmanager
def _open_tar(source: BinaryIO, file_name: str, part: str) -> Iterator[tarfile.TarFile]:
    """A streaming tar reader over ``part`` (``info``/``pkg`` for .conda, ``all`` for .tar.bz2)."""
    with ExitStack() as stack:
        with _reading(file_name):
            source = buffered(source)
            if package_format(file_name) == "tar.bz2":
                stream: BinaryIO = source
            else:
                archive = stack.enter_context(zipfile.ZipFile(source))
                info, pkg = _conda_members(archive, file_name)
                member = stack.enter_context(archive.open(info if part == "info" else pkg))
                stream = decompressing_reader(member)  # type: ignore[arg-type]
                stack.callback(stream.close)
            guarded = _GuardedReader(stream, file_name)
            mode = "r|bz2" if package_format(file_name) == "tar.bz2" else "r|"
            tar = stack.enter_context(tarfile.open(fileobj=guarded, mode=mode))  # type: ignore[call-overload]
        yield tar


def _iter_tar(tar: tarfile.TarFile, file_name: str) -> Iterator[tarfile.TarInfo]:
    # Iterating the TarFile (not calling next() again after the end) keeps Python 3.9's stream
    # reader from seeking backwards at the end of an empty archive.
    members = iter(tar)
    while True:
        with _reading(file_name):
            info = next(members, None)
        if info is None:
            return
        yield info


def read_info(source: BinaryIO, file_name: str) -> PackageInfo:
    """The :data:`INFO_FILES` of a package (and ``info/about.json``'s mtime).

    A ``.tar.bz2`` is read only as far as needed: up to the first payload member once everything an
    installer needs has been seen (conda writes ``info/`` first), else to the end.
    """
    files: dict[str, bytes] = {}
    about_mtime: int | None = None
    is_conda = package_format(file_name) == "conda"
    with _open_tar(source, file_name, "info") as tar:
        for info in _iter_tar(tar, file_name):
            name = info.name[2:] if info.name.startswith("./") else info.name
            if not name.startswith("info/"):
                if not is_conda and _info_complete(files):
                    break
                continue
            key = name[len("info/") :]
            if key == "about.json":
                about_mtime = max(int(info.mtime), SAFE_MTIME_FLOOR)
            if key in INFO_FILES and info.isreg():
                if key in files:
                    raise invalid_package(file_name, f"it holds info/{key} twice")
                if info.size > _INFO_LIMIT:
                    raise invalid_package(file_name, f"info/{key} is {info.size} bytes")
                with _reading(file_name):
                    data = tar.extractfile(info)
                    files[key] = data.read() if data else b""
    if "index.json" not in files:
        raise invalid_package(file_name, "info/index.json is missing")
    return PackageInfo(files, about_mtime)


def _info_complete(files: Mapping[str, bytes]) -> bool:
    if "index.json" not in files or "paths.json" not in files:
        return False
    try:
        noarch = json.loads(files["index.json"]).get("noarch")
    except (ValueError, AttributeError):
        return True
    return noarch != "python" or "link.json" in files


@contextmanager
def iter_payload(source: BinaryIO, file_name: str) -> Iterator[Iterator[tuple[Member, BinaryIO | None]]]:
    """The payload members in archive order, each with a reader of its data (files only).

    The reader is only valid until the next member is taken. ``info/`` is not part of the payload.
    """
    is_conda = package_format(file_name) == "conda"

    def members(tar: tarfile.TarFile) -> Iterator[tuple[Member, BinaryIO | None]]:
        for info in _iter_tar(tar, file_name):
            member = _member(info, file_name)
            if member is None or (
                not is_conda and (member.path == "info" or member.path.startswith("info/"))
            ):
                continue
            data = None
            if member.kind == "file":
                with _reading(file_name):
                    raw = tar.extractfile(info)
                data = _GuardedReader(raw, file_name) if raw is not None else io.BytesIO()  # type: ignore[arg-type]
            yield member, data  # type: ignore[misc]

    with _open_tar(source, file_name, "pkg") as tar:
        yield members(tar)


# --- writing -----------------------------------------------------------------------------------------


class TreeWriter:
    """Creates files, symlinks and folders below ``root`` without ever following a symlink.

    Every parent folder is created here or checked to be a real folder, so a member can never be
    written through a link. Several writers may share ``root`` (and ``known_dirs``) from different threads.
    """

    def __init__(self, root: Path, known_dirs: set[str] | None = None) -> None:
        self.root = root
        root_str = os.fspath(root)
        # The root with a trailing separator: file paths are made by concatenation, not Path.
        self._prefix = "" if root_str == "." else root_str.rstrip("/" + _SEP) + _SEP
        self._known_dirs = known_dirs if known_dirs is not None else set()

    def path(self, rel: str) -> Path:
        return self.root / rel if rel else self.root

    def make_dirs(self, rel: str) -> None:
        """Create the folder ``rel`` and its parents (``""`` is the root, which must exist)."""
        if not rel or rel in self._known_dirs:
            return
        parent = rel.rpartition("/")[0]
        self.make_dirs(parent)
        full = self.path(rel)
        try:
            full.mkdir()
        except FileExistsError:
            if not stat.S_ISDIR(os.lstat(full).st_mode):
                msg = f"cannot create folder {rel}: something else is already there"
                raise FileExistsError(msg) from None
        self._known_dirs.add(rel)

    def _full(self, rel: str) -> str:
        """``path(rel)`` as a string, without building a :class:`Path` (this is on the per-file path)."""
        return self._prefix + (rel if _SEP == "/" else rel.replace("/", _SEP))

    def _new_file(self, rel: str) -> tuple[int, str]:
        self.make_dirs(rel.rpartition("/")[0])
        full = self._full(rel)
        return os.open(full, _NEW_FILE_FLAGS, 0o600), full

    def write(self, rel: str, data: bytes | BinaryIO, mode: int, mtime: float | None) -> None:
        """Write a new file from bytes or a stream, then set its mode (exactly) and mtime."""
        fd, full = self._new_file(rel)
        try:
            if isinstance(data, (bytes, bytearray, memoryview)):
                _write_all(fd, data)
            else:
                read = data.read
                while chunk := read(_CHUNK):
                    _write_all(fd, chunk)
            _set_mode(fd, full, mode)
            if mtime is not None and _UTIME_FD:
                os.utime(fd, (mtime, mtime))
        finally:
            os.close(fd)
        if mtime is not None and not _UTIME_FD:
            os.utime(full, (mtime, mtime))

    def symlink(self, rel: str, target: str, mtime: float | None) -> None:
        self.make_dirs(rel.rpartition("/")[0])
        self.path(rel).symlink_to(target)
        if mtime is not None and os.utime in os.supports_follow_symlinks:
            os.utime(self.path(rel), (mtime, mtime), follow_symlinks=False)


_SEP = os.sep
_NEW_FILE_FLAGS = (
    os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0) | getattr(os, "O_NOFOLLOW", 0)
)
_UTIME_FD = os.utime in os.supports_fd


def _write_all(fd: int, data: bytes | bytearray | memoryview) -> None:
    view = memoryview(data).cast("B") if isinstance(data, memoryview) else data
    written = os.write(fd, view)
    if written == len(view):
        return
    view = memoryview(view)
    while written < len(view):
        written += os.write(fd, view[written:])


def _set_mode(fd: int, path: str, mode: int) -> None:
    if hasattr(os, "fchmod"):
        os.fchmod(fd, mode)
    else:
        Path(path).chmod(mode)
