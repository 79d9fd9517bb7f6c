"""Progress people can read: a live line on a terminal, a few plain lines in a log, -q and -v."""

from __future__ import annotations

import io
import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import Channel
from lockfiles import conda, write_lock

from pixi_pack import cli
from pixi_pack.progress import Snapshot

ROOT = Path(__file__).resolve().parents[1]


def _snapshot(
    items: int, done: int, *, final: bool = False, current: str | None = "numpy-2.1.3-0"
) -> Snapshot:
    return Snapshot("downloaded", items, 10, done, 1000, 2.0, current, final)


def _handler(live: bool) -> tuple[cli._StderrHandler, io.StringIO]:
    stream = io.StringIO()
    handler = cli._StderrHandler(stream, live=live)
    handler.setFormatter(cli._Formatter("%(message)s"))
    return handler, stream


def _emit(handler: cli._StderrHandler, snapshot: Snapshot | None, message: str = "") -> None:
    import logging

    record = logging.LogRecord("pixi_pack", logging.INFO, "", 0, message, None, None)
    if snapshot is not None:
        record.progress = snapshot
    handler.emit(record)


def test_a_terminal_gets_one_live_line_redrawn_in_place() -> None:
    handler, stream = _handler(live=True)
    _emit(handler, _snapshot(1, 100))
    _emit(handler, _snapshot(2, 500))
    _emit(handler, None, "a message in between")
    _emit(handler, _snapshot(10, 1000, final=True))
    out = stream.getvalue()
    assert out.startswith(
        "\r\x1b[Kdownloaded 1/10 packages, 100 B of 1000 B, 50 B/s, 18 s left (numpy-2.1.3-0)"
    )
    assert "\r\x1b[Kdownloaded 2/10 packages, 500 B of 1000 B, 250 B/s, 2 s left (numpy-2.1.3-0)" in out
    # A message moves the live line out of its way and draws it again below.
    assert "\r\x1b[Ka message in between\ndownloaded 2/10 packages" in out
    assert out.endswith("\r\x1b[Kdownloaded 10/10 packages, 1000 B of 1000 B in 2.0 s\n")


def test_a_log_gets_a_plain_line_every_tenth() -> None:
    handler, stream = _handler(live=False)
    for done in range(0, 1001, 25):  # 40 snapshots
        _emit(handler, _snapshot(done // 100, done))
    _emit(handler, _snapshot(10, 1000, final=True))
    lines = stream.getvalue().splitlines()
    assert "\r" not in stream.getvalue()
    assert 9 <= len(lines) <= 12
    assert lines[-1] == "downloaded 10/10 packages, 1000 B of 1000 B in 2.0 s"


def test_a_slow_phase_in_a_log_still_reports_every_five_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [100.0]
    monkeypatch.setattr("pixi_pack.cli.time.monotonic", lambda: clock[0])
    handler, stream = _handler(live=False)
    _emit(handler, _snapshot(0, 1))
    clock[0] += 1
    _emit(handler, _snapshot(0, 2))
    assert stream.getvalue() == ""
    clock[0] += 5
    _emit(handler, _snapshot(0, 3))
    assert stream.getvalue() == "downloaded 0/10 packages, 3 B of 1000 B\n"


def _project(tmp_path: Path, served_channel: str, channel: Channel) -> Path:
    project = tmp_path / "project"
    write_lock(
        project / "pixi.lock",
        {"default": {"linux-64": [conda(p, served_channel) for p in channel.packages.values()]}},
        [served_channel],
    )
    return project


def _pack(project: Path, out: Path, *flags: str, terminal: bool = False) -> str:
    command = [
        sys.executable,
        "-m",
        "pixi_pack",
        "pack",
        str(project),
        "-p",
        "linux-64",
        "-o",
        str(out),
        *flags,
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TERM": "xterm"}
    if not terminal:
        result = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
        return result.stderr
    primary, secondary = pty.openpty()
    try:
        process = subprocess.Popen(command, stderr=secondary, stdout=subprocess.DEVNULL, env=env)
        os.close(secondary)
        output = b""
        while True:
            try:
                chunk = os.read(primary, 4096)
            except OSError:
                break
            if not chunk:
                break
            output += chunk
        assert process.wait() == 0
    finally:
        os.close(primary)
    return output.decode()


def test_on_a_real_terminal_and_in_a_pipe(tmp_path: Path, served_channel: str, channel: Channel) -> None:
    project = _project(tmp_path, served_channel, channel)
    on_terminal = _pack(project, tmp_path / "a.tar", terminal=True)
    assert "\r\x1b[Kdownloaded 3/3 packages" in on_terminal
    in_pipe = _pack(project, tmp_path / "b.tar")
    assert "\r" not in in_pipe and "\x1b" not in in_pipe
    assert "downloaded 3/3 packages, 2.3 KiB of 2.3 KiB in " in in_pipe


def test_quiet_shows_errors_only_and_verbose_a_line_per_package(
    tmp_path: Path, served_channel: str, channel: Channel
) -> None:
    project = _project(tmp_path, served_channel, channel)
    assert _pack(project, tmp_path / "q.tar", "-q") == ""
    verbose = _pack(project, tmp_path / "v.tar", "-v")
    for package in channel.packages.values():
        assert f"downloaded {package.name}-{package.record['version']}-{package.record['build']}\n" in verbose
    failed = subprocess.run(
        [sys.executable, "-m", "pixi_pack", "pack", str(tmp_path / "nowhere"), "-q"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=False,
    )
    assert failed.returncode == 1 and failed.stderr.startswith("error: ")
