"""Pure builders and readers for the small files of a pack: repodata.json, environment.yml, pixi-pack.json."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pixi_pack.errors import ArchiveError
from pixi_pack.formats.records import RecordError, check_conda_file_name, check_record
from pixi_pack.models import (
    CHANNEL_DIR,
    PACK_FORMAT_VERSION,
    PYPI_DIR,
    CondaPackage,
    PackMetadata,
    PypiPackage,
)

#: The key of ``pixi-pack.json`` that holds the sha256 of every wheel in ``pypi/``, by file name.
PYPI_SHA256_KEY = "pypi-sha256"

#: The key of ``pixi-pack.json`` that holds where each conda package was downloaded from, by its path
#: under ``channel/`` (``linux-64/zlib-1.3.1-hb9d3cd8_2.conda``), so that conda-meta can keep it.
CONDA_URLS_KEY = "conda-urls"
_URL_LIMIT = 4096

#: The key of ``pixi-pack.json`` that holds each conda package's digest (:func:`package_digest`), by its
#: path under ``channel/``: what a delta pack against this one can leave out, even given this file alone.
CONDA_DIGESTS_KEY = "conda-sha256"
#: The key of the environment's identity (:func:`environment_sha256` of those digests).
ENVIRONMENT_KEY = "environment-sha256"
#: In a delta pack: the identity of the environment it updates. Its presence makes a pack a delta.
BASE_KEY = "base-environment-sha256"
_DIGEST = re.compile(r"[0-9a-f]{64}|md5:[0-9a-f]{32}")

#: conda reads repodata records of this version; the records we write are plain PackageRecords.
REPODATA_VERSION = 1


def _dumps(data: Any) -> str:
    return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def repodata_files(packages: Iterable[CondaPackage], platform: str) -> dict[str, str]:
    """``{subdir: repodata.json text}`` for every subdir used, plus ``noarch`` and ``platform`` always.

    conda and micromamba want both the platform's subdir and noarch to exist in a channel.
    """
    by_subdir: dict[str, dict[str, dict[str, Any]]] = {"noarch": {}, platform: {}}
    for package in packages:
        by_subdir.setdefault(package.subdir, {})[package.file_name] = dict(package.record)
    files = {}
    for subdir, records in sorted(by_subdir.items()):
        repodata = {
            "info": {"subdir": subdir},
            "packages": {fn: r for fn, r in sorted(records.items()) if fn.endswith(".tar.bz2")},
            "packages.conda": {fn: r for fn, r in sorted(records.items()) if fn.endswith(".conda")},
            "repodata_version": REPODATA_VERSION,
        }
        files[subdir] = _dumps(repodata)
    return files


def package_digest(record: Mapping[str, Any]) -> str:
    """What identifies a conda package: its sha256, or ``md5:<md5>`` for a record that has only that."""
    sha256 = record.get("sha256")
    return str(sha256).lower() if sha256 else f"md5:{str(record.get('md5') or '').lower()}"


def environment_sha256(digests: Iterable[str]) -> str:
    """The identity of an environment: the sha256 of its packages' digests, sorted, a line each.

    pixi-pack writes it for every pack; pixi-unpack computes it from an environment's conda-meta to
    check that a delta pack applies to it.
    """
    text = "".join(f"{digest}\n" for digest in sorted(digests))
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def parse_repodata(text: str, source: str) -> dict[str, dict[str, Any]]:
    """``{file name: record}`` from a repodata.json text; every field used in a path is checked."""
    try:
        data = json.loads(text)
        records: dict[str, dict[str, Any]] = {}
        for key in ("packages", "packages.conda"):
            for file_name, record in (data.get(key) or {}).items():
                if not isinstance(record, dict):
                    raise ValueError(f"record of {file_name} is not an object")
                records[file_name] = _checked(file_name, record, source)
    except (ValueError, AttributeError, RecursionError) as exc:
        msg = f"malformed {source}: {exc}"
        raise ArchiveError(msg) from exc
    return records


def _checked(file_name: str, record: dict[str, Any], source: str) -> dict[str, Any]:
    try:
        check_conda_file_name(file_name, "file name")
        return check_record(record)
    except RecordError as exc:
        msg = f"refusing {source}: the record of {file_name!r}: {exc}"
        raise ArchiveError(msg) from exc


def environment_yml(conda: Sequence[CondaPackage], pypi: Sequence[PypiPackage] = ()) -> str:
    """The conda/micromamba compatibility file: the channel in the pack and every package pinned exactly."""
    lines = ["channels:", f"  - ./{CHANNEL_DIR}", "  - nodefaults", "dependencies:"]
    lines += [f"  - {p.name}={p.version}={p.build}" for p in conda]
    if pypi:
        lines += ["  - pip:", "    - --no-index", f"    - --find-links ./{PYPI_DIR}"]
        lines += [f"    - {normalize_project_name(p.name)}=={p.version}" for p in pypi]
    return "\n".join(lines) + "\n"


def normalize_project_name(name: str) -> str:
    """A PyPI project name as PEP 503 (and upstream's environment.yml) writes it: ``My_Pkg`` -> ``my-pkg``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def metadata_json(
    metadata: PackMetadata,
    pypi_sha256: Mapping[str, str] | None = None,
    conda_urls: Mapping[str, str] | None = None,
    conda_digests: Mapping[str, str] | None = None,
    base: str | None = None,
) -> str:
    """``pixi-pack.json``; with wheels, also their sha256 by file name under ``pypi-sha256``; where the
    conda packages came from under ``conda-urls``; their digests under ``conda-sha256`` and the
    environment's identity; for a delta pack, the identity of the environment it updates.

    Upstream's pixi-unpack ignores keys it does not know, so these cost it nothing.
    """
    data: dict[str, Any] = {
        "version": metadata.version,
        "pixi-pack-version": metadata.pixi_pack_version,
        "platform": metadata.platform,
    }
    if conda_urls:
        data[CONDA_URLS_KEY] = dict(conda_urls)
    if conda_digests is not None:
        data[CONDA_DIGESTS_KEY] = dict(conda_digests)
        data[ENVIRONMENT_KEY] = environment_sha256(conda_digests.values())
    if base is not None:
        data[BASE_KEY] = base
    if pypi_sha256:
        data[PYPI_SHA256_KEY] = dict(pypi_sha256)
    return _dumps(data)


def parse_conda_urls(text: str) -> dict[str, str]:
    """Where each conda package of a ``pixi-pack.json`` came from (empty when it does not say).

    The URLs are only ever written into conda-meta, never fetched or used in a path; still, each must
    be a short, printable ``scheme://`` URL.
    """
    try:
        value = json.loads(text).get(CONDA_URLS_KEY)
    except (ValueError, AttributeError, RecursionError) as exc:
        msg = f"malformed pixi-pack.json: {exc}"
        raise ArchiveError(msg) from exc
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and _is_plain_url(v) for k, v in value.items()
    ):
        msg = f"malformed pixi-pack.json: {CONDA_URLS_KEY} must map package paths to URLs"
        raise ArchiveError(msg)
    return dict(value)


def _is_plain_url(url: str) -> bool:
    return (
        len(url) <= _URL_LIMIT
        and url.isprintable()
        and re.match(r"[A-Za-z][A-Za-z0-9+.-]+://\S+$", url) is not None
    )


def parse_pypi_sha256(text: str) -> dict[str, str] | None:
    """The wheel hashes of a ``pixi-pack.json`` (file name -> sha256), or ``None`` when it records none."""
    try:
        value = json.loads(text).get(PYPI_SHA256_KEY)
    except (ValueError, AttributeError, RecursionError) as exc:
        msg = f"malformed pixi-pack.json: {exc}"
        raise ArchiveError(msg) from exc
    if value is None:
        return None
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and re.fullmatch(r"[0-9a-fA-F]{64}", v)
        for k, v in value.items()
    ):
        msg = f"malformed pixi-pack.json: {PYPI_SHA256_KEY} must map wheel file names to sha256 hex digests"
        raise ArchiveError(msg)
    return {k: v.lower() for k, v in value.items()}


def parse_identity(text: str) -> tuple[dict[str, str] | None, str | None]:
    """The conda package digests of a ``pixi-pack.json`` (``None`` if it has none: an older pack) and,
    for a delta pack, the identity of the environment it updates."""
    try:
        data = json.loads(text)
        if not isinstance(data, Mapping):
            raise ValueError("not a JSON object")
    except (ValueError, RecursionError) as exc:
        msg = f"malformed pixi-pack.json: {exc}"
        raise ArchiveError(msg) from exc
    digests, base = data.get(CONDA_DIGESTS_KEY), data.get(BASE_KEY)
    if digests is not None and (
        not isinstance(digests, dict)
        or not all(
            isinstance(k, str) and isinstance(v, str) and _DIGEST.fullmatch(v) for k, v in digests.items()
        )
    ):
        msg = f"malformed pixi-pack.json: {CONDA_DIGESTS_KEY} must map package paths to sha256 hex digests"
        raise ArchiveError(msg)
    if base is not None and (not isinstance(base, str) or re.fullmatch(r"[0-9a-f]{64}", base) is None):
        msg = f"malformed pixi-pack.json: {BASE_KEY} must be a sha256 hex digest"
        raise ArchiveError(msg)
    return (None if digests is None else dict(digests)), base


def parse_metadata(text: str) -> PackMetadata:
    """Read ``pixi-pack.json``; refuse versions this pixi-unpack does not know."""
    try:
        data = json.loads(text)
        if not isinstance(data, Mapping):
            raise ValueError("not a JSON object")
        version, platform = data["version"], data["platform"]
        if not isinstance(version, str) or not isinstance(platform, str):
            raise ValueError("version and platform must be strings")
    except (ValueError, KeyError, RecursionError) as exc:
        msg = f"malformed pixi-pack.json: {exc} (is this a pack made by pixi-pack?)"
        raise ArchiveError(msg) from exc
    if version != PACK_FORMAT_VERSION:
        msg = (
            f"unsupported pack format version {version!r} (this pixi-unpack reads version "
            f"{PACK_FORMAT_VERSION!r}); use a matching pixi-unpack"
        )
        raise ArchiveError(msg)
    return PackMetadata(version, str(data.get("pixi-pack-version", "")), platform)
