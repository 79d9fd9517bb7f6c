"""Delta packs: the full metadata of the new environment, and only the conda archives a base lacks.

The base is an earlier pack (a tar, a folder, ``environment.sh``/``.cmd``) or just its
``pixi-pack.json``. What it has is known by digest (:func:`~pixi_pack.formats.channel.package_digest`),
so a package rebuilt under the same name is not taken for the one in the base. pixi-unpack applies the
delta to the environment built from the base, which it recognises by the base's identity.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from pixi_pack.errors import ArchiveError, PixiPackError
from pixi_pack.formats.archive import PackReader
from pixi_pack.formats.channel import (
    environment_sha256,
    package_digest,
    parse_identity,
    parse_metadata,
)
from pixi_pack.formats.listing import pack_records
from pixi_pack.io.files import TooLargeError, read_limited
from pixi_pack.models import CHANNEL_DIR, METADATA_FILE, CondaPackage
from pixi_pack.pack.selfextract import decode_ps1_pack, stub_payload_args
from pixi_pack.platforms import python_major_minor

logger = logging.getLogger("pixi_pack")

_METADATA_LIMIT = 64 << 20
"""A ``pixi-pack.json`` given on its own is read up to this size."""


@dataclass(frozen=True)
class Base:
    """What a delta pack is made against."""

    platform: str
    digests: frozenset[str]
    python: tuple[int, int] | None
    """The base's python X.Y: noarch python packages must be relinked when it changes."""

    @property
    def identity(self) -> str:
        return environment_sha256(self.digests)


def read_base(path: Path) -> Base:
    """The base of ``--base``: a pack in any form (a tar, a folder, a self-extracting file), or its
    ``pixi-pack.json``."""
    try:
        with open(path, "rb") as file:
            head = file.read(1)
    except IsADirectoryError:
        head = b""
    except OSError as exc:
        msg = f"cannot read the base pack {path}: {exc.strerror or exc}"
        raise PixiPackError(msg) from exc
    try:
        if head == b"{":
            return _from_metadata(_read_limited(path), None, path)
        if path.suffix.lower() == ".ps1":
            with tempfile.TemporaryDirectory(prefix="pixi-pack-base-") as folder:
                tar = Path(folder) / "base.tar"
                with open(tar, "wb") as out:
                    decode_ps1_pack(path, out)
                return _from_pack(PackReader(tar), path)
        located = stub_payload_args(path) if path.is_file() else None
        return _from_pack(
            PackReader(path) if located is None else PackReader(path, int(located[1]), int(located[3])), path
        )
    except ArchiveError as exc:
        msg = f"--base {path}: {exc}"
        raise PixiPackError(msg) from exc


def _read_limited(path: Path) -> str:
    try:
        return read_limited(path, _METADATA_LIMIT).decode("utf-8")
    except (TooLargeError, UnicodeDecodeError) as exc:
        msg = f"{path} is not a pixi-pack.json: {exc}"
        raise ArchiveError(msg) from exc


def _from_pack(reader: PackReader, path: Path) -> Base:
    return _from_metadata(reader.read_text(METADATA_FILE), reader, path)


def _from_metadata(text: str, reader: PackReader | None, path: Path) -> Base:
    metadata = parse_metadata(text)
    digests, _ = parse_identity(text)
    if digests is None:
        if reader is None:
            msg = (
                f"{path} does not list its packages' digests (a pack made before pixi-pack recorded them): "
                "give the whole pack as --base"
            )
            raise ArchiveError(msg)
        digests = {
            name[len(CHANNEL_DIR) + 1 :]: package_digest(record)
            for name, record in pack_records(reader).items()
        }
    return Base(metadata.platform, frozenset(digests.values()), _python_of(digests))


def _python_of(digests: dict[str, str]) -> tuple[int, int] | None:
    """The X.Y of the base's python, from its file name (``<name>-<version>-<build>.conda``)."""
    for key in digests:
        stem = PurePosixPath(key).name.removesuffix(".conda").removesuffix(".tar.bz2")
        parts = stem.rsplit("-", 2)
        if len(parts) == 3 and parts[0] == "python":
            return python_major_minor(parts[1])
    return None


def left_out(conda: Sequence[CondaPackage], base: Base, platform: str) -> set[str]:
    """The paths in the pack (``channel/<subdir>/<file>``) of the archives a delta against ``base`` leaves
    out: those the base has, but for noarch python packages when the python X.Y changes."""
    if base.platform != platform:
        msg = (
            f"--base is a pack for {base.platform}, and this pack is for {platform}: a delta updates an "
            f"environment of the same platform; pack the base for {platform}"
        )
        raise PixiPackError(msg)
    python = next((p for p in conda if p.name == "python"), None)
    new_python = python_major_minor(python.version) if python is not None else None
    relink = new_python != base.python
    out = {
        f"{CHANNEL_DIR}/{p.subdir}/{p.file_name}"
        for p in conda
        if package_digest(p.record) in base.digests and not (relink and p.record.get("noarch") == "python")
    }
    logger.info(
        "delta against the environment %s: %d of %d conda packages are in the base and left out",
        base.identity[:12],
        len(out),
        len(conda),
    )
    return out
