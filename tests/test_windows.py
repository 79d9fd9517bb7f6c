"""Windows output, run for real: ``environment.cmd``, the entry-point launchers and ``activate.bat``.

A win-64 pack is made of a python package whose ``python.exe`` is a stand-in built here with mingw-w64
(it logs its working folder and arguments, and answers the stub's version probe), a noarch package with an
entry point, and a wheel with a console script. CPython unpacks ``environment.cmd`` as it would any
zipapp (that works on every OS); Wine runs the stub, the launchers and the activation script. Without
Wine or mingw-w64 those tests skip; ``.ci/run`` installs both.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Sequence
from pathlib import Path

import pytest
from builders import File, build_package, build_wheel
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lockfiles import LockEntry, conda_at, pypi, write_lock
from test_zipapp import zipapp_path

from pixi_pack.cli import pack_main
from pixi_pack.pack import assemble, selfextract

MINGW = "x86_64-w64-mingw32-gcc"

FAKE_PYTHON_C = r"""
#include <stdio.h>
#include <stdlib.h>
#include <wchar.h>
#include <windows.h>
/* A stand-in python.exe: the version probe (an argument -c) gets FAKE_PYTHON_PROBE (0 if unset); any
   other call writes its working folder, SHIV_ROOT and its arguments, a line each, to FAKE_PYTHON_LOG
   and exits with 7. */
static void line(FILE *f, const wchar_t *text) {
    char buffer[8192];
    WideCharToMultiByte(CP_UTF8, 0, text ? text : L"", -1, buffer, sizeof buffer, NULL, NULL);
    fprintf(f, "%s\n", buffer);
}
int wmain(int argc, wchar_t **argv) {
    for (int i = 1; i < argc; i++)
        if (wcscmp(argv[i], L"-c") == 0) {
            const wchar_t *probe = _wgetenv(L"FAKE_PYTHON_PROBE");
            return probe ? _wtoi(probe) : 0;
        }
    FILE *f = _wfopen(_wgetenv(L"FAKE_PYTHON_LOG"), L"wb");
    if (!f) return 3;
    wchar_t cwd[MAX_PATH];
    GetCurrentDirectoryW(MAX_PATH, cwd);
    line(f, cwd);
    line(f, _wgetenv(L"SHIV_ROOT"));
    for (int i = 0; i < argc; i++) line(f, argv[i]);
    fclose(f);
    return 7;
}
"""


def windows_path(path: Path) -> str:
    """``path`` as Wine's programs see it (Wine maps ``/`` to drive ``Z:``)."""
    return "Z:" + str(path).replace("/", "\\")


@pytest.fixture(scope="session")
def fake_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which(MINGW) is None:
        pytest.skip(f"{MINGW} not installed (Debian: gcc-mingw-w64-x86-64)")
    folder = tmp_path_factory.mktemp("fake-python")
    (folder / "fake.c").write_text(FAKE_PYTHON_C)
    command = [MINGW, "-municode", "-O2", "-s", "-o", str(folder / "python.exe"), str(folder / "fake.c")]
    subprocess.run(command, check=True, capture_output=True)
    return folder / "python.exe"


class Wine:
    """Runs Windows programs in a Wine prefix of its own."""

    def __init__(self, prefix: Path, log: Path) -> None:
        self.log = log
        self._env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(prefix.parent),
            "WINEPREFIX": str(prefix),
            "WINEDEBUG": "-all",
            "WINEDLLOVERRIDES": "mscoree,mshtml=",  # no Mono or Gecko installer at the first start
            "FAKE_PYTHON_LOG": windows_path(log),
        }

    def run(self, args: Sequence[str | Path], *, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
        self.log.unlink(missing_ok=True)
        return subprocess.run(
            ["wine", *map(str, args)],
            cwd=cwd,
            env={**self._env, **env},
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )

    def logged(self) -> list[str]:
        """What the stand-in python logged: working folder, SHIV_ROOT, then its argv."""
        return self.log.read_text(encoding="utf-8").splitlines()


@pytest.fixture(scope="session")
def wine(tmp_path_factory: pytest.TempPathFactory) -> Wine:
    if shutil.which("wine") is None:
        pytest.skip("wine not installed (Debian: wine, wine64)")
    base = tmp_path_factory.mktemp("wine")
    runner = Wine(base / "prefix", base / "fake-python.log")
    started = runner.run(["cmd", "/c", "exit", "0"], cwd=base)
    if started.returncode != 0:
        pytest.skip(f"wine does not start here: {started.stderr[-500:]}")
    return runner


@pytest.fixture(scope="module")
def win_pack(tmp_path_factory: pytest.TempPathFactory, fake_python: Path) -> Path:
    """``environment.cmd`` of a win-64 environment: python (the stand-in), an entry point, a wheel."""
    base = tmp_path_factory.mktemp("win-pack")
    python = build_package(
        base / "pkgs",
        "python",
        "3.12.1",
        subdir="win-64",
        files={"python.exe": File(fake_python.read_bytes(), mode=0o755)},
    )
    tool = build_package(
        base / "pkgs",
        "pyedge",
        noarch="python",
        entry_points=["pyedge = pyedge.cli:main"],
        files={"site-packages/pyedge/cli.py": "def main():\n    return 0\n"},
    )
    wheel = build_wheel(
        base / "wheels",
        "wheeltool",
        "2.0",
        modules={"wheeltool/__init__.py": "def main():\n    return 0\n"},
        console_scripts={"wheeltool": "wheeltool:main"},
    )
    project = base / "project"
    project.mkdir()
    (project / "pixi.toml").write_text("[workspace]\nname = 'win'\n")
    entries: list[LockEntry] = [
        conda_at(python, python.path),
        conda_at(tool, tool.path),
        pypi(wheel, wheel.path),
    ]
    write_lock(project / "pixi.lock", {"default": {"win-64": entries}}, ["https://conda.anaconda.org/x"])
    out = base / "My Env (x86)" / "environment.cmd"
    out.parent.mkdir()
    args = [str(project), "-p", "win-64", "--create-executable", "-o", str(out)]
    assert pack_main([*args, "--pixi-unpack-source", str(zipapp_path())]) == 0
    return out


@pytest.fixture(scope="module")
def unpacked(win_pack: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder ``python3 environment.cmd`` unpacked the pack into (the env is ``env`` in it)."""
    output = tmp_path_factory.mktemp("win-unpacked") / "out"
    result = subprocess.run(
        [sys.executable, "-I", str(win_pack), "--ignore-platform", "-o", str(output)],
        env={"SHIV_ROOT": str(output.parent / "shiv"), "PATH": os.environ.get("PATH", "")},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return output


# --- environment.cmd ------------------------------------------------------------------------------------


def test_cmd_layout(win_pack: Path) -> None:
    """A batch stub (ASCII, CRLF), then the tar, then the zipapp: what ``environment.sh`` carries."""
    data = win_pack.read_bytes()
    located = selfextract.stub_payload_args(win_pack)
    assert located is not None
    offset, length = int(located[1]), int(located[3])
    stub = data[:offset]
    assert stub.startswith(b"@echo off\r\nrem A self-extracting pixi-pack environment")
    stub.decode("ascii")
    assert b"\n" not in stub.replace(b"\r\n", b"")
    assert stub.rstrip(b"\r\n").endswith(b"exit /b 1")
    assert data[offset + 257 : offset + 262] == b"ustar"  # the tar starts right after the stub
    assert hashlib.sha256(data[offset : offset + length]).hexdigest() == located[5]
    assert data[offset + length :] == zipapp_path().read_bytes()
    with zipfile.ZipFile(win_pack) as archive:
        assert "__main__.py" in archive.namelist()


def test_cmd_stub_only_jumps_forward() -> None:
    """cmd.exe looks for a label from where it is to the end of the file before it wraps around: a jump
    back would make it read the whole payload. Every label follows every goto that names it."""
    stub = selfextract.render_stub("cmd", sha256="0" * 64, length=10**9, zipapp_length=10**6).decode()
    lines = stub.split("\r\n")
    labels = {line[1:]: n for n, line in enumerate(lines) if line.startswith(":")}
    gotos = [(n, line.split("goto ", 1)[1].split(")")[0]) for n, line in enumerate(lines) if "goto " in line]
    assert gotos and labels
    for n, label in gotos:
        assert labels[label] > n, (label, lines[n])
    assert "call :" not in stub


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    head=st.sampled_from(selfextract.STUB_HEADS),
    rest=st.binary(max_size=300),
    numbers=st.tuples(
        st.integers(min_value=-5, max_value=10**25), st.integers(min_value=-5, max_value=10**25)
    ),
)
def test_stub_numbers_are_read_or_refused(
    head: bytes, rest: bytes, numbers: tuple[int, int], tmp_path: Path
) -> None:
    """Whatever follows a stub's first line, its numbers are read as digits, or the file is no stub."""
    offset, length = numbers
    script = tmp_path / "environment.cmd"
    script.write_bytes(
        head + rest + f"--payload-offset {offset} --payload-length {length} --payload-sha256 ".encode() + rest
    )
    located = selfextract.stub_payload_args(script)
    assert located is None or all(located[i].isdigit() for i in (1, 3))


def test_python_unpacks_environment_cmd(unpacked: Path) -> None:
    """``python3 environment.cmd ...`` works anywhere: the stub's numbers locate the pack."""
    env = unpacked / "env"
    assert (env / "python.exe").is_file()
    assert (env / "Lib/site-packages/pyedge/cli.py").is_file()
    assert (env / "Lib/site-packages/wheeltool/__init__.py").is_file()
    for script in ("pyedge.exe", "pyedge-script.py", "wheeltool.exe"):
        assert (env / "Scripts" / script).is_file(), script
    assert (unpacked / "activate.bat").is_file()


def test_wine_runs_the_stub_with_the_python_it_names(win_pack: Path, wine: Wine, fake_python: Path) -> None:
    """The stub hands itself, the pack's place in it and the user's flags to PIXI_PACK_PYTHON, with a
    fresh SHIV_ROOT it removes afterwards, and exits with that python's status."""
    result = wine.run(
        ["cmd", "/c", "environment.cmd", "-o", "a b", "--flag"],
        cwd=win_pack.parent,
        PIXI_PACK_PYTHON=windows_path(fake_python),
    )
    assert result.returncode == 7, result.stderr
    cwd, shiv_root, *argv = wine.logged()
    me = windows_path(win_pack)
    located = selfextract.stub_payload_args(win_pack)
    assert located is not None
    assert cwd == windows_path(win_pack.parent)
    assert argv == [windows_path(fake_python), "-I", me, "unpack", *located, me, "-o", "a b", "--flag"]
    assert "\\pixi-unpack-" in shiv_root


def test_wine_stub_finds_the_py_launcher(
    win_pack: Path, wine: Wine, fake_python: Path, tmp_path: Path
) -> None:
    shutil.copy(fake_python, tmp_path / "py.exe")
    result = wine.run(
        ["cmd", "/c", "environment.cmd", "--help"], cwd=win_pack.parent, WINEPATH=windows_path(tmp_path)
    )
    assert result.returncode == 7, result.stderr
    argv = wine.logged()[2:]
    assert argv[1:4] == ["-3", "-I", windows_path(win_pack)]
    assert argv[-1] == "--help"


@pytest.mark.parametrize("case", ["no python", "old python", "truncated"])
def test_wine_stub_errors(case: str, win_pack: Path, wine: Wine, fake_python: Path, tmp_path: Path) -> None:
    script = win_pack
    env = {"PIXI_PACK_PYTHON": windows_path(fake_python)}
    if case == "no python":
        env = {}
    elif case == "old python":
        env["FAKE_PYTHON_PROBE"] = "1"
    else:
        script = tmp_path / "environment.cmd"
        script.write_bytes(win_pack.read_bytes()[:-1000])
    result = wine.run(["cmd", "/c", script.name], cwd=script.parent, **env)
    assert result.returncode == 1
    expected = {
        "no python": "needs Python >= 3.9, and there is no py, python or python3",
        "old python": f'PIXI_PACK_PYTHON="{windows_path(fake_python)}" is not a working Python >= 3.9',
        "truncated": "an incomplete or damaged download; download it again",
    }[case]
    assert expected in result.stderr
    assert not wine.log.exists()


# --- what is unpacked ----------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["pyedge", "wheeltool"])
def test_wine_runs_the_launchers(command: str, unpacked: Path, wine: Wine) -> None:
    """``Scripts\\<name>.exe`` starts the environment's python.exe on itself, with the arguments."""
    env = unpacked / "env"
    exe = env / "Scripts" / f"{command}.exe"
    result = wine.run([exe, "a", "b c"], cwd=unpacked)
    assert result.returncode == 7, result.stderr
    _, _, *argv = wine.logged()
    assert argv == [f"{env}/python.exe", windows_path(exe), "a", "b c"]
    with zipfile.ZipFile(exe) as zipped:  # what python.exe then runs
        main = zipped.read("__main__.py").decode()
    assert f"sys.exit({'main'}())" in main


def test_wine_activate_bat(unpacked: Path, wine: Wine) -> None:
    """cmd.exe runs ``activate.bat``: the variables are set and the env's folders lead PATH."""
    show = ["echo", "%CONDA_PREFIX%", "&", "echo", "%CONDA_SHLVL%", "&", "echo", "%PATH%"]
    result = wine.run(["cmd", "/c", "call", "activate.bat", "&", *show], cwd=unpacked)
    assert result.returncode == 0, result.stderr
    # The env was unpacked here, so its prefix is this machine's path, written the Windows way.
    prefix, shlvl, path = (line.strip().replace("\\", "/") for line in result.stdout.splitlines()[-3:])
    assert (prefix, shlvl) == (str(unpacked / "env"), "1")
    entries = path.split(";")
    assert entries[0] == str(unpacked / "env")
    assert f"{unpacked / 'env'}/Scripts" in entries


# --- environment.ps1 --------------------------------------------------------------------------------------


def test_a_big_ps1_recommends_environment_cmd(
    win_pack: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    project = win_pack.parent.parent / "project"
    out = tmp_path / "environment.ps1"
    args = [str(project), "-p", "win-64", "--create-executable", "-o", str(out)]
    for limit, warned in ((1 << 40, False), (1000, True)):
        monkeypatch.setattr(assemble, "PS1_WARN_ABOVE", limit)
        assert pack_main([*args, "--pixi-unpack-source", str(zipapp_path())]) == 0
        err = capsys.readouterr().err
        assert ("warning: environment.ps1 holds the pack" in err) is warned, err
        assert ("-o environment.cmd writes the same self-extractor" in err) is warned


def test_a_bat_name_gets_the_batch_stub(win_pack: Path, tmp_path: Path) -> None:
    """``-o NAME.bat`` is honoured: the batch self-extractor under that name, as ``.cmd`` gets it."""
    project = win_pack.parent.parent / "project"
    out = tmp_path / "Install Me.BAT"
    args = [str(project), "-p", "win-64", "--create-executable", "-o", str(out)]
    assert pack_main([*args, "--pixi-unpack-source", str(zipapp_path())]) == 0
    assert out.read_bytes().startswith(b"@echo off\r\n")
    assert selfextract.stub_payload_args(out) == selfextract.stub_payload_args(win_pack)
