"""Hostile ``info/`` files of a conda package: each gets our error naming the package, the file and the
field, and nothing is written; hypothesis fuzz tests of the readers allow only our error."""

from __future__ import annotations

import contextlib
import json
import zipfile
from pathlib import Path
from typing import Any

import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st
from test_extract import INDEX, install, member, tar_bytes

from pixi_pack.errors import ArchiveError
from pixi_pack.formats.package import PackageInfo
from pixi_pack.formats.package_info import PathEntry, parse_index_json, parse_link_json, parse_paths_json

FILE = {"_path": "lib/a", "path_type": "hardlink", "sha256": "0" * 64, "size_in_bytes": 1}


def write_package(path: Path, info: dict[str, bytes], payload: dict[str, bytes]) -> Path:
    """A .conda whose ``info/`` files are given as raw bytes."""
    zstd = zstandard.ZstdCompressor()
    info_tar = tar_bytes([member(f"info/{name}", data) for name, data in info.items()])
    pkg_tar = tar_bytes([member(name, data) for name, data in payload.items()])
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("metadata.json", '{"conda_pkg_format_version": 2}')
        archive.writestr("info-evil-1-0.tar.zst", zstd.compress(info_tar))
        archive.writestr("pkg-evil-1-0.tar.zst", zstd.compress(pkg_tar))
    return path


def dumps(document: object) -> bytes:
    return json.dumps(document).encode()


def paths_json(*entries: dict[str, Any]) -> bytes:
    return dumps({"paths": list(entries), "paths_version": 1})


NESTED = b"[" * 200_000 + b"]" * 200_000

HOSTILE_INFO: list[tuple[str, dict[str, bytes], str]] = [
    ("index not an object", {"index.json": b"[]"}, "info/index.json is not a JSON object"),
    ("index name a list", {"index.json": dumps({**INDEX, "name": ["a"]})}, "field 'name' must be a string"),
    ("index name a path", {"index.json": dumps({**INDEX, "name": "../x"})}, "field 'name' is not a conda"),
    ("index NUL in version", {"index.json": dumps({**INDEX, "version": "1\0"})}, "field 'version'"),
    ("index depends a number", {"index.json": dumps({**INDEX, "depends": 1})}, "field 'depends'"),
    ("index noarch unknown", {"index.json": dumps({**INDEX, "noarch": "rust"})}, "field 'noarch'"),
    (
        "index site-packages outside",
        {"index.json": dumps({**INDEX, "python_site_packages_path": "../../../tmp/x"})},
        "field 'python_site_packages_path'",
    ),
    ("index nested", {"index.json": NESTED}, "info/index.json is not valid JSON"),
    ("index not UTF-8", {"index.json": b'{"name": "\xff"}'}, "info/index.json is not valid JSON"),
    ("paths nested", {"paths.json": NESTED}, "info/paths.json is not valid JSON"),
    ("paths not a list", {"paths.json": dumps({"paths": 5})}, "no 'paths' list"),
    ("paths _path a boolean", {"paths.json": paths_json({**FILE, "_path": True})}, "has no '_path' string"),
    ("paths NUL in _path", {"paths.json": paths_json({**FILE, "_path": "lib/a\0"})}, "NUL byte"),
    ("paths path_type 5", {"paths.json": paths_json({**FILE, "path_type": 5})}, "field 'path_type'"),
    ("paths sha256 a boolean", {"paths.json": paths_json({**FILE, "sha256": True})}, "field 'sha256'"),
    ("paths sha256 short", {"paths.json": paths_json({**FILE, "sha256": "abc"})}, "field 'sha256'"),
    ("paths size big", {"paths.json": paths_json({**FILE, "size_in_bytes": "big"})}, "field 'size'"),
    ("paths size negative", {"paths.json": paths_json({**FILE, "size_in_bytes": -1})}, "field 'size'"),
    ("paths size a boolean", {"paths.json": paths_json({**FILE, "size_in_bytes": True})}, "field 'size'"),
    ("paths sha256 not hex", {"paths.json": paths_json({**FILE, "sha256": "g" * 64})}, "field 'sha256'"),
    (
        "paths placeholder a boolean",
        {"paths.json": paths_json({**FILE, "prefix_placeholder": True})},
        "field 'prefix_placeholder'",
    ),
    (
        "paths file_mode 1",
        {"paths.json": paths_json({**FILE, "prefix_placeholder": "/opt/x", "file_mode": 1})},
        "field 'file_mode'",
    ),
    ("paths no_link a string", {"paths.json": paths_json({**FILE, "no_link": "yes"})}, "field 'no_link'"),
    ("paths no_link 0", {"paths.json": paths_json({**FILE, "no_link": 0})}, "field 'no_link'"),
]

NOARCH = dumps({**INDEX, "noarch": "python"})
HOSTILE_LINK: list[tuple[str, bytes, str]] = [
    ("not an object", b"[]", "info/link.json is not a JSON object"),
    ("noarch a number", dumps({"noarch": 5}), "field 'noarch' must be an object"),
    ("entry points a number", dumps({"noarch": {"entry_points": 5}}), "must be a list of strings"),
    ("entry point a number", dumps({"noarch": {"entry_points": [1]}}), "must be a list of strings"),
    ("entry point a path", dumps({"noarch": {"entry_points": ["../x = a:b"]}}), "invalid entry point"),
    ("nested", NESTED, "info/link.json is not valid JSON"),
]


@pytest.mark.parametrize("kept", [True, False], ids=["kept", "released"])
@pytest.mark.parametrize(("label", "info", "message"), HOSTILE_INFO, ids=[h[0] for h in HOSTILE_INFO])
def test_hostile_info_file_is_our_error(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    label: str,
    info: dict[str, bytes],
    message: str,
    kept: bool,
) -> None:
    """Whether the package's entries are kept from the start or, in a big install, checked in full only
    when its turn comes (``KEPT_ENTRIES``), the error is the same and nothing is left."""
    if not kept:
        monkeypatch.setattr("pixi_pack.install.link.KEPT_ENTRIES", 0)
    files = {"index.json": dumps(INDEX), "paths.json": paths_json(FILE), **info}
    package = write_package(tmp_path / "evil-1-0.conda", files, {"lib/a": b"x"})
    out = tmp_path / "out"
    with pytest.raises(ArchiveError, match=message) as error:
        install(package, out)
    assert str(error.value).startswith("evil-1-0.conda is not a valid conda package: info/")
    assert not out.exists()


@pytest.mark.parametrize(("label", "link", "message"), HOSTILE_LINK, ids=[h[0] for h in HOSTILE_LINK])
def test_hostile_link_json_is_our_error(tmp_path: Path, label: str, link: bytes, message: str) -> None:
    files = {"index.json": NOARCH, "paths.json": paths_json(), "link.json": link}
    package = write_package(tmp_path / "evil-1-0.conda", files, {})
    with pytest.raises(ArchiveError, match=message):
        install(package, tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("actual", [17, 2 << 20], ids=["small", "streamed"])
def test_a_file_bigger_than_paths_json_says_is_refused_before_it_is_written(
    tmp_path: Path, actual: int
) -> None:
    files = {"index.json": dumps(INDEX), "paths.json": paths_json({**FILE, "size_in_bytes": 16})}
    package = write_package(tmp_path / "evil-1-0.conda", files, {"lib/a": b"x" * actual})
    out = tmp_path / "out"
    with pytest.raises(
        ArchiveError, match=f"info/paths.json says lib/a is 16 bytes but the archive holds {actual}"
    ):
        install(package, out)
    assert not out.exists()


def test_real_looking_info_files_are_read(tmp_path: Path) -> None:
    """The readers' checks accept what conda-build writes, ``null`` hashes and all."""
    index = {**INDEX, "noarch": "python", "timestamp": 1700000000123, "license": "MIT", "platform": None}
    link = {
        "noarch": {"type": "python", "entry_points": ["evil = evil.cli:main"]},
        "package_metadata_version": 1,
    }
    entries = [
        {**FILE, "sha256": "A" * 64},
        {"_path": "site-packages/evil", "path_type": "directory"},
        {"_path": "site-packages/t", "prefix_placeholder": "/opt/p", "file_mode": "binary", "no_link": True},
        {"_path": "site-packages/u", "sha256": None, "size_in_bytes": None},
    ]
    assert parse_index_json(index, "f")["noarch"] == "python"
    assert [p.command for p in parse_link_json(link, "f")] == ["evil"]
    parsed = parse_paths_json({"paths": entries}, "f")
    assert parsed[0].sha256 == "a" * 64
    assert (parsed[2].placeholder, parsed[2].file_mode, parsed[2].no_link) == ("/opt/p", "binary", True)
    assert (parsed[3].sha256, parsed[3].size) == (None, None)


# --- fuzz ----------------------------------------------------------------------------------------------

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)
_entry_fields = st.sampled_from(
    ["_path", "path_type", "sha256", "size_in_bytes", "prefix_placeholder", "file_mode", "no_link"]
)
_entry = st.dictionaries(
    _entry_fields, _json | st.sampled_from(["lib/a", "text", "binary", "softlink", "0" * 64])
)


@settings(max_examples=300, deadline=None)
@given(st.one_of(_json, st.fixed_dictionaries({"paths": st.lists(_entry, max_size=4)})))
def test_fuzz_paths_json_allows_only_our_error(document: object) -> None:
    with contextlib.suppress(ArchiveError):
        parse_paths_json(document, "f.conda")


@settings(max_examples=300, deadline=None)
@given(_entry | _json)
def test_fuzz_a_released_entry_is_checked_as_a_kept_one(item: object) -> None:
    """A package beyond the kept budget checks only each entry's path and type at first (the rest when
    it is installed): those checks give the same path, type and error as the full parse's."""
    from pixi_pack.formats.package_info import _path_entry, _typed_path

    try:
        entry = _path_entry(item, 0, "f.conda")
    except ArchiveError as full:
        try:
            _typed_path(item, 0, "f.conda")
        except ArchiveError as light:
            assert str(light) == str(full)
        return
    assert _typed_path(item, 0, "f.conda") == (entry.path, entry.path_type)


_path_text = st.lists(
    st.sampled_from(["a", "b.txt", ".", "..", "", "/", "\\", ":", "\0", "c:", ".d", "e."]), max_size=5
).map("/".join)
_listed = st.dictionaries(
    st.sampled_from(["_path", "path_type"]),
    _path_text | st.sampled_from(["hardlink", "softlink", "directory", "lib/a"]) | _json,
)


_well_formed = st.fixed_dictionaries(
    {"_path": _path_text}, optional={"path_type": st.sampled_from(["hardlink", "softlink", "directory", "x"])}
)


def _bulk_is_one_by_one(items: list[object]) -> None:
    from pixi_pack.formats.package_info import _listed_file_paths, _typed_path

    try:
        typed = [_typed_path(item, i, "f.conda") for i, item in enumerate(items)]
    except ArchiveError as exact:
        with pytest.raises(ArchiveError) as bulk:
            _listed_file_paths(items, "f.conda")
        assert str(bulk.value) == str(exact)
        return
    assert _listed_file_paths(items, "f.conda") == "\0".join(p for p, kind in typed if kind != "directory")


@settings(max_examples=500, deadline=None)
@given(st.lists(_well_formed, max_size=6) | st.lists(_listed | _well_formed | _json, max_size=6))
def test_fuzz_paths_checked_in_bulk_are_checked_as_one_by_one(items: list[object]) -> None:
    """The bulk check of a released package's paths gives what checking each entry gives: the same
    paths, or the same error."""
    _bulk_is_one_by_one(items)


@pytest.mark.parametrize(
    "path",
    ["a/../b", "a//b", "a/./b", "a/c\\..\\d", "./a", "a/.", "/a", "a/", "c:/a", "a\0b", "", ".a/b", "a/x:y"],
)
def test_every_unclean_path_leaves_the_bulk_check(path: str) -> None:
    _bulk_is_one_by_one([{"_path": "a/b"}, {"_path": path, "path_type": "hardlink"}, {"_path": "c"}])


_plain_hash = st.sampled_from(["0" * 64, "ab" * 32, "AB" * 32, "0" * 63, "0" * 65, " " * 64, "0" * 62 + " 0"])
_plain = st.fixed_dictionaries(
    {"_path": _path_text},
    optional={
        "path_type": st.sampled_from(["hardlink", "softlink", "directory", "x", None]),
        "sha256": _plain_hash | st.none() | st.integers(),
        "size_in_bytes": st.integers(-2, 3) | st.none() | st.booleans() | st.floats(0, 2),
        "prefix_placeholder": st.sampled_from(["/opt/p", "", None]),
        "no_link": st.booleans() | st.none(),
        "file_mode": st.sampled_from(["text", "binary", "x"]),
    },
)


def _parsed_as_one_by_one(items: list[object]) -> None:
    from pixi_pack.formats.package_info import _path_entry

    try:
        exact = [_path_entry(item, i, "f.conda") for i, item in enumerate(items)]
    except ArchiveError as error:
        with pytest.raises(ArchiveError) as bulk:
            parse_paths_json({"paths": items}, "f.conda")
        assert str(bulk.value) == str(error)
        return
    parsed = parse_paths_json({"paths": items}, "f.conda")
    assert parsed == exact
    assert all(type(entry) is PathEntry for entry in parsed)


@settings(max_examples=500, deadline=None)
@given(st.lists(_plain, max_size=6) | st.lists(_plain | _entry | _json, max_size=6))
def test_fuzz_entries_parsed_in_bulk_are_parsed_as_one_by_one(items: list[object]) -> None:
    """The bulk parse of plain entries gives the entries, or the error, that parsing each one gives."""
    _parsed_as_one_by_one(items)


@pytest.mark.parametrize(
    "odd",
    [
        {"sha256": "A" * 64},
        {"sha256": "0" * 63},
        {"sha256": "0" * 62 + " 0"},
        {"sha256": "0" * 32 + "\0" + "0" * 31},
        {"sha256": 7},
        {"size_in_bytes": -1},
        {"size_in_bytes": True},
        {"size_in_bytes": 1.0},
        {"prefix_placeholder": "/opt/p"},
        {"prefix_placeholder": ""},
        {"no_link": None},
        {"no_link": 0},
        {"no_link": True},
        {"path_type": None},
        {"path_type": "x"},
        {"_path": "a/../b"},
        {"_path": 3},
    ],
)
def test_every_odd_field_leaves_the_bulk_parse(odd: dict[str, object]) -> None:
    """Each field a plain entry must not have sends the entries to the one-by-one parse, which gives
    the same entries (an upper-case hash lower-cased) or the same error."""
    from pixi_pack.formats.package_info import _plain_entries

    plain = {"_path": "a/b", "path_type": "hardlink", "sha256": "0" * 64, "size_in_bytes": 3}
    items: list[object] = [plain, {**plain, "_path": "a/c", **odd}]
    assert _plain_entries(items) is None
    assert _plain_entries([plain, {**plain, "_path": "a/c"}]) is not None
    _parsed_as_one_by_one(items)


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        _json,
        st.dictionaries(
            st.sampled_from(
                ["name", "version", "build", "noarch", "depends", "subdir", "python_site_packages_path"]
            ),
            _json | st.sampled_from(["a", "1.0", "py_0", "python", "noarch"]),
        ),
    )
)
def test_fuzz_index_json_allows_only_our_error(document: object) -> None:
    with contextlib.suppress(ArchiveError):
        parse_index_json(document, "f.conda")


@settings(max_examples=300, deadline=None)
@given(st.one_of(_json, st.fixed_dictionaries({"noarch": st.dictionaries(st.just("entry_points"), _json)})))
def test_fuzz_link_json_allows_only_our_error(document: object) -> None:
    with contextlib.suppress(ArchiveError):
        parse_link_json(document, "f.conda")


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_fuzz_info_bytes_allow_only_our_error(data: bytes) -> None:
    """Raw bytes as any of the three files, read as the installer reads them."""
    info = PackageInfo({"index.json": data, "paths.json": data, "link.json": data})
    for name, parse in (
        ("index.json", parse_index_json),
        ("paths.json", parse_paths_json),
        ("link.json", parse_link_json),
    ):
        with contextlib.suppress(ArchiveError):
            parse(info.json(name, "f.conda"), "f.conda")
