"""The command lines as a new user meets them: help, usage errors, flags, and a terminal on stdout."""

from __future__ import annotations

import os
import pty
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from test_zipapp import zipapp_path

from pixi_pack.arguments import build_pack_parser, build_unpack_parser
from pixi_pack.cli import _check_executable_name
from pixi_pack.errors import PixiPackError

ROOT = Path(__file__).resolve().parents[1]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pixi_pack", *args],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_is_on_stdout_and_succeeds(flag: str) -> None:
    result = _run(flag)
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.startswith("usage: pixi-pack {pack,unpack}")


def test_a_missing_command_is_a_usage_error() -> None:
    result = _run()
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr.startswith("usage: pixi-pack {pack,unpack}")
    assert result.stderr.rstrip().endswith("error: missing command: choose pack or unpack")


def test_an_unknown_command_is_a_usage_error() -> None:
    result = _run("pakc")
    assert result.returncode == 2
    assert "error: unknown command 'pakc': choose pack or unpack" in result.stderr


@pytest.mark.parametrize("command", ["pack", "unpack"])
def test_subcommand_help_succeeds(command: str) -> None:
    result = _run(command, "--help")
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.startswith(f"usage: pixi-pack {command} ")


def test_pack_help_shows_defaults_and_readable_metavars() -> None:
    text = build_pack_parser().format_help()
    for shown in ("-e NAME", "(default: default)", "--use-cache DIR", "--auth-file FILE", "-c FILE"):
        assert shown in text
    assert "-i PACKAGE, --inject PACKAGE" in text
    assert "[PACKAGE ...]" not in text and "USE_CACHE" not in text and "AUTH_FILE" not in text
    assert "[MANIFEST]" in text


def test_unpack_help_shows_defaults_and_readable_metavars() -> None:
    text = build_unpack_parser().format_help()
    for shown in ("-o DIR", "-e NAME", "(default: env)", "-s SHELL", "(default: bash here", "[PACK]"):
        assert shown in text
    assert "OUTPUT_DIRECTORY" not in text and "ENV_NAME" not in text


def test_inject_takes_one_package_per_flag() -> None:
    """The README's ``pixi-pack --inject pkg.tar.bz2 path/to/pixi.toml``: the manifest stays a manifest."""
    args = build_pack_parser().parse_args(["--inject", "test-package-0.1-0.tar.bz2", "path/to/pixi.toml"])
    assert args.inject == [Path("test-package-0.1-0.tar.bz2")]
    assert args.manifest_path == Path("path/to/pixi.toml")
    args = build_pack_parser().parse_args(["-i", "a.conda", "-i", "b.whl"])
    assert args.inject == [Path("a.conda"), Path("b.whl")]


def test_a_pack_is_not_written_to_a_terminal(tmp_path: Path) -> None:
    """``pixi-pack -o -`` with stdout on a terminal is refused before anything is read, as gzip does."""
    primary, terminal = pty.openpty()
    try:
        result = subprocess.run(
            [sys.executable, "-m", "pixi_pack", "pack", "-o", "-"],
            stdout=terminal,
            stderr=subprocess.PIPE,
            cwd=tmp_path,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            check=False,
        )
    finally:
        os.close(terminal)
        os.close(primary)
    assert result.returncode == 1
    output = result.stderr
    text = output.decode(errors="replace")
    assert "error: refusing to write a binary pack to a terminal" in text
    assert "lockfile not found" not in text


@pytest.mark.parametrize(
    ("name", "platform", "refused"),
    [
        ("environment.tar", "linux-64", True),
        ("environment.ps1", "linux-64", True),
        ("environment.sh", "win-64", True),
        ("environment.sh", "linux-64", False),
        ("install-me", "linux-64", False),
        ("env.run", "osx-arm64", False),
        ("environment.ps1", "win-64", False),
    ],
)
def test_a_self_extracting_name_is_honoured_or_refused(name: str, platform: str, refused: bool) -> None:
    """``-o`` is never changed behind the user's back: a name that contradicts the form is an error."""
    if refused:
        with pytest.raises(
            PixiPackError, match=rf"-o {re.escape(name)} names a .* file, but --create-executable"
        ):
            _check_executable_name(Path(name), platform)
    else:
        _check_executable_name(Path(name), platform)


def test_the_pyz_behaves_as_the_module_does(tmp_path: Path) -> None:
    """``python pixi-pack.pyz --help`` succeeds on stdout; with no command it is a usage error."""
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "SHIV_ROOT": str(tmp_path / "shiv")}
    pyz = str(zipapp_path())
    shown = subprocess.run(
        [sys.executable, pyz, "--help"], capture_output=True, text=True, env=env, check=False
    )
    assert (shown.returncode, shown.stderr) == (0, "") and shown.stdout.startswith("usage: pixi-pack")
    bare = subprocess.run([sys.executable, pyz], capture_output=True, text=True, env=env, check=False)
    assert (bare.returncode, bare.stdout) == (2, "") and "error: missing command" in bare.stderr


def test_make_demo_installs_only_the_runtime(tmp_path: Path) -> None:
    """``make demo`` on a fresh clone installs pixi-pack and its dependencies, none of the dev tools."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    venv = tmp_path / "fresh-venv"
    demo = subprocess.run(
        ["make", "-n", "demo", f"VENV={venv}"], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert "pip install --quiet -e .\n" in demo.stdout and "[dev]" not in demo.stdout
    test = subprocess.run(
        ["make", "-n", "test", f"VENV={venv}"], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert "pip install --quiet -e '.[dev]'" in test.stdout
