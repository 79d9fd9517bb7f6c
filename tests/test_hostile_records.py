"""Hostile lockfiles and repodata.json: every record field used in a path is checked, on both sides.

Each case is refused with our error, naming the file and the field, before anything is written.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pixi_pack.errors import ArchiveError, LockfileError, PixiPackError
from pixi_pack.formats.channel import parse_conda_urls, parse_metadata, parse_pypi_sha256, parse_repodata
from pixi_pack.formats.locations import public_url, redacted_url
from pixi_pack.formats.records import RecordError, check_conda_file_name, check_record, check_relative_path
from pixi_pack.lock.lockfile import load_lockfile, parse_lockfile, select_environment

SHA = "a" * 64
URL = "https://example.invalid/conda-forge/linux-64/zlib-1.3.1-h0_0.conda"


def _lock(tmp_path: Path, record: str, location: str = URL, pypi: bool = False) -> Path:
    kind = "pypi" if pypi else "conda"
    text = f"""version: 6
environments:
  default:
    channels:
    - url: https://example.invalid/conda-forge/
    packages:
      linux-64:
      - {kind}: {location}
packages:
- {kind}: {location}
{record}"""
    path = tmp_path / "pixi.lock"
    path.write_text(text, encoding="utf-8")
    return path


def _select(path: Path) -> None:
    select_environment(load_lockfile(path), "default", "linux-64", path.parent)


@pytest.mark.parametrize(
    ("record", "location", "field"),
    [
        (f"  sha256: {SHA}\n  file_name: ../../x.conda\n", URL, "file_name"),
        (f"  sha256: {SHA}\n  subdir: ../..\n", URL, "subdir"),
        (f"  sha256: {SHA}\n  subdir: true\n", URL, "subdir"),
        (f"  sha256: {SHA}\n", "https://example.invalid/linux-64/..%2F..%2Fx-1-0.conda", "file_name"),
        (
            f"  sha256: {SHA}\n  name: x\n  version: '1'\n  build: '0'\n  subdir: linux-64\n",
            "file:///etc/shadow?x.conda",
            "file_name",
        ),
        ("  size: 10\n", URL, "sha256"),
        (f"  sha256: {SHA}\n  size: big\n", URL, "size"),
        (f"  sha256: {SHA}\n  depends: 5\n", URL, "depends"),
        (f"  sha256: {SHA}\n  name: [a]\n", URL, "name"),
        (f"  sha256: {SHA}\n  name: ../../tmp/x/pwn\n", URL, "name"),
        (f"  sha256: {SHA}\n  version: 1/2\n", URL, "version"),
        (f"  sha256: {SHA}\n  build: a/b\n", URL, "build"),
        (f'  sha256: {SHA}\n  name: "a\\0b"\n', URL, "name"),
        ("  sha256: " + "0" * 64 + "\n", URL, "sha256"),
        (f"  sha256: {SHA}\n  python_site_packages_path: ../../../tmp/x\n", URL, "python_site_packages_path"),
        (f"  sha256: {SHA}\n", "http://[example.invalid/linux-64/zlib-1.3.1-h0_0.conda", "url"),
        (f"  sha256: {SHA}\n", "https://example.invalid:99999/linux-64/zlib-1.3.1-h0_0.conda", "url"),
        (f"  sha256: {SHA}\n", "https://u:secret@example.invalid:x/linux-64/zlib-1.3.1-h0_0.conda", "url"),
    ],
)
def test_hostile_conda_records_are_refused(tmp_path: Path, record: str, location: str, field: str) -> None:
    path = _lock(tmp_path, record, location)
    with pytest.raises(LockfileError, match=f"field '{field}'") as info:
        _select(path)
    assert str(path) in str(info.value)


def test_a_wheel_url_whose_port_cannot_be_read_is_refused_without_its_secret(tmp_path: Path) -> None:
    location = "https://u:secret@example.invalid:port/files/evil-1.0-py3-none-any.whl"
    path = _lock(tmp_path, "  name: evil\n  version: '1.0'\n", location, pypi=True)
    with pytest.raises(LockfileError, match="field 'url' is not a valid URL") as info:
        _select(path)
    assert "secret" not in str(info.value)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="htps:/@[]?#%.-_a1~", max_size=40))
def test_fuzz_package_locations_raise_only_our_error(location: str) -> None:
    """Any text as a package's location in the lock: a package, or our error, never a traceback."""
    text = "version: 6\nenvironments:\n  default:\n    channels: []\n    packages:\n      linux-64:\n"
    text += f"      - conda: {json.dumps(location + '/x-1-0.conda')}\npackages:\n"
    text += f"- conda: {json.dumps(location + '/x-1-0.conda')}\n  sha256: {SHA}\n  subdir: linux-64\n"
    with contextlib.suppress(PixiPackError):
        select_environment(parse_lockfile(text), "default", "linux-64", Path("/nonexistent"))


def test_a_location_under_an_unknown_user_is_a_plain_path(tmp_path: Path) -> None:
    """``~nosuchuser/...`` cannot be expanded: it stays a path below the lockfile's folder, as
    ``os.path.expanduser`` leaves it (``Path.expanduser`` raised RuntimeError: a traceback)."""
    from pixi_pack.lock.lockfile import resolve_location

    location = "~no-such-user-pixi-pack/linux-64/x-1-0.conda"
    assert resolve_location(location, tmp_path) == str((tmp_path / location).resolve())
    assert resolve_location("~/x-1-0.conda", tmp_path) == str(Path.home() / "x-1-0.conda")


def test_an_all_digit_sha256_read_as_a_number_is_refused(tmp_path: Path) -> None:
    # Unquoted, YAML reads 64 digits as an int: it must not fall back to md5 silently.
    with pytest.raises(LockfileError, match="sha256"):
        _select(_lock(tmp_path, "  sha256: " + "1" * 64 + "\n  md5: " + "b" * 32 + "\n"))


def test_a_wheel_name_with_a_separator_is_refused(tmp_path: Path) -> None:
    location = "https://example.invalid/files/..%2F..%2Fevil-1.0-py3-none-any.whl"
    path = _lock(tmp_path, "  name: evil\n  version: '1.0'\n", location, pypi=True)
    with pytest.raises(LockfileError, match="file_name"):
        _select(path)


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("version: 6\nenvironments: [a]\npackages: []\n", "environments"),
        ("version: 6\nenvironments: {default: {packages: {linux-64: 5}}}\npackages: []\n", "linux-64"),
        ("version: 6\nenvironments: {default: {packages: {linux-64: []}}}\npackages: 5\n", "packages"),
        ("version: 6\nenvironments: {default: {packages: {linux-64: [5]}}}\npackages: []\n", "linux-64"),
    ],
)
def test_wrong_structure_is_refused(tmp_path: Path, text: str, field: str) -> None:
    path = tmp_path / "pixi.lock"
    path.write_text(text)
    with pytest.raises(LockfileError, match=field):
        _select(path)


def test_a_yaml_alias_bomb_is_refused() -> None:
    bomb = 'version: 6\na: &a ["x","x","x","x","x","x","x","x","x"]\n'
    for i in range(1, 12):
        bomb += f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}" if i > 1 else "*a"] * 9) + "]\n"
    with pytest.raises(LockfileError, match="aliases"):
        parse_lockfile(bomb)


def test_a_plain_scalar_with_a_star_is_not_an_alias() -> None:
    assert (
        parse_lockfile("version: 6\nx: numpy *_mkl\nenvironments: {}\npackages: []\n")["x"] == "numpy *_mkl"
    )


def test_a_lockfile_that_is_not_utf8_is_our_error(tmp_path: Path) -> None:
    path = tmp_path / "pixi.lock"
    path.write_bytes(b"version: 6\nname: \xff\xfe\n")
    with pytest.raises(LockfileError, match="not UTF-8"):
        load_lockfile(path)


def test_deep_nesting_is_our_error() -> None:
    with pytest.raises(LockfileError):
        parse_lockfile("version: 6\nx: " + "[" * 200_000)
    for parse in (
        lambda t: parse_repodata(t, "repodata.json"),
        parse_metadata,
        parse_pypi_sha256,
        parse_conda_urls,
    ):
        with pytest.raises(ArchiveError):
            parse("[" * 200_000)


def _repodata(fn: str, **fields: object) -> str:
    record = {"name": "zlib", "version": "1.3.1", "build": "h0_0", "sha256": SHA, **fields}
    return json.dumps({"packages.conda": {fn: record}})


@pytest.mark.parametrize(
    ("fn", "fields", "field"),
    [
        (
            "zlib-1.3.1-h0_0.conda",
            {"python_site_packages_path": "../../../tmp/x"},
            "python_site_packages_path",
        ),
        ("zlib-1.3.1-h0_0.conda", {"name": "../../tmp/x/pwn"}, "name"),
        ("zlib-1.3.1-h0_0.conda", {"version": "1/2"}, "version"),
        ("zlib-1.3.1-h0_0.conda", {"build": "../x"}, "build"),
        ("zlib-1.3.1-h0_0.conda", {"size": "big"}, "size"),
        ("zlib-1.3.1-h0_0.conda", {"depends": 1}, "depends"),
        ("zlib-1.3.1-h0_0.conda", {"sha256": None}, "sha256"),
        ("../zlib-1.3.1-h0_0.conda", {}, "file name"),
        ("zlib.txt", {}, "file name"),
    ],
)
def test_hostile_repodata_records_are_refused(fn: str, fields: dict[str, object], field: str) -> None:
    with pytest.raises(ArchiveError, match=f"field '{field}'"):
        parse_repodata(_repodata(fn, **fields), "channel/linux-64/repodata.json")


def test_real_looking_records_pass() -> None:
    record = check_record(
        {"name": "_libgcc_mutex", "version": "1!2.0+local", "build": "conda_forge", "md5": "A" * 32}
    )
    assert record["md5"] == "a" * 32
    assert check_conda_file_name("python_abi-3.13-8_cp313t.conda") == "python_abi-3.13-8_cp313t.conda"
    assert check_relative_path("lib/python3.13t/site-packages", "p") == "lib/python3.13t/site-packages"


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(
            [
                "name",
                "version",
                "build",
                "sha256",
                "md5",
                "size",
                "depends",
                "subdir",
                "noarch",
                "python_site_packages_path",
                "x",
            ]
        ),
        _json,
    )
)
def test_fuzz_record_checks_raise_only_our_error(record: dict[str, object]) -> None:
    with contextlib.suppress(RecordError):
        check_record(record)


@settings(max_examples=300, deadline=None)
@given(_json)
def test_fuzz_repodata_raises_only_our_error(document: object) -> None:
    with contextlib.suppress(ArchiveError):
        parse_repodata(json.dumps({"packages": {"a-1-0.conda": document}, "packages.conda": document}), "r")


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_fuzz_lockfile_text_raises_only_our_error(text: str) -> None:
    with contextlib.suppress(PixiPackError):
        data = parse_lockfile("version: 6\n" + text)
        select_environment(data, "default", "linux-64", Path("/nonexistent"))


@pytest.mark.parametrize(
    "value",
    [
        5,
        ["https://x/linux-64/a-1-0.conda"],
        {"linux-64/a-1-0.conda": 5},
        {"linux-64/a-1-0.conda": "not a url"},
        {"linux-64/a-1-0.conda": "https://x/a\n-1-0.conda"},
        {"linux-64/a-1-0.conda": "https://x/a b.conda"},
        {"linux-64/a-1-0.conda": "https://x/" + "a" * 5000},
    ],
)
def test_hostile_conda_urls_in_pixi_pack_json_are_refused(value: object) -> None:
    with pytest.raises(ArchiveError, match="conda-urls must map package paths to URLs"):
        parse_conda_urls(json.dumps({"version": "1", "conda-urls": value}))


@settings(max_examples=300, deadline=None)
@given(_json)
def test_fuzz_conda_urls_raise_only_our_error(value: object) -> None:
    with contextlib.suppress(ArchiveError):
        parse_conda_urls(json.dumps({"conda-urls": value}))


@pytest.mark.parametrize(
    ("location", "written"),
    [
        (
            "https://conda.anaconda.org/conda-forge/linux-64/a-1-0.conda",
            "https://conda.anaconda.org/conda-forge/linux-64/a-1-0.conda",
        ),
        (
            "https://user:secret@repo.example/c/noarch/a-1-0.conda",
            "https://repo.example/c/noarch/a-1-0.conda",
        ),
        (
            "https://conda.anaconda.org/t/tk-123/private/linux-64/a-1-0.conda",
            "https://conda.anaconda.org/private/linux-64/a-1-0.conda",
        ),
        (
            "https://repo.example:8443/c/linux-64/a-1-0.conda?X-Amz-Signature=abc",
            "https://repo.example:8443/c/linux-64/a-1-0.conda",
        ),
        ("s3://bucket/c/linux-64/a-1-0.conda", "s3://bucket/c/linux-64/a-1-0.conda"),
        ("file:///srv/c/linux-64/a-1-0.conda", "file:///srv/c/linux-64/a-1-0.conda"),
        ("/srv/c/linux-64/a-1-0.conda", None),
    ],
)
def test_a_package_url_is_recorded_without_secrets(location: str, written: str | None) -> None:
    assert public_url(location) == written


@pytest.mark.parametrize(
    ("location", "shown"),
    [
        (
            "https://user:secret@repo.example/c/noarch/a-1-0.conda",
            "https://***@repo.example/c/noarch/a-1-0.conda",
        ),
        (
            "https://conda.anaconda.org/t/tk-123/private/linux-64/a-1-0.conda",
            "https://conda.anaconda.org/t/***/private/linux-64/a-1-0.conda",
        ),
        (
            "https://repo.example:8443/c/a-1-0.conda?X-Amz-Signature=abc#frag",
            "https://repo.example:8443/c/a-1-0.conda?***",
        ),
        ("s3://bucket/c/linux-64/a-1-0.conda", "s3://bucket/c/linux-64/a-1-0.conda"),
        ("/srv/c/linux-64/a-1-0.conda", "/srv/c/linux-64/a-1-0.conda"),
        ("http://[bad/a-1-0.conda", "http://***"),
    ],
)
def test_a_url_in_a_message_shows_no_secret(location: str, shown: str) -> None:
    assert redacted_url(location) == shown


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="htps:/@[]?#%t.-_ab1~", max_size=40))
def test_fuzz_urls_are_shown_and_recorded_without_error(location: str) -> None:
    """Any lockfile location can be named in a message, and recorded or left out, without a traceback."""
    assert isinstance(redacted_url(location), str)
    written = public_url(location)
    assert written is None or isinstance(written, str)
