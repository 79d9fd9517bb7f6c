"""Looking into a pack without installing it: --list, --verify-only and --sbom, on every pack form.

Every form of pack (a tar, a --directory-only folder, stdin, a self-extracting environment.sh) is read
the same way, nothing is written but what was asked for, and --verify-only catches what unpacking
cannot: a file inside a package changed and the package re-hashed so that its record still matches.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import pytest
import zstandard
from builders import build_package, build_wheel
from conftest import Channel
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from hypothesis import given, settings
from hypothesis import strategies as st
from lockfiles import conda, write_lock
from test_zipapp import zipapp_path

from pixi_pack.cli import pack_main, unpack_main
from pixi_pack.formats import spdx
from pixi_pack.formats.spdx import spdx_expression, spdx_id
from pixi_pack.platforms import current_subdir

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(current_subdir() != "linux-64", reason="end-to-end tests run on linux-64")
JSON_KEYS = [
    "kind",
    "name",
    "version",
    "build",
    "subdir",
    "file_name",
    "size",
    "sha256",
    "md5",
    "license",
    "depends",
]


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, channel: Channel) -> tuple[Path, Path]:
    """A project locking the default packages plus two with other licenses, and a wheel to inject."""
    base = tmp_path_factory.mktemp("review")
    extra = [
        build_package(base / "channel" / "noarch", "bsd-thing", "2.0", "0", noarch="generic", license="BSD"),
        build_package(
            base / "channel" / "noarch",
            "dual",
            "1.0+local.1",
            "0",
            noarch="generic",
            license="mit and Apache-2.0",
        ),
    ]
    for package in channel.packages.values():
        target = base / "channel" / package.subdir / package.file_name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(package.path, target)
    url = (base / "channel").as_uri()
    packages = [*channel.packages.values(), *extra]
    write_lock(
        base / "project" / "pixi.lock", {"default": {"linux-64": [conda(p, url) for p in packages]}}, [url]
    )
    wheel = build_wheel(
        base / "wheels", "tool-thing", "0.3", requires_dist=("six>=1", "docs-x ; extra == 'docs'")
    )
    return base / "project", wheel.path


def _pack(project: tuple[Path, Path], out: Path, *extra: str) -> Path:
    folder, wheel = project
    assert pack_main([str(folder), "-p", "linux-64", "-o", str(out), "-i", str(wheel), *extra]) == 0
    return out


@pytest.fixture(scope="module")
def forms(project: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("forms")
    return {
        "tar": _pack(project, base / "environment.tar"),
        "folder": _pack(project, base / "environment", "--directory-only"),
        "sh": _pack(
            project,
            base / "environment.sh",
            "--create-executable",
            "--pixi-unpack-source",
            str(zipapp_path()),
        ),
    }


def _run(form: str, forms: dict[str, Path], args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """pixi-unpack ``args`` on the pack of ``form``, as a user runs it (stdin: ``pixi-unpack - < tar``)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HOME": str(cwd), "TMPDIR": str(cwd)}
    if form == "sh":
        env.pop("PYTHONPATH")
        command = ["sh", str(forms["sh"]), *args]
        stdin = None
    elif form == "stdin":
        command = [sys.executable, "-m", "pixi_pack", "unpack", "-", *args]
        stdin = forms["tar"].open("rb")
    else:
        command = [sys.executable, "-m", "pixi_pack", "unpack", str(forms[form]), *args]
        stdin = None
    try:
        return subprocess.run(
            command, cwd=cwd, env=env, stdin=stdin, capture_output=True, text=True, check=False
        )
    finally:
        if stdin is not None:
            stdin.close()


FORMS = ["tar", "folder", "stdin", "sh"]


@pytest.mark.parametrize("form", FORMS)
def test_list_prints_a_table_largest_first_and_writes_nothing(
    form: str, forms: dict[str, Path], tmp_path: Path
) -> None:
    result = _run(form, forms, ["--list"], tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("platform: linux-64, made by pixi-pack ")
    assert lines[1].split() == ["NAME", "VERSION", "BUILD", "SUBDIR", "SIZE", "LICENSE"]
    rows = lines[2:-1]
    assert {r.split()[0] for r in rows} == {
        "hello",
        "hello-data",
        "hello-old",
        "bsd-thing",
        "dual",
        "tool-thing",
    }
    assert any(r.split()[0] == "tool-thing" and "pypi" in r.split() for r in rows)
    assert (
        lines[-1].startswith("6 packages (5 conda, 1 pypi), ")
        and " installed by the conda packages" in lines[-1]
    )
    assert [p.name for p in tmp_path.iterdir() if p.name != "shiv"] == []  # nothing written


@pytest.mark.parametrize("form", FORMS)
def test_list_json_has_the_documented_keys(form: str, forms: dict[str, Path], tmp_path: Path) -> None:
    result = _run(form, forms, ["--list", "--json"], tmp_path)
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert all(list(row) == JSON_KEYS for row in rows)
    assert [r["size"] for r in rows] == sorted((r["size"] for r in rows), reverse=True)
    hello = next(r for r in rows if r["name"] == "hello")
    assert (hello["kind"], hello["build"], hello["subdir"], hello["depends"]) == (
        "conda",
        "h0_0",
        "linux-64",
        ["hello-data >=1"],
    )
    assert len(hello["sha256"]) == 64 and len(hello["md5"]) == 32
    wheel = next(r for r in rows if r["kind"] == "pypi")
    assert (wheel["name"], wheel["version"], wheel["subdir"], wheel["depends"]) == (
        "tool-thing",
        "0.3",
        None,
        ["six"],
    )
    assert len(wheel["sha256"]) == 64


@pytest.mark.parametrize("form", FORMS)
def test_verify_only_passes_an_intact_pack(form: str, forms: dict[str, Path], tmp_path: Path) -> None:
    result = _run(form, forms, ["--verify-only"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert (
        result.stderr.rstrip().splitlines()[-1]
        == "verified 5 conda packages, 1 wheels, 6 files inside them: all intact"
    )
    assert [p.name for p in tmp_path.iterdir() if p.name != "shiv"] == []


def _rewrite_conda(path: Path, member: str, data: bytes) -> None:
    """Change one payload file of a ``.conda``, leaving its ``info/paths.json`` as it was."""
    with zipfile.ZipFile(path) as archive:
        parts = {info.filename: archive.read(info) for info in archive.infolist()}
    pkg = next(name for name in parts if name.startswith("pkg-"))
    payload = io.BytesIO(zstandard.ZstdDecompressor().decompress(parts[pkg], max_output_size=1 << 30))
    out = io.BytesIO()
    with tarfile.open(fileobj=payload) as old, tarfile.open(fileobj=out, mode="w") as new:
        for info in old.getmembers():
            source = old.extractfile(info) if info.isfile() else None
            content = source.read() if source is not None else None
            if info.name == member:
                content, info.size = data, len(data)
            new.addfile(info, io.BytesIO(content) if content is not None else None)
    parts[pkg] = zstandard.ZstdCompressor().compress(out.getvalue())
    with zipfile.ZipFile(path, "w") as archive:
        for name, content in parts.items():
            archive.writestr(name, content)


def _rehash(folder: Path, subdir: str, file_name: str) -> None:
    """Make the pack's repodata record match the file again, as a deliberate tamperer would."""
    repodata = folder / "channel" / subdir / "repodata.json"
    document = json.loads(repodata.read_text())
    data = (folder / "channel" / subdir / file_name).read_bytes()
    key = "packages.conda" if file_name.endswith(".conda") else "packages"
    document[key][file_name].update(
        sha256=hashlib.sha256(data).hexdigest(), md5=hashlib.md5(data).hexdigest(), size=len(data)
    )
    repodata.write_text(json.dumps(document))


def test_verify_only_reports_every_problem_unpack_cannot_see(forms: dict[str, Path], tmp_path: Path) -> None:
    folder = tmp_path / "tampered"
    shutil.copytree(forms["folder"], folder)
    _rewrite_conda(
        folder / "channel" / "linux-64" / "hello-1.2.3-h0_0.conda", "share/hello/data.txt", b"HELLO DATA\n"
    )
    _rehash(folder, "linux-64", "hello-1.2.3-h0_0.conda")
    (folder / "channel" / "noarch" / "hello-data-1.0-0.tar.bz2").write_bytes(b"not the package")
    wheel = next((folder / "pypi").iterdir())
    with zipfile.ZipFile(wheel) as archive:
        members = {i.filename: archive.read(i) for i in archive.infolist()}
    module = next(n for n in members if n.endswith("__init__.py"))
    members[module] += b"# changed\n"
    with zipfile.ZipFile(wheel, "w") as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    meta = json.loads((folder / "pixi-pack.json").read_text())
    meta["pypi-sha256"][wheel.name] = hashlib.sha256(wheel.read_bytes()).hexdigest()
    (folder / "pixi-pack.json").write_text(json.dumps(meta))

    out = tmp_path / "out"
    assert unpack_main([str(folder), "-o", str(out)]) == 1  # unpack stops at the first broken package
    result = subprocess.run(
        [sys.executable, "-m", "pixi_pack", "unpack", str(folder), "--verify-only"],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert "error: package hello-1.2.3-h0_0: share/hello/data.txt sha256 differs from paths.json" in errors
    assert (
        "error: package hello-1.2.3-h0_0: share/hello/data.txt is 11 bytes, paths.json says 11" not in errors
    )
    assert any("hello-data-1.0-0.tar.bz2" in e and "sha256" in e for e in errors)
    assert any(e.startswith(f"error: wheel {wheel.name}: ") and module in e for e in errors)
    assert errors[-1] == "error: 3 problems in 5 conda packages, 1 wheels, 5 files inside them"
    assert "Traceback" not in result.stderr


def test_verify_only_of_a_self_extracting_file_checks_its_payload(
    forms: dict[str, Path], tmp_path: Path
) -> None:
    script = tmp_path / "environment.sh"
    data = bytearray(forms["sh"].read_bytes())
    at = data.index(b"pixi-pack.json") + 600  # inside the metadata: only the payload digest tells
    data[at] ^= 0x01
    script.write_bytes(bytes(data))
    result = subprocess.run(
        ["sh", str(script), "--verify-only"], capture_output=True, text=True, cwd=tmp_path, check=False
    )
    assert result.returncode == 1
    assert "sha256" in result.stderr and "the pack inside" in result.stderr


# --- the SBOM ------------------------------------------------------------------------------------------


def _validate(text: str) -> dict[str, Any]:
    error = JsonStrictValidator(SchemaVersion.V1_6).validate_str(text)
    assert error is None, error
    document: dict[str, Any] = json.loads(text)
    return document


@pytest.mark.parametrize("form", FORMS)
def test_sbom_of_every_form_is_valid_cyclonedx_and_reproducible(
    form: str, forms: dict[str, Path], tmp_path: Path
) -> None:
    first = _run(form, forms, ["--sbom", "-"], tmp_path)
    assert first.returncode == 0, first.stderr
    document = _validate(first.stdout)
    assert _run(form, forms, ["--sbom", "-"], tmp_path).stdout == first.stdout
    assert "timestamp" not in document["metadata"]
    components = {c["name"]: c for c in document["components"]}
    hello = components["hello"]
    assert hello["purl"].startswith("pkg:conda/hello@1.2.3?build=h0_0&channel=file%3A%2F%2F")
    assert hello["purl"].endswith("&subdir=linux-64&type=conda")
    assert [h["alg"] for h in hello["hashes"]] == ["SHA-256", "MD5"]
    assert hello["licenses"] == [{"license": {"id": "MIT"}}]
    assert components["bsd-thing"]["licenses"] == [{"license": {"name": "BSD"}}]
    assert components["dual"]["licenses"] == [{"expression": "MIT AND Apache-2.0"}]
    assert (
        "@1.0%2Blocal.1?" in components["dual"]["purl"] and "type=tar.bz2" not in components["dual"]["purl"]
    )
    assert components["hello-old"]["purl"].endswith("type=tar.bz2")
    assert components["tool-thing"]["purl"] == "pkg:pypi/tool-thing@0.3"
    edges = {d["ref"]: d["dependsOn"] for d in document["dependencies"]}
    assert edges[hello["bom-ref"]] == [components["hello-data"]["bom-ref"]]
    assert [p.name for p in tmp_path.iterdir() if p.name != "shiv"] == []


def test_sbom_is_dated_by_source_date_epoch_and_written_to_a_file(
    forms: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    target = tmp_path / "sbom.json"
    assert unpack_main([str(forms["tar"]), "--sbom", str(target)]) == 0
    assert _validate(target.read_text())["metadata"]["timestamp"] == "2023-11-14T22:13:20Z"
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "yesterday")
    assert unpack_main([str(forms["tar"]), "--sbom", str(target)]) == 1


def test_pixi_pack_writes_the_same_sbom(
    project: tuple[Path, Path], forms: dict[str, Path], tmp_path: Path
) -> None:
    """The SBOM pixi-pack writes while packing is the one pixi-unpack writes of the pack, for every form."""
    reference = tmp_path / "reference.json"
    assert unpack_main([str(forms["tar"]), "--sbom", str(reference)]) == 0
    for name, extra in (
        ("a.tar", []),
        ("b", ["--directory-only"]),
        ("c.sh", ["--create-executable", "--pixi-unpack-source", str(zipapp_path())]),
    ):
        sbom = tmp_path / f"{name}.sbom.json"
        _pack(project, tmp_path / name, "--sbom", str(sbom), *extra)
        assert sbom.read_text() == reference.read_text(), name
    stdout = subprocess.run(
        [
            sys.executable,
            "-m",
            "pixi_pack",
            "pack",
            str(project[0]),
            "-p",
            "linux-64",
            "-i",
            str(project[1]),
            "-o",
            "-",
            "--sbom",
            str(tmp_path / "d.json"),
        ],
        capture_output=True,
        check=False,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert stdout.returncode == 0, stdout.stderr
    assert (tmp_path / "d.json").read_text() == reference.read_text()


def test_spdx_list_is_cyclonedx_s() -> None:
    import cyclonedx

    schema = Path(cyclonedx.__file__).parent / "schema" / "_res" / "spdx.SNAPSHOT.schema.json"
    assert set(spdx.SPDX_IDS.values()) == set(json.loads(schema.read_text())["enum"])


@pytest.mark.parametrize(
    ("text", "expression"),
    [
        ("MIT", None),
        ("MIT OR Apache-2.0", "MIT OR Apache-2.0"),
        ("(mit OR apache-2.0) and bsd-3-clause", "(MIT OR Apache-2.0) AND BSD-3-Clause"),
        ("GPL-2.0-or-later WITH Classpath-exception-2.0", None),
        ("MIT AND", None),
        ("(MIT", None),
        ("BSD AND MIT", None),
        ("MIT)", None),
    ],
)
def test_spdx_expressions(text: str, expression: str | None) -> None:
    assert spdx_expression(text) == expression


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80))
def test_fuzz_spdx_gives_a_listed_id_an_expression_or_nothing(text: str) -> None:
    known = spdx_id(text)
    assert known is None or known in spdx.SPDX_IDS.values()
    expression = spdx_expression(text)
    assert expression is None or all(
        t in ("AND", "OR") or t.strip("()") in spdx.SPDX_IDS.values() for t in expression.split()
    )


def _zip(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return out.getvalue()


_wheel_bytes = st.one_of(
    st.binary(max_size=200),
    st.dictionaries(
        st.sampled_from(["x-1.dist-info/METADATA", "y-1.dist-info/METADATA", "x/__init__.py", "METADATA"]),
        st.binary(max_size=200),
        max_size=3,
    ).map(_zip),
)


@settings(max_examples=200, deadline=None)
@given(_wheel_bytes)
def test_fuzz_a_wheel_in_a_pack_lists_or_is_our_error(data: bytes) -> None:
    import tempfile

    from pixi_pack.errors import ArchiveError
    from pixi_pack.formats.archive import PackReader
    from pixi_pack.formats.listing import wheel_entry

    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "pypi").mkdir()
        (Path(folder) / "pixi-pack.json").write_text('{"version": "1", "platform": "linux-64"}')
        (Path(folder) / "pypi" / "x-1-py3-none-any.whl").write_bytes(data)
        try:
            entry = wheel_entry(PackReader(Path(folder)), "pypi/x-1-py3-none-any.whl", None)
        except ArchiveError:
            return
        assert (entry.name, entry.version) == ("x", "1")
