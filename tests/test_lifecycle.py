"""What a run makes and leaves: temporary names that cannot be hijacked, modes, leftovers of killed runs,
output folders that are not ours, and SIGTERM."""

from __future__ import annotations

import http.server
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Channel
from lockfiles import conda, write_lock

from pixi_pack.cli import pack_main, unpack_main
from pixi_pack.platforms import current_subdir

pytestmark = pytest.mark.skipif(current_subdir() != "linux-64", reason="end-to-end tests run on linux-64")


def _project(tmp_path: Path, channel_url: str, channel: Channel) -> Path:
    project = tmp_path / "project"
    write_lock(
        project / "pixi.lock",
        {"default": {"linux-64": [conda(p, channel_url) for p in channel.packages.values()]}},
        [channel_url],
    )
    return project


@pytest.fixture
def packed(tmp_path: Path, served_channel: str, channel: Channel) -> Path:
    out = tmp_path / "packs" / "environment.tar"
    assert (
        pack_main([str(_project(tmp_path, served_channel, channel)), "-p", "linux-64", "-o", str(out)]) == 0
    )
    return out


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


@pytest.fixture
def umask_022() -> Iterator[None]:
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def test_pack_output_has_a_new_files_mode_and_no_leftovers(
    tmp_path: Path, served_channel: str, channel: Channel, umask_022: None
) -> None:
    project = _project(tmp_path, served_channel, channel)
    out = tmp_path / "out"
    out.mkdir()
    dead = _dead_pid()
    stale_part = out / f".environment.tar-{dead}-abcdef12.part"
    stale_part.write_bytes(b"x" * 100)
    stale_work = out / f".pixi-pack-{dead}-abcdef12"
    (stale_work / "pack").mkdir(parents=True)
    alive = out / ".environment.tar-1-abcdef12.part"  # pid 1 exists: not ours to remove
    alive.write_bytes(b"x")
    assert pack_main([str(project), "-p", "linux-64", "-o", str(out / "environment.tar")]) == 0
    assert (out / "environment.tar").stat().st_mode & 0o777 == 0o644
    assert sorted(p.name for p in out.iterdir()) == sorted(["environment.tar", alive.name])


def test_pack_never_writes_through_a_planted_symlink(
    tmp_path: Path, served_channel: str, channel: Channel
) -> None:
    project = _project(tmp_path, served_channel, channel)
    out = tmp_path / "out"
    out.mkdir()
    victim = tmp_path / "victim"
    victim.write_text("precious")
    # The names earlier versions used, and plausible guesses at the new ones.
    for output in ("environment.tar", "environment.sh"):
        for name in (f".{output}.{os.getpid()}.part", f".{output}-{os.getpid()}-aaaaaaaa.part"):
            (out / name).symlink_to(victim)
    for output, executable in (
        ("environment.tar", []),
        ("environment.sh", ["--create-executable", "--pixi-unpack-source", str(_fake_pyz(tmp_path))]),
    ):
        assert pack_main([str(project), "-p", "linux-64", "-o", str(out / output), *executable]) == 0
    assert victim.read_text() == "precious"


def _fake_pyz(tmp_path: Path) -> Path:
    """A zip that passes the zipapp check; never run here."""
    import zipfile

    pyz = tmp_path / "fake.pyz"
    with zipfile.ZipFile(pyz, "w") as archive:
        archive.writestr("__main__.py", "")
        archive.writestr("site-packages/pixi_pack/cli.py", "")
    return pyz


def test_unpacked_environment_is_shared_by_mode_and_stale_builds_are_removed(
    tmp_path: Path, packed: Path, umask_022: None
) -> None:
    out = tmp_path / "opt"
    out.mkdir()
    stale = out / f".env-{_dead_pid()}-abcdef12.partial"
    (stale / "lib").mkdir(parents=True)
    victim = tmp_path / "victim"
    victim.write_text("precious")
    (out / ".activate.sh.tmp").symlink_to(victim)
    assert unpack_main([str(packed), "-o", str(out)]) == 0
    assert (out / "env").stat().st_mode & 0o777 == 0o755
    assert (out / "activate.sh").stat().st_mode & 0o777 == 0o644
    assert not stale.exists()
    assert victim.read_text() == "precious"
    assert sorted(p.name for p in out.iterdir()) == [".activate.sh.tmp", "activate.sh", "env"]


def test_env_that_is_a_symlink_is_refused(
    tmp_path: Path, packed: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (out / "env").symlink_to(elsewhere)
    assert unpack_main([str(packed), "-o", str(out)]) == 1
    assert f"environment folder {out / 'env'} already exists" in capsys.readouterr().err
    assert list(elsewhere.iterdir()) == []


def test_failed_unpack_removes_the_folders_it_created(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.tar"
    bad.write_bytes(b"not a tar" * 100)
    out = tmp_path / "a" / "b" / "c"
    assert unpack_main([str(bad), "-o", str(out)]) == 1
    assert "error:" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == [bad]


def test_a_folder_we_may_not_write_is_our_error_on_both_sides(
    tmp_path: Path,
    packed: Path,
    served_channel: str,
    channel: Channel,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A read-only filesystem (EROFS) where the temporary folder or file would go: one error line."""
    import errno
    import tempfile

    def read_only(*args: object, dir: str | None = None, **kwargs: object) -> str:
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), dir)

    project = _project(tmp_path, served_channel, channel)
    out = tmp_path / "ro"
    out.mkdir()
    monkeypatch.setattr(tempfile, "mkdtemp", read_only)
    assert pack_main([str(project), "-p", "linux-64", "-o", str(out / "e.tar")]) == 1
    assert capsys.readouterr().err == f"error: could not write to {out}: Read-only file system\n"
    assert unpack_main([str(packed), "-o", str(out)]) == 1
    assert capsys.readouterr().err == f"error: could not unpack into {out}: Read-only file system\n"
    monkeypatch.undo()
    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    assert pack_main([str(project), "-p", "linux-64", "-o", str(out / "e.tar")]) == 1
    assert f"error: could not write {out / 'e.tar'}: Read-only file system\n" in capsys.readouterr().err
    assert list(out.iterdir()) == []


def _slow_server(root: Path) -> http.server.ThreadingHTTPServer:
    """Serves the files under ``root`` (URL path ``/channel/...``), one byte per 50 ms."""

    class Slow(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            data = (root / self.path.removeprefix("/channel/")).read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            try:
                for i in range(len(data)):
                    self.wfile.write(data[i : i + 1])
                    self.wfile.flush()
                    time.sleep(0.05)
            except OSError:
                pass

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Slow)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_and_ctrl_c_during_pack_remove_what_the_run_made(
    tmp_path: Path, channel: Channel, sig: signal.Signals
) -> None:
    server = _slow_server(channel.root)
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/channel"
        project = _project(tmp_path, url, channel)
        out = tmp_path / "out"
        out.mkdir()
        process = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "pixi-pack"),
                str(project),
                "-p",
                "linux-64",
                "-o",
                str(out / "e.tar"),
            ],
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 30
        while not any(out.iterdir()) and time.monotonic() < deadline:  # the run has started writing
            time.sleep(0.05)
        time.sleep(0.3)
        process.send_signal(sig)
        _, err = process.communicate(timeout=10)  # in-flight downloads are cancelled, not waited for
    finally:
        server.shutdown()
        server.server_close()
    assert process.returncode == (143 if sig == signal.SIGTERM else 130), err
    assert ("error: terminated" if sig == signal.SIGTERM else "error: interrupted") in err
    assert list(out.iterdir()) == []
