"""Every command the README shows works, run as a new user would type it.

The shell blocks are read from README.md itself. Each runs with ``bash -e`` in a fresh copy of a
project that has what the README assumes: a ``pixi.toml`` and ``pixi.lock`` with ``default`` and
``prod`` environments, the files it injects, an installed environment, ``dist/pixi-pack.pyz``, and
``pixi-pack``/``pixi-unpack`` on PATH. A command that cannot run here is listed in ``NOT_RUN`` with the
reason and the test that covers it instead; a new command in the README that is in neither place
fails the test.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from builders import build_package, build_wheel
from conftest import Channel
from lockfiles import conda, conda_at, write_lock
from test_zipapp import zipapp_path

from pixi_pack.cli import pack_main
from pixi_pack.platforms import current_subdir

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"

rattler = pytest.importorskip("rattler")
pytestmark = pytest.mark.skipif(current_subdir() != "linux-64", reason="the README's examples pack linux-64")

NOT_RUN = {
    "make demo": ".ci/run runs it on a clean clone",
    "make test": ".ci/run runs it on a clean clone (this test is part of it)",
    "pip install .": "Makefile's venv does it (pip install -e .)",
    "micromamba create -p ./env --file environment.yml": "micromamba cannot be installed here",
    "conda env create -p ./env --file environment.yml": "conda cannot be installed here",
    "pixi-unpack completion -s powershell | Out-String | Invoke-Expression": "PowerShell cannot be installed here "
    "(tests/test_cli.py checks the script)",
    "source <(pixi-unpack completion -s zsh)": "zsh's syntax (tests/test_cli.py sources it in zsh)",
}
#: Spelled out for a reader, made concrete to run: the ellipsis, and a folder this test may create.
CONCRETE = {"python dist/pixi-pack.pyz pack …": "python dist/pixi-pack.pyz pack --help"}


def readme_blocks() -> list[list[str]]:
    """The commands of each ```sh block, comments and blank lines left out."""
    blocks = []
    for match in re.finditer(r"```(?:sh|bash|console)\n(.*?)```", README.read_text(encoding="utf-8"), re.S):
        lines = [re.sub(r"\s+#.*$", "", line).strip() for line in match.group(1).splitlines()]
        blocks.append([line for line in lines if line and not line.startswith("#")])
    return blocks


def _runnable(block: list[str]) -> list[str]:
    return [CONCRETE.get(line, line) for line in block if line not in NOT_RUN]


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, channel: Channel) -> Path:
    """What the README's examples assume: a project with two environments, files to inject, the pyz."""
    base = tmp_path_factory.mktemp("readme")
    folder = base / "project"
    folder.mkdir()
    url = channel.root.as_uri()
    entries = [conda(p, url) for p in channel.packages.values()]
    (folder / "pixi.toml").write_text(
        "[workspace]\nname = 'readme'\nchannels = ['conda-forge']\nplatforms = ['linux-64', 'win-64']\n"
        "[dependencies]\nhello = '*'\n[feature.prod.dependencies]\n[environments]\nprod = ['prod']\n"
    )
    built = build_package(base / "build", "local-package", "1.0.0", "hbefa133_0", noarch="generic")
    shutil.copy2(built.path, folder / built.path.name)
    windows = [conda_at(built, built.path)]  # for the Windows example: a noarch package is enough
    write_lock(
        folder / "pixi.lock",
        {"default": {"linux-64": entries, "win-64": windows}, "prod": {"linux-64": entries}},
        [url],
    )
    wheel = build_wheel(base / "build", "my_webserver", "0.1.0")
    shutil.copy2(wheel.path, folder / wheel.path.name)
    (folder / "dist").mkdir()
    (folder / "dist" / "pixi-pack.pyz").symlink_to(zipapp_path())
    # An installed environment for --from-prefix, and a folder of its archives.
    prefix_records = []
    for package in channel.packages.values():
        record = asyncio.run(rattler.RepoDataRecord.from_package_archive(package.path))
        record.md5 = bytes.fromhex(package.md5)
        prefix_records.append(rattler.RepoDataRecord(record, package.file_name, package.url(url), f"{url}/"))
        (folder / "pkgs").mkdir(exist_ok=True)
        shutil.copy2(package.path, folder / "pkgs" / package.file_name)
    asyncio.run(
        rattler.install(
            prefix_records, folder / "installed" / "env", cache_dir=base / "cache", show_progress=False
        )
    )
    # The pack the README's later sections start from.
    assert pack_main([str(folder), "-p", "linux-64", "-o", str(folder / "environment.tar")]) == 0
    return folder


def _tools(folder: Path) -> Path:
    """``pixi-pack``, ``pixi-unpack``, ``python`` and ``python3`` as a pip install would put them on PATH."""
    folder.mkdir()
    for name, command in (("pixi-pack", "pack"), ("pixi-unpack", "unpack")):
        script = folder / name
        script.write_text(
            f'#!/bin/sh\nPYTHONPATH={ROOT} exec "{sys.executable}" -m pixi_pack {command} "$@"\n'
        )
        script.chmod(0o755)
    for name in ("python", "python3"):
        (folder / name).symlink_to(sys.executable)
    return folder


def test_every_readme_command_is_run_or_accounted_for() -> None:
    commands = [line for block in readme_blocks() for line in block]
    assert len(commands) >= 12  # the parser found the blocks
    assert set(NOT_RUN) <= set(commands), "NOT_RUN names a command the README no longer shows"
    assert set(CONCRETE) <= set(commands)


@pytest.mark.parametrize("index", range(len(readme_blocks())))
def test_readme_block_runs(index: int, project: Path, tmp_path: Path) -> None:
    commands = _runnable(readme_blocks()[index])
    if not commands:
        pytest.skip("; ".join(NOT_RUN[line] for line in readme_blocks()[index]))
    work = tmp_path / "work"
    shutil.copytree(project, work, symlinks=True)
    script = "\n".join(commands).replace("/opt/app", str(tmp_path / "opt" / "app"))
    env = {
        "PATH": f"{_tools(tmp_path / 'bin')}:/usr/bin:/bin",
        "HOME": str(tmp_path / "home"),
        "TMPDIR": str(tmp_path),
        "SHIV_ROOT": str(tmp_path / "shiv"),
    }
    (tmp_path / "home" / ".config" / "fish" / "completions").mkdir(parents=True)  # as fish makes it
    result = subprocess.run(
        ["bash", "-e", "-x", "-c", script], cwd=work, env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, f"{script}\n---\n{result.stderr}"
    assert "Traceback" not in result.stderr
    if "pixi-unpack environment.tar" in script or "./environment.sh" in script:
        assert (work / "env" / "bin" / "hello").is_file() and (work / "activate.sh").is_file()
    if "/opt/app" in "\n".join(commands):
        assert (tmp_path / "opt" / "app" / "env" / "bin" / "hello").is_file()
    if "tar -xvf environment.tar" in script:
        assert (work / "environment.yml").is_file() and (
            work / "channel" / "noarch" / "repodata.json"
        ).is_file()
    if "--inject" in script:
        assert b"local-package-1.0.0-hbefa133_0.conda" in (work / "environment.tar").read_bytes()
    if "python dist/pixi-pack.pyz pack --help" in script:
        assert "usage: pixi-pack pack" in result.stdout
