"""Conda version order and MatchSpec matching, as far as ``depends`` and ``constrains`` need them.

Follows rattler's lenient parser (what pixi and the original pixi-pack use) and the version order of
CEP 33 (conda's ``VersionOrder``): an optional epoch ``N!``, release segments split at ``.``, ``_`` or
``-``, an optional local part after ``+``; each segment is a run of numbers and lowercased words, with
an implicit leading ``0`` before a word. Components order as ``dev`` < trailing ``_``/``-`` < words <
numbers < ``post``, and a missing component counts as ``0`` (``1.1 == 1.1.0``).
"""

from __future__ import annotations

import fnmatch
import functools
import operator
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Callable, Union

from pixi_pack.errors import PixiPackError

Component = tuple[int, Union[int, str]]
"""A version component as ``(rank, value)``; the rank alone orders components of different kinds."""
Segment = tuple[Component, ...]

_WORD, _NUMBER = 2, 3
_DEV: Component = (0, 0)
_DASH: Component = (1, 0)
_ZERO: Component = (_NUMBER, 0)
_POST: Component = (4, 0)

_RUN = re.compile(r"[0-9]+|[A-Za-z]+")
_EPOCH = re.compile(r"([0-9]+)!")


def _component(run: str) -> Component:
    if run[0].isdigit():
        return (_NUMBER, int(run))
    word = run.lower()
    if word == "dev":
        return _DEV
    if word == "post":
        return _POST
    return (_WORD, word)


def _segment(text: str, pos: int) -> tuple[Segment | None, int]:
    components: list[Component] = []
    while match := _RUN.match(text, pos):
        components.append(_component(match.group()))
        pos = match.end()
    if not components:
        return None, pos
    if components[0][0] != _NUMBER:
        components.insert(0, _ZERO)
    return tuple(components), pos


def _part(text: str, pos: int, separator: str | None) -> tuple[tuple[Segment, ...], int, str | None]:
    """Parse the release or the local part from ``pos``; stops before what cannot belong to it."""
    first, pos = _segment(text, pos)
    if first is None:
        raise _version_error(text, "expected a version component such as '2' or 'rc'")
    segments = [first]
    while pos < len(text) and text[pos] in "._-":
        sep = text[pos]
        separator = _check_separator(text, separator, sep)
        segment, after = _segment(text, pos + 1)
        if segment is not None:
            segments.append(segment)
            pos = after
            continue
        # ``1.0_`` and ``1.0__``: a trailing underscore or dash is a component of its own.
        if pos + 1 < len(text) and text[pos + 1] in "_-":
            separator = _check_separator(text, separator, text[pos + 1])
            segments.append((_ZERO, _DASH))
            return tuple(segments), pos + 2, separator
        if sep in "_-":
            segments[-1] = (*segments[-1], _DASH)
            return tuple(segments), pos + 1, separator
        break
    return tuple(segments), pos, separator


def _check_separator(text: str, seen: str | None, sep: str) -> str | None:
    if sep == ".":
        return seen
    if seen is not None and seen != sep:
        raise _version_error(text, "cannot use both underscores and dashes as separators")
    return sep


def _version_error(text: str, reason: str) -> PixiPackError:
    return PixiPackError(f"invalid version {text!r}: {reason}")


def _parse_prefix(text: str) -> tuple[VersionOrder, str]:
    """Parse the longest version at the start of ``text``; returns it and the unparsed rest."""
    if not text:
        raise _version_error(text, "empty version")
    epoch, pos = 0, 0
    if match := _EPOCH.match(text):
        epoch, pos = int(match.group(1)), match.end()
    release, pos, separator = _part(text, pos, None)
    local: tuple[Segment, ...] = ()
    if text.startswith("+", pos):
        local, pos, _ = _part(text, pos + 1, separator)
    return VersionOrder._make(text[:pos], epoch, release, local), text[pos:]


def _compare_parts(a: Sequence[Segment], b: Sequence[Segment]) -> int:
    for i in range(max(len(a), len(b))):
        left = a[i] if i < len(a) else ()
        right = b[i] if i < len(b) else ()
        for j in range(max(len(left), len(right))):
            x = left[j] if j < len(left) else _ZERO
            y = right[j] if j < len(right) else _ZERO
            if x != y:
                return -1 if x < y else 1
    return 0


def _starts_with(version: Sequence[Segment], prefix: Sequence[Segment]) -> bool:
    """rattler's prefix test: missing zeros are fine, extra components only in the last prefix segment."""
    extra_left = False
    for i in range(max(len(version), len(prefix))):
        if i >= len(prefix):
            return True
        if i >= len(version):
            if all(c == _ZERO for c in prefix[i]):
                continue
            return False
        if extra_left:
            return False
        left, right = version[i], prefix[i]
        for j in range(max(len(left), len(right))):
            if j >= len(right):
                extra_left = True
                break
            if j >= len(left):
                if right[j] == _ZERO:
                    continue
                return False
            if left[j] != right[j]:
                return False
    return True


def _normalized(part: Sequence[Segment]) -> tuple[Segment, ...]:
    segments = [tuple(_strip_zeros(s)) for s in part]
    while segments and not segments[-1]:
        segments.pop()
    return tuple(segments)


def _strip_zeros(segment: Segment) -> Segment:
    end = len(segment)
    while end and segment[end - 1] == _ZERO:
        end -= 1
    return segment[:end]


@functools.total_ordering
class VersionOrder:
    """A conda version, ordered and compared as conda and rattler do."""

    __slots__ = ("_epoch", "_local", "_release", "_text")

    _text: str
    _epoch: int
    _release: tuple[Segment, ...]
    _local: tuple[Segment, ...]

    def __init__(self, text: str) -> None:
        version, rest = _parse_prefix(text)
        if rest:
            raise _version_error(text, f"unexpected {rest!r}")
        self._text, self._epoch, self._release, self._local = text, *version._key()

    @classmethod
    def _make(
        cls, text: str, epoch: int, release: tuple[Segment, ...], local: tuple[Segment, ...]
    ) -> VersionOrder:
        version = cls.__new__(cls)
        version._text, version._epoch, version._release, version._local = text, epoch, release, local
        return version

    def _key(self) -> tuple[int, tuple[Segment, ...], tuple[Segment, ...]]:
        return self._epoch, self._release, self._local

    def compare(self, other: VersionOrder) -> int:
        """-1, 0 or 1 as ``self`` sorts before, equal to, or after ``other``."""
        if self._epoch != other._epoch:
            return -1 if self._epoch < other._epoch else 1
        return _compare_parts(self._release, other._release) or _compare_parts(self._local, other._local)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, VersionOrder) and self.compare(other) == 0

    def __lt__(self, other: VersionOrder) -> bool:
        return self.compare(other) < 0

    def __hash__(self) -> int:
        return hash((self._epoch, _normalized(self._release), _normalized(self._local)))

    def startswith(self, prefix: VersionOrder) -> bool:
        """What ``=1.2`` and ``1.2.*`` test: ``1.2``, ``1.2.0`` and ``1.2.7a`` start with ``1.2``."""
        return (
            self._epoch == prefix._epoch
            and _starts_with(self._release, prefix._release)
            and _starts_with(self._local, prefix._local)
        )

    def compatible_with(self, limit: VersionOrder) -> bool:
        """What ``~=1.2.3`` tests: ``>=1.2.3`` and starting with ``1.2``."""
        return (
            self >= limit
            and self._epoch == limit._epoch
            and _starts_with(self._release, limit._release[:-1])
            and _starts_with(self._local, limit._local)
        )

    def __str__(self) -> str:
        return self._text

    def __repr__(self) -> str:
        return f"VersionOrder({self._text!r})"


@functools.lru_cache(maxsize=4096)
def parse_version(text: str) -> VersionOrder:
    """A (cached) :class:`VersionOrder`; raises :class:`PixiPackError` for an invalid version."""
    return VersionOrder(text)


def compare_versions(a: str, b: str) -> int:
    """-1, 0 or 1 as version ``a`` sorts before, equal to, or after version ``b``."""
    return parse_version(a).compare(parse_version(b))


# ---- version specs ---------------------------------------------------------------------------------

VersionPredicate = Callable[[VersionOrder], bool]

_OPERATOR_RUN = re.compile(r"[=!<>~]+")
_VERSION_RUN = re.compile(r"[\w!.*+-]+")
_OPERATORS = ("==", "!=", ">", ">=", "<", "<=", "=", "~=")
_ORDERINGS: dict[str, Callable[[Any, Any], bool]] = {
    "==": operator.eq,
    "!=": operator.ne,
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
}
_COMPARISONS: dict[str, Callable[[VersionOrder, VersionOrder], bool]] = {
    **_ORDERINGS,
    "=": lambda v, limit: v.startswith(limit),
    "!=startswith": lambda v, limit: not v.startswith(limit),
    "~=": lambda v, limit: v.compatible_with(limit),
}


@dataclass(frozen=True)
class VersionSpec:
    """A parsed version spec such as ``>=1.8,<2|1.7.*``."""

    text: str
    predicate: VersionPredicate

    def matches(self, version: VersionOrder | str) -> bool:
        return self.predicate(parse_version(version) if isinstance(version, str) else version)

    def __str__(self) -> str:
        return self.text


def parse_version_spec(text: str) -> VersionSpec:
    """Parse a version spec: ``,`` (and) binds tighter than ``|`` (or); parentheses group."""
    return VersionSpec(text, _VersionSpecParser(text).parse())


def _always(_: VersionOrder) -> bool:
    return True


def _all(predicates: list[VersionPredicate]) -> VersionPredicate:
    return predicates[0] if len(predicates) == 1 else lambda v: all(p(v) for p in predicates)


def _any(predicates: list[VersionPredicate]) -> VersionPredicate:
    return predicates[0] if len(predicates) == 1 else lambda v: any(p(v) for p in predicates)


def _is_star(rest: str) -> bool:
    """``*``, or any number of ``.*``."""
    if rest == "*":
        return True
    while rest.endswith(".*"):
        rest = rest[:-2]
    return not rest


def _is_star_tail(rest: str) -> bool:
    """``.*.*`` (a leftover of versions written like ``2023.*.*``)."""
    rest = rest[:-1] if rest.endswith(".") else rest
    if not rest:
        return False
    while rest.endswith(".*"):
        rest = rest[:-2]
    return not rest


_TOKENS = {token: re.compile(rf"\s*{re.escape(token)}\s*") for token in "|,()"}


class _VersionSpecParser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def error(self, reason: str) -> PixiPackError:
        return PixiPackError(f"invalid version spec {self.text!r}: {reason}")

    def parse(self) -> VersionPredicate:
        predicate = self.any_of()
        if self.pos != len(self.text):
            raise self.error(f"unexpected {self.text[self.pos :]!r}")
        return predicate

    def skip(self, token: str) -> bool:
        """Skip ``token`` and the whitespace around it, if it comes next."""
        match = _TOKENS[token].match(self.text, self.pos)
        if match:
            self.pos = match.end()
        return match is not None

    def any_of(self) -> VersionPredicate:
        predicates = [self.all_of()]
        while self.skip("|"):
            predicates.append(self.all_of())
        return _any(predicates)

    def all_of(self) -> VersionPredicate:
        predicates = [self.term()]
        while self.skip(","):
            predicates.append(self.term())
        return _all(predicates)

    def term(self) -> VersionPredicate:
        text = self.text
        if text.startswith("(", self.pos):
            self.skip("(")
            predicate = self.any_of()
            if not self.skip(")"):
                raise self.error("missing ')'")
            return predicate
        if text.startswith("*", self.pos):
            self.pos += 3 if text.startswith(".*", self.pos + 1) else 1
            return _always
        if text.startswith("^", self.pos) or "$" in text[self.pos :]:
            raise self.error("regular expressions are not supported")
        return self.constraint()

    def constraint(self) -> VersionPredicate:
        op: str | None = None
        if match := _OPERATOR_RUN.match(self.text, self.pos):
            op = match.group()
            if op not in _OPERATORS:
                raise self.error(f"invalid operator {op!r}")
            self.pos = match.end()
        match = _VERSION_RUN.match(self.text, self.pos)
        if not match:
            raise self.error("expected a version")
        self.pos = match.end()
        word = match.group()
        if word == "*":
            # ``>=*`` and the like exist in the wild; those that mean anything mean "any version".
            if op in (">=", "<=", "~=", "=", "=="):
                return _always
            raise self.error(f"'*' cannot follow {op!r}")
        try:
            limit, rest = _parse_prefix(word)
        except PixiPackError as exc:
            raise self.error(str(exc)) from None
        op = self.operator(op, rest, word)
        compare = _COMPARISONS[op]
        return lambda v: compare(v, limit)

    def operator(self, op: str | None, rest: str, word: str) -> str:
        """The operator a version with a glob tail (``1.2.*``, ``1.2*``) really means, as rattler reads it."""
        if not rest:
            return op or "=="
        if _is_star(rest) and op in (">=", ">"):
            return ">="
        if rest in ("*", ".*") and op == "!=":
            return "!=startswith"
        if _is_star(rest) and op is not None:
            return op
        if rest in ("*", ".*") or (op is None and _is_star_tail(rest)):
            return "="
        if "*" in word:
            raise self.error("glob patterns are only allowed at the end of a version")
        raise self.error(f"invalid version {word!r}")


# ---- match specs -----------------------------------------------------------------------------------

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
_BUILD_NUMBER_OPS: dict[str, Callable[[int, int], bool]] = {**_ORDERINGS, "=": operator.eq}


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
    if epoch := _EPOCH.match(text, pos):
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
