"""Activation scripts: run the POSIX ones in real shells, check the others by content."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import default_packages
from test_link import built

from pixi_pack.errors import PixiPackError
from pixi_pack.install.activate import collect_env_vars, write_activation_script
from pixi_pack.install.link import install_packages

AWKWARD = "env with space $HOME 'q\" `x`"


def make_env(root: Path, name: str = AWKWARD) -> Path:
    prefix = root / name
    (prefix / "bin").mkdir(parents=True)
    activate_d = prefix / "etc" / "conda" / "activate.d"
    activate_d.mkdir(parents=True)
    (activate_d / "20-second.sh").write_text('export ORDER="${ORDER:-}2"\nexport RUNS="${RUNS:-}x"\n')
    (activate_d / "10-first.sh").write_text('export ORDER="${ORDER:-}1"\n')
    (activate_d / "30-other.bat").write_text("@SET BAT=1\n")
    (activate_d / "40-other.ps1").write_text("$Env:PS = 1\n")
    env_vars = prefix / "etc" / "conda" / "env_vars.d"
    env_vars.mkdir(parents=True)
    (env_vars / "b.json").write_text(json.dumps({"SHARED": "from-b", "ONLY_B": "b"}))
    (env_vars / "a.json").write_text(
        json.dumps({"SHARED": "from-a", "WITH_REF": "$CONDA_PREFIX/share", "N": 3})
    )
    (prefix / "conda-meta").mkdir()
    (prefix / "conda-meta" / "state").write_text(json.dumps({"env_vars": {"from_state": "s p a c e"}}))
    return prefix


def run_shell(shell: str, script: Path, command: str) -> dict[str, str]:
    """Source ``script`` twice in ``shell``, run ``command``, return the environment it printed."""
    code = f'. "{script}"\n. "{script}"\n{command}\nenv -0'
    env = {"PATH": "/usr/bin:/bin", "HOME": "/home/test"}
    result = subprocess.run([shell, "-c", code], capture_output=True, check=True, env=env)
    pairs = (item.split("=", 1) for item in result.stdout.decode().split("\0") if "=" in item)
    return dict(pairs)


@pytest.mark.parametrize("shell", ["bash", "dash", "zsh"])
def test_posix_script_sourced_twice(tmp_path: Path, shell: str) -> None:
    if shutil.which(shell) is None:
        pytest.skip(f"{shell} is not installed")
    prefix = make_env(tmp_path)
    script = write_activation_script(tmp_path, prefix, "linux-64", "zsh" if shell == "zsh" else "bash")
    assert script == tmp_path / "activate.sh"
    env = run_shell(shell, script, ":")
    assert env["PATH"] == f"{prefix}/bin:/usr/bin:/bin"
    assert env["CONDA_PREFIX"] == str(prefix)
    assert env["CONDA_SHLVL"] == "1"
    assert env["SHARED"] == "from-b"
    assert env["ONLY_B"] == "b"
    assert env["WITH_REF"] == f"{prefix}/share"
    assert env["FROM_STATE"] == "s p a c e"
    assert "N" not in env
    assert env["ORDER"] == "1212"  # sorted, and sourced again on the second activation
    assert "BAT" not in env and "PS" not in env


def test_path_entry_already_on_path_moves_to_the_front(tmp_path: Path) -> None:
    prefix = make_env(tmp_path, "plain")
    script = write_activation_script(tmp_path, prefix, "linux-64", "sh")
    code = f'PATH="/usr/bin:{prefix}/bin:/bin::/opt"; . "{script}"; printf %s "$PATH"'
    result = subprocess.run(["sh", "-c", code], capture_output=True, check=True)
    assert result.stdout.decode() == f"{prefix}/bin:/usr/bin:/bin::/opt"


def test_unpacked_environment_runs_its_programs(tmp_path: Path) -> None:
    packages = default_packages(tmp_path / "build")
    prefix = tmp_path / "out" / "my env"
    install_packages(built(packages), prefix, prefix, "linux-64")
    script = write_activation_script(tmp_path / "out", prefix, "linux-64", None)
    code = f'. "{script}"; hello; hello-old; command -v hello'
    result = subprocess.run(
        ["sh", "-c", code], capture_output=True, check=True, env={"PATH": "/usr/bin:/bin"}
    )
    assert result.stdout.decode().splitlines() == [str(prefix), str(prefix), f"{prefix}/bin/hello"]


def test_default_shell_per_platform(tmp_path: Path) -> None:
    prefix = make_env(tmp_path, "p")
    assert write_activation_script(tmp_path, prefix, "linux-64", None).name == "activate.sh"
    assert write_activation_script(tmp_path, prefix, "osx-arm64", None).name == "activate.sh"
    assert write_activation_script(tmp_path, prefix, "win-64", None).name == "activate.bat"


def test_cmd_script(tmp_path: Path) -> None:
    prefix = make_env(tmp_path, "100% env")
    text = write_activation_script(tmp_path, prefix, "win-64", "cmd").read_bytes().decode()
    lines = text.split("\r\n")
    assert lines[0] == "@chcp 65001 > nul"
    native = str(prefix).replace("/", "\\").replace("%", "%%")
    entries = ";".join(
        [
            native,
            *(
                f"{native}\\{rel}"
                for rel in ("Library\\mingw-w64\\bin", "Library\\usr\\bin", "Library\\bin", "Scripts", "bin")
            ),
        ]
    )
    assert lines[1] == f'@IF /I NOT "%CONDA_PREFIX%"=="{native}" SET "Path={entries};%Path%"'
    assert lines[2:4] == ['@SET "CONDA_SHLVL=1"', f'@SET "CONDA_PREFIX={native}"']
    assert '@SET "SHARED=from-b"' in lines
    assert '@SET "FROM_STATE=s p a c e"' in lines
    assert lines[-2] == f'@CALL "{native}\\etc\\conda\\activate.d\\30-other.bat"'
    assert text.endswith("\r\n") and "\n" not in text.replace("\r\n", "")


def test_powershell_script(tmp_path: Path) -> None:
    prefix = make_env(tmp_path, "it's")
    script = write_activation_script(tmp_path, prefix, "linux-64", "powershell")
    assert script.name == "activate.ps1"
    text = script.read_text()
    quoted = str(prefix).replace("'", "''")
    assert f"$_pixi_entries = @('{quoted}/bin')" in text
    assert f"${{Env:CONDA_PREFIX}} = '{quoted}'" in text
    assert '${Env:WITH_REF} = "$CONDA_PREFIX/share"' in text
    assert text.rstrip().endswith(f". '{quoted}/etc/conda/activate.d/40-other.ps1'")
    if shutil.which("pwsh"):
        code = f". '{script}'; . '{script}'; Write-Output $Env:PATH"
        out = subprocess.run(
            ["pwsh", "-NoProfile", "-Command", code], capture_output=True, check=True, text=True
        )
        assert out.stdout.strip().split(":").count(f"{prefix}/bin") == 1


def test_fish_script(tmp_path: Path) -> None:
    prefix = make_env(tmp_path, "f")
    text = write_activation_script(tmp_path, prefix, "linux-64", "fish").read_text()
    assert f"set -l _pixi_entries '{prefix}/bin'" in text
    assert "set -gx PATH $_pixi_entries $PATH" in text
    assert f"set -gx CONDA_PREFIX '{prefix}'" in text
    assert "source " not in text  # no .fish scripts in activate.d


def test_unknown_shell(tmp_path: Path) -> None:
    with pytest.raises(PixiPackError, match="unknown shell 'tcsh'"):
        write_activation_script(tmp_path, make_env(tmp_path, "p"), "linux-64", "tcsh")


def test_env_vars_errors(tmp_path: Path) -> None:
    prefix = make_env(tmp_path, "p")
    (prefix / "conda-meta" / "state").write_text("{}")
    with pytest.raises(PixiPackError, match="'env_vars' object"):
        collect_env_vars(prefix)
    (prefix / "conda-meta" / "state").unlink()
    (prefix / "etc" / "conda" / "env_vars.d" / "c.json").write_text("[1, 2]")
    with pytest.raises(PixiPackError, match="must hold a JSON object"):
        collect_env_vars(prefix)
    (prefix / "etc" / "conda" / "env_vars.d" / "c.json").write_text("{not json")
    with pytest.raises(PixiPackError, match="could not read"):
        collect_env_vars(prefix)


def test_no_activation_inputs(tmp_path: Path) -> None:
    prefix = tmp_path / "bare"
    prefix.mkdir()
    text = write_activation_script(tmp_path, prefix, "linux-64", "bash").read_text()
    assert text.splitlines()[-2:] == ["export CONDA_SHLVL=1", f"export CONDA_PREFIX={prefix}"]
    assert os.access(tmp_path / "activate.sh", os.R_OK)


# --- xonsh (run for real: it is on PyPI) and nushell (no binary here: a golden file) -------------------


def _xonsh() -> str | None:
    found = shutil.which("xonsh") or str(Path(sys.executable).with_name("xonsh"))
    return found if Path(found).is_file() else None


def test_xonsh_script_runs_in_xonsh(tmp_path: Path) -> None:
    xonsh = _xonsh()
    if xonsh is None:
        pytest.skip("xonsh is not installed")
    # xonsh expands $NAME and ~ in every $PATH entry it reads, so this prefix has quotes and spaces only.
    prefix = make_env(tmp_path, "env with space 'q\" x")
    (prefix / "etc" / "conda" / "activate.d" / "50-x.xsh").write_text("$FROM_XSH = 'yes'\n")
    script = write_activation_script(tmp_path, prefix, "linux-64", "xonsh")
    assert script.name == "activate.xsh"
    code = (
        f"source @({str(script)!r})\nsource @({str(script)!r})\n"
        "import json, os\nprint(json.dumps({k: v for k, v in ${...}.items() if isinstance(v, str)}))\n"
        "print(json.dumps(list($PATH)))\n"
    )
    result = subprocess.run(
        [xonsh, "--no-rc", "-c", code],
        capture_output=True,
        text=True,
        check=False,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    assert result.returncode == 0, result.stderr
    env_line, path_line = result.stdout.strip().splitlines()[-2:]
    env, path = json.loads(env_line), json.loads(path_line)
    assert env["CONDA_PREFIX"] == str(prefix) and env["CONDA_SHLVL"] == "1"
    assert env["SHARED"] == "from-b" and env["FROM_STATE"] == "s p a c e" and env["FROM_XSH"] == "yes"
    assert path[0] == str(prefix / "bin") and path.count(str(prefix / "bin")) == 1  # sourced twice


def test_nushell_script_golden(tmp_path: Path) -> None:
    prefix = tmp_path / "env"
    (prefix / "etc" / "conda" / "activate.d").mkdir(parents=True)
    (prefix / "etc" / "conda" / "activate.d" / "10-a.nu").write_text("$env.A = 1\n")
    (prefix / "etc" / "conda" / "activate.d" / "20-b.sh").write_text("export B=1\n")
    (prefix / "etc" / "conda" / "env_vars.d").mkdir(parents=True)
    (prefix / "etc" / "conda" / "env_vars.d" / "x.json").write_text(json.dumps({"QUOTED": 'it\'s "here"'}))
    script = write_activation_script(tmp_path, prefix, "linux-64", "nushell")
    assert script.name == "activate.nu"
    assert script.read_text() == (
        f"let _pixi_entries = ['{prefix}/bin']\n"
        "$env.PATH = ($env.PATH | split row (char esep) | where {|p| $p not-in $_pixi_entries }"
        " | prepend $_pixi_entries)\n"
        '$env.CONDA_SHLVL = "1"\n'
        f"$env.CONDA_PREFIX = '{prefix}'\n"
        'load-env {\'QUOTED\': "it\'s \\"here\\""}\n'
        f"source '{prefix}/etc/conda/activate.d/10-a.nu'\n"
    )
