"""Reading and installing packages in forked worker processes, so that an install of many small files
uses every core.

Threads share one GIL. Two threads that each write thousands of small files hand it to each other at
every ``open``, ``write`` and ``close``, and the hand-offs cost more than the writes: on 100,000 files of
2 KiB, two install threads took longer than one (benchmarks/README.md). Processes do not share it. On
Linux, :func:`run_in_processes` forks the workers twice: to read every package's ``info/``, and, once
the plan is made, to install them. Each worker inherits what the parent holds (the plan, to install;
nothing is serialised that way), takes the packages it is handed one at a time, and reports each one
done, with its result as JSON (a package it read), or its error, through a
pipe. The parent hands out the packages in order (costliest first), one more to a worker each time it
reports, and calls ``done`` as they finish. Any failure, a worker's or the parent's (Ctrl-C included),
kills the other workers and waits for them before the error is raised, so nothing writes into the
build folder after that.

Only the command line asks for processes (``processes=True`` of
:func:`~pixi_pack.install.link.install_packages`): a program that calls the library gets threads.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import signal
import struct
import sys
import threading
import traceback
from collections.abc import Callable, Sequence
from typing import TypeVar

from pixi_pack import errors
from pixi_pack.errors import InstallError, PixiPackError

T = TypeVar("T")
R = TypeVar("R")

_INDEX = struct.Struct("<i")
_STOP = -1


def can_fork() -> bool:
    """Forking is safe here: Linux, and no other thread is running that a child could inherit mid-work."""
    return sys.platform.startswith("linux") and hasattr(os, "fork") and threading.active_count() == 1


def run_in_processes(
    items: Sequence[T],
    task: Callable[[T], R],
    done: Callable[[T], None] | None,
    workers: int,
    explain: Callable[[BaseException, T], BaseException],
) -> list[R]:
    """``task(item)`` for every item, in up to ``workers`` forked processes; returns the results in
    order, or raises the first failure.

    A result crosses the pipe as JSON, so it must be made of JSON's types (it comes back as JSON reads
    them: tuples as lists). ``explain`` turns a worker's exception into the error to raise (it runs in
    the worker, and the error's type and message cross the pipe); an error that is not a
    :class:`PixiPackError` is a bug, raised as :class:`InstallError` with the worker's traceback.
    """
    pending = list(range(len(items)))
    pending.reverse()
    found: list[R | None] = [None] * len(items)
    children: dict[int, tuple[int, int]] = {}
    selector = selectors.DefaultSelector()
    try:
        for _ in range(min(workers, len(items))):
            pid, tasks, results = _start(items, task, explain)
            children[pid] = (tasks, results)
            selector.register(results, selectors.EVENT_READ, pid)
            _hand_out(tasks, pending)
        # Each worker's bytes since its last complete message (a big result comes in many reads).
        partial: dict[int, list[bytes]] = {pid: [] for pid in children}
        while children:
            for key, _ in selector.select():
                pid = key.data
                tasks, results = children[pid]
                chunk = os.read(results, 1 << 16)
                if not chunk:
                    _reap(pid, children, selector)
                    continue
                if b"\n" not in chunk:
                    partial[pid].append(chunk)
                    continue
                *lines, rest = b"".join([*partial[pid], chunk]).split(b"\n")
                partial[pid] = [rest] if rest else []
                for line in lines:
                    message = json.loads(line)
                    if "error" in message:
                        raise _rebuild(message)
                    found[message["done"]] = message.get("result")
                    if done is not None:
                        done(items[message["done"]])
                    _hand_out(tasks, pending)
        return found  # type: ignore[return-value]  # every item reported done
    finally:
        for pid, (tasks, results) in children.items():
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            os.close(tasks)
            os.close(results)
        selector.close()


def _start(
    items: Sequence[T], task: Callable[[T], object], explain: Callable[[BaseException, T], BaseException]
) -> tuple[int, int, int]:
    """Fork one worker; returns its pid and the parent's ends of its task and result pipes."""
    task_read, task_write = os.pipe()
    result_read, result_write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the worker: nothing below may return into the parent's code
        status = 1
        try:
            os.close(task_write)
            os.close(result_read)
            _work(items, task, explain, task_read, result_write)
            status = 0
        finally:
            os._exit(status)
    os.close(task_read)
    os.close(result_write)
    return pid, task_write, result_read


def _work(
    items: Sequence[T],
    task: Callable[[T], object],
    explain: Callable[[BaseException, T], BaseException],
    tasks: int,
    results: int,
) -> None:
    # Ctrl-C reaches the whole process group: the parent stops the workers, they need not react.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    while True:
        data = _read_exactly(tasks, _INDEX.size)
        index = _INDEX.unpack(data)[0] if data else _STOP
        if index == _STOP:
            return
        try:
            result = task(items[index])
        except BaseException as exc:  # reported to the parent, which raises it
            error = explain(exc, items[index])
            message: dict[str, object] = {"error": type(error).__name__, "message": str(error)}
            if not isinstance(error, PixiPackError):
                message["traceback"] = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
            _send(results, message)
            return
        _send(results, {"done": index} if result is None else {"done": index, "result": result})


def _hand_out(tasks: int, pending: list[int]) -> None:
    """The next package to a worker that has just reported, or the signal to stop."""
    index = pending.pop() if pending else _STOP
    # A worker that died cannot be written to: its closed result pipe tells, and how it died.
    with contextlib.suppress(BrokenPipeError):
        os.write(tasks, _INDEX.pack(index))


def _send(results: int, message: dict[str, object]) -> None:
    data = json.dumps(message).encode() + b"\n"
    while data:
        data = data[os.write(results, data) :]


def _read_exactly(fd: int, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = os.read(fd, size - len(data))
        if not chunk:
            return b""
        data += chunk
    return data


def _reap(pid: int, children: dict[int, tuple[int, int]], selector: selectors.BaseSelector) -> None:
    """A worker closed its pipe: it stopped as told, or died."""
    tasks, results = children.pop(pid)
    selector.unregister(results)
    os.close(tasks)
    os.close(results)
    _, status = os.waitpid(pid, 0)
    if status != 0:
        code = os.waitstatus_to_exitcode(status)
        how = f"was killed by signal {-code}" if code < 0 else f"exited with status {code}"
        msg = f"an install worker process {how}; run pixi-unpack again, and report it if it happens again"
        raise InstallError(msg)


def _rebuild(message: dict[str, str]) -> BaseException:
    """The worker's error: the same pixi-pack error class (or the nearest one made from a message alone),
    or, for a bug, a RuntimeError carrying the worker's traceback."""
    kind = getattr(errors, message["error"], None)
    if isinstance(kind, type) and issubclass(kind, PixiPackError):
        for cls in kind.__mro__:
            if issubclass(cls, PixiPackError):
                try:
                    return cls(message["message"])
                except TypeError:
                    continue
    return RuntimeError(f"an install worker failed:\n{message.get('traceback', message['message'])}")
