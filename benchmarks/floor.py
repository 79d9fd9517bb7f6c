"""pixi-unpack against the C tools: time, syscalls and peak RSS per file, and time per GB of a 5 GB pack.

Two items of ``run.py``:

- ``ctools``: ``pixi-unpack`` against ``ctools_floor.sh`` (unzip | zstd | tar and tar -xjf, two packages
  at a time) on the corpus and on synthetic environments of 10,000 and 100,000 files of 2 KiB in 100
  packages, on disk and on tmpfs, and ``python_floor.py`` (the same files written by bare Python, no
  checks) against the same C-tool runs; ``strace -c -f`` of one run of each side on the 100,000-file
  env (syscalls per file); pixi-unpack's peak RSS at 10,000 and 100,000 files.
- ``huge``: a 5 GB pack (the 1.16 GB set plus 16 packages of 256 MB random bytes) against the 1.16 GB
  pack, interleaved: seconds per GB of ``pixi-unpack`` and of ``environment.sh``, and their peak RSS.

The synthetic packages and the extra 4 GB are built once with the tests' builders and cached in
``benchmarks/.cache/synthetic`` and ``benchmarks/.cache/huge``; their lockfiles name the archives by
path, so packing them needs no server.
"""

from __future__ import annotations

import hashlib
import random
import shutil
import statistics
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import _testlib  # noqa: F401  (tests/ on sys.path)
import corpus
from builders import BuiltPackage, File, FileSpec, build_package  # type: ignore[import-not-found,unused-ignore]
from harness import (
    BIN,
    HERE,
    TMPFS,
    WORK,
    Row,
    Sample,
    interleave,
    interleave_many,
    median,
    peak_rss,
    ratio_row,
    run_process,
)
from lockfiles import conda_at, write_lock  # type: ignore[import-not-found,unused-ignore]

SYNTHETIC = corpus.CACHE / "synthetic"
HUGE = corpus.CACHE / "huge"
SYNTHETIC_PACKAGES = 100
SYNTHETIC_FILE_SIZE = 2048
FILES_PER_FOLDER = 100
SYNTHETIC_SIZES = (10_000, 100_000)
HUGE_PACKAGES = 16
HUGE_FILES = 8
HUGE_FILE_SIZE = 32 << 20
FLOOR_SCRIPT = HERE / "ctools_floor.sh"
PYTHON_FLOOR = HERE / "python_floor.py"
TOOLS = ("unzip", "zstd", "tar", "bash", "xargs")
Log = Callable[[str], None]


def missing_tools() -> list[str]:
    return [tool for tool in TOOLS if shutil.which(tool) is None]


# --- the synthetic environments -------------------------------------------------------------------------


def _synthetic_content(package: int, index: int) -> bytes:
    """2 KiB that compress about 2:1: a seeded random half and a repeated half."""
    head = random.Random(f"{package}/{index}").randbytes(SYNTHETIC_FILE_SIZE // 2)
    return head + hashlib.sha256(head).digest() * (SYNTHETIC_FILE_SIZE // 64)


def synthetic_packages(files: int, log: Log) -> list[BuiltPackage]:
    """``SYNTHETIC_PACKAGES`` ``.conda`` packages holding ``files`` files in all, built once."""
    channel = SYNTHETIC / str(files) / "linux-64"
    per_package = files // SYNTHETIC_PACKAGES
    built = []
    for package in range(SYNTHETIC_PACKAGES):
        name = f"synth{package:03d}"
        path = channel / f"{name}-1.0-0.conda"
        if not path.exists():
            if package == 0:
                log(f"building the synthetic {files:,}-file environment (once; cached in {SYNTHETIC})")
            specs: dict[str, FileSpec] = {
                f"share/{name}/d{i // FILES_PER_FOLDER:03d}/f{i:05d}.dat": File(
                    _synthetic_content(package, i)
                )
                for i in range(per_package)
            }
            build_package(channel, name, "1.0", "0", files=specs)
        built.append(_described(path, name))
    return built


def _described(path: Path, name: str) -> BuiltPackage:
    """A cached archive as a BuiltPackage (its record rebuilt from the bytes)."""
    data = path.read_bytes()
    record = {
        "name": name,
        "version": "1.0",
        "build": "0",
        "build_number": 0,
        "subdir": path.parent.name,
        "depends": [],
        "sha256": hashlib.sha256(data).hexdigest(),
        "md5": hashlib.md5(data).hexdigest(),
        "size": len(data),
    }
    if path.parent.name == "noarch":
        record["noarch"] = "generic"
    return BuiltPackage(path, path.name, path.parent.name, name, "1.0", "0", record)


def pack_of(packages: Sequence[BuiltPackage], folder: Path, *extra: str) -> Path:
    """Pack ``packages`` (named by path in the lockfile), untimed; returns the output."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "pixi.toml").write_text(
        '[workspace]\nname = "bench"\nchannels = ["conda-forge"]\nplatforms = ["linux-64"]\n'
    )
    entries = [conda_at(p, p.path) for p in packages]
    write_lock(folder / "pixi.lock", {"default": {"linux-64": entries}}, ["conda-forge"])
    output = folder / ("environment.sh" if "--create-executable" in extra else "environment.tar")
    run_process([BIN / "pixi-pack", folder, "-o", output, "-q", *extra])
    return output


def cost_order(packages: Sequence[BuiltPackage]) -> list[Path]:
    """Archives costliest first, as pixi-unpack starts them: the floor gets the same head start."""

    def cost(p: BuiltPackage) -> int:
        return p.size * 8 if p.file_name.endswith(".tar.bz2") else p.size

    return [p.path for p in sorted(packages, key=cost, reverse=True)]


# --- ctools ---------------------------------------------------------------------------------------------


def bench_ctools(
    base: Sequence[BuiltPackage], base_tar: Path, base_files: int, runs: int, log: Log
) -> list[Row]:
    """pixi-unpack against the C-tool floor on the corpus and the synthetic envs, disk and tmpfs."""
    missing = missing_tools()
    if missing:
        return [Row("C-tool floor", "-", "-", "not available", "<= 0.85x", None, {"missing": missing})]
    sets: list[tuple[str, Sequence[BuiltPackage], Path, int]] = [("corpus", base, base_tar, base_files)]
    for files in SYNTHETIC_SIZES:
        packages = synthetic_packages(files, log)
        tar = SYNTHETIC / str(files) / "environment.tar"
        if not tar.exists():
            pack_of(packages, SYNTHETIC / str(files) / "project")
            shutil.move(SYNTHETIC / str(files) / "project" / "environment.tar", tar)
        sets.append((f"{files:,} files", packages, tar, files))
    rows: list[Row] = []
    rss: dict[int, float] = {}
    places = [("disk", WORK)] + ([("tmpfs", TMPFS)] if TMPFS.parent.is_dir() else [])
    for label, members, tar, files in sets:
        archives = cost_order(members)

        def floor(folder: Path, archives: list[Path] = archives) -> Sample:
            return run_process(["bash", FLOOR_SCRIPT, folder / "env", *archives])

        def unpack(folder: Path, tar: Path = tar) -> Sample:
            return run_process([BIN / "pixi-unpack", tar, "-o", folder, "-e", "env", "-q"])

        def bare(folder: Path, archives: list[Path] = archives) -> Sample:
            return run_process([BIN / "python", PYTHON_FLOOR, folder / "env", *archives])

        for place, where in places:
            log(f"C tools vs pixi-unpack vs bare Python, {label}, {place} ({runs} runs each)")
            references, (subjects, bared) = interleave_many(runs, floor, [unpack, bare], where)
            row = ratio_row(
                f"unpack vs C tools, {label} ({place})", "pixi-unpack", "C tools", references, subjects, 0.85
            )
            row.data["files"] = files
            row.data["per_file_us"] = {
                "pixi-unpack": round(median(subjects) / files * 1e6, 1),
                "C tools": round(median(references) / files * 1e6, 1),
                "bare Python": round(median(bared) / files * 1e6, 1),
            }
            rows.append(row)
            if place == "disk" and label != "corpus":
                rss[files] = peak_rss(subjects)
            row = ratio_row(
                f"bare Python vs C tools, {label} ({place})", "bare Python", "C tools", references, bared, 1
            )
            rows.append(replace(row, target="-", ok=None))
    shutil.rmtree(TMPFS, ignore_errors=True)
    small, large = SYNTHETIC_SIZES
    rows.append(
        Row(
            f"pixi-unpack peak RSS, {large:,} files",
            f"pixi-unpack {rss[large]:.0f} MB",
            "-",
            f"{rss[large]:.0f} MB",
            "<= 100 MB",
            rss[large] <= 100,
            {"rss_mb": rss},
        )
    )
    rows.append(
        Row(
            f"peak RSS growth, {small:,} -> {large:,} files",
            f"{large:,} files: {rss[large]:.0f} MB",
            f"{small:,} files: {rss[small]:.0f} MB",
            f"{rss[large] - rss[small]:+.0f} MB",
            "<= 20 MB",
            rss[large] - rss[small] <= 20,
            {"rss_mb": rss},
        )
    )
    label, members, tar, files = sets[-1]
    rows.append(syscall_row(label, tar, cost_order(members), files, log))
    return rows


# --- syscalls -------------------------------------------------------------------------------------------


def strace_counts(command: Sequence[str | Path], output: Path) -> dict[str, int]:
    """Syscall name -> calls over the command and all its threads and children (``strace -c -f``)."""
    report = output.with_suffix(".strace")
    run_process(["strace", "-f", "-c", "-o", report, *command])
    counts: dict[str, int] = {}
    for line in report.read_text().splitlines():
        fields = line.split()
        # "% time  seconds  usecs/call  calls  [errors]  syscall"; the errors column may be empty.
        if len(fields) >= 5 and fields[0][0].isdigit() and fields[-1] != "total":
            counts[fields[-1]] = int(fields[3])
    report.unlink()
    return counts


def syscall_row(label: str, tar: Path, archives: Sequence[Path], files: int, log: Log) -> Row:
    if shutil.which("strace") is None:
        return Row(
            f"syscalls per file, {label}", "-", "-", "not available", "-", None, {"missing": ["strace"]}
        )
    log(f"strace -c -f of one run of each side, {label}")
    WORK.mkdir(parents=True, exist_ok=True)
    counts = {}
    commands: list[tuple[str, list[str | Path]]] = [
        ("pixi-unpack", [BIN / "pixi-unpack", tar, "-o", WORK / "strace-ours", "-e", "env", "-q"]),
        ("C tools", ["bash", FLOOR_SCRIPT, WORK / "strace-floor" / "env", *archives]),
    ]
    for side, command in commands:
        counts[side] = strace_counts(command, WORK / side.replace(" ", "-"))
    shutil.rmtree(WORK / "strace-ours", ignore_errors=True)
    shutil.rmtree(WORK / "strace-floor", ignore_errors=True)
    per_file = {side: sum(c.values()) / files for side, c in counts.items()}
    top = {
        side: {name: round(n / files, 2) for name, n in sorted(c.items(), key=lambda kv: -kv[1])[:8]}
        for side, c in counts.items()
    }
    return Row(
        f"syscalls per file, {label}",
        f"pixi-unpack {per_file['pixi-unpack']:.2f}",
        f"C tools {per_file['C tools']:.2f}",
        f"{per_file['pixi-unpack'] / per_file['C tools']:.2f}x",
        "-",
        None,
        {"per_file": per_file, "top_per_file": top},
    )


# --- huge -----------------------------------------------------------------------------------------------


def huge_packages(log: Log) -> list[BuiltPackage]:
    """``HUGE_PACKAGES`` noarch packages of ``HUGE_FILES`` x 32 MB random bytes (seeded), built once."""
    channel = HUGE / "noarch"
    built = []
    for index in range(HUGE_PACKAGES):
        name = f"hugedata-{index}"
        path = channel / f"{name}-1.0-0.conda"
        if not path.exists():
            log(f"building {path.name} ({HUGE_FILES * HUGE_FILE_SIZE >> 20} MB, once; cached in {HUGE})")
            rng = random.Random(f"huge{index}")
            files: dict[str, FileSpec] = {
                f"share/{name}/blob{i}.bin": File(rng.randbytes(HUGE_FILE_SIZE)) for i in range(HUGE_FILES)
            }
            build_package(channel, name, "1.0", "0", noarch="generic", files=files)
        built.append(_described(path, name))
    return built


def bench_huge(
    big_set: Sequence[BuiltPackage], pyz: Path | None, runs: int, log: Log, env: dict[str, str]
) -> list[Row]:
    """Seconds per GB of the 5 GB pack against the 1.16 GB pack's, for pixi-unpack and environment.sh."""
    huge_set = [*big_set, *huge_packages(log)]
    packs: dict[str, tuple[Path, Path]] = {}
    for which, packages in (("1 GB", big_set), ("5 GB", huge_set)):
        folder = WORK / "huge" / which.replace(" ", "")
        log(f"packing the {which} set (untimed)")
        tar = pack_of(packages, folder)
        executable = tar
        if pyz is not None:
            executable = pack_of(packages, folder, "--create-executable", "--pixi-unpack-source", str(pyz))
        packs[which] = (tar, executable)
    gigabytes = {which: tar.stat().st_size / 1e9 for which, (tar, _) in packs.items()}
    rows = []
    sides: list[tuple[str, Callable[[Path, str], list[str | Path]]]] = [
        (
            "pixi-unpack",
            lambda folder, which: [BIN / "pixi-unpack", packs[which][0], "-o", folder, "-e", "env", "-q"],
        )
    ]
    if pyz is not None:
        sides.append(
            ("environment.sh", lambda folder, which: ["sh", packs[which][1], "-o", folder, "-e", "env", "-q"])
        )
    for side, command in sides:

        def small(folder: Path, command: Any = command) -> Sample:
            return run_process(command(folder, "1 GB"), env=env)

        def large(folder: Path, command: Any = command) -> Sample:
            return run_process(command(folder, "5 GB"), env=env)

        log(f"{side}: 5 GB pack vs 1.16 GB pack ({runs} runs each)")
        references, subjects = interleave(runs, small, large, WORK)
        per_gb = {
            "5 GB": statistics.median(s.seconds / gigabytes["5 GB"] for s in subjects),
            "1 GB": statistics.median(s.seconds / gigabytes["1 GB"] for s in references),
        }
        ratio = per_gb["5 GB"] / per_gb["1 GB"]
        rows.append(
            Row(
                f"{side} s/GB, {gigabytes['5 GB']:.1f} GB pack",
                f"{gigabytes['5 GB']:.1f} GB: {per_gb['5 GB']:.2f} s/GB",
                f"{gigabytes['1 GB']:.2f} GB: {per_gb['1 GB']:.2f} s/GB",
                f"{ratio:.2f}x",
                "<= 1.1x",
                ratio <= 1.1,
                {
                    "ratio": round(ratio, 3),
                    "gigabytes": gigabytes,
                    "subject_s": [round(s.seconds, 3) for s in subjects],
                    "reference_s": [round(s.seconds, 3) for s in references],
                },
            )
        )
        big_rss, small_rss = peak_rss(subjects), peak_rss(references)
        rows.append(
            Row(
                f"{side} peak RSS, {gigabytes['5 GB']:.1f} GB pack",
                f"{gigabytes['5 GB']:.1f} GB: {big_rss:.0f} MB",
                f"{gigabytes['1 GB']:.2f} GB: {small_rss:.0f} MB",
                f"{big_rss - small_rss:+.0f} MB",
                "unchanged (<= +10 MB)",
                big_rss - small_rss <= 10,
                {"rss_mb": {"5 GB": big_rss, "1 GB": small_rss}},
            )
        )
    shutil.rmtree(WORK / "huge", ignore_errors=True)
    return rows
