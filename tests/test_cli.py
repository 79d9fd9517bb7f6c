"""The command lines as a new user meets them: help, usage errors, flags, and a terminal on stdout."""

from __future__ import annotations

import contextlib
import io
import os
import pty
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import Channel
from lockfiles import conda, write_lock
from test_zipapp import zipapp_path

from pixi_pack.arguments import build_pack_parser, build_unpack_parser
from pixi_pack.cli import _check_executable_name, pack_main, unpack_main
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
        ("environment.cmd", "win-64", False),
        ("ENVIRONMENT.BAT", "win-arm64", False),
        ("environment.cmd", "linux-64", True),
        ("environment.bat", "osx-64", True),
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


def _completion(command: str, shell: str) -> str:
    main = pack_main if command == "pixi-pack" else unpack_main
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["completion", "-s", shell], prog=command) == 0
    return out.getvalue()


@pytest.mark.parametrize(
    ("command", "words", "expected"),
    [
        ("pixi-pack", ["--env"], "--environment"),
        ("pixi-pack", ["--from-p"], "--from-prefix"),
        ("pixi-unpack", ["-s", "fi"], "fish"),
        ("pixi-unpack", ["--verify"], "--verify-only"),
    ],
)
def test_bash_completion_completes(command: str, words: list[str], expected: str, tmp_path: Path) -> None:
    script = tmp_path / "completion.bash"
    script.write_text(_completion(command, "bash"))
    function = "_" + command.replace("-", "_")
    line = " ".join([command, *words])
    probe = (
        f"source {script}; complete -p {command} >/dev/null || exit 3; "
        f"COMP_WORDS=({line}); COMP_CWORD={len(words)}; {function}; printf '%s\\n' \"${{COMPREPLY[@]}}\""
    )
    result = subprocess.run(["bash", "-c", probe], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert expected in result.stdout.split()


@pytest.mark.skipif(shutil.which("zsh") is None, reason="zsh not installed")
def test_zsh_completion_registers(tmp_path: Path) -> None:
    script = tmp_path / "completion.zsh"
    script.write_text(_completion("pixi-pack", "zsh"))
    probe = f"source {script} && (( $+functions[_pixi_pack] )) && echo registered"
    result = subprocess.run(["zsh", "-f", "-c", probe], capture_output=True, text=True, check=False)
    assert result.stdout.strip() == "registered", result.stderr


def test_fish_and_powershell_completions_list_every_option() -> None:
    fish = _completion("pixi-unpack", "fish").splitlines()
    assert all(line.startswith("complete -c pixi-unpack ") for line in fish)
    assert any("-s o -l output-directory -r -F" in line for line in fish)
    assert any("-l shell -x -a 'bash cmd dash fish" in line for line in fish)
    powershell = _completion("pixi-pack", "powershell")
    assert powershell.startswith("Register-ArgumentCompleter -Native -CommandName 'pixi-pack'")
    assert "'--environment'" in powershell and "'--inject'" in powershell
    with pytest.raises(SystemExit):
        pack_main(["completion", "-s", "tcsh"])


def test_a_manifest_folder_named_like_the_subcommand_still_packs(
    tmp_path: Path, served_channel: str, channel: Channel, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "completion-dir"
    write_lock(
        folder / "pixi.lock",
        {"default": {"linux-64": [conda(p, served_channel) for p in channel.packages.values()]}},
        [served_channel],
    )
    monkeypatch.chdir(tmp_path)
    assert pack_main(["completion-dir/", "-p", "linux-64", "-o", str(tmp_path / "out.tar")]) == 0
    assert (tmp_path / "out.tar").is_file()
