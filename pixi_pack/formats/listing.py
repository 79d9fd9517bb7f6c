"""What a pack holds, read without installing it: one entry per conda package and wheel.

:func:`pack_packages` pairs the pack's conda files with their ``repodata.json`` records (and says what
does not pair); :func:`read_listing` adds what each package's ``info/`` and each wheel's ``METADATA``
say (installed size, license, dependencies), for ``pixi-unpack --list`` and the SBOM of both sides.
Nothing here checks a hash: that is ``--verify-only``'s job.
"""

from __future__ import annotations

import json
import re
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any, BinaryIO

from pixi_pack.errors import ArchiveError
from pixi_pack.formats.archive import PackReader
from pixi_pack.formats.channel import (
    parse_conda_urls,
    parse_identity,
    parse_metadata,
    parse_pypi_sha256,
    parse_repodata,
)
from pixi_pack.formats.package_info import load_package
from pixi_pack.formats.wheel_tags import parse_wheel_name
from pixi_pack.io.zstd import Decompressor
from pixi_pack.models import (
    CHANNEL_DIR,
    CONDA_EXTENSIONS,
    METADATA_FILE,
    PYPI_DIR,
    REPODATA_FILE,
    PackageSource,
)
from pixi_pack.progress import human_bytes

if TYPE_CHECKING:
    import email.message

#: The most of a wheel's ``METADATA`` that is read (real ones are a few kB, a long README included).
_METADATA_LIMIT = 4 << 20
_REQUIREMENT_NAME = re.compile(r"\s*([A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)")


def pack_records(reader: PackReader) -> dict[str, dict[str, object]]:
    """The ``repodata.json`` record of every conda package the pack lists, by its path in the pack."""
    records: dict[str, dict[str, object]] = {}
    for name in reader.names():
        path = PurePosixPath(name)
        if len(path.parts) == 3 and path.parts[0] == CHANNEL_DIR and path.name == REPODATA_FILE:
            for file_name, record in parse_repodata(reader.read_text(name), name).items():
                records[f"{CHANNEL_DIR}/{path.parts[1]}/{file_name}"] = record
    return records


def pack_packages(reader: PackReader) -> tuple[list[PackageSource], list[str]]:
    """Every conda package of the pack that has a ``repodata.json`` record, by file name, and what does
    not pair up (a record without its file, a file without its record). A delta pack lists packages it
    leaves out (the environment it updates has them), which are not problems."""
    delta = parse_identity(reader.read_text(METADATA_FILE))[1] is not None
    names = reader.names()
    files = [n for n in names if n.startswith(f"{CHANNEL_DIR}/") and n.endswith(CONDA_EXTENSIONS)]
    records = pack_records(reader)
    problems = [
        f"the pack is incomplete: {n} is listed in repodata.json but missing"
        for n in sorted(set(records) - set(files))
        if not delta
    ]
    problems += [
        f"the pack is inconsistent: {n} is not listed in its repodata.json"
        for n in sorted(set(files) - set(records))
    ]
    urls = parse_conda_urls(reader.read_text(METADATA_FILE))
    sources = [
        PackageSource(
            PurePosixPath(n).name, records[n], _opener(reader, n), url=urls.get(n[len(CHANNEL_DIR) + 1 :])
        )
        for n in sorted(set(files) & set(records), key=lambda n: PurePosixPath(n).name)
    ]
    return sources, problems


def _opener(reader: PackReader, name: str) -> Callable[[], BinaryIO]:
    return lambda: reader.open(name)


def wheel_names(reader: PackReader) -> list[str]:
    """The wheels of the pack, as paths in it."""
    return [n for n in reader.names() if n.startswith(f"{PYPI_DIR}/") and n.endswith(".whl")]


@dataclass(frozen=True)
class Entry:
    """One conda package or wheel of a pack (``--list --json`` writes these keys, and ``installed``)."""

    kind: str
    """``conda`` or ``pypi``."""
    name: str
    version: str
    build: str | None
    subdir: str | None
    file_name: str
    size: int
    """Bytes in the pack."""
    sha256: str | None
    md5: str | None
    license: str | None
    depends: tuple[str, ...]
    installed: int | None
    """Bytes once installed, where ``paths.json`` tells."""
    url: str | None
    """Where pixi-pack downloaded it from, where the pack records it."""


@dataclass(frozen=True)
class Listing:
    platform: str
    pixi_pack_version: str
    entries: tuple[Entry, ...]
    """Largest first, then by name."""


def read_listing(reader: PackReader, *, zstd: Decompressor | None = None) -> Listing:
    """What the pack holds; a package whose ``info/`` cannot be read is an :class:`ArchiveError`."""
    metadata = parse_metadata(reader.read_text(METADATA_FILE))
    sources, problems = pack_packages(reader)
    if problems:
        raise ArchiveError(problems[0])
    zstd = zstd or Decompressor()
    entries = [conda_entry(source, zstd) for source in sources]
    wheel_sha256 = parse_pypi_sha256(reader.read_text(METADATA_FILE)) or {}
    entries += [
        wheel_entry(reader, name, wheel_sha256.get(PurePosixPath(name).name)) for name in wheel_names(reader)
    ]
    entries.sort(key=lambda e: (-e.size, e.name, e.file_name))
    return Listing(metadata.platform, metadata.pixi_pack_version, tuple(entries))


def conda_entry(source: PackageSource, zstd: Decompressor) -> Entry:
    """A conda package's entry: its record, its size in the pack, and its ``paths.json`` sizes."""
    package = load_package(source, zstd=zstd)
    record = source.record
    with source.open() as stream:
        size = stream.seek(0, 2)
    sizes = [e.size for e in package.entries if e.path_type == "hardlink"]
    installed = sum(s for s in sizes if s is not None) if sizes and None not in sizes else None
    license_ = record.get("license") or package.index.get("license")
    return Entry(
        kind="conda",
        name=package.name,
        version=str(record.get("version") or package.index.get("version")),
        build=str(record.get("build") or package.index.get("build")),
        subdir=str(record.get("subdir") or package.index.get("subdir") or "noarch"),
        file_name=source.file_name,
        size=size,
        sha256=_text(record.get("sha256")),
        md5=_text(record.get("md5")),
        license=_text(license_),
        depends=tuple(package.depends),
        installed=installed,
        url=source.url,
    )


def wheel_entry(reader: PackReader, name: str, sha256: str | None) -> Entry:
    """A wheel's entry: its file name's name and version, and its ``METADATA``'s license and requirements."""
    file_name = PurePosixPath(name).name
    wheel = parse_wheel_name(file_name)
    if wheel is None:
        msg = f"the pack holds {name}, which is not a valid wheel file name"
        raise ArchiveError(msg)
    with reader.open(name) as stream:
        size = stream.seek(0, 2)
        stream.seek(0)
        metadata = _wheel_metadata(stream, name)
    license_ = metadata.get("License-Expression") or metadata.get("License")
    requires = [
        match.group(1)
        for requirement in metadata.get_all("Requires-Dist") or []
        if "extra" not in requirement.partition(";")[2] and (match := _REQUIREMENT_NAME.match(requirement))
    ]
    return Entry(
        kind="pypi",
        name=wheel.name,
        version=wheel.version,
        build=None,
        subdir=None,
        file_name=file_name,
        size=size,
        sha256=sha256,
        md5=None,
        license=str(license_).strip() if license_ and "\n" not in str(license_).strip() else None,
        depends=tuple(requires),
        installed=None,
        url=None,
    )


def _wheel_metadata(stream: BinaryIO, name: str) -> email.message.Message:
    try:
        with zipfile.ZipFile(stream) as archive:
            candidates = [
                i for i in archive.infolist() if re.fullmatch(r"[^/]+\.dist-info/METADATA", i.filename)
            ]
            if len(candidates) != 1:
                msg = f"{name} in the pack has {len(candidates)} .dist-info/METADATA files, not one"
                raise ArchiveError(msg)
            with archive.open(candidates[0]) as member:
                data = member.read(_METADATA_LIMIT + 1)
    except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError) as exc:
        msg = f"{name} in the pack is not a readable wheel: {exc}"
        raise ArchiveError(msg) from exc
    if len(data) > _METADATA_LIMIT:
        msg = f"{name} in the pack has a METADATA file larger than {human_bytes(_METADATA_LIMIT)}"
        raise ArchiveError(msg)
    # Only packs with wheels need the email package, and importing it is a sixth of pixi-unpack's start-up.
    import email.parser

    return email.parser.BytesHeaderParser().parsebytes(data)


def _text(value: Any) -> str | None:
    return str(value) if value else None


# --- rendering -----------------------------------------------------------------------------------


def listing_json(listing: Listing) -> str:
    """The entries as a JSON array, with the keys the README documents."""
    keys = (
        "kind",
        "name",
        "version",
        "build",
        "subdir",
        "file_name",
        "size",
        "sha256",
        "md5",
        "license",
        "depends",
    )
    rows = [
        {key: (list(e.depends) if key == "depends" else getattr(e, key)) for key in keys}
        for e in listing.entries
    ]
    return json.dumps(rows, indent=2, ensure_ascii=False) + "\n"


def listing_table(listing: Listing) -> str:
    """A table for people: the platform and pixi-pack version, one row per entry, then the totals."""
    header = ("NAME", "VERSION", "BUILD", "SUBDIR", "SIZE", "LICENSE")
    rows = [
        (e.name, e.version, e.build or "", e.subdir or "pypi", human_bytes(e.size), e.license or "")
        for e in listing.entries
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = [f"platform: {listing.platform}, made by pixi-pack {listing.pixi_pack_version or '(unknown)'}"]
    for row in [header, *rows]:
        cells = [cell.rjust(w) if i == 4 else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths))]
        lines.append("  ".join(cells).rstrip())
    conda = [e for e in listing.entries if e.kind == "conda"]
    total = f"{len(listing.entries)} packages ({len(conda)} conda, {len(listing.entries) - len(conda)} pypi)"
    total += f", {human_bytes(sum(e.size for e in listing.entries))} packed"
    known = [e.installed for e in conda if e.installed is not None]
    if known:
        every = "" if len(known) == len(conda) else f" ({len(known)} of them tell)"
        total += f", {human_bytes(sum(known))} installed by the conda packages{every}"
    lines.append(total)
    return "\n".join(lines) + "\n"
