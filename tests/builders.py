"""Build real conda packages, channels and wheels in code, for tests.

Everything here is deterministic: the same inputs give byte-identical archives (fixed mtimes and owners,
sorted members), so tests may compare hashes. Paths are written verbatim, without any safety check, so a
test can also build a malicious archive (``../escape``, absolute paths, links pointing outside).
"""

from __future__ import annotations

import base64
import bz2
import hashlib
import io
import json
import shutil
import tarfile
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

import zstandard

PLACEHOLDER = ("/opt/conda-bld/pkg_1700000000000/_h_env" + "_placehold" * 25)[:255]
"""A conda-build style prefix placeholder, 255 characters long, so any test prefix fits in binary files."""

LEGACY_PLACEHOLDER = "/opt/anaconda1anaconda2anaconda3"
"""The placeholder implied by an ``info/has_prefix`` line that holds only a path."""

PREFIX_TOKEN = "@PREFIX@"
"""Token in test file contents; :func:`text_prefix` and :func:`binary_prefix` put the placeholder there."""

FIXED_TIMESTAMP = 1_700_000_000_000
"""Default package timestamp, in milliseconds as ``index.json`` holds it."""

ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)

SUBDIR_ARCH_PLATFORM: dict[str, tuple[str | None, str | None]] = {
    "linux-64": ("x86_64", "linux"),
    "linux-aarch64": ("aarch64", "linux"),
    "linux-ppc64le": ("ppc64le", "linux"),
    "osx-64": ("x86_64", "osx"),
    "osx-arm64": ("arm64", "osx"),
    "win-64": ("x86_64", "win"),
    "win-arm64": ("arm64", "win"),
    "noarch": (None, None),
}


@dataclass(frozen=True)
class File:
    """A regular file of a package (``path_type: hardlink``)."""

    content: bytes | str
    """The bytes written to the archive; a ``str`` is encoded as UTF-8."""
    mode: int = 0o644
    """Permission bits of the tar member."""
    placeholder: str | None = None
    """The prefix placeholder the content holds, listed in ``paths.json`` and ``info/has_prefix``."""
    file_mode: Literal["text", "binary"] = "text"
    """How an installer must replace the placeholder."""
    no_link: bool = False
    """Marks the file ``no_link`` (always copied, never hard-linked)."""

    @property
    def data(self) -> bytes:
        return self.content.encode() if isinstance(self.content, str) else self.content


@dataclass(frozen=True)
class Symlink:
    """A symbolic link (``path_type: softlink``); the target is kept verbatim (relative or absolute)."""

    target: str


@dataclass(frozen=True)
class Directory:
    """An explicit, possibly empty, directory (``path_type: directory``)."""

    mode: int = 0o755


FileEntry = Union[File, Symlink, Directory]
FileSpec = Union[FileEntry, bytes, str]


def executable(content: bytes | str) -> File:
    """An executable file (mode 0o755) without placeholder."""
    return File(content, mode=0o755)


def text_prefix(content: bytes | str, *, placeholder: str = PLACEHOLDER, mode: int = 0o644) -> File:
    """A file with a text placeholder: every ``@PREFIX@`` in ``content`` becomes ``placeholder``."""
    return File(_swap_token(content, placeholder), mode=mode, placeholder=placeholder, file_mode="text")


def binary_prefix(content: bytes | str, *, placeholder: str = PLACEHOLDER, mode: int = 0o755) -> File:
    """A file with a binary placeholder: every ``@PREFIX@`` in ``content`` becomes ``placeholder``."""
    return File(_swap_token(content, placeholder), mode=mode, placeholder=placeholder, file_mode="binary")


def _swap_token(content: bytes | str, placeholder: str) -> bytes:
    data = content.encode() if isinstance(content, str) else content
    return data.replace(PREFIX_TOKEN.encode(), placeholder.encode())


@dataclass(frozen=True)
class BuiltPackage:
    """A conda package archive written to disk."""

    path: Path
    """Where the archive is."""
    file_name: str
    """``<name>-<version>-<build>.conda`` or ``.tar.bz2``."""
    subdir: str
    name: str
    version: str
    build: str
    record: dict[str, Any] = field(hash=False, compare=False)
    """The repodata.json record: the index.json fields plus ``sha256``, ``md5`` and ``size``."""

    @property
    def sha256(self) -> str:
        return str(self.record["sha256"])

    @property
    def md5(self) -> str:
        return str(self.record["md5"])

    @property
    def size(self) -> int:
        return int(self.record["size"])

    @property
    def dist_name(self) -> str:
        """``name-version-build``, the stem of the file name and of the conda-meta JSON."""
        return f"{self.name}-{self.version}-{self.build}"

    def url(self, channel_url: str) -> str:
        """The package's URL in a channel laid out by :func:`write_channel`."""
        return f"{channel_url.rstrip('/')}/{self.subdir}/{self.file_name}"


def build_package(
    out_dir: Path,
    name: str,
    version: str = "1.0",
    build: str = "0",
    *,
    subdir: str | None = None,
    build_number: int = 0,
    files: Mapping[str, FileSpec] | None = None,
    depends: Sequence[str] = (),
    constrains: Sequence[str] = (),
    noarch: Literal["python", "generic"] | None = None,
    entry_points: Sequence[str] = (),
    fmt: Literal["conda", "tar.bz2"] = "conda",
    paths_json: bool = True,
    license: str = "MIT",
    about: Mapping[str, Any] | None = None,
    extra_index: Mapping[str, Any] | None = None,
    extra_info: Mapping[str, bytes | str] | None = None,
    python_site_packages_path: str | None = None,
    timestamp: int = FIXED_TIMESTAMP,
) -> BuiltPackage:
    """Write a real conda package to ``out_dir`` and return its description.

    ``subdir`` defaults to ``noarch`` for noarch packages and ``linux-64`` otherwise. noarch python
    packages hold their files under ``site-packages/`` and ``python-scripts/``, as conda-build writes them;
    give the paths that way. ``paths_json=False`` writes an old-style package (``info/files`` and
    ``info/has_prefix`` only). ``extra_info`` adds or replaces ``info/`` files (key relative to ``info/``),
    after the generated ones: e.g. ``{"has_prefix": "bin/x\\n"}`` for the one-field legacy form, or a
    broken ``paths.json``. ``extra_index`` adds or replaces index.json (and record) fields. The record
    leaves out index.json fields that are null (``arch``/``platform`` of noarch packages).
    """
    subdir = subdir or ("noarch" if noarch else "linux-64")
    entries = {path: _entry(spec) for path, spec in sorted((files or {}).items())}
    index = _index_json(name, version, build, build_number, subdir, depends, constrains, noarch, license)
    index["timestamp"] = timestamp
    if python_site_packages_path is not None:
        index["python_site_packages_path"] = python_site_packages_path
    index.update(extra_index or {})
    info = _info_files(index, entries, noarch, entry_points, paths_json, about)
    for rel, content in (extra_info or {}).items():
        info[f"info/{rel}"] = content.encode() if isinstance(content, str) else content
    mtime = timestamp // 1000
    payload = _payload_members(entries, mtime)
    info_members = [_file_member(path, data, 0o644, mtime) for path, data in sorted(info.items())]
    file_name = f"{name}-{version}-{build}.{fmt}"
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / file_name
    if fmt == "conda":
        data = _conda_archive(f"{name}-{version}-{build}", info_members, payload)
    else:
        data = bz2.compress(_tar_bytes([*info_members, *payload]), 9)
    path.write_bytes(data)
    record = {k: v for k, v in index.items() if v is not None}
    record.update(sha256=hashlib.sha256(data).hexdigest(), md5=hashlib.md5(data).hexdigest(), size=len(data))
    return BuiltPackage(path, file_name, subdir, name, version, build, record)


def _entry(spec: FileSpec) -> FileEntry:
    return File(spec) if isinstance(spec, (bytes, str)) else spec


def _index_json(
    name: str,
    version: str,
    build: str,
    build_number: int,
    subdir: str,
    depends: Sequence[str],
    constrains: Sequence[str],
    noarch: str | None,
    license: str,
) -> dict[str, Any]:
    arch, platform = SUBDIR_ARCH_PLATFORM.get(subdir, (None, None))
    index: dict[str, Any] = {
        "arch": arch,
        "build": build,
        "build_number": build_number,
        "depends": list(depends),
        "license": license,
        "name": name,
        "platform": platform,
        "subdir": subdir,
        "version": version,
    }
    if constrains:
        index["constrains"] = list(constrains)
    if noarch:
        index["noarch"] = noarch
    return index


def _info_files(
    index: Mapping[str, Any],
    entries: Mapping[str, FileEntry],
    noarch: str | None,
    entry_points: Sequence[str],
    paths_json: bool,
    about: Mapping[str, Any] | None,
) -> dict[str, bytes]:
    info = {
        "info/index.json": _json_bytes(index),
        "info/files": "".join(f"{p}\n" for p, e in entries.items() if not isinstance(e, Directory)).encode(),
    }
    has_prefix = [
        f"{e.placeholder} {e.file_mode} {_quote(p)}\n"
        for p, e in entries.items()
        if isinstance(e, File) and e.placeholder
    ]
    if has_prefix:
        info["info/has_prefix"] = "".join(has_prefix).encode()
    if paths_json:
        info["info/paths.json"] = _json_bytes({"paths": _paths(entries), "paths_version": 1})
    else:
        no_link = [f"{p}\n" for p, e in entries.items() if isinstance(e, File) and e.no_link]
        if no_link:
            info["info/no_link"] = "".join(no_link).encode()
    if noarch == "python":
        link = {
            "noarch": {"entry_points": list(entry_points), "type": "python"},
            "package_metadata_version": 1,
        }
        info["info/link.json"] = _json_bytes(link)
    if about is not None:
        info["info/about.json"] = _json_bytes(about)
    return info


def _quote(path: str) -> str:
    return f'"{path}"' if " " in path else path


def _paths(entries: Mapping[str, FileEntry]) -> list[dict[str, Any]]:
    paths: list[dict[str, Any]] = []
    for path, entry in entries.items():
        if isinstance(entry, Directory):
            paths.append({"_path": path, "path_type": "directory"})
        elif isinstance(entry, Symlink):
            item: dict[str, Any] = {"_path": path, "path_type": "softlink"}
            target = entries.get(_resolve(path, entry.target))
            if isinstance(target, File):
                item["sha256"] = hashlib.sha256(target.data).hexdigest()
            item["size_in_bytes"] = len(entry.target.encode())
            paths.append(item)
        else:
            item = {"_path": path, "path_type": "hardlink", "sha256": hashlib.sha256(entry.data).hexdigest()}
            item["size_in_bytes"] = len(entry.data)
            if entry.placeholder:
                item["file_mode"] = entry.file_mode
                item["prefix_placeholder"] = entry.placeholder
            if entry.no_link:
                item["no_link"] = True
            paths.append(item)
    return paths


def _resolve(link_path: str, target: str) -> str:
    parts = link_path.split("/")[:-1]
    for part in target.split("/"):
        if part == "..":
            parts = parts[:-1]
        elif part not in ("", "."):
            parts.append(part)
    return "/".join(parts)


def _json_bytes(obj: Any) -> bytes:
    return (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode()


def _file_member(path: str, data: bytes, mode: int, mtime: int) -> tuple[tarfile.TarInfo, bytes | None]:
    info = _tarinfo(path, mtime)
    info.size, info.mode = len(data), mode
    return info, data


def _tarinfo(path: str, mtime: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(path)
    info.mtime, info.uid, info.gid, info.uname, info.gname = mtime, 0, 0, "", ""
    return info


def _payload_members(
    entries: Mapping[str, FileEntry], mtime: int
) -> list[tuple[tarfile.TarInfo, bytes | None]]:
    members: list[tuple[tarfile.TarInfo, bytes | None]] = []
    for path, entry in entries.items():
        if isinstance(entry, File):
            members.append(_file_member(path, entry.data, entry.mode, mtime))
            continue
        info = _tarinfo(path, mtime)
        if isinstance(entry, Symlink):
            info.type, info.linkname, info.mode = tarfile.SYMTYPE, entry.target, 0o777
        else:
            info.type, info.mode = tarfile.DIRTYPE, entry.mode
        members.append((info, None))
    return members


def _tar_bytes(members: Sequence[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buffer.getvalue()


def _conda_archive(
    stem: str,
    info_members: Sequence[tuple[tarfile.TarInfo, bytes | None]],
    payload: Sequence[tuple[tarfile.TarInfo, bytes | None]],
) -> bytes:
    compressor = zstandard.ZstdCompressor(level=3)
    parts = {
        "metadata.json": json.dumps({"conda_pkg_format_version": 2}).encode(),
        f"info-{stem}.tar.zst": compressor.compress(_tar_bytes(info_members)),
        f"pkg-{stem}.tar.zst": compressor.compress(_tar_bytes(payload)),
    }
    return _zip_bytes(parts, zipfile.ZIP_STORED)


def _zip_bytes(parts: Mapping[str, bytes], compression: int) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, data in parts.items():
            info = zipfile.ZipInfo(name, date_time=ZIP_EPOCH)
            info.compress_type = compression
            info.external_attr = 0o644 << 16
            archive.writestr(info, data)
    return buffer.getvalue()


def extract_package(archive: Path, dest: Path) -> Path:
    """Unpack a .conda or .tar.bz2 archive verbatim into ``dest`` (info/ included, no prefix replacement).

    For trusted, test-built archives only: member paths are not checked.
    """
    dest.mkdir(parents=True, exist_ok=True)
    if archive.name.endswith(".tar.bz2"):
        with tarfile.open(archive, "r:bz2") as tar:
            _extract_all(tar, dest)
        return dest
    with zipfile.ZipFile(archive) as outer:
        for name in outer.namelist():
            if name.endswith(".tar.zst"):
                data = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(outer.read(name))).read()
                with tarfile.open(fileobj=io.BytesIO(data)) as tar:
                    _extract_all(tar, dest)
    return dest


def _extract_all(tar: tarfile.TarFile, dest: Path) -> None:
    if hasattr(tarfile, "fully_trusted_filter"):
        tar.extractall(dest, filter="fully_trusted")
    else:
        tar.extractall(dest)  # Python < 3.11.4 has no extraction filters


def repodata(subdir: str, packages: Sequence[BuiltPackage]) -> dict[str, Any]:
    """The repodata.json document of one subdir holding ``packages`` (those of other subdirs are ignored)."""
    tar_bz2 = {p.file_name: p.record for p in packages if p.subdir == subdir and p.file_name.endswith(".bz2")}
    conda = {p.file_name: p.record for p in packages if p.subdir == subdir and p.file_name.endswith(".conda")}
    return {
        "info": {"subdir": subdir},
        "packages": dict(sorted(tar_bz2.items())),
        "packages.conda": dict(sorted(conda.items())),
        "removed": [],
        "repodata_version": 1,
    }


def write_channel(root: Path, packages: Sequence[BuiltPackage]) -> Path:
    """Lay out a channel at ``root``: ``<subdir>/<file>`` and ``<subdir>/repodata.json``, noarch included.

    Every used subdir and ``noarch`` (possibly empty) get a repodata.json listing exactly ``packages``
    (rewritten on each call); returns ``root``.
    """
    for subdir in sorted({p.subdir for p in packages} | {"noarch"}):
        folder = root / subdir
        folder.mkdir(parents=True, exist_ok=True)
        for package in packages:
            target = folder / package.file_name
            if package.subdir == subdir and package.path.resolve() != target.resolve():
                shutil.copyfile(package.path, target)
        (folder / "repodata.json").write_text(
            json.dumps(repodata(subdir, packages), indent=2, sort_keys=True)
        )
    return root


@dataclass(frozen=True)
class BuiltWheel:
    """A wheel written to disk."""

    path: Path
    file_name: str
    name: str
    """The project name as given (not normalized)."""
    version: str
    sha256: str
    requires_dist: tuple[str, ...] = ()
    requires_python: str | None = None


def build_wheel(
    out_dir: Path,
    name: str,
    version: str = "1.0",
    *,
    modules: Mapping[str, str] | None = None,
    console_scripts: Mapping[str, str] | None = None,
    data_files: Mapping[str, bytes | str] | None = None,
    tag: str = "py3-none-any",
    requires_dist: Sequence[str] = (),
    requires_python: str | None = None,
) -> BuiltWheel:
    """Write a wheel to ``out_dir``.

    ``modules`` maps paths inside the wheel (``pkg/__init__.py``) to source; the default is one package
    ``<name_with_underscores>`` whose ``main()`` prints ``<name> <version>`` and whose ``VERSION`` is the
    version. ``console_scripts`` maps a command to ``module:function``. ``data_files`` go to
    ``<dist>.data/data/<path>``, which installers put at the environment root. A ``tag`` other than
    ``py3-none-any`` makes a platform wheel (``Root-Is-Purelib: false``).
    """
    dist = name.replace("-", "_").replace(".", "_")
    dist_info = f"{dist}-{version}.dist-info"
    if modules is None:
        source = (
            f'VERSION = "{version}"\n\n\ndef main() -> int:\n    print("{name} {version}")\n    return 0\n'
        )
        modules = {f"{dist}/__init__.py": source}
    contents: dict[str, bytes] = {path: src.encode() for path, src in sorted(modules.items())}
    for path, data in sorted((data_files or {}).items()):
        contents[f"{dist}-{version}.data/data/{path}"] = data.encode() if isinstance(data, str) else data
    metadata = [f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"]
    metadata += [f"Requires-Dist: {req}\n" for req in requires_dist]
    if requires_python:
        metadata.append(f"Requires-Python: {requires_python}\n")
    contents[f"{dist_info}/METADATA"] = "".join(metadata).encode()
    contents[f"{dist_info}/WHEEL"] = _wheel_file(tag).encode()
    if console_scripts:
        lines = "".join(f"{cmd} = {target}\n" for cmd, target in sorted(console_scripts.items()))
        contents[f"{dist_info}/entry_points.txt"] = f"[console_scripts]\n{lines}".encode()
    record = "".join(f"{path},sha256={_record_hash(data)},{len(data)}\n" for path, data in contents.items())
    contents[f"{dist_info}/RECORD"] = f"{record}{dist_info}/RECORD,,\n".encode()
    file_name = f"{dist}-{version}-{tag}.whl"
    out_dir.mkdir(parents=True, exist_ok=True)
    archive = _zip_bytes(contents, zipfile.ZIP_DEFLATED)
    (out_dir / file_name).write_bytes(archive)
    sha256 = hashlib.sha256(archive).hexdigest()
    return BuiltWheel(
        out_dir / file_name, file_name, name, version, sha256, tuple(requires_dist), requires_python
    )


def _wheel_file(tag: str) -> str:
    python, abi, platforms = tag.split("-")
    tags = [
        f"Tag: {py}-{ab}-{plat}\n"
        for py in python.split(".")
        for ab in abi.split(".")
        for plat in platforms.split(".")
    ]
    purelib = "true" if tag == "py3-none-any" or platforms == "any" else "false"
    return f"Wheel-Version: 1.0\nGenerator: pixi-pack-tests\nRoot-Is-Purelib: {purelib}\n{''.join(tags)}"


def _record_hash(data: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
