"""Real pixi.lock files from public projects, rewritten to point at the local server, pack (and unpack).

The packages are stand-ins built here under each real file name (conda-forge is out of reach), but every
record keeps its real metadata: depends, constrains, noarch, build numbers, repodata patches, licenses.
"""

from __future__ import annotations

import json
import tarfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from builders import BuiltPackage, build_package
from conftest import REALDATA, HttpServer

from pixi_pack.cli import pack_main, unpack_main
from pixi_pack.lock.lockfile import load_lockfile, select_environment
from pixi_pack.platforms import current_subdir

CASES = [
    ("pixipack-webserver.v6.lock", "prod", "linux-64"),
    ("pixipack-repodata-patches.v5.lock", "default", "linux-64"),
    ("pixipack-auth.lock", "default", "linux-64"),
    ("pixi-ctypes-factorial.v5.lock", "default", "win-64"),
    ("rattler-python-from-conda-only.v7.lock", "default", "osx-arm64"),
    ("pixipack-pypi-wheel-packages.v6.lock", "default", "osx-64"),
]


def _stand_in(out: Path, record: dict[str, Any]) -> BuiltPackage:
    name, version, build = record["name"], str(record["version"]), record["build"]
    noarch = record.get("noarch")
    files = (
        {f"site-packages/{name.replace('-', '_')}_standin.py": f"# {name}\n"}
        if noarch == "python"
        else {f"share/standins/{name}.txt": f"{name} {version}\n"}
    )
    return build_package(
        out,
        name,
        version,
        build,
        subdir=record["subdir"],
        noarch=noarch,
        depends=record.get("depends", ()),
        fmt="tar.bz2" if record["file_name"].endswith(".tar.bz2") else "conda",
        files=files,
    )


def _rewrite(
    source: Path, target: Path, environment: str, platform: str, server: HttpServer
) -> dict[str, BuiltPackage]:
    """Copy the lockfile to ``target`` with its conda URLs on ``server`` and hashes of stand-ins."""
    env = select_environment(load_lockfile(source), environment, platform, source.parent)
    built: dict[str, BuiltPackage] = {}
    for package in env.conda_packages:
        record = dict(package.record, file_name=package.file_name)
        stand_in = _stand_in(server.root / "ch" / package.subdir, record)
        assert stand_in.file_name == package.file_name
        built[package.location] = stand_in
    data = yaml.safe_load(source.read_text())

    def new_url(old: str) -> str:
        p = built[old]
        return f"{server.url}/ch/{p.subdir}/{p.file_name}"

    def patch(record: dict[str, Any], url_key: str) -> None:
        p = built[record[url_key]]
        record[url_key] = new_url(record[url_key])
        hashes = record.get("hash", record)
        hashes["sha256"], hashes["md5"] = p.sha256, p.md5
        if "size" in record:
            record["size"] = p.size

    if "package" in data:  # v1-v3
        data["package"] = [e for e in data["package"] if e.get("url") in built]
        for entry in data["package"]:
            patch(entry, "url")
    else:
        key = "conda" if data["version"] >= 6 else "url"
        data["packages"] = [r for r in data["packages"] if r.get(key) in built]
        for record in data["packages"]:
            patch(record, key)
        refs = data["environments"][environment]["packages"]
        data["environments"] = {environment: data["environments"][environment]}
        data["environments"][environment]["packages"] = {
            platform: [{"conda": new_url(r["conda"])} for r in refs[platform] if r.get("conda") in built]
        }
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(yaml.safe_dump(data, sort_keys=False))
    return built


@pytest.mark.skipif(not REALDATA.is_dir(), reason="../shared/realdata is absent")
@pytest.mark.parametrize(("lock", "environment", "platform"), CASES, ids=[c[0] for c in CASES])
def test_real_lockfile_packs_from_the_local_server(
    tmp_path: Path, http_server: HttpServer, lock: str, environment: str, platform: str
) -> None:
    project = tmp_path / "project"
    built = _rewrite(REALDATA / "locks" / lock, project / "pixi.lock", environment, platform, http_server)
    out = tmp_path / "environment.tar"
    assert pack_main([str(project), "-e", environment, "-p", platform, "-o", str(out)]) == 0
    assert len(http_server.requests) == len(built)
    with tarfile.open(out) as tar:
        names = set(tar.getnames())
        assert {f"channel/{p.subdir}/{p.file_name}" for p in built.values()} <= names
        meta = tar.extractfile("pixi-pack.json")
        assert meta is not None and json.load(meta)["platform"] == platform
        repodata = tar.extractfile(f"channel/{platform}/repodata.json")
        assert repodata is not None
        records = json.load(repodata)
    original = select_environment(load_lockfile(REALDATA / "locks" / lock), environment, platform, tmp_path)
    by_name = {p.file_name: p for p in original.conda_packages if p.subdir == platform}
    for file_name, record in {**records["packages"], **records["packages.conda"]}.items():
        real = by_name[file_name].record
        # The lockfile's metadata survives (repodata patches included); only the stand-in's hashes differ.
        for key in ("depends", "constrains", "build_number", "license", "timestamp"):
            assert record.get(key) == real.get(key), (file_name, key)
    if platform == current_subdir():
        target = tmp_path / "target"
        assert unpack_main([str(out), "-o", str(target)]) == 0
        metas = list((target / "env" / "conda-meta").glob("*.json"))
        assert len(metas) == len(built)
