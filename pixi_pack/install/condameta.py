"""``conda-meta``: what an installed prefix records about each package, written as rattler writes it.

:func:`prefix_record` builds the ``conda-meta/<dist>.json`` document of a package from its record and
the ``paths_data`` of what was written (:class:`WrittenPath`, :func:`paths_data_item`);
:func:`start_prefix` writes ``conda-meta/history`` and ``CACHEDIR.TAG`` into a new prefix. Read from
rattler_conda_types' ``prefix_record.rs``, rattler's ``Prefix::create`` and upstream pixi-pack's
``src/unpack.rs``.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from pixi_pack.formats.locations import channel_url
from pixi_pack.formats.package_info import Package, PathEntry
from pixi_pack.install.tree import TreeWriter
from pixi_pack.io import tempfiles

_encode_string = json.encoder.encode_basestring

#: What upstream pixi-unpack writes to ``conda-meta/history`` (rattler itself leaves it empty).
HISTORY = "// not relevant for pixi but for `conda run -p`"
#: rattler marks every prefix it creates as a cache directory, so backup tools skip it.
CACHEDIR_TAG = (
    "Signature: 8a477f597d28d172789f06886806bc55\n"
    "# This file is a cache directory tag created by rattler.\n"
    "# For information about cache directory tags, see:\n"
    "#\thttps://bford.info/cachedir/\n"
)


def start_prefix(writer: TreeWriter) -> None:
    """``conda-meta/history`` and ``CACHEDIR.TAG``, as rattler's ``Prefix::create`` and pixi-unpack make them."""
    writer.make_dirs("conda-meta")
    writer.write("conda-meta/history", HISTORY.encode(), 0o644, None)
    writer.write("CACHEDIR.TAG", CACHEDIR_TAG.encode(), 0o644, None)


class WrittenPath(NamedTuple):
    """What was written for one path of a package, as ``paths_data`` records it (build it by keyword).

    A tuple, as :class:`~pixi_pack.formats.package_info.PathEntry` is: there is one per file."""

    entry: PathEntry
    installed: str
    """Where it was written, relative to the prefix (under ``__clobbers__`` for a clobbered copy)."""
    kind: str
    """``path_type``: ``hardlink``, ``softlink`` or ``directory``."""
    sha256: str | None = None
    sha256_in_prefix: str | None = None
    """The written bytes' sha256 where it is not the package's."""
    size: int | None = None
    patched: bool = False
    """A placeholder was replaced."""


def paths_data_item(written: WrittenPath, final: str) -> dict[str, Any]:
    """The ``paths_data`` entry of a path whose place in the prefix is ``final``."""
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


def entry_point_item(installed: str, final: str, path_type: str, script: bytes) -> dict[str, Any]:
    """The ``paths_data`` entry of an entry point script."""
    item: dict[str, Any] = {"_path": installed}
    if installed != final:
        item["original_path"] = final
    item.update(path_type=path_type, sha256=hashlib.sha256(script).hexdigest(), size_in_bytes=len(script))
    return item


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
    lacks them), in rattler's order and with its omissions. ``url`` is where pixi-pack downloaded the
    package (``pixi-pack.json``), and ``channel`` the channel of that URL; a package packed from a
    local file gets the place it had in the pack's channel, and no channel. The fields conda and
    conda-pack read are there with what is true of this install: no package cache holds an extracted
    copy (``extracted_package_dir`` and ``link.source`` are empty), the files were written, not
    hard-linked (``link.type`` 3, conda's "copy"), and no spec was requested (the lock pinned it).
    """
    source = package.source
    record = source.record
    document = _repodata_fields(record, package.index)
    subdir = str(document.get("subdir") or "noarch")
    fallback = (target_prefix.absolute().parent / "channel" / subdir / source.file_name).as_uri()
    url = source.url or str(record.get("url") or fallback)
    channel = channel_url(source.url, subdir, source.file_name) if source.url else record.get("channel")
    document["fn"] = source.file_name
    document["url"] = url
    document["channel"] = str(channel) if channel else None
    document["extracted_package_dir"] = ""
    document["requested_spec"] = ""
    document["requested_specs"] = []
    document["files"] = [item["_path"] for item in paths]
    document["paths_data"] = {"paths_version": 1, "paths": list(paths)}
    document["link"] = {"source": "", "type": LINK_COPY}
    return document


#: conda's ``LinkType.copy``: each file was written into the prefix, none linked from a cache.
LINK_COPY = 3


def _repodata_fields(record: Mapping[str, Any], index: Mapping[str, Any]) -> dict[str, Any]:
    document: dict[str, Any] = {}
    for key in _RECORD_KEYS:
        value = _repodata_value(key, record, index)
        if value is None or (key in _OMIT_EMPTY and not value) or (key == "noarch" and value is False):
            continue
        document[key] = value
    return document


def _repodata_value(key: str, record: Mapping[str, Any], index: Mapping[str, Any]) -> Any:
    value = record.get(key, index.get(key) if key in ("name", "version", "build", "build_number") else None)
    if key == "depends" and value is None:
        return []
    if key == "subdir" and value is None:
        return index.get("subdir", "")
    if key == "track_features" and value:
        # rattler reads a list or a comma/space separated string and writes it space separated.
        parts = value if isinstance(value, list) else re.split("[, ]", str(value))
        return " ".join(str(part).strip() for part in parts)
    return value


def write_json_atomically(path: Path, document: Mapping[str, Any]) -> None:
    """Write ``document`` as rattler does (pretty, two spaces, no final newline) via a temp file."""
    with tempfiles.replacing(path, mode=0o644) as out:
        out.write(pretty_json(document).encode("utf-8"))


def pretty_json(document: object) -> str:
    """``json.dumps(document, indent=2, ensure_ascii=False)``, the same text, several times faster
    (objects with string keys only).

    With an indent, :mod:`json` encodes in pure Python through nested generators, and a conda-meta
    record has an object per file: on 100,000 files that was a sixth of the install's time. The
    scalars still go through :mod:`json`'s own C encoders.
    """
    parts: list[str] = []
    _pretty(document, "\n", parts)
    return "".join(parts)


def _pretty(value: object, newline: str, parts: list[str]) -> None:
    scalar = _SCALARS.get(type(value))
    if scalar is not None:
        parts.append(scalar(value))
    elif isinstance(value, dict):
        if not value:
            parts.append("{}")
            return
        inner = newline + "  "
        try:  # the common case: every value a scalar (a paths_data entry), one join
            lines = [f"{_KEYS.get(k) or _json_key(k)}: {_SCALARS[type(v)](v)}" for k, v in value.items()]
        except KeyError:
            first = True
            for key, item in value.items():
                parts.append(("{" if first else ",") + inner + (_KEYS.get(key) or _json_key(key)) + ": ")
                first = False
                _pretty(item, inner, parts)
            parts.append(newline + "}")
            return
        parts.append("{" + inner + ("," + inner).join(lines) + newline + "}")
    elif isinstance(value, (list, tuple)):
        if not value:
            parts.append("[]")
            return
        inner = newline + "  "
        if all(type(item) is str for item in value):
            parts.append("[" + inner + ("," + inner).join(map(_encode_string, value)) + newline + "]")
            return
        for index, item in enumerate(value):
            parts.append(("[" if index == 0 else ",") + inner)
            _pretty(item, inner, parts)
        parts.append(newline + "]")
    else:
        parts.append(json.dumps(value))


def _bool(value: bool) -> str:
    return "true" if value else "false"


def _null(value: None) -> str:
    return "null"


_SCALARS: dict[type, Callable[[Any], str]] = {
    str: _encode_string,
    int: int.__repr__,
    bool: _bool,
    type(None): _null,
    float: json.dumps,
}


def _json_key(key: object) -> str:
    """``key`` encoded as JSON, kept for the next document (conda-meta uses a few dozen keys)."""
    if not isinstance(key, str):
        msg = f"a conda-meta document's keys are strings, not {type(key).__name__}"
        raise TypeError(msg)
    encoded = _encode_string(key)
    if len(_KEYS) < _KEYS_KEPT:
        _KEYS[key] = encoded
    return encoded


_KEYS: dict[object, str] = {}
"""Encoded keys, by key."""
_KEYS_KEPT = 1024
