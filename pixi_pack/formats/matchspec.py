"""Conda MatchSpecs, as far as ``depends`` and ``constrains`` need them: ``numpy >=1.26,<2 py312*``.

Follows rattler's lenient parser (what pixi and the original pixi-pack use); the version part is
:mod:`pixi_pack.formats.version`'s grammar.
"""

from __future__ import annotations

import fnmatch
import operator
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Callable

from pixi_pack.errors import PixiPackError
from pixi_pack.formats.version import EPOCH, ORDERINGS, VersionSpec, parse_version_spec

StringPredicate = Callable[[str], bool]


def _string_matcher(pattern: str) -> StringPredicate:
    """Build strings: ``^...$`` is a regex, ``*`` makes a glob, otherwise exact; all case-insensitive."""
    if pattern.startswith("^") and pattern.endswith("$"):
        try:
            regex = re.compile(pattern, re.IGNORECASE)
        except re.error as exc:
            raise PixiPackError(f"invalid regular expression {pattern!r}: {exc}") from None
        return lambda s: regex.search(s) is not None
    lowered = pattern.lower()
    if "*" in pattern:
        return lambda s: fnmatch.fnmatchcase(s.lower(), lowered)
    return lambda s: s.lower() == lowered


_BUILD_NUMBER = re.compile(r"\s*(==|!=|>=|<=|>|<|=)?\s*([0-9]+)\s*")
_BUILD_NUMBER_OPS: dict[str, Callable[[int, int], bool]] = {**ORDERINGS, "=": operator.eq}


def _build_number_matcher(text: str) -> Callable[[int], bool]:
    match = _BUILD_NUMBER.fullmatch(text)
    if not match:
        raise PixiPackError(f"invalid build number spec {text!r}")
    compare, limit = _BUILD_NUMBER_OPS[match.group(1) or "=="], int(match.group(2))
    return lambda n: compare(n, limit)


@dataclass(frozen=True)
class MatchSpec:
    """A parsed conda MatchSpec such as ``numpy >=1.26,<2 py312*``; :meth:`matches` tests a record."""

    text: str
    """The spec as written."""
    name: str
    """The package name, lowercased."""
    version: VersionSpec | None = None
    build: StringPredicate | None = None
    build_number: Callable[[int], bool] | None = None
    fields: tuple[tuple[str, str], ...] = ()
    """Record fields that must be equal: md5, sha256, license, license_family."""
    track_features: tuple[str, ...] = ()
    """Features the record must track."""

    def matches(self, record: Mapping[str, Any]) -> bool:
        """Whether ``record`` (name, version, build, build_number, ...) satisfies this spec."""
        if str(record.get("name", "")).lower() != self.name:
            return False
        if self.version is not None and not self.version.matches(str(record["version"])):
            return False
        if self.build is not None and not self.build(str(record.get("build", ""))):
            return False
        if self.build_number is not None and not self.build_number(int(record.get("build_number", 0))):
            return False
        if any(_field(record, key) != value for key, value in self.fields):
            return False
        tracked = _features(record.get("track_features"))
        return all(feature in tracked for feature in self.track_features)

    def __str__(self) -> str:
        return self.text


def _field(record: Mapping[str, Any], key: str) -> str:
    value = str(record.get(key) or "")
    return value.lower() if key in _HASH_KEYS else value


def _features(value: Any) -> set[str]:
    if not value:
        return set()
    items: Iterable[Any] = value.replace(",", " ").split() if isinstance(value, str) else value
    return {str(item) for item in items}


def is_virtual(name: str) -> bool:
    """Virtual packages (``__glibc``, ``__unix``, ...) describe the system; no channel provides them."""
    return name.startswith("__")


_NAME = re.compile(r"[^\s<>=!~]+")
_VALID_NAME = re.compile(r"[A-Za-z0-9_.-]+")
_HASH_KEYS = {"md5": 32, "sha256": 64}
_IGNORED_KEYS = frozenset({"fn", "url", "subdir", "channel", "namespace"})
"""Bracket keys rattler parses but does not compare with a package record."""


def parse_spec(text: str) -> MatchSpec:
    """Parse a MatchSpec as it appears in ``depends``/``constrains``; raises :class:`PixiPackError`."""
    try:
        return _parse_spec(text)
    except PixiPackError as exc:
        raise PixiPackError(f"invalid match spec {text!r}: {exc}") from None


def _parse_spec(text: str) -> MatchSpec:
    spec = text.split("#", 1)[0].strip()
    spec, brackets = _split_brackets(spec)
    spec = spec.rsplit(":", 1)[-1].strip()  # drop ``channel::`` and ``namespace:``
    match = _NAME.match(spec)
    if not match:
        raise PixiPackError("missing package name")
    name = match.group()
    if not _VALID_NAME.fullmatch(name):
        raise PixiPackError(f"invalid package name {name!r} (only exact names of 0-9, a-z, -, _ and .)")
    version: VersionSpec | None = None
    build: StringPredicate | None = None
    rest = spec[match.end() :].strip()
    if rest:
        version_text, build_text = _split_version_and_build(rest)
        version = parse_version_spec(_strip_equals(version_text, build_text))
        build = _string_matcher(build_text) if build_text else None
    fields: list[tuple[str, str]] = []
    build_number = None
    features: tuple[str, ...] = ()
    for key, value in brackets:
        if key == "version":
            version = parse_version_spec(value)
        elif key == "build":
            build = _string_matcher(value)
        elif key == "build_number":
            build_number = _build_number_matcher(value)
        elif key in _HASH_KEYS:
            if not re.fullmatch(rf"[0-9a-fA-F]{{{_HASH_KEYS[key]}}}", value):
                raise PixiPackError(f"invalid {key} {value!r}")
            fields.append((key, value.lower()))
        elif key in ("license", "license_family"):
            fields.append((key, value))
        elif key == "track_features":
            features = tuple(value.replace(",", " ").split())
        elif key not in _IGNORED_KEYS:
            raise PixiPackError(f"unsupported bracket key {key!r}")
    return MatchSpec(text, name.lower(), version, build, build_number, tuple(fields), features)


def _strip_equals(version: str, build: str | None) -> str:
    """``=1.2`` means ``1.2*`` unless a build follows; ``==1.2`` alone means ``1.2`` (conda's rules)."""
    if not version.startswith("="):
        return version
    rest = version[1:]
    if rest.startswith("=") and build is None:
        return rest[1:]
    if any(c in rest for c in "=,|"):
        return version
    return rest + "*" if build is None and not rest.endswith("*") else rest


# ---- brackets --------------------------------------------------------------------------------------

_KEY = re.compile(r"\s*([\w-]+)\s*=\s*")
_BARE_VALUE = re.compile(r"[^,\]'\"]+")


def _split_brackets(spec: str) -> tuple[str, list[tuple[str, str]]]:
    """``name[version='>=1',build=py*]`` -> ``name``, ``[(version, >=1), (build, py*)]``."""
    if not spec.endswith("]"):
        return spec, []
    open_at = _bracket_start(spec)
    items: list[tuple[str, str]] = []
    pos = open_at + 1
    end = len(spec) - 1
    while pos < end:
        key = _KEY.match(spec, pos)
        if not key:
            raise PixiPackError(f"invalid bracket section {spec[open_at:]!r}")
        value, pos = _bracket_value(spec, key.end())
        items.append((key.group(1), value))
        while pos < end and spec[pos].isspace():
            pos += 1
        if pos < end:
            if spec[pos] != ",":
                raise PixiPackError(f"invalid bracket section {spec[open_at:]!r}")
            pos += 1
    return spec[:open_at], items


def _bracket_start(spec: str) -> int:
    """Where the ``[`` that the final ``]`` closes is; quotes inside are skipped."""
    depth, open_at, quote = 0, -1, ""
    for i, char in enumerate(spec):
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"" and depth:
            quote = char
        elif char == "[":
            open_at = i if depth == 0 else open_at
            depth += 1
        elif char == "]":
            depth -= 1
    if depth != 0 or quote or open_at < 0:
        raise PixiPackError("unbalanced brackets")
    return open_at


def _bracket_value(spec: str, pos: int) -> tuple[str, int]:
    char = spec[pos : pos + 1]
    if char in ("'", '"'):
        close = spec.find(char, pos + 1)
        if close < 0:
            raise PixiPackError("unterminated quote")
        return spec[pos + 1 : close], close + 1
    if char == "[":
        close = spec.find("]", pos + 1)
        if close < 0:
            raise PixiPackError("unterminated list")
        return spec[pos + 1 : close], close + 1
    match = _BARE_VALUE.match(spec, pos)
    if not match:
        raise PixiPackError("missing bracket value")
    return match.group().strip(), match.end()


# ---- splitting ``>=1.0,<2 py39_0`` into version and build --------------------------------------------

_GROUP_SEPARATOR = re.compile(r"\s*[,|]\s*")
_OPERATOR = re.compile(r"\s*(==|!=|=|>=|>|<=|<|~=)\s*")
_VERSION_COMPONENT = re.compile(r"[A-Za-z]+|[0-9]+|\*")


def _split_version_and_build(text: str) -> tuple[str, str | None]:
    """Split what follows the name into the version spec (whitespace removed) and the build string.

    Mirrors rattler's lenient recognizer: the longest run of constraints joined by ``,`` and ``|``, then
    one optional space or ``=``, then the build.
    """
    end = _scan_group(text, 0)
    build = text[end + 1 if text[end : end + 1] in (" ", "=") else end :].strip()
    return "".join(text[:end].split()), build or None


def _scan_group(text: str, pos: int) -> int:
    pos = _scan_term(text, pos)
    while separator := _GROUP_SEPARATOR.match(text, pos):
        pos = _scan_term(text, separator.end())
    return pos


def _scan_term(text: str, pos: int) -> int:
    if text.startswith("(", pos):
        end = _scan_group(text, pos + 1)
        if text.startswith(")", end):
            return end + 1
    elif (end_eq := _scan_equality(text, pos)) is not None:
        return end_eq
    elif text.startswith("*", pos):
        return pos + (3 if text.startswith(".*", pos + 1) else 1)
    else:
        operator = _OPERATOR.match(text, pos)
        end_version = _scan_version(text, operator.end() if operator else pos)
        if end_version is not None:
            while end_version < len(text) and text[end_version] in ".*":
                end_version += 1
            return end_version
    raise PixiPackError(f"cannot parse the version in {text!r}")


def _scan_equality(text: str, pos: int) -> int | None:
    """``=1.2``, ``=1.2*``, ``=1.2.*`` or ``=*`` (not ``==``)."""
    if not text.startswith("=", pos):
        return None
    end = _scan_version(text, pos + 1)
    if end is None:
        return pos + 2 if text.startswith("*", pos + 1) else None
    if text.startswith(".*", end):
        return end + 2
    return end + 1 if text.startswith("*", end) else end


def _scan_version(text: str, pos: int) -> int | None:
    if epoch := EPOCH.match(text, pos):
        pos = epoch.end()
    end = _scan_components(text, pos)
    if end is not None and text.startswith("+", end):
        end = _scan_components(text, end + 1)
        if end is None:
            raise PixiPackError(f"missing local version in {text!r}")
    return end


def _scan_components(text: str, pos: int) -> int | None:
    component = _VERSION_COMPONENT.match(text, pos)
    if not component:
        return None
    pos = component.end()
    while True:
        after = pos
        while after < len(text) and text[after] in "._-":
            after += 1
        component = _VERSION_COMPONENT.match(text, after)
        if not component:
            break
        pos = component.end()
    while pos < len(text) and text[pos] in "_-":
        pos += 1
    return pos
