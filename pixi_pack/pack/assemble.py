"""``pack()``: pixi.lock -> verified package files -> channel metadata -> one archive."""

from __future__ import annotations

import errno
import logging
import os
import shutil
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from pixi_pack import __version__
from pixi_pack.errors import LockfileError, PixiPackError
from pixi_pack.formats.archive import TarLayout, copy_range, tar_layout, write_at, write_tar
from pixi_pack.formats.channel import environment_yml, metadata_json, normalize_project_name, repodata_files
from pixi_pack.formats.locations import is_url
from pixi_pack.io import tempfiles
from pixi_pack.lock.lockfile import find_lockfile, load_lockfile, platform_subdir, select_environment
from pixi_pack.models import (
    CHANNEL_DIR,
    ENVIRONMENT_FILE,
    METADATA_FILE,
    PACK_FORMAT_VERSION,
    PYPI_DIR,
    REPODATA_FILE,
    CondaPackage,
    LockedEnvironment,
    PackMetadata,
    PackOptions,
    PypiPackage,
)
from pixi_pack.pack.fetch import Expected, Fetcher, Slot
from pixi_pack.platforms import is_windows
from pixi_pack.progress import Progress, human_bytes

logger = logging.getLogger("pixi_pack")


def pack(options: PackOptions) -> None:
    """Create the pack described by ``options``; on failure nothing is left at the output path.

    What a killed earlier run left beside the output (its temporary folder and file, named after its
    process) is removed first.
    """
    lockfile = find_lockfile(options.manifest_path)
    data = load_lockfile(lockfile)
    subdir = platform_subdir(data, options.platform)
    env = select_environment(data, options.environment, options.platform, lockfile.parent)
    conda, wheels = _select_packages(env, options, subdir)
    _check_output(options)
    files = _pack_files(conda, wheels)
    # Work next to the output, so what is made is renamed into place on the same filesystem.
    staging_parent = options.output.parent if options.output is not None else None
    try:
        if staging_parent is not None:
            staging_parent.mkdir(parents=True, exist_ok=True)
            for stale in (WORKDIR_TAG, options.output.name if options.output else ""):
                for path in tempfiles.remove_stale(staging_parent, stale):
                    logger.debug("removed %s, left by an interrupted run", path)
        workdir = tempfiles.create_dir(staging_parent, WORKDIR_TAG, suffix="")
    except OSError as exc:
        msg = f"could not write to {exc.filename or staging_parent}: {exc.strerror or exc}"
        raise PixiPackError(msg) from exc
    staging = workdir / "pack"
    try:
        fetcher = Fetcher(options.config, options.cache_dir)
        try:
            pyz = _find_unpacker(options, fetcher, workdir)
            progress = _start_progress(conda, files)
            metadata = _Metadata(conda, wheels, subdir)
            if options.output is not None and _in_place(options, subdir):
                _write_in_place(fetcher, files, metadata, options.output, pyz, staging, progress)
            else:
                _stage(fetcher, files, metadata, staging, progress)
                _write_output(staging, options, subdir, pyz)
        finally:
            fetcher.close()
    except OSError as exc:
        msg = f"could not write {exc.filename or options.output}: {exc.strerror or exc}"
        raise PixiPackError(msg) from exc
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


WORKDIR_TAG = "pixi-pack"
"""The temporary folder beside the output: ``.pixi-pack-<pid>-<random>``."""


def _in_place(options: PackOptions, subdir: str) -> bool:
    """Whether the pack can be assembled in the output file, each package written once, into its place.

    Not for a folder, nor stdout (no random access), nor ``environment.ps1`` (its payload is base64 text,
    where each package's first and last bytes share characters and lines with its neighbours'); nor
    without ``os.pwrite`` (Windows). Those are written from a staging folder.
    """
    windows_executable = options.create_executable and is_windows(subdir)
    return not options.directory_only and not windows_executable and hasattr(os, "pwrite")


def _check_output(options: PackOptions) -> None:
    """Refuse early what would fail at the end: a --directory-only target that already has content."""
    output = options.output
    if (
        options.directory_only
        and output is not None
        and output.exists()
        and (not output.is_dir() or any(output.iterdir()))
    ):
        msg = f"output folder {output} already exists and is not empty: remove it or choose another -o"
        raise PixiPackError(msg)


def _find_unpacker(options: PackOptions, fetcher: Fetcher, workdir: Path) -> Path | None:
    """The pyz to embed in a self-extracting pack, found (or downloaded) before any package is."""
    if not options.create_executable:
        return None
    from pixi_pack.pack.selfextract import find_unpacker

    return find_unpacker(options.pixi_unpack_source, fetcher.download_file, directory=workdir)


def _select_packages(
    env: LockedEnvironment, options: PackOptions, subdir: str
) -> tuple[list[CondaPackage], list[PypiPackage]]:
    """The conda packages and wheels to pack: the lockfile's, checked, plus the injected ones."""
    if env.source_packages:
        names = ", ".join(env.source_packages)
        msg = (
            f"the environment contains conda source packages, which pixi builds and pixi-pack cannot fetch: "
            f"{names}; build them (e.g. `pixi build`) and pass the built packages with --inject"
        )
        raise LockfileError(msg)
    wheels: list[PypiPackage] = []
    for package in env.pypi_packages:
        if package.is_wheel:
            wheels.append(package)
        elif options.ignore_pypi_non_wheel:
            logger.warning("skipping %s: not a wheel (%s)", package.name, package.file_name)
        else:
            msg = (
                f"package {package.name} is not a wheel file, we currently require all dependencies to be "
                f"wheels. (pass --ignore-pypi-non-wheel to skip it)"
            )
            raise PixiPackError(msg)
    conda = list(env.conda_packages)
    conda_paths = [p for p in options.inject if not p.name.endswith(".whl")]
    if conda_paths:
        from pixi_pack.pack.inject import check_compatible, load_injected

        injected = [load_injected(p) for p in conda_paths]
        check_compatible(env.conda_packages, injected, platform=subdir)
        conda += injected
    wheel_paths = [p for p in options.inject if p.name.endswith(".whl")]
    if wheel_paths:
        wheels += _injected_wheels(wheel_paths, wheels, conda, subdir)
    if not conda:
        logger.warning("the environment %s has no conda packages for %s", env.name, env.platform)
    return conda, wheels


def _injected_wheels(
    paths: Sequence[Path], locked: Sequence[PypiPackage], conda: Sequence[CondaPackage], subdir: str
) -> list[PypiPackage]:
    """``--inject``ed wheels, named from their file names; they may not shadow a wheel of the lockfile.

    Their tags are checked against the platform and the environment's python now, as pixi-unpack would.
    """
    from pixi_pack.formats.wheel_tags import Target, incompatibility, parse_wheel_name, python_version

    python = next((python_version(p.record) for p in conda if p.name == "python"), None)
    taken = {normalize_project_name(w.name): w for w in locked}
    injected = []
    for path in paths:
        parsed = parse_wheel_name(path.name)
        if parsed is None:
            msg = f"cannot inject {path}: not a valid wheel file name (name-version-python-abi-platform.whl)"
            raise PixiPackError(msg)
        clash = taken.get(parsed.name)
        if clash is not None:
            what = "the lockfile" if clash in locked else "another injected wheel"
            msg = (
                f"cannot inject {path.name}: {parsed.name} {clash.version} is already in the pack from {what}"
            )
            raise PixiPackError(msg)
        problem = incompatibility(parsed, Target(subdir, python)) if python is not None else None
        if problem is not None:
            msg = f"cannot inject {path.name}: {problem}"
            raise PixiPackError(msg)
        logger.warning(
            "injected wheel %s cannot be checked against the environment; make sure it is compatible",
            path.name,
        )
        wheel = PypiPackage(str(path.resolve()), path.name, parsed.name, parsed.version, None)
        taken[parsed.name] = wheel
        injected.append(wheel)
    return injected


@dataclass(frozen=True)
class _PackFile:
    """A package file of the pack: where it comes from, what it must match, where it goes."""

    name: str
    """Its path in the pack, e.g. ``channel/linux-64/zlib-1.3.1-hb9d3cd8_2.conda``."""
    location: str
    what: str
    """How messages name it."""
    expected: Expected
    cache_key: str | None
    is_wheel: bool
    """Its sha256 goes into ``pixi-pack.json``."""


def _pack_files(conda: Sequence[CondaPackage], wheels: Sequence[PypiPackage]) -> list[_PackFile]:
    files = [
        _PackFile(
            f"{CHANNEL_DIR}/{p.subdir}/{p.file_name}",
            p.location,
            p.dist_name,
            Expected(p.sha256, p.md5, p.size),
            f"{p.subdir}/{p.file_name}",
            is_wheel=False,
        )
        for p in conda
    ]
    files += [
        _PackFile(
            f"{PYPI_DIR}/{w.file_name}",
            w.location,
            f"{w.name} {w.version}".strip(),
            Expected(w.sha256),
            # A local wheel without a hash may be rebuilt under the same name: never cache it.
            f"{PYPI_DIR}/{w.file_name}" if is_url(w.location) or w.sha256 else None,
            is_wheel=True,
        )
        for w in wheels
    ]
    # Two entries for one file (a malformed lockfile) must not share a slot; the last one wins, as in
    # repodata.json.
    return list({f.name: f for f in files}.values())


def _start_progress(conda: Sequence[CondaPackage], files: Sequence[_PackFile]) -> Progress:
    total_bytes = sum(p.size or 0 for p in conda)
    logger.info(
        "downloading %d packages%s", len(files), f" ({human_bytes(total_bytes)})" if total_bytes else ""
    )
    return Progress("downloaded", len(files), total_bytes or None)


def _fetch_all(
    fetcher: Fetcher, jobs: Sequence[tuple[_PackFile, Path | Slot]], progress: Progress
) -> dict[str, str]:
    """Fetch every file to its destination, concurrently; returns the sha256 of each wheel by file name."""
    wheel_sha256: dict[str, str] = {}

    def fetch(file: _PackFile, destination: Path | Slot) -> None:
        digests = fetcher.fetch(
            file.location,
            destination,
            what=file.what,
            expected=file.expected,
            cache_key=file.cache_key,
            on_bytes=progress.add_bytes,
        )
        if file.is_wheel:
            wheel_sha256[PurePosixPath(file.name).name] = digests.sha256
        progress.item_done()

    if not jobs:
        return wheel_sha256
    with ThreadPoolExecutor(
        max_workers=min(fetcher.concurrency, len(jobs)), thread_name_prefix="pixi-pack-fetch"
    ) as pool:
        futures = [pool.submit(fetch, file, destination) for file, destination in jobs]
        try:
            for future in futures:
                future.result()
        except BaseException:
            # Ctrl-C, SIGTERM or a failed file: stop the other downloads now, not when they finish.
            fetcher.cancel()
            for future in futures:
                future.cancel()
            raise
    return wheel_sha256


class _Metadata:
    """The small files of the pack, made from the lockfile: ``pixi-pack.json``, ``environment.yml`` and a
    ``repodata.json`` per subdir."""

    def __init__(self, conda: Sequence[CondaPackage], wheels: Sequence[PypiPackage], subdir: str) -> None:
        self._wheel_names = [w.file_name for w in wheels]
        self._fixed = {
            f"{CHANNEL_DIR}/{repodata_subdir}/{REPODATA_FILE}": text.encode()
            for repodata_subdir, text in repodata_files(conda, subdir).items()
        }
        self._fixed[ENVIRONMENT_FILE] = environment_yml(conda, wheels).encode()
        self._metadata = PackMetadata(PACK_FORMAT_VERSION, __version__, subdir)
        if wheels and not any(p.name == "pip" for p in conda):
            logger.warning(
                "the environment has PyPI wheels but no pip conda package: the conda/micromamba "
                "compatibility mode (environment.yml) will not be able to install them"
            )

    def files(self, wheel_sha256: Mapping[str, str]) -> dict[str, bytes]:
        """Path in the pack -> content; ``pixi-pack.json`` records ``wheel_sha256``."""
        return {METADATA_FILE: metadata_json(self._metadata, wheel_sha256).encode(), **self._fixed}

    def sizes(self) -> dict[str, int]:
        """The size of each file, known before the wheels' hashes are (each is 64 hex digits)."""
        placeholder = dict.fromkeys(self._wheel_names, _NO_SHA256)
        return {name: len(data) for name, data in self.files(placeholder).items()}


_NO_SHA256 = "0" * 64


def _stage(
    fetcher: Fetcher, files: Sequence[_PackFile], metadata: _Metadata, staging: Path, progress: Progress
) -> None:
    """Fetch every file into the folder ``staging`` and write the small files beside them."""
    wheel_sha256 = _fetch_all(fetcher, [(f, staging / f.name) for f in files], progress)
    progress.finish()
    for name, text in metadata.files(wheel_sha256).items():
        (staging / name).parent.mkdir(parents=True, exist_ok=True)
        (staging / name).write_bytes(text)


def _write_in_place(
    fetcher: Fetcher,
    files: Sequence[_PackFile],
    metadata: _Metadata,
    output: Path,
    pyz: Path | None,
    staging: Path,
    progress: Progress,
) -> None:
    """Write the pack (``environment.sh`` with ``pyz``) at ``output``, via a temporary name and a rename."""
    with _replacing(output, executable=pyz is not None) as fd:
        _assemble(fd, output, fetcher, files, metadata, pyz, staging, progress)


@contextmanager
def _replacing(output: Path, *, executable: bool) -> Iterator[int]:
    """:func:`tempfiles.replacing` for the pack: its descriptor, and our error for what the OS says."""
    try:
        with tempfiles.replacing(output, mode=0o777 if executable else 0o666) as out:
            yield out.fileno()
    except OSError as exc:
        msg = f"could not write {output}: {exc.strerror or exc}"
        raise PixiPackError(msg) from exc
    logger.info("created pack at %s (%s)", output, human_bytes(output.stat().st_size))


def _assemble(
    fd: int,
    output: Path,
    fetcher: Fetcher,
    files: Sequence[_PackFile],
    metadata: _Metadata,
    pyz: Path | None,
    staging: Path,
    progress: Progress,
) -> None:
    """Lay the tar out from the lockfile's sizes, then fetch each package straight into its place.

    A file of unknown size (a wheel, usually) is fetched into ``staging`` and copied in once its size
    fixes the place of what follows it. The stub of ``environment.sh`` states the payload's length, so
    with ``pyz`` those files are fetched before anything else.
    """
    sizes: dict[str, int | None] = {**metadata.sizes(), **{f.name: f.expected.size for f in files}}
    staged = [f for f in files if f.expected.size is None] if pyz is not None else []
    wheel_sha256 = _fetch_all(fetcher, [(f, staging / f.name) for f in staged], progress)
    sizes.update({f.name: (staging / f.name).stat().st_size for f in staged})
    layout = tar_layout(sizes)
    base = 0
    if pyz is not None:
        from pixi_pack.pack.selfextract import sh_payload_offset

        assert layout.length is not None  # every size is known
        base = sh_payload_offset(layout.length, pyz.stat().st_size)
    _reserve(fd, base + (layout.length or layout.placed_end))
    fetched_first = {f.name for f in staged}
    rest = [f for f in files if f.name not in fetched_first]
    jobs = _destinations(rest, layout, staging, fd, base, output)
    wheel_sha256.update(_fetch_all(fetcher, jobs, progress))
    progress.finish()
    staged += [file for file, destination in jobs if isinstance(destination, Path)]
    layout = tar_layout({**sizes, **{f.name: (staging / f.name).stat().st_size for f in staged}})
    assert layout.length is not None  # every size is known
    _fill_in(fd, base, layout, metadata.files(wheel_sha256), {f.name: staging / f.name for f in staged})
    if pyz is None:
        os.ftruncate(fd, layout.length)
        return
    from pixi_pack.pack.selfextract import complete_sh

    complete_sh(fd, layout.length, pyz)


def _destinations(
    files: Sequence[_PackFile], layout: TarLayout, staging: Path, fd: int, base: int, output: Path
) -> list[tuple[_PackFile, Path | Slot]]:
    """Where to fetch each file: its slot in the output (the tar starting at ``base`` of ``fd``) where the
    layout has one, else into staging."""
    jobs: list[tuple[_PackFile, Path | Slot]] = []
    for file in files:
        slot = layout.slots.get(file.name)
        if slot is None:
            jobs.append((file, staging / file.name))
        else:
            jobs.append((file, Slot(fd, base + slot.data_offset, slot.size, output)))
    return jobs


def _reserve(fd: int, length: int) -> None:
    """Allocate the first ``length`` bytes of the output before the downloads fill them in.

    Threads writing into one file contend less when its blocks exist (ext4, 4 threads writing 1 GB:
    0.3 -> 0.18 s of system time), and a full disk stops the pack before anything is downloaded.
    """
    if not hasattr(os, "posix_fallocate"):  # macOS
        return
    try:
        os.posix_fallocate(fd, 0, length)
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise
        logger.debug("could not preallocate the output: %s", exc)


def _fill_in(
    fd: int, base: int, layout: TarLayout, contents: Mapping[str, bytes], staged: Mapping[str, Path]
) -> None:
    """Write every member's header, the small files, and the files fetched into staging."""
    for slot in layout.slots.values():
        write_at(fd, slot.header, base + slot.offset)
        if slot.name in contents:
            write_at(fd, contents[slot.name], base + slot.data_offset)
        elif slot.name in staged:
            with open(staged[slot.name], "rb") as source:
                copy_range(source.fileno(), 0, fd, base + slot.data_offset, slot.size)


def _write_output(staging: Path, options: PackOptions, subdir: str, pyz: Path | None) -> None:
    output = options.output
    if options.directory_only:
        assert output is not None
        if output.is_dir():
            output.rmdir()  # empty: checked by _check_output
        os.replace(staging, output)
        logger.info("created pack folder at %s", output)
        return
    if pyz is not None:
        from pixi_pack.pack.selfextract import write_executable

        payload = staging.parent / "payload.tar"
        with open(payload, "wb") as tar:
            write_tar(staging, tar)
        _emit(
            output,
            lambda out: write_executable(payload, pyz, out, windows=is_windows(subdir)),
            executable=True,
        )
        return
    _emit(output, lambda out: write_tar(staging, out), executable=False)


def _emit(output: Path | None, write: Callable[[BinaryIO], None], *, executable: bool) -> None:
    """Write through ``write(stream)`` to stdout, or to ``output`` via a temporary name and a rename."""
    if output is None:
        write(sys.stdout.buffer)
        sys.stdout.buffer.flush()
        return
    with _replacing(output, executable=executable) as fd, open(fd, "wb", closefd=False) as out:
        write(out)
