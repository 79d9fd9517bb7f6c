"""``pack()``: pixi.lock -> verified package files -> channel metadata -> one archive."""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO

from . import __version__
from .archive import write_tar
from .channel import environment_yml, metadata_json, normalize_project_name, repodata_files
from .errors import LockfileError, PixiPackError
from .fetch import Expected, Fetcher, is_url
from .lockfile import find_lockfile, load_lockfile, platform_subdir, select_environment
from .models import (
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
from .platforms import is_windows
from .progress import Progress, human_bytes

logger = logging.getLogger("pixi_pack")


def pack(options: PackOptions) -> None:
    """Create the pack described by ``options``; on failure nothing is left at the output path."""
    lockfile = find_lockfile(options.manifest_path)
    data = load_lockfile(lockfile)
    subdir = platform_subdir(data, options.platform)
    env = select_environment(data, options.environment, options.platform, lockfile.parent)
    conda, wheels = _select_packages(env, options, subdir)
    _check_output(options)
    # Work next to the output, so the finished pack is renamed into place on the same filesystem.
    staging_parent = options.output.parent if options.output is not None else None
    if staging_parent is not None:
        staging_parent.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix=".pixi-pack-", dir=staging_parent))
    staging = workdir / "pack"
    try:
        fetcher = Fetcher(options.config, options.cache_dir)
        try:
            pyz = _find_unpacker(options, fetcher, workdir)
            wheel_sha256 = _download(fetcher, conda, wheels, staging)
            _write_metadata(staging, conda, wheels, subdir, wheel_sha256)
            _write_output(staging, options, subdir, pyz)
        finally:
            fetcher.close()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


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
    from .selfextract import find_unpacker

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
            logger.warning("warning: skipping %s: not a wheel (%s)", package.name, package.file_name)
        else:
            msg = (
                f"package {package.name} is not a wheel file, we currently require all dependencies to be "
                f"wheels. (pass --ignore-pypi-non-wheel to skip it)"
            )
            raise PixiPackError(msg)
    conda = list(env.conda_packages)
    conda_paths = [p for p in options.inject if not p.name.endswith(".whl")]
    if conda_paths:
        from .inject import check_compatible, load_injected

        injected = [load_injected(p) for p in conda_paths]
        check_compatible(env.conda_packages, injected, platform=subdir)
        conda += injected
    wheels += _injected_wheels([p for p in options.inject if p.name.endswith(".whl")], wheels, conda, subdir)
    if not conda:
        logger.warning("warning: the environment %s has no conda packages for %s", env.name, env.platform)
    return conda, wheels


def _injected_wheels(
    paths: Sequence[Path], locked: Sequence[PypiPackage], conda: Sequence[CondaPackage], subdir: str
) -> list[PypiPackage]:
    """``--inject``ed wheels, named from their file names; they may not shadow a wheel of the lockfile.

    Their tags are checked against the platform and the environment's python now, as pixi-unpack would.
    """
    from .wheels import Target, incompatibility, parse_wheel_name, python_version

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
            "warning: injected wheel %s cannot be checked against the environment; make sure it is compatible",
            path.name,
        )
        wheel = PypiPackage(str(path.resolve()), path.name, parsed.name, parsed.version, None)
        taken[parsed.name] = wheel
        injected.append(wheel)
    return injected


def _download(
    fetcher: Fetcher, conda: Sequence[CondaPackage], wheels: Sequence[PypiPackage], staging: Path
) -> dict[str, str]:
    """Fetch every package into ``staging``; returns the sha256 of each wheel by file name."""
    total_bytes = sum(p.size or 0 for p in conda)
    progress = Progress("downloaded", len(conda) + len(wheels), total_bytes or None)
    logger.info(
        "downloading %d packages%s",
        len(conda) + len(wheels),
        f" ({human_bytes(total_bytes)})" if total_bytes else "",
    )

    def fetch_conda(package: CondaPackage) -> None:
        fetcher.fetch(
            package.location,
            staging / CHANNEL_DIR / package.subdir / package.file_name,
            what=package.dist_name,
            expected=Expected(package.sha256, package.md5, package.size),
            cache_key=f"{package.subdir}/{package.file_name}",
            on_bytes=progress.add_bytes,
        )
        progress.item_done()

    wheel_sha256: dict[str, str] = {}

    def fetch_wheel(wheel: PypiPackage) -> None:
        digests = fetcher.fetch(
            wheel.location,
            staging / PYPI_DIR / wheel.file_name,
            what=f"{wheel.name} {wheel.version}".strip(),
            expected=Expected(wheel.sha256),
            # A local wheel without a hash may be rebuilt under the same name: never cache it.
            cache_key=f"{PYPI_DIR}/{wheel.file_name}" if is_url(wheel.location) or wheel.sha256 else None,
            on_bytes=progress.add_bytes,
        )
        wheel_sha256[wheel.file_name] = digests.sha256
        progress.item_done()

    jobs = [(fetch_conda, p) for p in conda] + [(fetch_wheel, w) for w in wheels]
    workers = max(1, min(fetcher.concurrency, len(jobs)))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="pixi-pack-fetch") as pool:
        futures = [pool.submit(func, item) for func, item in jobs]  # type: ignore[arg-type]
        try:
            for future in futures:
                future.result()
        except BaseException:
            for future in futures:
                future.cancel()
            raise
    progress.finish()
    return wheel_sha256


def _write_metadata(
    staging: Path,
    conda: Sequence[CondaPackage],
    wheels: Sequence[PypiPackage],
    subdir: str,
    wheel_sha256: Mapping[str, str],
) -> None:
    for repodata_subdir, text in repodata_files(conda, subdir).items():
        folder = staging / CHANNEL_DIR / repodata_subdir
        folder.mkdir(parents=True, exist_ok=True)
        (folder / REPODATA_FILE).write_text(text, encoding="utf-8")
    if wheels and not any(p.name == "pip" for p in conda):
        logger.warning(
            "warning: the environment has PyPI wheels but no pip conda package: the conda/micromamba "
            "compatibility mode (environment.yml) will not be able to install them"
        )
    (staging / ENVIRONMENT_FILE).write_text(environment_yml(conda, wheels), encoding="utf-8")
    metadata = PackMetadata(PACK_FORMAT_VERSION, __version__, subdir)
    (staging / METADATA_FILE).write_text(metadata_json(metadata, wheel_sha256), encoding="utf-8")


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
        from .selfextract import write_executable

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
    partial = output.with_name(f".{output.name}.{os.getpid()}.part")
    try:
        with open(partial, "wb") as out:
            write(out)
        if executable:
            partial.chmod(0o755)
        os.replace(partial, output)
    except OSError as exc:
        msg = f"could not write {output}: {exc.strerror or exc}"
        raise PixiPackError(msg) from exc
    finally:
        partial.unlink(missing_ok=True)
    logger.info("created pack at %s (%s)", output, human_bytes(output.stat().st_size))
