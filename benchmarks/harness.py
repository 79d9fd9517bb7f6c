"""What every benchmark shares: running and timing a command, interleaving subject and reference runs,
the table's rows, and a quiet HTTP server on 127.0.0.1.

Each timed process is started through ``measure.py``, which reports the command's own ``wait4`` figures
(wall time, CPU time of all its threads and waited-for children, peak RSS).
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import corpus

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
WORK = corpus.CACHE / "work"
TMPFS = Path("/dev/shm/pixi-pack-bench")
"""Where the unpack benchmarks also write, to take the disk (and its noise) out of the comparison."""
BIN = Path(sys.executable).parent


class BenchError(Exception):
    """A benchmarked command failed."""


@dataclass(frozen=True)
class Sample:
    seconds: float
    """Wall time."""
    cpu_seconds: float
    """User + system CPU time of the process (all its threads and waited-for children)."""
    max_rss_mb: float | None = None
    """Peak resident set size of the process (and its waited-for children), for subprocess runs."""


@dataclass
class Row:
    """One line of the table and its entry in results.json."""

    benchmark: str
    subject: str
    reference: str
    result: str
    target: str
    ok: bool | None
    """None: not measured, or no target."""
    data: dict[str, Any] = field(default_factory=dict)
    cpu: str = "-"
    """CPU time ratio (user + system, all threads), less sensitive to a busy machine than wall time."""

    @property
    def status(self) -> str:
        return {True: "ok", False: "MISSED", None: "-"}[self.ok]


def median(samples: Sequence[Sample]) -> float:
    return statistics.median(s.seconds for s in samples)


def median_cpu(samples: Sequence[Sample]) -> float:
    return statistics.median(s.cpu_seconds for s in samples)


def peak_rss(samples: Sequence[Sample]) -> float:
    return max(s.max_rss_mb or 0.0 for s in samples)


def run_process(command: Sequence[str | Path], env: dict[str, str] | None = None) -> Sample:
    """Run ``command`` to completion, its output discarded: wall time, CPU time and peak RSS.

    Started through ``measure.py`` (see there why), which reports the command's own ``wait4`` figures.
    """
    os.sync()
    launcher = [sys.executable, "-I", "-S", str(HERE / "measure.py")]
    with tempfile.TemporaryFile() as errors:
        done = subprocess.run(
            [*launcher, *map(str, command)], stdout=subprocess.PIPE, stderr=errors, env=env, check=False
        )
        result = json.loads(done.stdout) if done.returncode == 0 and done.stdout else {"returncode": -1}
        if result["returncode"] != 0:
            errors.seek(0)
            tail = errors.read().decode(errors="replace")[-3000:]
            msg = f"{' '.join(map(str, command))} exited with {result['returncode']}:\n{tail}"
            raise BenchError(msg)
    return Sample(result["seconds"], result["cpu_seconds"], result["max_rss_kb"] / 1024)


def run_inline(func: Callable[[], object]) -> Sample:
    """Time ``func()`` in this process; the CPU time counts every thread of the process."""
    os.sync()
    before = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    func()
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return Sample(elapsed, cpu)


@contextmanager
def scratch(base: Path | None = None) -> Iterator[Path]:
    """A fresh folder under ``base`` (default WORK), removed afterwards (outside the timed part)."""
    base = base or WORK
    base.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(dir=base, prefix="run-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


Measure = Callable[[Path], Sample]
"""Runs one timed repetition with a fresh scratch folder."""


def interleave(
    runs: int, reference: Measure, subject: Measure, base: Path | None = None
) -> tuple[list[Sample], list[Sample]]:
    """``runs`` timed repetitions of each, alternating which goes first (ABBA), after a warm-up of each;
    every repetition gets a fresh folder under ``base``."""
    references, (subjects,) = interleave_many(runs, reference, [subject], base)
    return references, subjects


def interleave_many(
    runs: int, reference: Measure, subjects: Sequence[Measure], base: Path | None = None
) -> tuple[list[Sample], list[list[Sample]]]:
    """:func:`interleave` of a reference and several subjects, all measured against the same
    reference samples: each repetition runs them all, in an order rotated by one every time."""
    measures = [reference, *subjects]
    for measure in measures:
        with scratch(base) as folder:
            measure(folder)
    samples: list[list[Sample]] = [[] for _ in measures]
    for index in range(runs):
        turn = index % len(measures)
        for which in [*range(turn, len(measures)), *range(turn)]:
            with scratch(base) as folder:
                samples[which].append(measures[which](folder))
    return samples[0], samples[1:]


def ratio_row(
    benchmark: str,
    subject_name: str,
    reference_name: str,
    references: Sequence[Sample],
    subjects: Sequence[Sample],
    target: float,
) -> Row:
    ratio = median(subjects) / median(references)
    cpu_ratio = median_cpu(subjects) / median_cpu(references)
    return Row(
        benchmark,
        f"{subject_name} {median(subjects):.2f} s",
        f"{reference_name} {median(references):.2f} s",
        f"{ratio:.2f}x",
        f"<= {target}x",
        ratio <= target,
        {
            "ratio": round(ratio, 3),
            "cpu_ratio": round(cpu_ratio, 3),
            "subject_s": [round(s.seconds, 3) for s in subjects],
            "reference_s": [round(s.seconds, 3) for s in references],
            "subject_cpu_s": [round(s.cpu_seconds, 3) for s in subjects],
            "reference_cpu_s": [round(s.cpu_seconds, 3) for s in references],
            "subject_max_rss_mb": [round(s.max_rss_mb, 1) for s in subjects if s.max_rss_mb],
            "reference_max_rss_mb": [round(s.max_rss_mb, 1) for s in references if s.max_rss_mb],
        },
        cpu=f"{cpu_ratio:.2f}x ({median_cpu(subjects):.1f} / {median_cpu(references):.1f} s)",
    )


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""

    def copyfile(self, source: Any, outputfile: Any) -> None:
        # sendfile keeps the server out of the way (and off the GIL) while clients are measured.
        outputfile.flush()
        self.connection.sendfile(source)


@contextmanager
def serve(root: Path) -> Iterator[str]:
    """Serve ``root`` on 127.0.0.1:<free port> from a thread; yields the base URL."""
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
