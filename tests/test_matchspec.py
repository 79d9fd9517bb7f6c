"""Conda version order and MatchSpec matching: conda's documented examples, then rattler as the oracle."""

from __future__ import annotations

import itertools
import json
import random
from pathlib import Path
from typing import Any

import pytest

from pixi_pack.errors import PixiPackError
from pixi_pack.formats.matchspec import is_virtual, parse_spec
from pixi_pack.formats.version import VersionOrder, compare_versions, parse_version, parse_version_spec

# conda's VersionOrder docstring (conda/models/version.py), one version per line: "<" or "==" relates it
# to the line before. conda lists "0.4 < 0.4.0" but compares them equal, as rattler does.
ORDER = """
0.4
== 0.4.0
< 0.4.1.rc
== 0.4.1.RC
< 0.4.1
< 0.5a1
< 0.5b3
< 0.5C1
< 0.5
< 0.9.6
< 0.960923
< 1.0
< 1.1dev1
< 1.1_
< 1.1a1
< 1.1.0dev1
== 1.1.dev1
< 1.1.a1
< 1.1.0rc1
< 1.1.0
== 1.1
< 1.1.0post1
== 1.1.post1
< 1.1post1
< 1996.07.12
< 1!0.4.1
< 1!3.1.1.6
< 2!0.4.1
"""


def _order_groups() -> list[list[str]]:
    groups: list[list[str]] = []
    for line in ORDER.strip().splitlines():
        op, _, version = line.rpartition(" ")
        if op == "==":
            groups[-1].append(version)
        else:
            groups.append([version])
    return groups


def test_conda_documented_order() -> None:
    groups = _order_groups()
    for i, j in itertools.combinations_with_replacement(range(len(groups)), 2):
        for a, b in itertools.product(groups[i], groups[j]):
            expected = 0 if i == j else -1
            assert compare_versions(a, b) == expected, (a, b)
            assert compare_versions(b, a) == -expected, (b, a)


def test_sorting_restores_the_documented_order() -> None:
    groups = _order_groups()
    shuffled = [v for group in groups for v in group]
    random.Random(7).shuffle(shuffled)
    ordered = sorted(shuffled, key=VersionOrder)
    sizes = [len(group) for group in groups]
    chunks = [ordered[sum(sizes[:i]) : sum(sizes[: i + 1])] for i in range(len(sizes))]
    assert [sorted(chunk) for chunk in chunks] == [sorted(group) for group in groups]


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("1.0", "1.0.0", 0),
        ("1", "1.0.0.0", 0),
        ("1.0.1", "1.0.1a", 1),  # a letter is a pre-release ...
        ("1.0.1_", "1.0.1a", -1),  # ... unless the openssl-style underscore puts the release first
        ("1.0.1-", "1.0.1_", 0),
        ("1.10", "1.9", 1),  # numbers, not strings
        ("1.01", "1.1", 0),  # leading zeros do not count
        ("1.0a", "1.0b", -1),
        ("1.0rc1", "1.0", -1),
        ("1.0dev", "1.0a", -1),
        ("1.0.dev1", "1.0a", 1),  # components compare segment by segment: 0 > "a"
        ("1.0post1", "1.0.1", 1),  # "post" beats the 1 of the next segment ...
        ("1.0post1", "1.1", -1),  # ... but not a bigger number in its own
        ("1.0.post1", "1.0", 1),
        ("1.0.0post", "1.0.1dev", -1),
        ("1.0+1", "1.0", 1),  # the local part only breaks ties
        ("1.0+local", "1.0", -1),
        ("1.0+1", "1.0.1", -1),
        ("1.0+abc", "1.0+abd", -1),
        ("1.0+1.1", "1.0+1.1.0", 0),
        ("1!1.0", "2.0", 1),  # epochs first
        ("0!2.0", "2.0", 0),
        ("1.0_1", "1.0.1", 0),  # "_" and "-" separate segments like "."
        ("1-0-1", "1.0.1", 0),
        ("1.1.a1", "1.1.0a1", 0),  # a segment starting with a letter gets a leading 0
        ("2.0.0.a", "2.0.0", -1),
        ("1.1.BETA", "1.1.beta", 0),  # case-insensitive
        ("1.1g", "1.1.g", -1),
        ("2024.01.02", "2024.1.2", 0),
    ],
)
def test_compare(a: str, b: str, expected: int) -> None:
    assert compare_versions(a, b) == expected
    assert compare_versions(b, a) == -expected
    assert (VersionOrder(a) == VersionOrder(b)) == (expected == 0)
    if expected == 0:
        assert hash(VersionOrder(a)) == hash(VersionOrder(b))


@pytest.mark.parametrize(
    "text",
    ["", ".", "1+", "+1", "1@2", "1..2", "1!2!3", "a!1", "1+2+3", "1-2_3", "1-_", "1.0 ", "1.0.*", "é"],
)
def test_invalid_versions(text: str) -> None:
    with pytest.raises(PixiPackError, match="invalid version"):
        VersionOrder(text)


@pytest.mark.parametrize("text", ["1__", "1.0._", "x", "1.0.1post.za", "1!1.2a.3-rc1", "1.0+a_b"])
def test_unusual_but_valid_versions(text: str) -> None:
    assert str(VersionOrder(text)) == text


@pytest.mark.parametrize(
    ("version", "prefix", "expected"),
    [
        ("1.2", "1.2", True),
        ("1.2.0", "1.2", True),
        ("1.2.7", "1.2", True),
        ("1.2a", "1.2", True),
        ("1.2.7a", "1.2", True),
        ("1.20", "1.2", False),
        ("1.3", "1.2", False),
        ("1.2", "1.2.0", True),  # missing zeros are fine
        ("1.2", "1.2.1", False),
        ("1.1c.1", "1.1.1", False),  # extra components only in the last prefix segment
        ("1!1.2", "1.2", False),
        ("1.2+abc", "1.2", True),
        ("1.2", "1.2+abc", False),
    ],
)
def test_startswith(version: str, prefix: str, expected: bool) -> None:
    assert parse_version(version).startswith(parse_version(prefix)) is expected


# (spec, version, expected) from conda's match spec documentation and rattler's tests.
VERSION_SPECS = [
    ("1.8.1", "1.8.1", True),
    ("1.8.1", "1.8.10", False),
    ("1.8", "1.8.0", True),  # a bare version inside a version spec is ==
    ("1.8", "1.8.1", False),
    ("1.8*", "1.8.1", True),
    ("1.8.*", "1.8.1", True),
    ("1.8.*", "1.80", False),
    ("1.8.*", "1.8", True),
    ("=1.8", "1.8.5", True),
    ("=1.8", "1.9", False),
    ("==1.8", "1.8.0", True),
    ("==1.8", "1.8.1", False),
    ("!=1.8", "1.8.0", False),
    ("!=1.8", "1.8.1", True),
    ("!=1.8.*", "1.8.1", False),
    ("!=1.8.*", "1.9", True),
    (">=1.8", "1.8", True),
    (">=1.8", "1.8rc1", False),
    (">1.8", "1.8.0", False),
    (">1.8", "1.8.0.1", True),
    ("<2", "2.0a1", True),  # pre-releases sort before the release
    ("<2.0a0", "2.0a1", False),
    ("<=1.8", "1.8.0", True),
    ("~=1.8.2", "1.8.9", True),
    ("~=1.8.2", "1.8.1", False),
    ("~=1.8.2", "1.9", False),
    ("~=1.8", "1.99", True),
    ("~=1.8", "2.0", False),
    (">=1.8,<2", "1.9", True),
    (">=1.8,<2", "2.0", False),
    ("1.7|1.8", "1.8", True),
    ("1.7|1.8", "1.8.1", False),
    (">=3|<2", "2.5", False),
    (">=1,<2|>3", "3.1", True),  # "," binds tighter than "|"
    (">=1,<2|>3", "2.5", False),
    (">=1,(<2|>3)", "3.1", True),
    ("(>=1,<2)|(>3,<4)", "3.5", True),
    ("1.7.* | 1.8.*", "1.8.3", True),
    (">=1.8 , <2", "1.9", True),
    ("*", "0.0.1", True),
    ("*.*", "99", True),
    (">=*", "1", True),  # found in the wild; means any
    (">=1.2.*", "1.2.0", True),  # a glob after > or >= is dropped and means >=
    (">1.2.*", "1.2.0", True),
    ("<1.2.*", "1.1.9", True),
    ("2023.*.*", "2023.4.1", True),
    ("1!1.0", "1.0", False),
    ("1.0+local", "1.0+local", True),
    ("1.0+local", "1.0", False),
]


@pytest.mark.parametrize(("spec", "version", "expected"), VERSION_SPECS)
def test_version_spec(spec: str, version: str, expected: bool) -> None:
    assert parse_version_spec(spec).matches(version) is expected


INVALID_VERSION_SPECS = [
    "",
    "1.0,",
    "|",
    "(1.0",
    "1.0)",
    "^1.2$",
    "1.2$",
    "1.*.3",
    "=>1.0",
    "<>1.0",
    "<*",
    "!=*",
    "1.0 2.0",
]


@pytest.mark.parametrize("spec", INVALID_VERSION_SPECS)
def test_invalid_version_specs(spec: str) -> None:
    with pytest.raises(PixiPackError, match="invalid version"):
        parse_version_spec(spec)


def record(name: str, version: str, build: str = "0", build_number: int = 0, **more: Any) -> dict[str, Any]:
    return {"name": name, "version": version, "build": build, "build_number": build_number, **more}


NUMPY = record(
    "numpy", "1.11.2", "py36_nomkl_0", 3, md5="0" * 32, license="BSD-3-Clause", track_features="nomkl"
)

# (spec, record, expected): conda's "Package match specifications" table, then the forms found in
# repodata (python_abi, openmp mutexes, ...), then brackets.
MATCH_SPECS: list[tuple[str, dict[str, Any], bool]] = [
    ("numpy", NUMPY, True),
    ("scipy", NUMPY, False),
    ("NumPy", NUMPY, True),  # names compare lowercased
    ("numpy 1.11.2", NUMPY, True),
    ("numpy 1.11", NUMPY, False),  # a bare version is exact ...
    ("numpy=1.11", NUMPY, True),  # ... "=" is fuzzy
    ("numpy 1.11.*", NUMPY, True),
    ("numpy 1.11*", NUMPY, True),
    ("numpy==1.11", NUMPY, False),
    ("numpy==1.11.2", NUMPY, True),
    ("numpy>=1.11", NUMPY, True),
    ("numpy >=1.11,<1.12", NUMPY, True),
    ("numpy >=1.8,<1.11", NUMPY, False),
    ("numpy=1.11.1|1.11.2", NUMPY, True),
    ("numpy=1.11.1|1.11.3", NUMPY, False),
    ("numpy=1.11.2=*nomkl*", NUMPY, True),
    ("numpy=1.11.2=*_mkl_0", NUMPY, False),
    ("numpy 1.11.2 *nomkl*", NUMPY, True),
    ("numpy 1.11.2 py36_nomkl_0", NUMPY, True),
    ("numpy 1.11.2 PY36_NOMKL_0", NUMPY, True),  # build strings compare case-insensitively
    ("numpy 1.11.2 py36*", NUMPY, True),
    ("numpy 1.11.2 py37*", NUMPY, False),
    ("numpy * py36*", NUMPY, True),
    ("numpy >=1.8 , <2 py36*", NUMPY, True),
    ("numpy ==1.11.2=py36_nomkl_0", NUMPY, True),
    ("numpy =1.11 py36_nomkl_0", NUMPY, False),  # "=1.11" with a build is exact
    ("numpy =1.11.2 py36_nomkl_0", NUMPY, True),
    ("numpy 1.11.2 ^py36_.*$", NUMPY, True),
    ("numpy 1.11.2 ^py37_.*$", NUMPY, False),
    ("conda-forge::numpy >=1", NUMPY, True),
    ("conda-forge/linux-64::numpy >=1", NUMPY, True),
    ("numpy >=1  # a comment", NUMPY, True),
    ("numpy[version='>=1.11']", NUMPY, True),
    ('numpy[version=">=1.12"]', NUMPY, False),
    ("numpy [version='>=1.8,<2', build='py36*']", NUMPY, True),
    ("numpy[build=py27*]", NUMPY, False),
    ("numpy[build_number=3]", NUMPY, True),
    ("numpy[build_number='>=4']", NUMPY, False),
    ("numpy >=2 [version='>=1']", NUMPY, True),  # the bracket wins
    ("numpy[md5=" + "0" * 32 + "]", NUMPY, True),
    ("numpy[md5=" + "1" * 32 + "]", NUMPY, False),
    ("numpy[license=BSD-3-Clause]", NUMPY, True),
    ("numpy[license=MIT]", NUMPY, False),
    ("numpy[track_features=nomkl]", NUMPY, True),
    ("numpy[track_features=mkl]", NUMPY, False),
    ("numpy[fn=numpy.conda, subdir=linux-64]", NUMPY, True),  # not compared with a record
    ("python_abi 3.12.* *_cp312", record("python_abi", "3.12", "5_cp312", 5), True),
    ("python_abi 3.12.* *_cp312", record("python_abi", "3.12", "5_cp312t", 5), False),
    ("python >=3.12,<3.13.0a0", record("python", "3.12.8", "h9e4cc4f_1_cpython"), True),
    ("python >=3.12,<3.13.0a0", record("python", "3.13.0rc1", "h_0"), False),
    ("_openmp_mutex >=4.5", record("_openmp_mutex", "4.5", "2_gnu", 16), True),
    ("libgcc >=13", record("libgcc", "14.2.0", "h77fa898_1"), True),
    ("openssl >=3.4.0,<4.0a0", record("openssl", "3.4.0", "hb9d3cd8_0"), True),
    ("openssl 1.0.2*", record("openssl", "1.0.2u", "h7b6447c_0"), True),
    ("pytz >=2020.1", record("pytz", "2024.2", "pyhd8ed1ab_0"), True),
    ("tzdata", record("tzdata", "2024b", "hc8b5060_0"), True),
    ("blas * mkl", record("blas", "1.0", "mkl"), True),
    ("blas * openblas", record("blas", "1.0", "mkl"), False),
]


@pytest.mark.parametrize(("spec", "rec", "expected"), MATCH_SPECS)
def test_match_spec(spec: str, rec: dict[str, Any], expected: bool) -> None:
    assert parse_spec(spec).matches(rec) is expected


INVALID_MATCH_SPECS = [
    "",
    ">=1.0",
    "numpy >=",
    "numpy ^1.2$",
    "num*py",
    "num|py >=1",
    "numpy 1.*.3",
    "numpy[version='>=1'",
    "numpy[foo=1]",
    "numpy[extras=[a]]",
    "numpy[md5=abc]",
    "numpy[build_number=x]",
]


@pytest.mark.parametrize("spec", INVALID_MATCH_SPECS)
def test_invalid_match_specs(spec: str) -> None:
    with pytest.raises(PixiPackError, match="invalid match spec"):
        parse_spec(spec)


def test_spec_keeps_its_text_and_lowercased_name() -> None:
    spec = parse_spec("NumPy >=1.8")
    assert (spec.name, str(spec)) == ("numpy", "NumPy >=1.8")


def test_virtual_packages() -> None:
    assert is_virtual("__glibc") and is_virtual("__unix")
    assert not is_virtual("_openmp_mutex")
    assert parse_spec("__glibc >=2.17,<3.0.a0").matches(record("__glibc", "2.28", "0"))


# ---- rattler as the oracle -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rattler() -> Any:
    return pytest.importorskip("rattler")


def _rattler_record(rattler: Any, rec: dict[str, Any]) -> Any:
    return rattler.PackageRecord(
        rec["name"],
        rec["version"],
        rattler.BuildString(rec["build"]),
        rec["build_number"],
        "linux-64",
        md5=bytes.fromhex(rec["md5"]) if "md5" in rec else None,
        license=rec.get("license"),
    )


def _rattler_spec(rattler: Any, spec: str) -> Any:
    # rattler's validate parses leniently, without extras, conditions or flags.
    return rattler.MatchSpec(spec, extras=False, conditionals=False, flags=False)


def test_tables_agree_with_rattler(rattler: Any) -> None:
    for group_a, group_b in itertools.product(_order_groups(), repeat=2):
        for a, b in itertools.product(group_a, group_b):
            ra, rb = rattler.Version(a), rattler.Version(b)
            assert compare_versions(a, b) == (ra > rb) - (ra < rb), (a, b)
    for spec, version, expected in VERSION_SPECS:
        assert rattler.VersionSpec(spec).matches(rattler.Version(version)) is expected, (spec, version)
    for spec in INVALID_VERSION_SPECS:
        with pytest.raises(Exception):  # noqa: B017 - rattler's exception types vary
            rattler.VersionSpec(spec)
    for spec, rec, expected in MATCH_SPECS:
        if "track_features" in spec:
            continue  # py-rattler's PackageRecord takes no track_features
        assert _rattler_spec(rattler, spec).matches(_rattler_record(rattler, rec)) is expected, spec
    for spec in INVALID_MATCH_SPECS:
        with pytest.raises(Exception):  # noqa: B017
            _rattler_spec(rattler, spec)


def _random_version(rng: random.Random) -> str:
    words = ["a", "b", "rc", "dev", "post", "alpha", "g", "RC", "c"]
    segments = []
    for _ in range(rng.randint(1, 4)):
        segment = ""
        for k in range(rng.randint(1, 2)):
            number_first = rng.random() < 0.8
            is_number = (k % 2 == 0) == number_first
            segment += str(rng.choice([0, 0, 1, 2, 3, 10, 12])) if is_number else rng.choice(words)
        segments.append(segment)
    separator = rng.choice([".", ".", ".", "_", "-"])
    version = segments[0] + "".join(rng.choice([".", separator]) + s for s in segments[1:])
    if rng.random() < 0.1:
        version = f"{rng.randint(0, 2)}!{version}"
    if rng.random() < 0.1:
        version += "+" + rng.choice(["1", "abc", "2.0", "0"])
    if rng.random() < 0.05:
        version += separator if separator in "_-" else "_"
    return version


def test_random_versions_agree_with_rattler(rattler: Any) -> None:
    rng = random.Random(20240601)
    for _ in range(3000):
        a, b = _random_version(rng), _random_version(rng)
        ra, rb = rattler.Version(a), rattler.Version(b)
        va, vb = parse_version(a), parse_version(b)
        assert va.compare(vb) == (ra > rb) - (ra < rb), (a, b)
        assert va.startswith(vb) == ra.starts_with(rb), (a, b)
        assert va.compatible_with(vb) == ra.compatible_with(rb), (a, b)


_SPEC_VERSIONS = ["1", "1.0", "1.2", "1.2.0", "1.2.3", "1.2.3a", "1.2a", "1.10", "2", "2.0.0", "1.2.3.4"]
_SPEC_VERSIONS += ["1!1.2", "1.2+local", "1.2.dev0", "1.2.post1", "1.2_", "0.9", "1.2rc1", "3.12", "1.2-3"]


def _random_version_spec(rng: random.Random, depth: int = 0) -> str:
    operators = ["", "", "==", "!=", ">", ">=", "<", "<=", "=", "~=", "=>", "<>"]
    parts = []
    for _ in range(rng.randint(1, 3)):
        if depth < 2 and rng.random() < 0.15:
            parts.append("(" + _random_version_spec(rng, depth + 1) + ")")
        elif rng.random() < 0.05:
            parts.append(rng.choice(["*", "*.*", ">=*", "<*", "!=*", "==*", "~=*", "=*"]))
        else:
            glob = rng.choice(["", "", "", ".*", "*", ".*.*", "*.*"])
            parts.append(rng.choice(operators) + rng.choice(_SPEC_VERSIONS) + glob)
        parts.append(rng.choice([",", "|", ",", " , ", "|"]))
    return "".join(parts[:-1])


def test_random_version_specs_agree_with_rattler(rattler: Any) -> None:
    rng = random.Random(1234)
    for _ in range(2000):
        spec = _random_version_spec(rng)
        try:
            theirs = rattler.VersionSpec(spec)
        except Exception:
            with pytest.raises(PixiPackError):
                parse_version_spec(spec)
            continue
        ours = parse_version_spec(spec)
        for version in rng.sample(_SPEC_VERSIONS, 5):
            assert ours.matches(version) == theirs.matches(rattler.Version(version)), (spec, version)


def _random_match_spec(rng: random.Random) -> str:
    patterns = ["0", "py312_0", "py*", "*_0", "*cp312", "h*", "^py.*$", "*", "PY312*", "=py312_0", "cuda*"]
    name = rng.choice(["foo", "Foo", "conda-forge::foo", "foo-bar", "bar"])
    version = ",".join(
        rng.choice(["", "==", "!=", ">", ">=", "<", "<=", "=", "~="])
        + rng.choice(_SPEC_VERSIONS[:13])
        + rng.choice(["", "", ".*", "*"])
        for _ in range(rng.randint(1, 2))
    )
    kind = rng.random()
    if kind < 0.6:
        spec = name + rng.choice([" ", "", "  "]) + version
        return spec + rng.choice(["", "", " ", "="]).strip() + (rng.choice(["", *patterns]) if spec else "")
    if kind < 0.8:
        return f"{name}={rng.choice(_SPEC_VERSIONS)}{rng.choice(['', '*', '=' + rng.choice(patterns)])}"
    keys = [f"version='{version}'"]
    if rng.random() < 0.5:
        keys.append(f"build={rng.choice(patterns)}")
    if rng.random() < 0.3:
        keys.append(f"build_number={rng.choice(['1', '>=1', '<2', '!=0', '==5'])}")
    return f"{name}{rng.choice(['', ' '])}[{', '.join(keys)}]"


def test_random_match_specs_agree_with_rattler(rattler: Any) -> None:
    rng = random.Random(99)
    builds = ["0", "py312_0", "h123_1", "pyhd8ed1ab_0", "cuda_h1", "5_cp312", "Py312_0"]
    for _ in range(2000):
        spec = _random_match_spec(rng)
        try:
            theirs = _rattler_spec(rattler, spec)
        except Exception:
            with pytest.raises(PixiPackError):
                parse_spec(spec)
            continue
        ours = parse_spec(spec)
        for _ in range(5):
            name = rng.choice(["foo", "bar", "foo-bar", "FOO"])
            rec = record(name, rng.choice(_SPEC_VERSIONS[:13]), rng.choice(builds), rng.choice([0, 1, 5]))
            assert ours.matches(rec) == theirs.matches(_rattler_record(rattler, rec)), (spec, rec)


def _realdata_records(root: Path) -> list[dict[str, Any]]:
    yaml = pytest.importorskip("yaml")
    records: list[dict[str, Any]] = []
    for path in sorted(root.glob("channels/**/repodata.json")):
        data = json.loads(path.read_text())
        for key in ("packages", "packages.conda"):
            records += data.get(key, {}).values()
    for path in sorted(root.glob("locks/*")):
        packages = (yaml.safe_load(path.read_text()) or {}).get("packages")
        for package in packages if isinstance(packages, list) else []:
            if {"name", "version", "build"} <= package.keys():
                records.append(package)
    return records


def test_real_depends_agree_with_rattler(rattler: Any, realdata: Path) -> None:
    records = _realdata_records(realdata)
    specs = sorted({s for r in records for s in [*(r.get("depends") or []), *(r.get("constrains") or [])]})
    assert len(specs) > 50
    candidates = {
        (str(r["name"]), str(r["version"]), str(r["build"]), int(r.get("build_number") or 0)) for r in records
    }
    for spec in specs:
        ours, theirs = parse_spec(spec), _rattler_spec(rattler, spec)
        for name, version, build, build_number in candidates:
            rec = record(name, version, build, build_number)
            assert ours.matches(rec) == theirs.matches(_rattler_record(rattler, rec)), (spec, rec)
