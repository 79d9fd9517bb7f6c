"""``make bench``: pixi-pack and pixi-unpack on a realistic corpus, against rattler and against the floor.

    python benchmarks/run.py [--quick] [--runs N] [--only unpack,verify,update,pack,selfextract,windows,startup,ctools,huge]

Builds the corpus once (``corpus.py``, cached in ``benchmarks/.cache``), serves it on 127.0.0.1 and
measures, subject and reference interleaved (ABBA) after one untimed warm-up each:

1. ``pixi-unpack`` (a process, and ``unpack()`` in this process) vs ``rattler.install`` of the same
   records from a ``file://`` channel, with a fresh package cache every run;
2. ``pixi-pack`` from the loopback server vs plain ``urllib`` downloads of the same files (the floor);
3. the self-extracting ``environment.sh`` of a pack over 1 GB vs ``pixi-unpack`` of the same tar: time
   and peak RSS, and plain ``pixi-unpack``'s peak RSS on the 300 MB and the 1 GB pack;
4. start-up of ``dist/pixi-pack.pyz --version``, warm;
5. ``pixi-unpack`` against the C tools, and a 5 GB pack against the 1 GB one (``floor.py``).

Prints a table, writes ``benchmarks/results.json`` and, unless ``--quick``, the table in
``benchmarks/README.md``. Page cache is warm for both sides; ``sync`` runs before every timed run.
"""

from __future__ import annotations

import argparse
import asyncio
import compileall
import dataclasses
import functools
import json
import os
import platform
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import _testlib  # noqa: F401  (tests/ on sys.path)
import corpus
import floor
import rattler_install
from conftest import prefix_tree  # type: ignore[import-not-found,unused-ignore]
from harness import (
    BIN,
    HERE,
    REPO,
    TMPFS,
    WORK,
    BenchError,
    Row,
    Sample,
    interleave,
    median,
    peak_rss,
    ratio_row,
    run_inline,
    run_process,
    scratch,
    serve,
)

PYZ = corpus.CACHE / "zipapp" / "pixi-pack.pyz"
"""Built from the working tree by ``build_zipapp.py`` at the start of each run (as ``make zipapp`` does)."""
RESULTS = HERE / "results.json"
README = HERE / "README.md"
TABLE_START = "<!-- results:start -->"
TABLE_END = "<!-- results:end -->"
BASE_PYTHON = Path(getattr(sys, "_base_executable", sys.executable))
"""The interpreter without this venv, as a user's ``python3`` would be: it runs the ``.pyz``."""
FLOOR_WORKERS = 4
RETRIES = 3
STARTUP_RUNS = 10
SMOKE_TEST = (
    "import numpy, scipy.linalg, pandas, matplotlib, ssl, ctypes; matplotlib.use('agg'); "
    "import matplotlib.pyplot; print(numpy.linalg.inv(numpy.eye(3)).sum())"
)
ITEMS = ("unpack", "verify", "update", "pack", "selfextract", "windows", "startup", "ctools", "huge")


@dataclass
class Context:
    corpus: corpus.Corpus
    url: str
    runs: int
    quick: bool
    packs: dict[str, Path] = field(default_factory=dict)
    """``base`` and ``big`` -> the pack (tar) of that set."""
    projects: dict[str, Path] = field(default_factory=dict)
    rss: dict[str, float] = field(default_factory=dict)
    """Peak RSS of plain pixi-unpack per set."""
    pyz_error: str = ""
    """Why the zipapp could not be built, if it could not."""

    def packages(self, which: str) -> tuple[Any, ...]:
        return self.corpus.packages + (self.corpus.big if which == "big" else ())

    @property
    def channel_url(self) -> str:
        return f"{self.url}/channel"


def make_packs(ctx: Context, sets: Sequence[str], log: Callable[[str], None]) -> None:
    """Write a pixi project per set (lockfile pointing at the server) and pack it once, untimed."""
    for which in sets:
        project = corpus.write_project(WORK / "projects" / which, ctx.packages(which), ctx.channel_url)
        ctx.projects[which] = project
        tar = WORK / f"{which}.tar"
        log(f"packing the {which} set -> {tar.relative_to(REPO)}")
        run_process([BIN / "pixi-pack", project, "-o", tar, "-q"])
        ctx.packs[which] = tar


def bench_unpack(ctx: Context, log: Callable[[str], None]) -> list[Row]:
    channel = ctx.corpus.channel
    names = [p.file_name for p in ctx.corpus.packages]
    tar = ctx.packs["base"]
    check = check_same_prefix(ctx, names)

    import rattler

    from pixi_pack.cli import tuned_interpreter
    from pixi_pack.install.unpack import unpack
    from pixi_pack.models import UnpackOptions

    records = rattler_install.records(channel, names)

    def rattler_process(folder: Path) -> Sample:
        script = HERE / "rattler_install.py"
        return run_process([sys.executable, script, channel, folder / "env", folder / "cache", *names])

    def unpack_process(folder: Path) -> Sample:
        return run_process([BIN / "pixi-unpack", tar, "-o", folder, "-e", "env", "-q"])

    def rattler_inline(folder: Path) -> Sample:
        coro = rattler.install(records, folder / "env", cache_dir=folder / "cache", show_progress=False)
        return run_inline(lambda: asyncio.run(coro))

    def unpack_inline(folder: Path) -> Sample:
        options = UnpackOptions(pack=tar, output_directory=folder, env_name="env")
        return run_inline(lambda: unpack(options, tuning=tuned_interpreter))

    places = [("disk", WORK)] + ([("tmpfs", TMPFS)] if TMPFS.parent.is_dir() else [])
    rows = []
    for place, base in places:
        log(f"1. pixi-unpack vs rattler.install, processes, {place} ({ctx.runs} runs each)")
        references, subjects = interleave(ctx.runs, rattler_process, unpack_process, base)
        if place == "disk":
            ctx.rss["base"] = peak_rss(subjects)
        rows.append(
            ratio_row(f"unpack, process ({place})", "pixi-unpack", "rattler", references, subjects, 1.0)
        )
        log(f"1. unpack() vs rattler.install, in-process, {place} ({ctx.runs} runs each)")
        references, subjects = interleave(ctx.runs, rattler_inline, unpack_inline, base)
        rows.append(
            ratio_row(f"unpack, in-process ({place})", "unpack()", "rattler", references, subjects, 1.0)
        )
    shutil.rmtree(TMPFS, ignore_errors=True)
    rows[0].data["check"] = check
    return rows


def bench_verify(ctx: Context, log: Callable[[str], None]) -> list[Row]:
    """``pixi-unpack --verify-only`` (every file of every package hashed, nothing written) next to a
    full unpack of the same pack."""
    tar = ctx.packs["base"]

    def unpack_process(folder: Path) -> Sample:
        return run_process([BIN / "pixi-unpack", tar, "-o", folder, "-e", "env", "-q"])

    def verify_process(folder: Path) -> Sample:
        return run_process([BIN / "pixi-unpack", tar, "--verify-only", "-q"])

    log(f"1b. pixi-unpack --verify-only vs a full unpack, disk ({ctx.runs} runs each)")
    references, subjects = interleave(ctx.runs, unpack_process, verify_process, WORK)
    return [ratio_row("verify-only (89 MB pack)", "--verify-only", "unpack", references, subjects, 1.0)]


def check_same_prefix(ctx: Context, names: Sequence[str]) -> dict[str, Any]:
    """Install with both into the same path, compare the trees, and import numpy & co. from ours."""
    with scratch() as folder:
        run_process([BIN / "pixi-unpack", ctx.packs["base"], "-o", folder, "-e", "env", "-q"])
        ours = prefix_tree(folder / "env")
        smoke = subprocess.run(
            [folder / "env" / "bin" / "python", "-c", SMOKE_TEST], capture_output=True, text=True
        )
        shutil.rmtree(folder / "env")
        rattler_install.install(ctx.corpus.channel, folder / "env", folder / "cache", names)
        theirs = prefix_tree(folder / "env")
    differing = sorted(p for p in set(ours) | set(theirs) if ours.get(p) != theirs.get(p))
    return {
        "files": sum(1 for kind, _ in ours.values() if kind == "file"),
        "differences": len(differing),
        "first_differences": [
            {"path": p, "pixi-unpack": ours.get(p), "rattler": theirs.get(p)} for p in differing[:10]
        ],
        "smoke_test": "ok" if smoke.returncode == 0 else f"failed: {smoke.stderr[-500:]}",
    }


def bench_pack(ctx: Context, log: Callable[[str], None]) -> list[Row]:
    rows = []
    for which, project in ctx.projects.items():
        urls = [p.url(ctx.channel_url) for p in ctx.packages(which)]
        size_mb = ctx.packs[which].stat().st_size / 1e6

        def floor(folder: Path, urls: list[str] = urls, sha256: bool = False) -> Sample:
            script = HERE / "fetch_floor.py"
            flags = ["--sha256"] if sha256 else []
            return run_process([sys.executable, script, folder, str(FLOOR_WORKERS), *flags, *urls])

        def pixi_pack(folder: Path, project: Path = project) -> Sample:
            return run_process([BIN / "pixi-pack", project, "-o", folder / "environment.tar", "-q"])

        log(f"2. pixi-pack vs urllib download floor, {size_mb:.0f} MB ({ctx.runs} runs each)")
        references, subjects = interleave(ctx.runs, floor, pixi_pack)
        name = f"pack, loopback ({size_mb:.0f} MB)"
        row = ratio_row(name, "pixi-pack", "urllib floor", references, subjects, 1.5)
        row.data["floor_workers"] = FLOOR_WORKERS
        rows.append(row)
        # Not a target: what the sha256 check every pack must make costs on its own, over the same floor.
        log(f"2b. urllib floor with sha256 vs without, {size_mb:.0f} MB ({ctx.runs} runs each)")
        plain, hashed = interleave(ctx.runs, floor, functools.partial(floor, sha256=True))
        verified = ratio_row(
            f"floor + sha256 ({size_mb:.0f} MB)", "urllib + sha256", "urllib floor", plain, hashed, 1.5
        )
        rows.append(dataclasses.replace(verified, target="-", ok=None))
        # pixi-pack must hash every download too: the verified floor is what it can be held to.
        log(f"2c. pixi-pack vs the urllib + sha256 floor, {size_mb:.0f} MB ({ctx.runs} runs each)")
        hashed, packed = interleave(ctx.runs, functools.partial(floor, sha256=True), pixi_pack)
        name = f"pack vs verified floor ({size_mb:.0f} MB)"
        row = ratio_row(name, "pixi-pack", "urllib + sha256", hashed, packed, 1.15)
        rows.append(row if which == "big" else dataclasses.replace(row, target="-", ok=None))
    return rows


def bench_selfextract(ctx: Context, log: Callable[[str], None]) -> list[Row]:
    which = "base" if ctx.quick else "big"
    tar = ctx.packs[which]
    size_mb = tar.stat().st_size / 1e6
    rows: list[Row] = []
    executable, why_not = build_executable(ctx, which, log)

    def plain(folder: Path) -> Sample:
        return run_process([BIN / "pixi-unpack", tar, "-o", folder, "-e", "env", "-q"])

    if executable is None:
        log(f"3. self-extracting executable not available ({why_not}); plain pixi-unpack RSS only")
        samples = [plain(folder) for folder in _scratches(max(1, ctx.runs // 2))]
        ctx.rss[which] = peak_rss(samples)
        rows.append(Row("self-extract (time)", "-", "-", "not available", "<= 1.1x", None, {"why": why_not}))
        rows.append(Row("self-extract (peak RSS)", "-", "-", "not available", "<= 150 MB", None))
    else:
        env = {**os.environ, "PIXI_PACK_PYTHON": str(BASE_PYTHON)}

        failures: list[str] = []

        def selfextract(folder: Path) -> Sample:
            # A failed run is retried (in a clean folder) and counted, so a flaky failure is reported
            # without losing the timing.
            for _ in range(RETRIES):
                try:
                    return run_process(["sh", executable, "-o", folder, "-e", "env", "-q"], env=env)
                except BenchError as exc:
                    failures.append(str(exc).strip().splitlines()[-1][:300])
                    shutil.rmtree(folder, ignore_errors=True)
                    folder.mkdir()
            raise BenchError(f"environment.sh failed {RETRIES} times in a row: {failures[-1]}")

        log(f"3. environment.sh vs pixi-unpack, {size_mb:.0f} MB pack ({ctx.runs} runs each)")
        references, subjects = interleave(ctx.runs, plain, selfextract)
        ctx.rss[which] = peak_rss(references)
        row = ratio_row(
            f"self-extract ({size_mb:.0f} MB pack)",
            "environment.sh",
            "pixi-unpack",
            references,
            subjects,
            1.1,
        )
        if failures:
            row.ok = False
            row.result += f" ({len(failures)} failed runs)"
            row.data["failures"] = failures
        rows.append(row)
        rss = peak_rss(subjects)
        rows.append(
            Row(
                "self-extract peak RSS",
                f"environment.sh {rss:.0f} MB",
                f"pixi-unpack {ctx.rss[which]:.0f} MB",
                f"{rss:.0f} MB",
                "<= 150 MB",
                rss <= 150,
                {"subject_max_rss_mb": rss, "reference_max_rss_mb": ctx.rss[which]},
            )
        )
    if "base" in ctx.rss and "big" in ctx.rss:
        base_mb, big_mb = ctx.rss["base"], ctx.rss["big"]
        base_size = ctx.packs["base"].stat().st_size / 1e6
        rows.append(
            Row(
                "pixi-unpack peak RSS vs pack size",
                f"{size_mb:.0f} MB pack: {big_mb:.0f} MB",
                f"{base_size:.0f} MB pack: {base_mb:.0f} MB",
                f"{big_mb - base_mb:+.0f} MB",
                "flat",
                big_mb <= base_mb * 1.2 + 10,
                {"rss_mb": {"base": base_mb, "big": big_mb}, "pack_mb": {"base": base_size, "big": size_mb}},
            )
        )
    return rows


def bench_update(ctx: Context, log: Callable[[str], None]) -> list[Row]:
    """The corpus with scipy upgraded (re-versioned: a new archive of the same files): the delta pack's
    size against the full pack's, and ``pixi-unpack DELTA`` updating an environment unpacked from the
    base against ``pixi-unpack FULL`` into a new folder."""
    scipy = next(p for p in ctx.corpus.packages if p.name == "scipy")
    upgraded = corpus.reversioned(scipy, f"{scipy.version}.post1")
    packages = [upgraded if p is scipy else p for p in ctx.corpus.packages]
    project = corpus.write_project(WORK / "projects" / "upgraded", packages, ctx.channel_url)
    full, delta, base = WORK / "upgraded-full.tar", WORK / "upgraded-delta.tar", ctx.packs["base"]
    run_process([BIN / "pixi-pack", project, "-o", full, "-q"])
    run_process([BIN / "pixi-pack", project, "-o", delta, "--base", base, "-q"])
    sizes = {"full": full.stat().st_size, "delta": delta.stat().st_size}

    def fresh(folder: Path) -> Sample:
        return run_process([BIN / "pixi-unpack", full, "-o", folder, "-q"])

    def update(folder: Path) -> Sample:
        run_process([BIN / "pixi-unpack", base, "-o", folder, "-q"])  # untimed: the environment to update
        return run_process([BIN / "pixi-unpack", delta, "-o", folder, "-q"])

    log(f"update: delta with scipy upgraded vs a full unpack ({ctx.runs} runs each)")
    references, subjects = interleave(ctx.runs, fresh, update)
    rows = [
        Row(
            "delta pack size (scipy upgraded)",
            f"delta {sizes['delta'] / 1e6:.1f} MB",
            f"full pack {sizes['full'] / 1e6:.1f} MB",
            f"{sizes['delta'] / sizes['full']:.2f}x",
            "-",
            None,
            {"bytes": sizes},
        ),
        ratio_row(
            "update (scipy upgraded)", "pixi-unpack DELTA", "pixi-unpack FULL", references, subjects, 1.0
        ),
    ]
    upgraded.path.unlink()
    return rows


def bench_windows(ctx: Context, log: Callable[[str], None]) -> list[Row]:
    """win-64 self-extractors of the same packages: ``environment.cmd`` (raw tar) against ``environment.ps1``
    (base64), by size, and ``python3 environment.cmd`` against pixi-unpack of the tar, by time and peak RSS.

    PowerShell cannot run here, so the ``.ps1`` is measured by its size only.
    """
    which = "base" if ctx.quick else "big"
    if not PYZ.exists():
        return [Row("win-64 self-extractors", "-", "-", "not available", "-", None, {"why": ctx.pyz_error})]
    project = corpus.write_project(
        WORK / "projects" / f"{which}-win", ctx.packages(which), ctx.channel_url, platform="win-64"
    )
    outputs = {form: WORK / f"{which}-win.{form}" for form in ("tar", "cmd", "ps1")}
    for form, output in outputs.items():
        log(f"packing the {which} set for win-64 -> {output.relative_to(REPO)}")
        command: list[str | Path] = [BIN / "pixi-pack", project, "-p", "win-64", "-o", output, "-q"]
        if form != "tar":
            command += ["--create-executable", "--pixi-unpack-source", PYZ]
        run_process(command)
    sizes = {form: output.stat().st_size for form, output in outputs.items()}
    pyz_size = PYZ.stat().st_size
    stub = sizes["cmd"] - sizes["tar"] - pyz_size
    rows = [
        Row(
            f"win-64 self-extractor size ({sizes['tar'] / 1e6:.0f} MB pack)",
            f"environment.cmd {sizes['cmd'] / 1e6:.0f} MB",
            f"environment.ps1 {sizes['ps1'] / 1e6:.0f} MB",
            f"{sizes['cmd'] / sizes['ps1']:.2f}x",
            "tar + pyz + stub",
            0 < stub < 16 << 10,
            {"bytes": sizes, "pyz_bytes": pyz_size, "cmd_stub_bytes": stub},
        )
    ]
    env = {**os.environ, "SHIV_ROOT": str(WORK / "shiv")}
    flags = ["--ignore-platform", "-e", "env", "-q"]

    def plain(folder: Path) -> Sample:
        return run_process([BIN / "pixi-unpack", outputs["tar"], "-o", folder, *flags])

    def cmd(folder: Path) -> Sample:
        return run_process([BASE_PYTHON, outputs["cmd"], "-o", folder, *flags], env=env)

    log(
        f"python3 environment.cmd vs pixi-unpack, {sizes['tar'] / 1e6:.0f} MB win-64 pack ({ctx.runs} runs each)"
    )
    references, subjects = interleave(ctx.runs, plain, cmd)
    rows.append(
        ratio_row(
            f"python3 environment.cmd ({sizes['tar'] / 1e6:.0f} MB)",
            "environment.cmd",
            "pixi-unpack",
            references,
            subjects,
            1.1,
        )
    )
    rss, reference_rss = peak_rss(subjects), peak_rss(references)
    rows.append(
        Row(
            "environment.cmd peak RSS",
            f"python3 environment.cmd {rss:.0f} MB",
            f"pixi-unpack {reference_rss:.0f} MB",
            f"{rss:.0f} MB",
            "<= 150 MB",
            rss <= 150,
            {"subject_max_rss_mb": rss, "reference_max_rss_mb": reference_rss},
        )
    )
    for output in outputs.values():
        output.unlink()
    return rows


def bench_ctools(ctx: Context, log: Callable[[str], None]) -> list[Row]:
    """pixi-unpack against the C tools (``floor.py``)."""
    files = ctx.corpus.summary(ctx.corpus.packages)["files"]
    return floor.bench_ctools(ctx.corpus.packages, ctx.packs["base"], files, ctx.runs, log)


def bench_huge(ctx: Context, log: Callable[[str], None]) -> list[Row]:
    """The 5 GB pack against the 1.16 GB pack (``floor.py``)."""
    if ctx.quick:
        return [Row("5 GB pack", "-", "-", "not run (--quick)", "<= 1.1x", None)]
    env = {**os.environ, "PIXI_PACK_PYTHON": str(BASE_PYTHON)}
    pyz = PYZ if PYZ.exists() else None
    return floor.bench_huge([*ctx.corpus.packages, *ctx.corpus.big], pyz, ctx.runs, log, env)


def _scratches(count: int) -> Iterator[Path]:
    for _ in range(count):
        with scratch() as folder:
            yield folder


def build_pyz(log: Callable[[str], None]) -> str:
    """Build PYZ from the working tree; returns why it failed ("" when it worked)."""
    log(f"building {PYZ.relative_to(REPO)} with build_zipapp.py")
    PYZ.unlink(missing_ok=True)
    try:
        run_process([sys.executable, REPO / "build_zipapp.py", "-o", PYZ])
    except BenchError as exc:
        return f"build_zipapp.py failed: {str(exc).splitlines()[-1][:200]}"
    return ""


def build_executable(ctx: Context, which: str, log: Callable[[str], None]) -> tuple[Path | None, str]:
    """``environment.sh`` of the set, or None and why it could not be made."""
    if not PYZ.exists():
        return None, ctx.pyz_error or "no zipapp"
    output = WORK / f"{which}.sh"
    log(f"making the self-extracting {output.relative_to(REPO)}")
    command: list[str | Path] = [
        BIN / "pixi-pack",
        ctx.projects[which],
        "--create-executable",
        "-o",
        output,
        "-q",
    ]
    try:
        run_process([*command, "--pixi-unpack-source", PYZ])
    except BenchError as exc:
        return None, str(exc).splitlines()[-1][:200]
    return output, ""


def bench_startup(ctx: Context, log: Callable[[str], None]) -> list[Row]:
    if not PYZ.exists():
        return [Row("pyz start-up", "-", "-", "not available", "<= 0.30 s", None, {"why": ctx.pyz_error})]
    runs = 3 if ctx.quick else STARTUP_RUNS
    log(f"4. {PYZ.name} --version start-up ({runs} runs, warm)")
    command: list[str | Path] = [BASE_PYTHON, PYZ, "--version"]
    run_process(command)
    samples = [run_process(command) for _ in range(runs)]
    seconds = median(samples)
    return [
        Row(
            "pyz start-up (warm)",
            f"python {PYZ.name} --version",
            "-",
            f"{seconds:.3f} s",
            "<= 0.30 s",
            seconds <= 0.3,
            {"seconds": [round(s.seconds, 4) for s in samples]},
        )
    ]


def machine() -> dict[str, Any]:
    import rattler

    import pixi_pack

    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout
    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "pixi_pack": pixi_pack.__version__,
        "py_rattler": getattr(rattler, "__version__", "?"),
        "commit": commit.strip(),
        "load_average": list(os.getloadavg()),
    }


def table(rows: Sequence[Row]) -> str:
    header = ("benchmark", "subject", "reference", "result", "target", "status", "CPU time ratio")
    lines = [
        header,
        *[(r.benchmark, r.subject, r.reference, r.result, r.target, r.status, r.cpu) for r in rows],
    ]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = ["| " + " | ".join(c.ljust(w) for c, w in zip(line, widths)) + " |" for line in lines]
    out.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(out)


def update_readme(text: str) -> None:
    if not README.exists():
        return
    readme = README.read_text()
    if TABLE_START not in readme or TABLE_END not in readme:
        return
    head, rest = readme.split(TABLE_START, 1)
    _, tail = rest.split(TABLE_END, 1)
    README.write_text(f"{head}{TABLE_START}\n{text}\n{TABLE_END}{tail}")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="1 run each, no 1 GB pack: for development")
    parser.add_argument("--runs", type=int, default=None, help="timed runs per side (default 5, quick 1)")
    parser.add_argument(
        "--only", default=",".join(ITEMS), help=f"comma-separated subset of {','.join(ITEMS)}"
    )
    return parser.parse_args(argv)


def byte_compile(log: Callable[[str], None]) -> None:
    """Compile pixi_pack's modules, as ``pip install`` does: the editable install of a fresh clone has no
    ``.pyc`` yet, and with ``PYTHONDONTWRITEBYTECODE`` set (as on this machine) it never gets them, so
    every pixi-pack/pixi-unpack process would compile its modules again (~55 ms), which neither a
    pip-installed pixi-pack nor the references (rattler, the stdlib's urllib) pay."""
    log("byte-compiling pixi_pack (as pip install does)")
    if not compileall.compile_dir(REPO / "pixi_pack", quiet=1):
        raise BenchError("could not byte-compile pixi_pack")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    only = [item.strip() for item in args.only.split(",") if item.strip()]
    unknown = sorted(set(only) - set(ITEMS))
    if unknown:
        print(f"error: unknown item(s): {', '.join(unknown)}", file=sys.stderr)
        return 2
    runs = args.runs or (1 if args.quick else 5)

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    want_big = not args.quick and bool({"selfextract", "windows", "pack", "huge"} & set(only))
    built = corpus.build_corpus(big=want_big, log=log)
    byte_compile(log)
    shutil.rmtree(WORK, ignore_errors=True)
    info = machine()
    rows: list[Row] = []
    with serve(corpus.CORPUS) as url:
        ctx = Context(built, url, runs, args.quick)
        if {"selfextract", "windows", "startup", "huge"} & set(only):
            ctx.pyz_error = build_pyz(log)
        make_packs(ctx, ["base", "big"] if want_big else ["base"], log)
        benches: dict[str, Callable[[Context, Callable[[str], None]], list[Row]]] = {
            "unpack": bench_unpack,
            "verify": bench_verify,
            "pack": bench_pack,
            "selfextract": bench_selfextract,
            "windows": bench_windows,
            "update": bench_update,
            "startup": bench_startup,
            "ctools": bench_ctools,
            "huge": bench_huge,
        }
        for item in only:
            try:
                new = benches[item](ctx, log)
            except BenchError as exc:
                # One broken item must not cost the others' results: it becomes a failed row.
                log(f"error: {item}: {exc}")
                new = [Row(item, "-", "-", "error", "-", False, {"error": str(exc)[-2000:]})]
            for row in new:
                log(f"   {row.benchmark}: {row.result} ({row.status})")
            rows += new
        packs = {which: path.stat().st_size for which, path in ctx.packs.items()}
    shutil.rmtree(WORK, ignore_errors=True)
    info["load_average_end"] = list(os.getloadavg())
    text = table(rows)
    print(text)
    summary = built.summary(built.packages)
    results = {
        "machine": info,
        "runs": runs,
        "quick": args.quick,
        "corpus": {
            **summary,
            "pack_bytes": packs,
            "big_extra": built.summary(built.big) if want_big else None,
        },
        "rows": [
            {
                "benchmark": r.benchmark,
                "subject": r.subject,
                "reference": r.reference,
                "result": r.result,
                "target": r.target,
                "status": r.status,
                "cpu": r.cpu,
                **r.data,
            }
            for r in rows
        ],
    }
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    if not args.quick:
        corpus_line = (
            f"Corpus: {summary['packages']} packages, {summary['files']} files, "
            f"{summary['unpacked_bytes'] / 1e6:.0f} MB unpacked, {packs['base'] / 1e6:.0f} MB pack. "
            f"Machine: {info['cpu_count']} CPUs, {info['platform']}, Python {info['python']}, "
            f"{info['date']}, load {info['load_average'][0]:.1f}, {runs} runs per side."
        )
        update_readme(f"{text}\n\n{corpus_line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
