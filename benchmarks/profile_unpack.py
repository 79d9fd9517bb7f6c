"""Where pixi-unpack spends its time on the corpus: a sampling profile and a few what-if variants.

    python benchmarks/profile_unpack.py [--spy] [--variants] [--runs N]

``--spy`` runs ``pixi-unpack`` under py-spy (``pip install py-spy``; native frames, all threads) and
sums the samples into categories: creating files, writing them, bz2, zstd, sha256, tar parsing in
Python, lock waits... ``--variants`` times ``unpack()`` in this process against versions of itself
patched from the outside (nothing in pixi_pack/ is edited), interleaved, so each suggestion in the
README comes with a measured gain. Both use the corpus and a pack of it kept in ``.cache/profile``.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import hashlib
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tarfile
import time
import zipfile
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import corpus
import harness

PROFILE = corpus.CACHE / "profile"
SAFE_MTIME = 315_532_800

IDLE = ("_queue_SimpleQueue_get", "Event.wait", "wait (concurrent/futures/_base.py")
"""Frames of a thread waiting for work (an idle pool worker, the main thread waiting on futures)."""

CATEGORIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("GIL wait", ("take_gil",)),
    ("lock wait", ("PyThread_acquire_lock", "pthread_cond", "sem_wait", "Condition.wait")),
    ("bz2 decompress", ("BZ2_",)),
    ("zstd decompress", ("ZSTD_", "HUF_", "FSE_")),
    ("sha256", ("sha256", "SHA256", "EVP_", "_hashlib")),
    ("create file (open O_CREAT)", ("open64", "os_open")),
    ("mkdir", ("mkdir",)),
    ("chmod/utime/stat", ("utimensat", "fchmod", "chmod", "fstatat", "lstat", "stat64")),
    ("write()", ("write (libc", "__libc_write", "_io_FileIO_write", "write (libpthread")),
    ("close()", ("close (libc", "__close")),
    ("symlink", ("symlink",)),
    ("tar parsing (Python)", ("tarfile.py",)),
    ("zip reading (Python)", ("zipfile.py",)),
    ("conda-meta JSON", ("prefix_record", "write_json_atomically", "json/")),
    ("placeholder replacement", ("replace_prefix", "prefix.py")),
)


def ensure_pack() -> Path:
    """The corpus's pack, made once (served over loopback and packed by pixi-pack, like run.py does)."""
    tar = PROFILE / "base.tar"
    built = corpus.build_corpus(big=False)
    if tar.exists():
        return tar
    PROFILE.mkdir(parents=True, exist_ok=True)
    with harness.serve(corpus.CORPUS) as url:
        project = corpus.write_project(PROFILE / "project", built.packages, f"{url}/channel")
        harness.run_process([harness.BIN / "pixi-pack", project, "-o", tar, "-q"])
    return tar


def categorize(stack: Sequence[str]) -> str:
    """The category of a sample: idle, or the first that matches scanning from the innermost frame out."""
    if any(needle in frame for frame in stack for needle in IDLE):
        return "idle"
    for frame in reversed(stack):
        for name, needles in CATEGORIES:
            if any(needle in frame for needle in needles):
                return name
    return "other Python"


def spy(tar: Path) -> None:
    py_spy = shutil.which("py-spy", path=str(harness.BIN)) or shutil.which("py-spy")
    if py_spy is None:
        print("py-spy is not installed: .venv/bin/pip install py-spy", file=sys.stderr)
        return
    raw = PROFILE / "py-spy.txt"
    with harness.scratch() as folder:
        command = [py_spy, "record", "--native", "--threads", "--rate", "250", "--format", "raw"]
        command += ["-o", str(raw), "--", sys.executable, str(harness.BIN / "pixi-unpack")]
        command += [str(tar), "-o", str(folder), "-e", "env", "-q"]
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        print(f"pixi-unpack under py-spy: {time.perf_counter() - start:.1f} s (sampling slows it down)")
    categories: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    for line in raw.read_text().splitlines():
        stack_text, _, count_text = line.rpartition(" ")
        frames = stack_text.split(";")
        count = int(count_text)
        category = categorize(frames[1:])
        categories[category] += count
        if category != "idle":
            leaves[frames[-1].split(" (")[0]] += count
            threads[frames[0].split(": ", 1)[-1].rsplit("_", 1)[0]] += count
    idle = categories.pop("idle", 0)
    total = sum(categories.values())
    print(f"\n{total} busy samples (all threads; {idle} idle ones left out); by category:")
    for name, count in categories.most_common():
        print(f"  {100 * count / total:5.1f}%  {name}")
    print("\nby thread pool (busy samples):")
    for name, count in threads.most_common():
        print(f"  {100 * count / total:5.1f}%  {name}")
    print("\nhottest leaf frames (busy samples):")
    for name, count in leaves.most_common(15):
        print(f"  {100 * count / total:5.1f}%  {name}")
    print(f"\nraw stacks (flamegraph.pl / speedscope input): {raw.relative_to(harness.REPO)}")


Patch = Callable[[], contextlib.AbstractContextManager[None]]
Tuning = Callable[[], contextlib.AbstractContextManager[object]]


@contextlib.contextmanager
def baseline() -> Iterator[None]:
    yield


@contextlib.contextmanager
def patched(target: Any, name: str, value: Any) -> Iterator[None]:
    old = getattr(target, name)
    setattr(target, name, value)
    try:
        yield
    finally:
        setattr(target, name, old)


@contextlib.contextmanager
def default_gil_slices() -> Iterator[None]:
    """Python's default 5 ms GIL slices while installing, instead of cli.GIL_SLICE."""
    from pixi_pack import cli

    with patched(cli, "GIL_SLICE", 0.005):
        yield


@contextlib.contextmanager
def slices_only() -> Iterator[None]:
    """The install's tuning without turning the cyclic garbage collector off."""
    from pixi_pack import cli

    previous = sys.getswitchinterval()
    sys.setswitchinterval(cli.GIL_SLICE)
    try:
        yield
    finally:
        sys.setswitchinterval(previous)


@contextlib.contextmanager
def install_workers(count: int) -> Iterator[None]:
    from pixi_pack.install import link, unpack

    original = link.install_packages
    with patched(unpack, "install_packages", functools.partial(original, workers=count)):
        yield


@contextlib.contextmanager
def no_verify() -> Iterator[None]:
    """What the sha256 check of every package costs (a lower bound: not a suggestion as is)."""
    from pixi_pack.install import unpack

    with patched(unpack, "verify_package", lambda package: None):
        yield


def variants(tar: Path, runs: int) -> None:
    from pixi_pack.cli import tuned_interpreter
    from pixi_pack.install.unpack import unpack
    from pixi_pack.models import UnpackOptions

    tuned: Tuning = tuned_interpreter
    cases: dict[str, tuple[Patch, Tuning]] = {
        "as is": (baseline, tuned),
        "default 5 ms GIL slices": (default_gil_slices, tuned),
        "garbage collector on": (baseline, slices_only),
        "3 install workers": (functools.partial(install_workers, 3), tuned),
        "no verify (bound)": (no_verify, tuned),
    }
    times: dict[str, list[float]] = {name: [] for name in cases}
    for index in range(runs + 1):
        names = list(cases) if index % 2 == 0 else list(reversed(cases))
        for name in names:
            patch, tuning = cases[name]
            with harness.scratch() as folder, patch():
                sample = harness.run_inline(
                    lambda folder=folder, tuning=tuning: unpack(  # type: ignore[misc]
                        UnpackOptions(pack=tar, output_directory=folder, env_name="env"), tuning=tuning
                    )
                )
            if index > 0:
                times[name].append(sample.seconds)
    base = statistics.median(times["as is"])
    print(f"\nunpack() in-process, median of {runs} interleaved runs:")
    for name, values in times.items():
        value = statistics.median(values)
        print(f"  {value:6.2f} s  {value / base:5.2f}x  {name}  {[round(v, 2) for v in values]}")


@contextlib.contextmanager
def cpu_timer(label: str, results: dict[str, tuple[float, float]]) -> Iterator[None]:
    """Wall and CPU (user + system, whole process) time of the block, stored under ``label``."""
    before = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    yield
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF)
    results[label] = (wall, after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)


def _stdlib_payload(path: Path) -> Iterator[tuple[tarfile.TarInfo, bytes]]:
    """Every payload file of a package with plain tarfile (+ zipfile and zstandard for .conda)."""
    import zstandard

    with contextlib.ExitStack() as stack:
        if path.name.endswith(".conda"):
            archive = stack.enter_context(zipfile.ZipFile(path))
            name = next(n for n in archive.namelist() if n.startswith("pkg-"))
            raw = stack.enter_context(archive.open(name))
            stream = zstandard.ZstdDecompressor().stream_reader(raw)
            tar = stack.enter_context(tarfile.open(fileobj=stream, mode="r|"))
        else:
            tar = stack.enter_context(tarfile.open(path, mode="r|bz2"))
        for info in tar:
            if info.isreg() and not info.name.startswith("info/"):
                data = tar.extractfile(info)
                yield info, data.read() if data else b""


def breakdown(packages: Sequence[Path]) -> None:
    """The unit costs of an unpack, each measured alone on one thread (CPU time is the robust number)."""
    from pixi_pack.formats.package import iter_payload

    results: dict[str, tuple[float, float]] = {}
    with cpu_timer("sha256 of every package file (the verify pass)", results):
        for path in packages:
            digest = hashlib.sha256()
            with open(path, "rb") as f:
                for chunk in iter(lambda f=f: f.read(1 << 20), b""):  # type: ignore[misc]
                    digest.update(chunk)
    with cpu_timer("decompress + untar, stdlib tarfile, data discarded", results):
        for path in packages:
            for _ in _stdlib_payload(path):
                pass
    files: list[tuple[str, bytes, int]] = []
    with cpu_timer("same through pixi_pack.formats.package.iter_payload", results):
        for path in packages:
            with open(path, "rb") as f, iter_payload(f, path.name) as members:
                for member, data in members:
                    if data is not None:
                        content = data if isinstance(data, bytes) else data.read()
                        files.append((f"{path.name}/{member.path}", content, member.mode))
    with cpu_timer("sha256 of every installed file (rattler hashes them)", results):
        for _, content, _ in files:
            hashlib.sha256(content).digest()
    for workers in (1, 2, 8):
        with (
            harness.scratch() as folder,
            cpu_timer(f"write {len(files)} files from memory, {workers} thread(s)", results),
        ):
            _write_all(folder, files, workers)
    print(f"\nunit costs on the corpus ({len(packages)} packages):")
    for label, (wall, cpu) in results.items():
        print(f"  wall {wall:6.2f} s   cpu {cpu:6.2f} s   {label}")


def _write_all(root: Path, files: Sequence[tuple[str, bytes, int]], workers: int) -> None:
    """Create, write, chmod and date each file, as an installer does (O_EXCL, O_NOFOLLOW)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
    folders = sorted({str(Path(rel).parent) for rel, _, _ in files})
    for folder in folders:
        (root / folder).mkdir(parents=True, exist_ok=True)

    def write(item: tuple[str, bytes, int]) -> None:
        rel, content, mode = item
        fd = os.open(root / rel, flags, 0o600)
        try:
            os.write(fd, content)
            os.fchmod(fd, mode)
        finally:
            os.close(fd)
        os.utime(root / rel, (SAFE_MTIME, SAFE_MTIME))

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(write, files))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--spy", action="store_true", help="sample pixi-unpack with py-spy")
    parser.add_argument("--variants", action="store_true", help="time patched variants of unpack()")
    parser.add_argument(
        "--breakdown", action="store_true", help="unit costs: hashing, decompressing, writing"
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--workdir", type=Path, default=None, help="where environments are written, e.g. /dev/shm/bench"
    )
    args = parser.parse_args(argv)
    if args.workdir is not None:
        harness.WORK = args.workdir.resolve()
    tar = ensure_pack()
    if args.breakdown:
        built = corpus.build_corpus(big=False)
        breakdown([p.path for p in built.packages])
    if args.spy or not (args.variants or args.breakdown):
        spy(tar)
    if args.variants:
        variants(tar, args.runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
