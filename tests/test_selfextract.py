"""Self-extracting environments: the sh stub under dash, bash and busybox ash, the PowerShell layout (decoded
by a Python re-implementation of the script), finding the zipapp to embed, and real packs unpacked by
every CPython found here.

The stub mechanics run against a tiny fake zipapp whose ``__main__`` reports what it was given; the end
to end tests use the real zipapp from ``test_zipapp``.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tracemalloc
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from conftest import Channel, HttpServer
from lockfiles import conda, write_lock
from test_zipapp import INTERPRETERS, interpreters, zipapp_path

from pixi_pack.cli import pack_main
from pixi_pack.errors import IntegrityError, PixiPackError
from pixi_pack.pack import selfextract, unpacker
from pixi_pack.pack.selfextract import stub_payload_args

GOLDEN = Path(__file__).parent / "golden"
UPDATE_GOLDEN = os.environ.get("PIXI_PACK_UPDATE_GOLDEN") == "1"
PAYLOAD = b"tar payload\n\x00\xff" * 700 + bytes(range(256))
SYSTEM_PATH = "/usr/bin:/bin"

FAKE_MAIN = r"""
import hashlib, json, os, sys
args = sys.argv[1:]
shiv_root = os.environ.get("SHIV_ROOT")
report = {
    "argv0": sys.argv[0],
    "args": args,
    "isolated": sys.flags.isolated,
    "version": list(sys.version_info[:2]),
    "shiv_root": shiv_root,
    "shiv_root_exists": bool(shiv_root) and os.path.isdir(shiv_root),
    "shiv_env": sorted(k for k in os.environ if k.startswith("SHIV_") and k != "SHIV_ROOT"),
}
if args[:1] == ["unpack"]:
    options = dict(zip(args[1:7:2], args[2:7:2]))
    with open(args[7], "rb") as f:
        f.seek(int(options["--payload-offset"]))
        data = f.read(int(options["--payload-length"]))
    report["payload_ok"] = hashlib.sha256(data).hexdigest() == options["--payload-sha256"]
    report["payload"] = data.decode("latin-1")
    report["pack"] = args[7]
    report["rest"] = args[8:]
with open(os.environ["FAKE_REPORT"], "w") as f:
    json.dump(report, f)
sys.exit(int(os.environ.get("FAKE_EXIT", "0")))
"""


def _shells() -> list[Any]:
    return [
        pytest.param(["dash"], id="dash", marks=_needs("dash")),
        pytest.param(["bash"], id="bash", marks=_needs("bash")),
        pytest.param(["busybox", "sh"], id="busybox-ash", marks=_needs("busybox")),
        pytest.param([], id="exec"),
    ]


def _needs(command: str) -> pytest.MarkDecorator:
    return pytest.mark.skipif(shutil.which(command) is None, reason=f"{command} not installed")


SHELLS = _shells()


@pytest.fixture
def fake_zipapp(tmp_path: Path) -> Path:
    path = tmp_path / "fake.pyz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("__main__.py", FAKE_MAIN)
    return path


@pytest.fixture
def python_bin(tmp_path: Path) -> Path:
    """A folder holding only ``python3`` (the running interpreter), to put first on PATH."""
    folder = tmp_path / "python-bin"
    folder.mkdir()
    (folder / "python3").symlink_to(sys.executable)
    return folder


def write_file(
    folder: Path, payload: bytes, pyz: Path, *, form: selfextract.Form = "sh", name: str = "environment.sh"
) -> Path:
    """A self-extracting file for ``payload`` in ``folder``, made the way the pack stage makes it."""
    folder.mkdir(parents=True, exist_ok=True)
    tar = folder / "payload.tar"
    tar.write_bytes(payload)
    script = folder / name
    with open(script, "wb") as out:
        selfextract.write_executable(tar, pyz, out, form=form)
    tar.unlink()
    script.chmod(0o755)
    return script


def run_fake(
    shell: Sequence[str], script: Path, args: Sequence[str], tmp_path: Path, **env: str
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    report = tmp_path / "report.json"
    report.unlink(missing_ok=True)
    environment = {"PATH": SYSTEM_PATH, "FAKE_REPORT": str(report), **env}
    result = subprocess.run(
        [*shell, str(script), *args], env=environment, capture_output=True, text=True, check=False
    )
    data: dict[str, Any] = json.loads(report.read_text()) if report.exists() else {}
    return result, data


# --- the sh stub ---------------------------------------------------------------------------------


def test_sh_layout(fake_zipapp: Path, tmp_path: Path) -> None:
    script = write_file(tmp_path / "out", PAYLOAD, fake_zipapp)
    data = script.read_bytes()
    stub = selfextract.render_stub(
        "sh",
        sha256=hashlib.sha256(PAYLOAD).hexdigest(),
        length=len(PAYLOAD),
        zipapp_length=fake_zipapp.stat().st_size,
    )
    assert data == stub + PAYLOAD + fake_zipapp.read_bytes()
    assert f"--payload-offset {len(stub)} --payload-length {len(PAYLOAD)} ".encode() in stub
    assert stub.startswith(b"#!/bin/sh\n")
    stub.decode("ascii")
    with zipfile.ZipFile(script) as archive:  # the zipapp is last: zip readers still find it
        assert archive.read("__main__.py").decode() == FAKE_MAIN


# What each stub says of its numbers: the size check (of the whole file) and where the pack starts.
STUB_NUMBERS = {
    "sh": ('"$size" != {total} ]', "from byte {offset_1} "),
    "cmd": ('"%pixi_pack_size%"=="{total}"', "from byte {offset} (counted from 0)"),
}


@pytest.mark.parametrize("form", sorted(STUB_NUMBERS))
def test_stub_offset_is_its_own_length(form: selfextract.Form) -> None:
    size_check, start = STUB_NUMBERS[form]
    for length in (0, 9, 10**9, 10**12):
        stub = selfextract.render_stub(form, sha256="0" * 64, length=length, zipapp_length=1000)
        assert f"--payload-offset {len(stub)} ".encode() in stub
        assert size_check.format(total=len(stub) + length + 1000).encode() in stub
        assert start.format(offset=len(stub), offset_1=len(stub) + 1).encode() in stub


@pytest.mark.parametrize("form", sorted(STUB_NUMBERS))
def test_stub_golden(form: selfextract.Form) -> None:
    stub = selfextract.render_stub(form, sha256="ab" * 32, length=123456789, zipapp_length=987654)
    check_golden(f"environment.{form}.stub", stub)


@pytest.mark.parametrize("shell", SHELLS)
def test_sh_runs_unpacker_on_itself(
    shell: list[str], fake_zipapp: Path, python_bin: Path, tmp_path: Path
) -> None:
    script = write_file(tmp_path / "a folder with spaces", PAYLOAD, fake_zipapp, name="my env.sh")
    args = ["-o", "/opt/some dir/x", "-e", "myenv", "--help", 'it\'s "quoted" $HOME *']
    result, report = run_fake(shell, script, args, tmp_path, PATH=f"{python_bin}:{SYSTEM_PATH}")
    assert result.returncode == 0, result.stderr
    assert report["payload_ok"] is True
    assert report["payload"] == PAYLOAD.decode("latin-1")
    assert report["pack"] == report["argv0"] == str(script)
    assert report["rest"] == args
    assert report["isolated"] == 1
    assert report["shiv_root_exists"] is True
    assert not Path(report["shiv_root"]).exists()  # the temporary SHIV_ROOT is gone


@pytest.mark.parametrize("shell", SHELLS)
def test_sh_exit_status_is_the_unpackers(
    shell: list[str], fake_zipapp: Path, python_bin: Path, tmp_path: Path
) -> None:
    script = write_file(tmp_path / "out", PAYLOAD, fake_zipapp)
    result, report = run_fake(shell, script, [], tmp_path, PATH=f"{python_bin}:{SYSTEM_PATH}", FAKE_EXIT="3")
    assert result.returncode == 3
    assert not Path(report["shiv_root"]).exists()


@pytest.mark.parametrize("shell", SHELLS)
@pytest.mark.parametrize("change", ["truncated", "appended"])
def test_sh_an_incomplete_download_says_so(
    shell: list[str], change: str, fake_zipapp: Path, python_bin: Path, tmp_path: Path
) -> None:
    script = write_file(tmp_path / "out", PAYLOAD, fake_zipapp)
    data = script.read_bytes()
    script.write_bytes(data[: len(data) // 2] if change == "truncated" else data + b"x")
    result, report = run_fake(shell, script, [], tmp_path, PATH=f"{python_bin}:{SYSTEM_PATH}")
    assert result.returncode == 1 and report == {}  # Python never ran
    size = len(data) // 2 if change == "truncated" else len(data) + 1
    expected = f"error: {script} is {size} bytes, not {len(data)}: an incomplete or damaged download"
    assert result.stderr.startswith(expected), result.stderr


def test_sh_relative_invocation(fake_zipapp: Path, python_bin: Path, tmp_path: Path) -> None:
    script = write_file(tmp_path / "out", PAYLOAD, fake_zipapp)
    report_path = tmp_path / "report.json"
    env = {"PATH": f"{python_bin}:{SYSTEM_PATH}", "FAKE_REPORT": str(report_path)}
    result = subprocess.run(["sh", "environment.sh", "-e", "x"], cwd=script.parent, env=env, check=False)
    assert result.returncode == 0
    report = json.loads(report_path.read_text())
    assert (report["payload_ok"], report["rest"]) == (True, ["-e", "x"])


def test_sh_ignores_shiv_overrides(fake_zipapp: Path, python_bin: Path, tmp_path: Path) -> None:
    """SHIV_* variables of the caller can't turn the unpacker into something else."""
    script = write_file(tmp_path / "out", PAYLOAD, fake_zipapp)
    env = {"SHIV_ENTRY_POINT": "os:abort", "SHIV_INTERPRETER": "1", "SHIV_ROOT": "/nonexistent"}
    result, report = run_fake(["sh"], script, [], tmp_path, PATH=f"{python_bin}:{SYSTEM_PATH}", **env)
    assert result.returncode == 0, result.stderr
    assert report["shiv_env"] == []
    assert report["shiv_root"] != "/nonexistent"


def test_sh_skips_old_python(fake_zipapp: Path, tmp_path: Path) -> None:
    """A ``python3`` older than 3.9 is passed over for the next candidate."""
    folder = tmp_path / "bin"
    folder.mkdir()
    (folder / "python3").write_text("#!/bin/sh\nexit 1\n")
    (folder / "python3").chmod(0o755)
    (folder / "python").symlink_to(sys.executable)
    script = write_file(tmp_path / "out", PAYLOAD, fake_zipapp)
    result, report = run_fake(["sh"], script, [], tmp_path, PATH=f"{folder}:{SYSTEM_PATH}")
    assert result.returncode == 0, result.stderr
    assert report["version"] == list(sys.version_info[:2])


def test_sh_pixi_pack_python(fake_zipapp: Path, tmp_path: Path) -> None:
    python = interpreters()[0][1]
    script = write_file(tmp_path / "out", PAYLOAD, fake_zipapp)
    result, report = run_fake(["sh"], script, [], tmp_path, PIXI_PACK_PYTHON=str(python))
    assert result.returncode == 0, result.stderr
    version = subprocess.run(
        [str(python), "-c", "import sys; print(*sys.version_info[:2])"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert report["version"] == [int(v) for v in version.stdout.split()]


def test_sh_bad_pixi_pack_python(fake_zipapp: Path, tmp_path: Path) -> None:
    script = write_file(tmp_path / "out", PAYLOAD, fake_zipapp)
    result, report = run_fake(["sh"], script, [], tmp_path, PIXI_PACK_PYTHON="/nonexistent/python")
    assert result.returncode == 1
    assert "PIXI_PACK_PYTHON=/nonexistent/python is not a working Python >= 3.9" in result.stderr
    assert report == {}


def test_sh_no_python(fake_zipapp: Path, tmp_path: Path) -> None:
    folder = tmp_path / "bin"
    folder.mkdir()
    for tool in ("mktemp", "rm"):
        found = shutil.which(tool)
        assert found is not None
        (folder / tool).symlink_to(found)
    script = write_file(tmp_path / "out", PAYLOAD, fake_zipapp)
    shell = shutil.which("sh")
    assert shell is not None
    result, report = run_fake([shell], script, [], tmp_path, PATH=str(folder))
    assert result.returncode == 1
    assert "needs Python >= 3.9" in result.stderr
    assert "PIXI_PACK_PYTHON" in result.stderr
    assert report == {}


def test_python_runs_the_file_as_a_zipapp(fake_zipapp: Path, tmp_path: Path) -> None:
    script = write_file(tmp_path / "out", PAYLOAD, fake_zipapp)
    report_path = tmp_path / "report.json"
    env = {"FAKE_REPORT": str(report_path)}
    subprocess.run([sys.executable, str(script), "hello"], env=env, check=True)
    assert json.loads(report_path.read_text())["args"] == ["hello"]


def test_zipapp_found_after_a_huge_payload(tmp_path: Path) -> None:
    """Zip readers find the zipapp even past 4 GiB of payload (a sparse file here)."""
    script = tmp_path / "huge.sh"
    with open(script, "wb") as out:
        out.write(selfextract.render_stub("sh", sha256="0" * 64, length=5 << 30, zipapp_length=0))
        out.seek(5 << 30, os.SEEK_CUR)
        out.write(zipapp_path().read_bytes())
    result = subprocess.run(
        [sys.executable, "-I", str(script), "--version"],
        env={"SHIV_ROOT": str(tmp_path / "shiv")},
        capture_output=True,
        text=True,
        check=False,
    )
    assert (result.returncode, result.stdout.split()[0]) == (0, "pixi-pack"), result.stderr


# --- the PowerShell script -----------------------------------------------------------------------


def test_ps1_golden(tmp_path: Path) -> None:
    pyz = tmp_path / "tiny.pyz"
    pyz.write_bytes(b"PK not really a zipapp " * 5)
    script = write_file(tmp_path / "out", b"a tiny tar " * 20, pyz, form="ps1", name="environment.ps1")
    check_golden("environment.ps1", script.read_bytes())


def test_ps1_layout(fake_zipapp: Path, tmp_path: Path) -> None:
    script = write_file(tmp_path / "out", PAYLOAD, fake_zipapp, form="ps1", name="environment.ps1")
    data = script.read_bytes()
    data.decode("ascii")
    assert b"\n" not in data.replace(b"\r\n", b"")  # CRLF line ends only
    block = data.split(b"\r\nexit $status\r\n<#\r\n")[1]
    assert block.endswith(b"\r\n#>\r\n")
    lines = block[: -len(b"#>\r\n")].split(b"\r\n")[:-1]
    assert all(len(line) == 76 for line in lines[:-1]) and 0 < len(lines[-1]) <= 76
    assert b"#>" not in block[:-4]
    assert base64.b64decode(b"".join(lines)) == PAYLOAD + fake_zipapp.read_bytes()


def decode_ps1(script: Path, destination: Path) -> dict[str, str]:
    """What ``environment.ps1`` does before running Python, in Python: read its own numbers, then decode
    ``$PayloadBase64Length`` bytes of base64 from ``$PayloadOffset`` (white space ignored, as
    ``FromBase64Transform`` in ``IgnoreWhiteSpaces`` mode) in 1 MiB reads into ``destination``."""
    text = script.read_bytes().decode("ascii")
    values = dict(re.findall(r"^\$(Payload\w+) = '?([0-9a-f]+)'?\r$", text, flags=re.MULTILINE))
    assert set(values) == {"PayloadOffset", "PayloadBase64Length", "PayloadLength", "PayloadSha256"}
    left = int(values["PayloadBase64Length"])
    pending = b""
    with open(script, "rb") as source, open(destination, "wb") as out:
        source.seek(int(values["PayloadOffset"]))
        while left > 0:
            chunk = source.read(min(1 << 20, left))
            if not chunk:
                raise AssertionError("this file is truncated: download it again")
            left -= len(chunk)
            pending += re.sub(rb"[ \t\r\n]", b"", chunk)
            whole = len(pending) - len(pending) % 4
            out.write(base64.b64decode(pending[:whole], validate=True))
            pending = pending[whole:]
        assert pending == b"", "FlushFinalBlock would fail on a partial block"
    return values


def ps1_command(python: str, pyz: Path, values: dict[str, str], args: Sequence[str]) -> list[str]:
    """The command line the script runs: ``& $python.Exe -I $pyz unpack ... $pyz @args``."""
    return [
        python, "-I", str(pyz), "unpack", "--payload-offset", "0", "--payload-length", values["PayloadLength"],
        "--payload-sha256", values["PayloadSha256"], str(pyz), *args,
    ]  # fmt: skip


def test_ps1_decodes_to_a_runnable_pack(fake_zipapp: Path, tmp_path: Path) -> None:
    script = write_file(tmp_path / "out", PAYLOAD, fake_zipapp, form="ps1", name="environment.ps1")
    decoded = tmp_path / "environment.pyz"
    values = decode_ps1(script, decoded)
    assert decoded.read_bytes() == PAYLOAD + fake_zipapp.read_bytes()
    args = ["-o", "C:\\some dir", "-e", "env"]
    report = tmp_path / "report.json"
    command = ps1_command(sys.executable, decoded, values, args)
    subprocess.run(command, env={"FAKE_REPORT": str(report)}, check=True)
    data = json.loads(report.read_text())
    assert (data["payload_ok"], data["rest"], data["isolated"]) == (True, args, 1)


def test_writers_stream(tmp_path: Path) -> None:
    """Memory stays flat whatever the payload's size: both writers copy in chunks."""
    payload = tmp_path / "big.tar"
    with open(payload, "wb") as f:
        f.truncate(24 << 20)
    pyz = tmp_path / "x.pyz"
    pyz.write_bytes(b"zip" * 1000)
    forms: tuple[selfextract.Form, ...] = ("sh", "cmd", "ps1")
    for form in forms:
        sink = _CountingSink()
        tracemalloc.start()
        try:
            selfextract.write_executable(payload, pyz, sink, form=form)  # type: ignore[arg-type]
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 12 << 20, f"peak {peak} bytes writing {form}"
        assert sink.size > 24 << 20


class _CountingSink(io.RawIOBase):
    def __init__(self) -> None:
        super().__init__()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self.size += len(data)
        return len(data)


def check_golden(name: str, data: bytes) -> None:
    path = GOLDEN / name
    if UPDATE_GOLDEN:
        path.write_bytes(data)
    assert path.exists(), f"no golden file {path}: run with PIXI_PACK_UPDATE_GOLDEN=1"
    assert data == path.read_bytes(), f"{name} changed: check it, then run with PIXI_PACK_UPDATE_GOLDEN=1"


# --- finding the zipapp to embed ------------------------------------------------------------------


def _no_download(url: str, destination: Path) -> None:
    raise AssertionError(f"unexpected download of {url}")


def test_find_unpacker_outside_a_zipapp(tmp_path: Path) -> None:
    with pytest.raises(PixiPackError, match=r"pass --pixi-unpack-source dist/pixi-pack\.pyz"):
        unpacker.find_unpacker(None, _no_download, directory=tmp_path)


def test_find_unpacker_path(tmp_path: Path) -> None:
    zipapp = zipapp_path()
    assert unpacker.find_unpacker(str(zipapp), _no_download, directory=tmp_path) == zipapp


def test_find_unpacker_refuses(tmp_path: Path, fake_zipapp: Path) -> None:
    with pytest.raises(PixiPackError, match="no such file"):
        unpacker.find_unpacker(str(tmp_path / "missing.pyz"), _no_download, directory=tmp_path)
    with pytest.raises(PixiPackError, match=r"~no-such-user-pixi-pack/x\.pyz: no such file"):
        unpacker.find_unpacker("~no-such-user-pixi-pack/x.pyz", _no_download, directory=tmp_path)
    native = tmp_path / "pixi-unpack-x86_64-unknown-linux-musl"
    native.write_bytes(b"\x7fELF a native pixi-unpack")
    with pytest.raises(PixiPackError, match=r"not a pixi-pack zipapp \(\.pyz\)"):
        unpacker.find_unpacker(str(native), _no_download, directory=tmp_path)
    with pytest.raises(PixiPackError, match="a zip file, but not a pixi-pack zipapp"):
        unpacker.find_unpacker(str(fake_zipapp), _no_download, directory=tmp_path)


def test_find_unpacker_refuses_a_self_extracting_file(tmp_path: Path) -> None:
    script = write_file(tmp_path / "out", PAYLOAD * 4, zipapp_path())
    with pytest.raises(PixiPackError, match="is a self-extracting environment"):
        unpacker.find_unpacker(str(script), _no_download, directory=tmp_path)


def test_find_unpacker_url(tmp_path: Path) -> None:
    zipapp = zipapp_path()
    digest = hashlib.sha256(zipapp.read_bytes()).hexdigest()
    calls: list[str] = []

    def download(url: str, destination: Path) -> None:
        calls.append(url)
        shutil.copyfile(zipapp, destination)

    url = "https://mirror.example/pixi-pack/pixi-pack.pyz"
    found = unpacker.find_unpacker(f"{url}#sha256={digest.upper()}", download, directory=tmp_path)
    assert (found, calls) == (tmp_path / "pixi-pack.pyz", [url])
    with pytest.raises(IntegrityError, match=f"sha256 mismatch \\(expected {'0' * 64}\\)"):
        unpacker.find_unpacker(f"{url}#sha256={'0' * 64}", download, directory=tmp_path)
    with pytest.raises(PixiPackError, match="the only fragment understood is #sha256="):
        unpacker.find_unpacker(f"{url}#md5=abc", download, directory=tmp_path)
    (tmp_path / "own").mkdir()
    assert unpacker.find_unpacker(url, download, directory=tmp_path / "own").parent == tmp_path / "own"


def test_find_unpacker_over_http(http_server: HttpServer, tmp_path: Path) -> None:
    """The real downloader: mirrors, auth and retries of the pack stage apply to the unpacker too."""
    from pixi_pack.pack.fetch import Fetcher

    shutil.copyfile(zipapp_path(), http_server.root / "pixi-pack.pyz")
    http_server.require_auth("user", "secret")
    auth = http_server.root.parent / "auth.json"
    host = "127.0.0.1"
    auth.write_text(json.dumps({host: {"BasicHTTP": {"username": "user", "password": "secret"}}}))
    from pixi_pack.models import MirrorConfig

    fetcher = Fetcher(MirrorConfig(auth_file=auth))
    try:
        url = http_server.url_for("pixi-pack.pyz")
        found = unpacker.find_unpacker(url, fetcher.download_file, directory=tmp_path)
    finally:
        fetcher.close()
    assert found.read_bytes() == zipapp_path().read_bytes()
    assert http_server.requests[-1] == "/pixi-pack.pyz"


def test_running_zipapp_inside_the_zipapp(tmp_path: Path) -> None:
    zipapp = zipapp_path()
    code = "from pixi_pack.pack import unpacker; print(unpacker.find_unpacker(None, None, directory=None))"
    env = {"SHIV_ROOT": str(tmp_path / "shiv"), "SHIV_INTERPRETER": "1"}
    result = subprocess.run(
        [sys.executable, "-I", str(zipapp), "-c", code], env=env, capture_output=True, text=True, check=False
    )
    assert (result.returncode, result.stdout) == (0, f"{zipapp}\n"), result.stderr


# --- end to end: real packs, the real zipapp ------------------------------------------------------


@pytest.fixture(scope="module")
def packed(tmp_path_factory: pytest.TempPathFactory, channel: Channel) -> Path:
    """environment.sh of the default channel's packages, made by ``pixi-pack --create-executable``."""
    base = tmp_path_factory.mktemp("selfextract-pack")
    project = _project(base, channel.url, channel)
    out = base / "environment.sh"
    args = [str(project / "pixi.toml"), "-p", "linux-64", "--create-executable", "-o", str(out)]
    assert pack_main([*args, "--pixi-unpack-source", str(zipapp_path())]) == 0
    return out


def _project(base: Path, channel_url: str, channel: Channel) -> Path:
    project = base / "project"
    project.mkdir()
    (project / "pixi.toml").write_text("[workspace]\nname = 'demo'\n")
    packages = list(channel.packages.values())
    write_lock(
        project / "pixi.lock",
        {"default": {"linux-64": [conda(p, channel_url) for p in packages]}},
        [channel_url],
    )
    return project


def run_script(
    shell: Sequence[str],
    script: Path,
    args: Sequence[str],
    python: Path,
    tmp_path: Path,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """``env -i``: PATH holds only the chosen python (as python3) and the system tools."""
    folder = tmp_path / f"bin-{python.parent.parent.name}"
    folder.mkdir(exist_ok=True)
    if not (folder / "python3").exists():
        (folder / "python3").symlink_to(python)
    env = {"PATH": f"{folder}:{SYSTEM_PATH}", "TMPDIR": str(tmp_path), "HOME": str(tmp_path / "home")}
    return subprocess.run(
        [*shell, str(script), *args],
        env=env,
        cwd=cwd or tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )


def stub_number(script: Path, name: str) -> int:
    """``--payload-offset`` or ``--payload-length`` as the sh stub of ``script`` says."""
    with open(script, "rb") as f:
        match = re.search(rb"--payload-%s (\d+)" % name.encode(), f.read(4096))
    assert match is not None
    return int(match.group(1))


def check_unpacked(output: Path, env_name: str = "env") -> None:
    prefix = output / env_name
    hello = subprocess.run([str(prefix / "bin" / "hello")], capture_output=True, text=True, check=True)
    assert hello.stdout == f"{prefix}\n"
    assert (prefix / "share" / "hello-data" / "readme.txt").read_text() == "readme\n"
    assert (output / "activate.sh").is_file()


@pytest.mark.parametrize("python", INTERPRETERS)
def test_unpacks_with_every_python(packed: Path, python: Path, tmp_path: Path) -> None:
    """No zstandard outside the zipapp, a bare environment: the bundled build of each interpreter works."""
    output = tmp_path / "target dir"
    result = run_script(
        ["dash" if shutil.which("dash") else "sh"], packed, ["-o", str(output)], python, tmp_path
    )
    assert result.returncode == 0, result.stderr
    check_unpacked(output)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("pixi-unpack.")]  # SHIV_ROOT removed


@pytest.fixture(scope="module")
def packed_tar(tmp_path_factory: pytest.TempPathFactory, channel: Channel) -> Path:
    """The plain tar of the default channel's packages."""
    base = tmp_path_factory.mktemp("plain-pack")
    project = _project(base, channel.url, channel)
    out = base / "environment.tar"
    assert pack_main([str(project / "pixi.toml"), "-p", "linux-64", "-o", str(out)]) == 0
    return out


@pytest.mark.parametrize("python", INTERPRETERS)
def test_the_pyz_installs_in_worker_processes_with_every_python(
    packed_tar: Path, python: Path, tmp_path: Path
) -> None:
    """pixi-unpack.pyz forks its install workers (install/workers.py) under each interpreter."""
    pyz = tmp_path / "pixi-unpack.pyz"
    shutil.copyfile(zipapp_path(), pyz)
    output = tmp_path / "out"
    env = {"SHIV_ROOT": str(tmp_path / "shiv-root"), "LC_ALL": "C.UTF-8", "PATH": SYSTEM_PATH}
    command = [str(python), "-I", "-W", "error", str(pyz), str(packed_tar), "-o", str(output), "-v"]
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert re.search(r"writing \d+ packages in \d+ worker processes", result.stderr), result.stderr
    check_unpacked(output)


@pytest.mark.parametrize("shell", SHELLS)
def test_unpacks_from_every_shell(packed: Path, shell: list[str], tmp_path: Path) -> None:
    folder = tmp_path / "a path with spaces"
    folder.mkdir()
    script = folder / "my environment.sh"
    shutil.copy2(packed, script)
    result = run_script(shell, script, ["-e", "my env"], interpreters()[0][1], tmp_path, cwd=folder)
    assert result.returncode == 0, result.stderr
    check_unpacked(folder, "my env")


def test_help_passes_through(packed: Path, tmp_path: Path) -> None:
    result = run_script(["sh"], packed, ["--help"], Path(sys.executable), tmp_path)
    assert result.returncode == 0, result.stderr
    assert "--output-directory" in result.stdout and "--env-name" in result.stdout
    assert not (tmp_path / "env").exists()


def test_unpacker_errors_are_the_exit_status(packed: Path, tmp_path: Path) -> None:
    (tmp_path / "env").mkdir()
    (tmp_path / "env" / "keep").write_text("mine")
    result = run_script(["sh"], packed, ["-o", str(tmp_path)], Path(sys.executable), tmp_path)
    assert result.returncode == 1
    assert result.stderr.startswith("error: environment folder")
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("where", ["metadata", "package"])
def test_damaged_payload_writes_nothing(packed: Path, where: str, tmp_path: Path) -> None:
    """The payload is hashed while the environment is built: a mismatch leaves no environment, no
    activation script and no temporary folder, whether or not extracting the damaged bytes failed."""
    data = bytearray(packed.read_bytes())
    offset, length = stub_number(packed, "offset"), stub_number(packed, "length")
    if where == "package":
        with tarfile.open(fileobj=io.BytesIO(data[offset : offset + length])) as tar:
            member = tar.getmember("channel/linux-64/hello-1.2.3-h0_0.conda")
        data[offset + member.offset_data + member.size // 2] ^= 0x01
    else:
        data[offset + 700] ^= 0x01
    damaged = tmp_path / "damaged.sh"
    damaged.write_bytes(bytes(data))
    output = tmp_path / "output"
    result = run_script(["sh"], damaged, ["-o", str(output)], Path(sys.executable), tmp_path)
    assert result.returncode == 1
    assert "sha256" in result.stderr and "download it again" in result.stderr
    assert not output.exists() or not any(output.iterdir())


def test_ps1_with_the_real_zipapp(packed: Path, tmp_path: Path) -> None:
    """The .ps1 layout around a real pack: decoded like PowerShell does, run like it runs it."""
    offset, length = stub_number(packed, "offset"), stub_number(packed, "length")
    tar = tmp_path / "environment.tar"
    tar.write_bytes(packed.read_bytes()[offset : offset + length])
    script = tmp_path / "environment.ps1"
    with open(script, "wb") as out:
        selfextract.write_executable(tar, zipapp_path(), out, form="ps1")
    decoded = tmp_path / "decoded" / "environment.pyz"
    decoded.parent.mkdir()
    values = decode_ps1(script, decoded)
    output = tmp_path / "out"
    env = {"SHIV_ROOT": str(tmp_path / "shiv"), "PATH": SYSTEM_PATH}
    result = subprocess.run(
        ps1_command(sys.executable, decoded, values, ["-o", str(output)]),
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    check_unpacked(output)


def test_path_and_url_sources_make_identical_files(
    tmp_path: Path, channel: Channel, http_server: HttpServer
) -> None:
    project = _project(tmp_path, channel.url, channel)
    shutil.copyfile(zipapp_path(), http_server.root / "pixi-pack.pyz")
    outputs: list[bytes] = []
    for source in (str(zipapp_path()), http_server.url_for("pixi-pack.pyz")):
        out = tmp_path / f"environment-{len(outputs)}.sh"
        args = [str(project / "pixi.toml"), "-p", "linux-64", "--create-executable", "-o", str(out)]
        assert pack_main([*args, "--pixi-unpack-source", source]) == 0
        outputs.append(out.read_bytes())
    assert outputs[0] == outputs[1]
    assert os.access(tmp_path / "environment-0.sh", os.X_OK)


def test_python_runs_the_file_as_the_stub_does(packed: Path, tmp_path: Path) -> None:
    """``python3 environment.sh -o DIR`` unpacks what the file carries, like ``sh environment.sh -o DIR``."""
    output = tmp_path / "opt" / "app"
    result = run_script([sys.executable], packed, ["-o", str(output)], Path(sys.executable), tmp_path)
    assert result.returncode == 0, result.stderr
    check_unpacked(output)


def test_python_without_flags_unpacks_here(packed: Path, tmp_path: Path) -> None:
    folder = tmp_path / "here"
    folder.mkdir()
    result = run_script([sys.executable], packed, [], Path(sys.executable), tmp_path, cwd=folder)
    assert result.returncode == 0, result.stderr
    check_unpacked(folder)


def test_python_help_is_pixi_unpacks(packed: Path, tmp_path: Path) -> None:
    result = run_script([sys.executable], packed, ["--help"], Path(sys.executable), tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: {packed.name} ")
    assert "--env-name" in result.stdout and "--payload-offset" not in result.stdout


def test_the_stub_states_where_its_pack_is(packed: Path, tmp_path: Path) -> None:
    args = stub_payload_args(packed)
    assert args is not None
    assert args[1] == str(stub_number(packed, "offset")) and args[3] == str(stub_number(packed, "length"))
    assert stub_payload_args(zipapp_path()) is None  # a plain pyz carries no pack
    assert stub_payload_args(tmp_path / "missing.sh") is None
    forged = tmp_path / "forged.sh"
    forged.write_bytes(
        b"#!/bin/sh\n# something else\n--payload-offset 1 --payload-length 2 --payload-sha256 " + b"0" * 64
    )
    assert stub_payload_args(forged) is None
