"""Checks of every record field that ends up in a path, with conda's grammar for each; pure functions.

A lockfile (pack side) and a pack's ``repodata.json`` (unpack side) are both hostile input: a package
name becomes ``conda-meta/<name>-<version>-<build>.json``, a file name becomes ``channel/<subdir>/<fn>``,
``python_site_packages_path`` becomes the folder every noarch python file is written to. Each field is
checked here, once, by both sides, before it is used. The grammar is that of rattler_conda_types
(``PackageName``, ``Version``, build strings, ``Platform``) and conda's CEP on names, narrowed where it
would let a path component through (``.``, ``..``, a separator, a NUL byte).

Every check raises :class:`RecordError`, naming the field; callers add which file and which record.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pixi_pack.errors import PixiPackError
from pixi_pack.models import CONDA_EXTENSIONS

#: rattler's ``PackageName`` characters (it lower-cases them to compare).
_NAME = re.compile(r"[A-Za-z0-9_.\-]+\Z")
#: conda's version characters (``-`` is read as ``_``), rattler's epoch ``!`` and local ``+``.
_VERSION = re.compile(r"[A-Za-z0-9_.+!*\-]+\Z")
#: conda-build's build string characters: no ``-``, which separates the parts of a dist name.
_BUILD = re.compile(r"[A-Za-z0-9_.+]+\Z")
#: ``noarch`` or ``<os>-<arch>``, as rattler's ``Platform`` and conda's subdirs are spelled.
_SUBDIR = re.compile(r"(?:noarch|[a-z][a-z0-9]*-[a-z0-9_]+)\Z")
_SHA256 = re.compile(r"[0-9a-fA-F]{64}\Z")
_MD5 = re.compile(r"[0-9a-fA-F]{32}\Z")
#: A wheel's (or sdist's) file name: one path component of the characters PEP 427 and PEP 625 use.
_DIST_FILE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+!\-]*\Z")
_PATH_PART = re.compile(r"[A-Za-z0-9_.+\-]+\Z")
_MAX_FIELD = 1024


class RecordError(PixiPackError):
    """A record field is missing, of the wrong type, or not of conda's grammar."""

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        super().__init__(f"field {field!r} {problem}")


def _text(value: object, field: str) -> str:
    if not isinstance(value, str):
        raise RecordError(field, f"must be a string, not {_type_name(value)}")
    if len(value) > _MAX_FIELD:
        raise RecordError(field, f"is {len(value)} characters long")
    return value


def _type_name(value: object) -> str:
    return {dict: "an object", list: "a list", bool: "a boolean", int: "a number", float: "a number"}.get(
        type(value), type(value).__name__
    )


def _matching(value: object, field: str, pattern: re.Pattern[str], what: str) -> str:
    text = _text(value, field)
    if not pattern.match(text) or text.strip(".") == "":
        raise RecordError(field, f"is not {what}: {text!r}")
    return text


def check_name(value: object, field: str = "name") -> str:
    """A conda package name: letters, digits, ``_``, ``.``, ``-`` (not only dots)."""
    return _matching(value, field, _NAME, "a conda package name")


def check_version(value: object, field: str = "version") -> str:
    return _matching(value, field, _VERSION, "a conda version")


def check_build(value: object, field: str = "build") -> str:
    return _matching(value, field, _BUILD, "a conda build string")


def check_subdir(value: object, field: str = "subdir") -> str:
    return _matching(value, field, _SUBDIR, "a conda subdir (noarch or <os>-<arch>)")


def check_conda_file_name(value: object, field: str = "file_name") -> str:
    """``<name>-<version>-<build>.conda`` or ``.tar.bz2``, each part of its grammar."""
    text = _text(value, field)
    stem = next((text[: -len(ext)] for ext in CONDA_EXTENSIONS if text.endswith(ext)), None)
    if stem is None:
        raise RecordError(field, f"is not a conda package file name (.conda or .tar.bz2): {text!r}")
    parts = stem.rsplit("-", 2)
    valid = (
        len(parts) == 3
        and _NAME.match(parts[0]) is not None
        and _VERSION.match(parts[1]) is not None
        and _BUILD.match(parts[2]) is not None
        and not text.startswith(".")
    )
    if not valid:
        raise RecordError(
            field, f"is not a conda package file name (<name>-<version>-<build>.conda): {text!r}"
        )
    return text


def check_dist_file_name(value: object, field: str = "file_name") -> str:
    """A PyPI distribution's file name (a wheel or an sdist): one path component, no separators."""
    return _matching(value, field, _DIST_FILE, "a distribution file name")


def check_relative_path(value: object, field: str) -> str:
    """A relative ``/``-separated path of plain components, e.g. ``lib/python3.13t/site-packages``."""
    text = _text(value, field)
    parts = text.split("/")
    if not all(_PATH_PART.match(p) and p.strip(".") for p in parts):
        raise RecordError(field, f"is not a relative path inside the environment: {text!r}")
    return text


def check_sha256(value: object, field: str = "sha256") -> str:
    """A sha256 as 64 hex digits, lower-cased. A YAML lock's all-digit hash read as a number is refused."""
    return _matching(value, field, _SHA256, "a sha256 (64 hex digits)").lower()


def check_md5(value: object, field: str = "md5") -> str:
    return _matching(value, field, _MD5, "an md5 (32 hex digits)").lower()


def check_size(value: object, field: str = "size") -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise RecordError(field, f"must be a non-negative integer, not {value!r}"[:200])
    return value


def check_string_list(value: object, field: str) -> list[str]:
    """A list of strings without NUL bytes (``depends``, ``constrains``)."""
    if not isinstance(value, list):
        raise RecordError(field, f"must be a list of strings, not {_type_name(value)}")
    for item in value:
        if not isinstance(item, str) or "\0" in item:
            raise RecordError(field, f"must be a list of strings, and holds {item!r}"[:200])
    return value


# Fields of a repodata record and their checks; a field absent or None is not checked here.
_CHECKS: Mapping[str, Any] = {
    "name": check_name,
    "version": check_version,
    "build": check_build,
    "subdir": check_subdir,
    "sha256": check_sha256,
    "md5": check_md5,
    "size": check_size,
    "build_number": check_size,
    "depends": lambda v, f: check_string_list(v, f),
    "constrains": lambda v, f: check_string_list(v, f),
    "python_site_packages_path": lambda v, f: check_relative_path(v, f),
    "noarch": lambda v, f: _check_noarch(v, f),
    "timestamp": lambda v, f: _check_number(v, f),
}


def _check_noarch(value: object, field: str) -> object:
    if value in (False, True, "python", "generic"):
        return value
    raise RecordError(field, f"must be 'python' or 'generic', not {value!r}"[:200])


def _check_number(value: object, field: str) -> object:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RecordError(field, f"must be a number, not {_type_name(value)}")
    return value


def check_index(record: Mapping[str, Any]) -> dict[str, Any]:
    """A package's ``info/index.json`` (or a record) with every checked field of the right type and
    grammar (hashes lower-cased); ``name``, ``version`` and ``build`` must be there."""
    checked = dict(record)
    for field in ("name", "version", "build"):
        if field not in record:
            raise RecordError(field, "is missing")
    for field, check in _CHECKS.items():
        value = record.get(field)
        if value is not None:
            checked[field] = check(value, field)
    return checked


def check_record(record: Mapping[str, Any]) -> dict[str, Any]:
    """A repodata record checked as :func:`check_index` does, which must also carry a sha256 or an
    md5: without either, nothing ties the file to the record."""
    checked = check_index(record)
    if not checked.get("sha256") and not checked.get("md5"):
        raise RecordError("sha256", "is missing, and so is md5: nothing could verify the package")
    return checked
