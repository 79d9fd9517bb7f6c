"""``pixi-pack --from-prefix PATH``: the package set of an installed environment, as a lock would give it.

Every ``conda-meta/*.json`` of the prefix (a PrefixRecord, as conda, mamba, pixi and rattler write it)
becomes the record of one package, through the same checks and defaults as a lockfile's
(:func:`~pixi_pack.lock.lockfile.conda_package`); so the pack is byte for byte the one a pixi.lock of
the same records gives. Each archive is then found, verified against the record's sha256 (md5 where
that is all), in the package folders given, or downloaded from the record's URL. An archive is never
rebuilt from the installed files: their hashes would not match.

Files of the prefix that no record owns (pip-installed distributions, the user's own files) are not
packed, with one warning for each; packing pip-installed distributions as wheels is left out.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from pixi_pack.errors import PixiPackError
from pixi_pack.formats.locations import is_url
from pixi_pack.io.files import TooLargeError, read_limited
from pixi_pack.io.hashing import check_digests, hash_file
from pixi_pack.lock.lockfile import conda_package
from pixi_pack.models import CondaPackage, LockedEnvironment

logger = logging.getLogger("pixi_pack")

CONDA_META = "conda-meta"
#: The largest conda-meta record read (paths_data of big packages runs to a few MB).
_RECORD_LIMIT = 256 << 20
#: What the installer writes into every prefix, owned by no record.
_PREFIX_FILES = {"conda-meta", ".nonadmin", "CACHEDIR.TAG", "pkgs", "envs"}


class PrefixError(PixiPackError):
    """The prefix is not a conda environment, or one of its records is malformed."""


def environment_from_prefix(
    prefix: Path, *, platform: str | None, package_dirs: Sequence[Path], name: str = "default"
) -> LockedEnvironment:
    """The environment installed at ``prefix``, its packages located in ``package_dirs`` or at their URLs.

    ``platform`` must agree with the records' subdir when given; it is the platform of a prefix of
    noarch packages only.
    """
    meta = prefix / CONDA_META
    if not meta.is_dir():
        msg = f"{prefix} is not a conda environment: it has no {CONDA_META}/ folder"
        raise PrefixError(msg)
    documents = [(path, _read_record(path)) for path in sorted(meta.glob("*.json"))]
    packages = [_package(path, document) for path, document in documents]
    subdirs = sorted({p.subdir for p in packages} - {"noarch"})
    if len(subdirs) > 1:
        msg = f"the records of {prefix} are for several platforms ({', '.join(subdirs)}): it cannot be packed as one"
        raise PrefixError(msg)
    subdir = subdirs[0] if subdirs else platform
    if subdir is None:
        msg = f"every package of {prefix} is noarch: pass --platform to say which platform to pack for"
        raise PrefixError(msg)
    if platform and platform != subdir:
        msg = f"--platform {platform} disagrees with the records of {prefix}, which are for {subdir}"
        raise PrefixError(msg)
    _warn_unowned(prefix, documents)
    # In the order pixi's lockfile lists them (rattler sorts an environment's packages by URL), so the
    # pack is the one a lock of these records gives.
    packages.sort(key=lambda p: (p.origin or p.file_name, p.file_name))
    located = [_locate(package, package_dirs) for package in packages]
    return LockedEnvironment(name, subdir, (), tuple(located), (), ())


def _read_record(path: Path) -> dict[str, Any]:
    try:
        data = read_limited(path, _RECORD_LIMIT)
    except TooLargeError as exc:
        msg = f"{path} is larger than any conda-meta record ({_RECORD_LIMIT >> 20} MiB)"
        raise PrefixError(msg) from exc
    except OSError as exc:
        msg = f"could not read {path}: {exc.strerror or exc}"
        raise PrefixError(msg) from exc
    try:
        document = json.loads(data.decode("utf-8"))
    except (ValueError, RecursionError) as exc:
        msg = f"could not parse {path}: {exc}"
        raise PrefixError(msg) from exc
    if not isinstance(document, dict):
        msg = f"could not parse {path}: not a JSON object"
        raise PrefixError(msg)
    return document


def _package(path: Path, document: dict[str, Any]) -> CondaPackage:
    """The record as the lock path makes it; its ``url`` (or ``fn``) is where it is published."""
    url, fn = document.get("url"), document.get("fn")
    for field, value in (("url", url), ("fn", fn)):
        if value is not None and not isinstance(value, str):
            msg = f"invalid record {path}: {field} must be a string"
            raise PrefixError(msg)
    location = url if url and is_url(url) else fn
    if not location:
        msg = f"invalid record {path}: it has neither url nor fn, so the package's file is unknown"
        raise PrefixError(msg)
    record = {k: v for k, v in document.items() if k not in ("url", "channel", "file_name")}
    if fn:
        record["fn"] = fn
    try:
        package = conda_package(location, record, path.parent, source=f"record {path}")
    except PixiPackError as exc:
        raise PrefixError(str(exc)) from exc
    return dataclasses.replace(package, origin=url if url and is_url(url) else None)


def _locate(package: CondaPackage, package_dirs: Sequence[Path]) -> CondaPackage:
    """Where to fetch the package from: a verified copy in a package folder, else its URL."""
    looked = []
    for folder in package_dirs:
        candidate = folder / package.file_name
        looked.append(str(folder))
        if not candidate.is_file():
            continue
        try:
            digests = hash_file(candidate, md5=not package.sha256)
            md5 = None if package.sha256 else package.md5
            check_digests(digests, what=str(candidate), sha256=package.sha256, md5=md5, size=package.size)
        except (PixiPackError, OSError) as exc:
            logger.debug("not using %s: %s", candidate, exc)
            continue
        return dataclasses.replace(package, location=str(candidate))
    if package.origin is not None:
        return dataclasses.replace(package, location=package.origin)
    where = ", ".join(looked) or "no package folder"
    msg = (
        f"{package.dist_name}: its archive {package.file_name} is in none of the package folders "
        f"({where}) and its record has no URL to download it from; pass the folder that holds it "
        f"with --pkgs-dir"
    )
    raise PrefixError(msg)


def _warn_unowned(prefix: Path, documents: Sequence[tuple[Path, dict[str, Any]]]) -> None:
    """One warning for each top-level item of the prefix that no record owns."""
    owned: set[str] = set()
    for _, document in documents:
        files = document.get("files")
        if isinstance(files, list):
            owned.update(str(f) for f in files if isinstance(f, str))
    items = sorted({_item(path) for path in _files(prefix) if path not in owned})
    for item in items:
        logger.warning("%s (not from a conda package: not packed)", item)


def _files(prefix: Path) -> Iterator[str]:
    for path in sorted(prefix.rglob("*")):
        relative = path.relative_to(prefix)
        if relative.parts[0] in _PREFIX_FILES or "__pycache__" in relative.parts:
            continue
        if path.is_symlink() or path.is_file():
            yield relative.as_posix()


def _item(path: str) -> str:
    """What a warning names: a distribution of site-packages, else the first two levels."""
    parts = PurePosixPath(path).parts
    if "site-packages" in parts:
        at = parts.index("site-packages")
        return "/".join(parts[: at + 2])
    return "/".join(parts[:2])
