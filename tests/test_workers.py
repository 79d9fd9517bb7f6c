"""Forked install workers (install/workers.py): the same install as threads and rattler, errors carried
across the pipe with their class, a dead worker named, and no worker left behind whatever happens."""

from __future__ import annotations

import json
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from builders import BuiltPackage, Symlink, build_package, executable
from conftest import default_packages
from test_link import PLATFORM, assert_same_install, built, rattler_install

import pixi_pack.install.link as link
from pixi_pack.errors import ArchiveError, InstallError, IntegrityError, MissingMemberError
from pixi_pack.formats.package_info import from_planned_fields
from pixi_pack.install.link import install_packages
from pixi_pack.install.workers import can_fork, run_in_processes

pytestmark = pytest.mark.skipif(not can_fork(), reason="forked workers run on Linux only")


@pytest.fixture
def forks(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """Counts the phases that went through forked workers, reading and writing (so a test cannot pass
    on threads)."""
    calls: list[int] = []

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return run_in_processes(*args, **kwargs)

    monkeypatch.setattr(link, "run_in_processes", counted)
    yield calls
    assert _no_children_left()


def _no_children_left() -> bool:
    try:
        os.waitpid(-1, os.WNOHANG)
    except ChildProcessError:
        return True
    return False


def _packages(out: Path, python_channel: Any) -> list[BuiltPackage]:
    return [
        *python_channel.packages.values(),
        *default_packages(out),
        build_package(
            out, "top", files={"share/x.txt": "top\n", "bin/tool": executable("top")}, depends=["mid"]
        ),
        build_package(out, "mid", files={"share/x.txt": "mid\n", "lib/y": Symlink("z")}, depends=["base"]),
        build_package(out, "base", files={"share/x.txt": "base\n", "lib/y": "base y", "lib/z": "z"}),
    ]


@pytest.mark.parametrize("kept", [10_000, 0], ids=["entries-sent-back", "entries-read-again"])
def test_forked_workers_install_what_rattler_installs(
    tmp_path: Path, python_channel: Any, forks: list[int], monkeypatch: pytest.MonkeyPatch, kept: int
) -> None:
    """Read in worker processes, a package comes back with its entries (within the budget's share) or
    without (read again by the worker that installs it): the same environment either way."""
    monkeypatch.setattr(link, "KEPT_ENTRIES", kept)
    released: list[bool] = []

    def received(*args: Any) -> Any:
        package = from_planned_fields(*args)
        released.append(package.released)
        return package

    monkeypatch.setattr(link, "from_planned_fields", received)
    packages = _packages(tmp_path / "build", python_channel)
    theirs = tmp_path / "rattler" / "env"
    rattler_install([p.path for p in packages], theirs, tmp_path / "cache")
    ours = tmp_path / "ours" / "env"
    done: list[str] = []
    install_packages(
        built(packages),
        ours,
        theirs,
        PLATFORM,
        processes=True,
        on_installed=lambda s: done.append(s.file_name),
    )
    assert forks == [1, 1]  # reading, then writing
    # The python package alone holds more entries than a reader's share of 5,000.
    if kept:
        assert not any(released)
    else:  # all but the one package that lists no path (its zero entries fit in any budget)
        assert released.count(False) == 1
    assert sorted(done) == sorted(p.file_name for p in packages)
    assert_same_install(ours, theirs, ordered_paths=False)


def test_a_package_error_in_a_worker_is_raised_with_its_class_and_nothing_is_left(
    tmp_path: Path, forks: list[int]
) -> None:
    out = tmp_path / "build"
    good = [build_package(out, f"ok{i}", files={f"share/ok{i}": "x"}) for i in range(4)]
    bad = build_package(
        out,
        "bad",
        files={"share/bad": "x"},
        extra_info={"paths.json": '{"paths": [{"_path": "share/gone"}]}'},
    )
    env = tmp_path / "env"
    with pytest.raises(ArchiveError, match="lists share/gone but the archive does not hold it"):
        install_packages(built([*good, bad]), env, env, PLATFORM, processes=True)
    assert forks == [1, 1]
    assert not env.exists()


def test_threads_are_used_when_another_thread_runs(tmp_path: Path, forks: list[int]) -> None:
    """Forking while another thread works could copy a lock it holds into the child: threads then."""
    out = tmp_path / "build"
    packages = [build_package(out, f"p{i}", files={f"share/p{i}": "x"}) for i in range(3)]
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        assert not can_fork()
        install_packages(built(packages), tmp_path / "env", tmp_path / "env", PLATFORM, processes=True)
    finally:
        stop.set()
        other.join()
    assert forks == []
    assert sorted(p.name for p in (tmp_path / "env" / "share").iterdir()) == ["p0", "p1", "p2"]


def _write(folder: Path, item: str) -> None:
    (folder / item).write_text(f"{item} by {os.getpid()}")


def test_every_item_is_done_once_by_a_worker_and_reported_in_the_parent(tmp_path: Path) -> None:
    items = [f"i{n}" for n in range(25)]
    reported: list[str] = []
    run_in_processes(items, lambda item: _write(tmp_path, item), reported.append, 2, lambda e, _: e)
    assert sorted(reported) == sorted(items)
    writers = {p.read_text().split(" by ")[1] for p in tmp_path.iterdir()}
    assert len(writers) == 2 and str(os.getpid()) not in writers
    assert _no_children_left()


def test_results_come_back_in_order_however_big() -> None:
    """A result crosses the pipe as JSON, in as many reads as it takes (the pipe moves 64 KiB at a time)."""
    items = [f"i{n}" for n in range(12)]
    sizes = [0, 1, 65_535, 65_536, 300_000, 2_000_000] * 2

    def task(item: str) -> tuple[str, str, int]:
        return item, "x\n\0" * sizes[items.index(item)], os.getpid()

    results = run_in_processes(items, task, None, 2, lambda e, _: e)
    assert [r[0] for r in results] == items
    assert [len(r[1]) for r in results] == [3 * n for n in sizes]
    assert len({r[2] for r in results}) == 2
    assert run_in_processes(items, lambda item: None, None, 2, lambda e, _: e) == [None] * len(items)
    assert _no_children_left()


def test_a_package_that_fails_its_check_while_read_stops_everything(tmp_path: Path, forks: list[int]) -> None:
    """The packages are read (and verified) by worker processes too: a failure there is raised with
    its class before any worker writes."""
    out = tmp_path / "build"
    packages = built([build_package(out, f"ok{i}", files={f"share/ok{i}": "x"}) for i in range(4)])

    def verify(source: Any) -> None:
        if source.file_name.startswith("ok2"):
            raise IntegrityError(f"{source.file_name} does not match its sha256")

    env = tmp_path / "env"
    with pytest.raises(IntegrityError, match=r"ok2-.* does not match its sha256"):
        install_packages(packages, env, env, PLATFORM, processes=True, verify=verify)
    assert forks == [1]
    assert not env.exists()


def test_a_dead_worker_is_named_with_its_signal(tmp_path: Path) -> None:
    def die(item: str) -> None:
        if item == "b":
            os.kill(os.getpid(), signal.SIGKILL)
        _write(tmp_path, item)

    with pytest.raises(InstallError, match="install worker process was killed by signal 9"):
        run_in_processes(["a", "b", "c", "d"], die, None, 2, lambda e, _: e)
    assert _no_children_left()


def test_a_bug_in_a_worker_keeps_its_traceback() -> None:
    def broken(item: str) -> None:
        raise ZeroDivisionError(item)

    with pytest.raises(RuntimeError, match=r"(?s)an install worker failed:.*Traceback.*ZeroDivisionError: x"):
        run_in_processes(["x"], broken, None, 2, lambda e, _: e)
    assert _no_children_left()


def test_an_error_class_that_needs_more_than_a_message_comes_back_as_its_base() -> None:
    def missing(item: str) -> None:
        raise MissingMemberError(f"{item} has no info/index.json", member="info/index.json")

    with pytest.raises(ArchiveError, match=r"p has no info/index\.json"):
        run_in_processes(["p"], missing, None, 2, lambda e, _: e)


def test_ctrl_c_in_the_parent_stops_every_worker(tmp_path: Path) -> None:
    """The parent's own failure (here Ctrl-C while it reports progress) kills and reaps the workers."""
    started = tmp_path / "started"

    def slow(item: str) -> None:
        started.write_text(item)
        threading.Event().wait(30)

    def interrupted(item: str) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_in_processes(
            ["fast", "slow", "slower"],
            lambda i: None if i == "fast" else slow(i),
            interrupted,
            2,
            lambda e, _: e,
        )
    assert _no_children_left()


def test_workers_ignore_ctrl_c_and_leave_it_to_the_parent(tmp_path: Path) -> None:
    """SIGINT reaches the whole process group; a worker keeps going until its parent stops it."""
    marker = tmp_path / "done"

    def interrupt_self(item: str) -> None:
        os.kill(os.getpid(), signal.SIGINT)
        marker.write_text(json.dumps(item))

    run_in_processes(["a"], interrupt_self, None, 2, lambda e, _: e)
    assert json.loads(marker.read_text()) == "a"
