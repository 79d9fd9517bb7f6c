"""``pack()``: pixi.lock -> verified package files -> channel metadata -> one archive."""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO

from . import __version__
from .archive import write_tar
from .channel import environment_yml, metadata_json, repodata_files
from .errors import LockfileError, PixiPackError
from .fetch import Expected, Fetcher
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
    staging_parent = options.output.parent if options.output is not None else None
    if staging_parent is not None:
        staging_parent.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix=".pixi-pack-", dir=staging_parent))
    staging = workdir / "pack"
    try:
        fetcher = Fetcher(options.config, options.cache_dir)
        try:
            _download(fetcher, conda, wheels, staging)
            _write_metadata(staging, conda, wheels, subdir)
            _write_output(staging, options, subdir, fetcher)
        finally:
            fetcher.close()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


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
    for path in options.inject:
        if path.name.endswith(".whl"):
            logger.warning(
                "warning: injected wheel %s cannot be checked against the environment; "
                "make sure it is compatible",
                path.name,
            )
            wheels.append(PypiPackage(str(path.resolve()), path.name, path.name.split("-")[0], "", None))
    if not conda:
        logger.warning("warning: the environment %s has no conda packages for %s", env.name, env.platform)
    return conda, wheels


def _download(
    fetcher: Fetcher, conda: Sequence[CondaPackage], wheels: Sequence[PypiPackage], staging: Path
) -> None:
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

    def fetch_wheel(wheel: PypiPackage) -> None:
        fetcher.fetch(
            wheel.location,
            staging / PYPI_DIR / wheel.file_name,
            what=f"{wheel.name} {wheel.version}".strip(),
            expected=Expected(wheel.sha256),
            cache_key=f"{PYPI_DIR}/{wheel.file_name}",
            on_bytes=progress.add_bytes,
        )
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


def _write_metadata(
    staging: Path, conda: Sequence[CondaPackage], wheels: Sequence[PypiPackage], subdir: str
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
    (staging / ENVIRONMENT_FILE).write_text(
        environment_yml(conda, [w for w in wheels if w.version]), encoding="utf-8"
    )
    metadata = PackMetadata(PACK_FORMAT_VERSION, __version__, subdir)
    (staging / METADATA_FILE).write_text(metadata_json(metadata), encoding="utf-8")


def _write_output(staging: Path, options: PackOptions, subdir: str, fetcher: Fetcher) -> None:
    output = options.output
    if options.directory_only:
        assert output is not None
        if output.exists() and (not output.is_dir() or any(output.iterdir())):
            msg = f"output folder {output} already exists and is not empty: remove it or choose another -o"
            raise PixiPackError(msg)
        if output.is_dir():
            output.rmdir()
        target = Path(tempfile.mkdtemp(prefix=".pixi-pack-dir-", dir=output.parent))
        for child in staging.iterdir():
            os.replace(child, target / child.name)
        os.replace(target, output)
        logger.info("created pack folder at %s", output)
        return
    if options.create_executable:
        from .selfextract import find_unpacker, write_executable

        pyz = find_unpacker(options.pixi_unpack_source, fetcher.download_file)
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
