"""``info/paths.json`` entries checked all at once: the common package, whose every entry is plain,
costs a fraction of checking its entries one by one.

Each function answers whether the entries are plain, never why not: a caller that gets ``False`` or
``None`` checks the entries one by one (:mod:`pixi_pack.formats.package_info`), which gives the same
result for plain entries and names the first entry that is wrong otherwise.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import repeat
from typing import Any

PATH_TYPES = ("hardlink", "softlink", "directory")
_PATH_TYPE_SET = frozenset(PATH_TYPES)


def _all_clean(joined: str, count: int) -> bool:
    """Whether each of the ``count`` NUL-joined paths is one that
    :func:`~pixi_pack.formats.package.normalize_member_path` keeps as it is (no empty, absolute,
    ``.``/``..``, ``//`` or backslash path, no NUL), tested on the whole string at once. ``:`` anywhere
    sends the paths to the exact check."""
    if not count or joined.count("\0") != count - 1:
        return False
    bounded = f"\0{joined}\0"
    return not any(part in bounded for part in _UNCLEAN_PARTS)


_UNCLEAN_PARTS = ("\0\0", "..", "\\", "//", "/./", "\0/", "\0.", "/\0", ".\0", ":")


def typed_paths(items: Sequence[object]) -> tuple[list[str], list[str]] | None:
    """The paths and types of the entries, when every entry is an object with a clean path and a known
    type (checked over all the entries at once)."""
    fields = _fields(items, _PLAIN_FIELDS[:2])
    if fields is None:
        return None
    paths, kinds = fields
    try:
        clean = _PATH_TYPE_SET.issuperset(kinds) and _all_clean("\0".join(paths), len(paths))
    except TypeError:  # a path that is not a string, or a type that cannot be hashed
        return None
    return (paths, kinds) if clean else None


def plain_fields(
    items: Sequence[object],
) -> tuple[list[str], list[str], list[str | None], list[int | None]] | None:
    """The paths, types, sha256s and sizes of the entries, when every entry is plain: a clean path, a
    known type, a lower-case sha256 or none, a size or none, no ``prefix_placeholder`` and ``no_link``
    false or absent. Each field is checked over all the entries at once."""
    typed = typed_paths(items)
    fields = _fields(items, _PLAIN_FIELDS[2:]) if typed is not None else None
    if typed is None or fields is None:
        return None
    paths, kinds = typed
    hashes, sizes, placeholders, no_links = fields
    if (
        set(map(type, placeholders)) != _NONE_TYPE
        or set(map(type, no_links)) != _BOOL_TYPE
        or any(no_links)
        or not set(map(type, sizes)) <= _SIZE_TYPES
        or min(filter(None, sizes), default=0) < 0
        or not _lower_sha256s([h for h in hashes if h is not None])
    ):
        return None
    return paths, kinds, hashes, sizes


def _fields(items: Sequence[object], keys: Sequence[tuple[str, object]]) -> list[list[Any]] | None:
    """Each ``(key, default)``'s values over the entries, or None if an entry is not an object."""
    try:
        return [list(map(_get, items, repeat(key), repeat(default))) for key, default in keys]
    except TypeError:
        return None


def _lower_sha256s(hashes: list[Any]) -> bool:
    """Whether each of ``hashes`` is a string of 64 lower-case hex digits (tested on all at once)."""
    if not hashes:
        return True
    if set(map(type, hashes)) != _STR_TYPE or set(map(len, hashes)) != {64}:
        return False
    joined = "".join(hashes)
    try:
        # fromhex skips whitespace: 32 bytes per hash means 64 digits in each.
        return len(bytes.fromhex(joined)) == 32 * len(hashes) and joined == joined.lower()
    except ValueError:
        return False


_PLAIN_FIELDS = (
    ("_path", None),
    ("path_type", "hardlink"),
    ("sha256", None),
    ("size_in_bytes", None),
    ("prefix_placeholder", None),
    ("no_link", False),
)
_get: Callable[[object, str, object], Any] = dict.get  # type: ignore[assignment]  # raises on a non-dict
_NONE_TYPE = {type(None)}
_BOOL_TYPE = {bool}
_STR_TYPE = {str}
_SIZE_TYPES = frozenset({int, type(None)})
