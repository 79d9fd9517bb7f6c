"""Install conda packages into a prefix, file for file as rattler (and so upstream pixi-unpack) does.

The work is a pipeline. First every package's ``info/`` is read, in parallel
(:func:`~pixi_pack.formats.package_info.load_package`). Then, with all the packages known, one immutable
plan decides where each file goes (:func:`~pixi_pack.install.plan.plan_install`). Last, each package's
payload is streamed straight from its archive into its final places (in parallel, each file written
once, placeholders already replaced) by its :class:`~pixi_pack.install.linker.PackageLinker`, and its
``conda-meta/<dist>.json`` is written (:mod:`pixi_pack.install.condameta`). Nothing depends on thread
timing, so the result is the same on every run.

rattler's behaviour was read in ``crates/rattler/src/install/`` (``mod.rs``, ``link.rs``,
``entry_point.rs``, ``installer/mod.rs``) and upstream pixi-pack's ``src/unpack.rs``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from contextlib import AbstractContextManager
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from pixi_pack.errors import ArchiveError, InstallError, IntegrityError, PixiPackError
from pixi_pack.formats.package_info import Package, from_planned_fields, load_package, planned_fields
from pixi_pack.install.condameta import prefix_record, start_prefix, write_json_atomically
from pixi_pack.install.linker import PackageLinker, Target
from pixi_pack.install.plan import PackagePlan, plan_install
from pixi_pack.install.tree import TreeWriter
from pixi_pack.install.workers import can_fork, run_in_processes
from pixi_pack.io.zstd import Decompressor
from pixi_pack.models import PackageSource
from pixi_pack.platforms import PythonInfo, is_windows

logger = logging.getLogger("pixi_pack")


def install_packages(
    packages: Sequence[PackageSource],
    build_dir: Path,
    target_prefix: Path,
    platform: str,
    *,
    workers: int | None = None,
    verify: Callable[[PackageSource], None] | None = None,
    on_installed: Callable[[PackageSource], None] | None = None,
    tuning: Callable[[], AbstractContextManager[object]] = contextlib.nullcontext,
    zstd: Decompressor | None = None,
    python: PythonInfo | None = None,
    placement: Callable[[Sequence[PackagePlan]], Sequence[Mapping[str, str]]] | None = None,
    processes: bool = False,
) -> None:
    """Install ``packages`` into ``build_dir`` as if it were ``target_prefix``.

    ``build_dir`` (empty, or absent) receives the files; placeholders, shebangs, entry points and
    ``conda-meta`` name ``target_prefix``, where the caller moves the result. Link scripts are not run,
    as rattler and upstream pixi-unpack do not run them. ``verify``, if given, checks each package
    before anything is read from it (each package in the same task that then reads its ``info/``, so
    there is no separate pass); a failure stops everything before any file is written. On failure
    ``build_dir`` is emptied again and the error names the package. ``on_installed`` is called (from
    this thread) as each package is done.

    ``processes`` lets the packages be read and written by forked worker processes instead of threads
    where that is safe (:mod:`pixi_pack.install.workers`: Linux, no other thread running); the command
    line asks for it, as it forks the process. ``tuning`` is entered around the parallel work: the command line passes
    :func:`pixi_pack.cli.tuned_interpreter`, which changes process-wide interpreter settings, so a
    library caller decides for itself. ``zstd`` decompresses ``.conda`` payloads (by default a
    :class:`~pixi_pack.io.zstd.Decompressor` of this call).

    An update installs only some of an environment's packages: ``python`` is the environment's python
    when it is not among them, and ``placement`` gives each package's ``moved`` mapping (prefix path ->
    where its copy goes, for the copies that do not go to their own path), decided over the whole
    environment's clobbers.

    Memory stays flat in the number of files: the plan holds no object per path, and past
    :data:`KEPT_ENTRIES` paths in all (shared out among the reading processes), a package's
    ``info/paths.json`` entries are not kept: only each path and its type are checked when it is read,
    and the entries are read and checked in full from its archive when its turn comes.
    """
    made_build_dir = not build_dir.exists()
    build_dir.mkdir(parents=True, exist_ok=True)
    if not made_build_dir and any(build_dir.iterdir()):
        msg = f"cannot install into {build_dir}: the folder is not empty"
        raise InstallError(msg)
    try:
        with tuning():
            _install(
                packages,
                build_dir=build_dir,
                target_prefix=target_prefix,
                platform=platform,
                workers=max(1, workers or os.cpu_count() or 1),
                verify=verify,
                on_installed=on_installed,
                zstd=zstd or Decompressor(),
                python=python,
                placement=placement,
                processes=processes,
            )
    except BaseException:
        _undo(build_dir, made_build_dir)
        raise


def _undo(build_dir: Path, made_build_dir: bool) -> None:
    """Leave ``build_dir`` as it was before: absent, or empty."""
    if made_build_dir:
        shutil.rmtree(build_dir, ignore_errors=True)
        return
    for child in build_dir.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)


def _install(
    packages: Sequence[PackageSource],
    *,
    build_dir: Path,
    target_prefix: Path,
    platform: str,
    workers: int,
    verify: Callable[[PackageSource], None] | None,
    on_installed: Callable[[PackageSource], None] | None,
    zstd: Decompressor,
    python: PythonInfo | None,
    placement: Callable[[Sequence[PackagePlan]], Sequence[Mapping[str, str]]] | None,
    processes: bool,
) -> None:
    budget = _EntryBudget(KEPT_ENTRIES)

    def load(source: PackageSource, keep: Callable[[int], bool] = budget.take) -> Package:
        if verify is not None:
            verify(source)
        return load_package(source, zstd=zstd, keep=keep)

    fork = processes and workers > 1 and len(packages) > 1 and can_fork()
    if fork:
        # Read by worker processes too (threads would share one GIL). Each inherits its own copy of a
        # share of the budget, and sends back the package as JSON: its entries only within that share.
        readers = min(workers, len(packages))
        logger.debug("reading %d packages in %d worker processes", len(packages), readers)
        share = _EntryBudget(KEPT_ENTRIES // readers)
        fields = run_in_processes(
            packages, lambda s: planned_fields(load(s, share.take)), None, workers, _with_context
        )
        loaded = [from_planned_fields(s, f) for s, f in zip(packages, fields)]
    else:
        with ThreadPoolExecutor(workers, "pixi-unpack-load") as pool:
            loaded = _run_all(pool, packages, load)
    plan = plan_install(loaded, platform, python=python)
    if placement is not None:
        places = placement(plan.packages)
        plans = [replace(p, moved=MappingProxyType(dict(m))) for p, m in zip(plan.packages, places)]
        plan = replace(plan, packages=tuple(plans))
    _warn_link_scripts(plan.packages, platform)
    writer = TreeWriter(build_dir, set())
    target = Target(
        writer=writer, prefix=str(target_prefix), platform=platform, python=plan.python, zstd=zstd
    )
    start_prefix(writer)
    by_source = {id(p.package.source): p for p in plan.packages}

    def install_one(source: PackageSource) -> None:
        package = by_source[id(source)]
        paths = PackageLinker(package, target).run()
        meta = build_dir / "conda-meta" / f"{package.package.dist}.json"
        write_json_atomically(meta, prefix_record(package.package, paths, target_prefix))

    # Start the costliest packages first so they do not finish last, alone.
    ordered = sorted(packages, key=_expected_cost, reverse=True)
    if fork and can_fork():  # still no other thread, after the plan
        logger.debug("writing %d packages in %d worker processes", len(ordered), min(workers, len(ordered)))
        run_in_processes(ordered, install_one, on_installed, workers, _with_context)
        return
    with ThreadPoolExecutor(workers, "pixi-unpack-install") as pool:
        _run_all(pool, ordered, install_one, on_installed)


#: How many ``info/paths.json`` entries (~700 bytes each) the install keeps in memory between reading the
#: packages and writing them; the packages beyond read their entries again (benchmarks/README.md).
KEPT_ENTRIES = 10_000


class _EntryBudget:
    """Hands out room for :data:`KEPT_ENTRIES` entries, first come first served, from any thread."""

    def __init__(self, room: int) -> None:
        self._room = room
        self._lock = threading.Lock()

    def take(self, count: int) -> bool:
        with self._lock:
            if count > self._room:
                return False
            self._room -= count
            return True


#: How much more a byte of ``.tar.bz2`` costs to install than a byte of ``.conda``: bz2 decompresses far
#: slower than zstd, and writing the files costs the same for both (benchmarks/README.md).
_BZ2_COST_FACTOR = 8


def _expected_cost(source: PackageSource) -> int:
    size = int(source.record.get("size") or 0)
    return size * _BZ2_COST_FACTOR if source.file_name.endswith(".tar.bz2") else size


def _run_all(
    pool: ThreadPoolExecutor,
    sources: Sequence[PackageSource],
    task: Callable[[PackageSource], Any],
    done: Callable[[PackageSource], None] | None = None,
) -> list[Any]:
    """``task`` for every source, results in order; the first failure cancels the rest and is raised."""
    futures = {pool.submit(task, source): i for i, source in enumerate(sources)}
    results: list[Any] = [None] * len(sources)
    pending = set(futures)
    while pending:
        finished, pending = wait(pending, return_when=FIRST_EXCEPTION)
        for future in sorted(finished, key=futures.__getitem__):
            source = sources[futures[future]]
            error = future.exception()
            if error is not None:
                for other in pending:
                    other.cancel()
                wait(pending)
                raise _with_context(error, source) from error
            results[futures[future]] = future.result()
            if done is not None:
                done(source)
    return results


def _with_context(error: BaseException, source: PackageSource) -> BaseException:
    """The error, naming the package: an :class:`ArchiveError` or :class:`IntegrityError` names its file already."""
    if isinstance(error, (ArchiveError, IntegrityError)):
        return error
    stem = source.file_name.rsplit(".conda", 1)[0].rsplit(".tar.bz2", 1)[0]
    if isinstance(error, PixiPackError):
        return type(error)(f"could not install {stem}: {error}")
    if isinstance(error, OSError):
        return InstallError(f"could not install {stem}: {error}")
    return error


def _warn_link_scripts(plans: Iterable[PackagePlan], platform: str) -> None:
    folder, ext = ("Scripts", "bat") if is_windows(platform) else ("bin", "sh")
    for plan in plans:
        name = plan.package.index["name"]
        scripts = {kind: f"{folder}/.{name}-{kind}.{ext}" for kind in ("pre-link", "post-link")}
        found = set(scripts.values()).intersection(plan.owned())
        for kind, path in scripts.items():
            if path in found:
                logger.warning(
                    "%s has a %s script, which is not run (rattler and pixi-unpack do not run them either)",
                    plan.package.dist,
                    kind,
                )
