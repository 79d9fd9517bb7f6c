"""A CycloneDX 1.6 JSON SBOM of a pack: one component per conda package and wheel.

Written by hand rather than with cyclonedx-python-lib: the document is a few dozen lines of plain
JSON, while the library (and its dependencies: serializable, sortedcontainers, license-expression,
packageurl) would add to the zipapp and to pixi-unpack's start-up on every target. The tests validate
every document with the library's strict JSON schema validator instead.

The same pack gives the same bytes: components sorted, the serial number derived from their content,
and no timestamp unless the caller passes one (the CLI takes ``SOURCE_DATE_EPOCH``).
"""

from __future__ import annotations

import datetime
import hashlib
import json
import re
import uuid
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote, urlsplit

from pixi_pack import __version__
from pixi_pack.formats.channel import normalize_project_name
from pixi_pack.formats.listing import Entry, Listing
from pixi_pack.formats.locations import channel_url
from pixi_pack.formats.spdx import spdx_expression, spdx_id

SPEC_VERSION = "1.6"
_SPEC_NAME = re.compile(r"\s*(?:[^\s:]+::)?([A-Za-z0-9_][A-Za-z0-9_.\-]*)")
#: The purl of conda-forge and other anaconda.org channels names the channel; others give its URL.
_ANACONDA_HOSTS = {"conda.anaconda.org", "repo.anaconda.com"}


def _encode(value: str) -> str:
    """Percent-encoding as purl wants it: everything but unreserved characters."""
    return quote(value, safe=".-_~")


def purl(entry: Entry) -> str:
    """``pkg:conda/<name>@<version>?build=…&channel=…&subdir=…&type=conda|tar.bz2`` or ``pkg:pypi/…``."""
    if entry.kind == "pypi":
        name = normalize_project_name(entry.name)
        return f"pkg:pypi/{_encode(name)}@{_encode(entry.version)}"
    qualifiers = {"build": entry.build or "", "subdir": entry.subdir or "noarch"}
    qualifiers["type"] = "tar.bz2" if entry.file_name.endswith(".tar.bz2") else "conda"
    channel = _channel(entry)
    if channel:
        qualifiers["channel"] = channel
    query = "&".join(f"{key}={_encode(value)}" for key, value in sorted(qualifiers.items()) if value)
    return f"pkg:conda/{_encode(entry.name)}@{_encode(entry.version)}?{query}"


def _channel(entry: Entry) -> str | None:
    if entry.url is None:
        return None
    channel = channel_url(entry.url, entry.subdir or "noarch", entry.file_name)
    if channel is None:
        return None
    parts = urlsplit(channel.rstrip("/"))
    if parts.hostname in _ANACONDA_HOSTS and parts.path.strip("/"):
        return parts.path.strip("/").split("/")[-1]
    return channel.rstrip("/")


def _licenses(text: str | None) -> list[dict[str, Any]]:
    if not text:
        return []
    known = spdx_id(text)
    if known is not None:
        return [{"license": {"id": known}}]
    expression = spdx_expression(text)
    if expression is not None:
        return [{"expression": expression}]
    return [{"license": {"name": text}}]


def _ref(entry: Entry) -> str:
    """The component's ``bom-ref``: its path in the pack, which no two components share."""
    folder = "pypi" if entry.kind == "pypi" else f"channel/{entry.subdir or 'noarch'}"
    return f"{folder}/{entry.file_name}"


def _component(entry: Entry) -> dict[str, Any]:
    component: dict[str, Any] = {
        "type": "library",
        "bom-ref": _ref(entry),
        "name": entry.name,
        "version": entry.version,
        "purl": purl(entry),
    }
    hashes = [{"alg": "SHA-256", "content": entry.sha256.lower()}] if entry.sha256 else []
    hashes += [{"alg": "MD5", "content": entry.md5.lower()}] if entry.md5 else []
    if hashes:
        component["hashes"] = hashes
    licenses = _licenses(entry.license)
    if licenses:
        component["licenses"] = licenses
    properties = [{"name": "pixi-pack:file-name", "value": entry.file_name}]
    if entry.build:
        properties.append({"name": "conda:build", "value": entry.build})
    component["properties"] = properties
    return component


def _dependencies(entries: Sequence[Entry]) -> list[dict[str, Any]]:
    """``dependsOn`` from each record's depends (conda) or Requires-Dist (wheels), within the pack."""
    conda = {e.name.lower(): _ref(e) for e in entries if e.kind == "conda"}
    pypi = {normalize_project_name(e.name): _ref(e) for e in entries if e.kind == "pypi"}
    edges = []
    for entry in entries:
        names: Mapping[str, str] = conda if entry.kind == "conda" else pypi
        wanted = set()
        for spec in entry.depends:
            match = _SPEC_NAME.match(spec)
            if match is None:
                continue
            name = match.group(1).lower() if entry.kind == "conda" else normalize_project_name(match.group(1))
            if name in names and names[name] != _ref(entry):
                wanted.add(names[name])
        edges.append({"ref": _ref(entry), "dependsOn": sorted(wanted)})
    return edges


def sbom_json(listing: Listing, *, timestamp: int | None = None) -> str:
    """The SBOM; ``timestamp`` (seconds since the epoch) dates it, else it carries no date."""
    entries = sorted(listing.entries, key=_ref)
    components = [_component(e) for e in entries]
    content = json.dumps(components, sort_keys=True).encode()
    metadata: dict[str, Any] = {}
    if timestamp is not None:
        moment = datetime.datetime.fromtimestamp(timestamp, tz=datetime.timezone.utc)
        metadata["timestamp"] = moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    metadata["tools"] = {"components": [{"type": "application", "name": "pixi-pack", "version": __version__}]}
    metadata["component"] = {
        "type": "application",
        "bom-ref": "environment",
        "name": "environment",
        "description": f"a conda environment for {listing.platform}, packed by pixi-pack",
    }
    metadata["properties"] = [
        {"name": "pixi-pack:platform", "value": listing.platform},
        {"name": "pixi-pack:packed-by", "value": listing.pixi_pack_version or "unknown"},
    ]
    document = {
        "bomFormat": "CycloneDX",
        "specVersion": SPEC_VERSION,
        "serialNumber": f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, hashlib.sha256(content).hexdigest())}",
        "version": 1,
        "metadata": metadata,
        "components": components,
        "dependencies": [
            {"ref": "environment", "dependsOn": [_ref(e) for e in entries]},
            *_dependencies(entries),
        ],
    }
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"
