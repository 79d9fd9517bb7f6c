"""Conda's version grammar: versions, their order, and version specs such as ``>=1.2,<2|1.0.*``.

Follows rattler's lenient parser (what pixi and the original pixi-pack use) and the version order of
CEP 33 (conda's ``VersionOrder``): an optional epoch ``N!``, release segments split at ``.``, ``_`` or
``-``, an optional local part after ``+``; each segment is a run of numbers and lowercased words, with
an implicit leading ``0`` before a word. Components order as ``dev`` < trailing ``_``/``-`` < words <
numbers < ``post``, and a missing component counts as ``0`` (``1.1 == 1.1.0``).
"""

from __future__ import annotations

import functools
import operator
import re
from collections.abc import Sequence
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
EPOCH = re.compile(r"([0-9]+)!")
"""The epoch prefix of a version, ``N!``."""


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
    if match := EPOCH.match(text):
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
ORDERINGS: dict[str, Callable[[Any, Any], bool]] = {
    "==": operator.eq,
    "!=": operator.ne,
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
}
"""The orderings, by operator (also of build numbers)."""
_COMPARISONS: dict[str, Callable[[VersionOrder, VersionOrder], bool]] = {
    **ORDERINGS,
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
