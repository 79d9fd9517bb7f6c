"""``pack()``: pixi.lock -> verified package files -> channel metadata -> one archive."""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from pixi_pack.errors import EnvironmentNotFoundError, LockfileError, PixiPackError
from pixi_pack.formats.archive import PackReader, write_tar
from pixi_pack.formats.channel import normalize_project_name
from pixi_pack.io import tempfiles
from pixi_pack.lock.lockfile import find_lockfile, load_lockfile, platform_subdir, select_environment
from pixi_pack.lock.manifest import Manifest, load_manifest, unlocked
from pixi_pack.models import CondaPackage, LockedEnvironment, PackOptions, PypiPackage
from pixi_pack.pack.activation import activation_files
from pixi_pack.pack.contents import Contents, Metadata, pack_files, start_progress
from pixi_pack.pack.fetch import Fetcher
from pixi_pack.pack.inplace import replacing, write_in_place
from pixi_pack.pack.selfextract import (
    PS1_WARN_ABOVE,
    Form,
    executable_form,
    stub_payload_args,
    write_executable,
)
from pixi_pack.platforms import is_windows
from pixi_pack.progress import human_bytes

if TYPE_CHECKING:
    from pixi_pack.formats.listing import Listing

logger = logging.getLogger("pixi_pack")


def pack(options: PackOptions, *, stdout: BinaryIO | None = None) -> Listing | None:
    """Create the pack described by ``options``; on failure nothing is left at the output path.

    Without an output path (``-o -``) the pack is written to ``stdout``, which the caller gives. With
    ``options.list_contents``, what was packed is read back and returned (for an SBOM).

    What a killed earlier run left beside the output (its temporary folder and file, named after its
    process) is removed first.
    """
    if options.from_prefix is not None:
        from pixi_pack.pack.from_prefix import environment_from_prefix

        env = environment_from_prefix(
            options.from_prefix, platform=options.platform or None, package_dirs=options.package_dirs
        )
        subdir = env.platform
        extra: dict[str, bytes] = {}
    else:
        env, subdir, manifest = _locked_environment(options)
        extra = activation_files(manifest, env.name, subdir)
    conda, wheels = _select_packages(env, options, subdir)
    _check_output(options, stdout)
    files = pack_files(conda, wheels)
    base = None
    if options.base is not None:
        from pixi_pack.pack.delta import left_out, read_base

        base = read_base(options.base)
        omitted = left_out(conda, base, subdir)
        files = [f for f in files if f.name not in omitted]
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
            contents = Contents(
                files=files,
                metadata=Metadata(conda, wheels, subdir, extra, base=base.identity if base else None),
                fetcher=fetcher,
                progress=start_progress(conda, files),
                staging=staging,
            )
            listing = None
            form = executable_form(options.output, windows=is_windows(subdir))
            if options.output is not None and _in_place(options, form):
                write_in_place(contents, options.output, pyz=pyz, form=form)
                if options.list_contents:
                    listing = _read_back(_reader_of(options.output, pyz))
            else:
                contents.stage()
                if options.list_contents:
                    listing = _read_back(PackReader(staging))
                _write_output(staging, options, form=form, pyz=pyz, stdout=stdout)
        finally:
            fetcher.close()
    except OSError as exc:
        msg = f"could not write {exc.filename or options.output}: {exc.strerror or exc}"
        raise PixiPackError(msg) from exc
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return listing


def _read_back(reader: PackReader) -> Listing:
    """What the pack just written holds (for ``--sbom``). Imported here: only an SBOM reads a
    pack back, so the package readers stay off every other pack's start-up."""
    from pixi_pack.formats.listing import read_listing

    return read_listing(reader)


def _reader_of(output: Path, pyz: Path | None) -> PackReader:
    """The pack just written at ``output``: a tar, or the tar inside ``environment.sh``."""
    if pyz is None:
        return PackReader(output)
    located = stub_payload_args(output)
    assert located is not None  # written just now
    return PackReader(output, int(located[1]), int(located[3]))


def _locked_environment(options: PackOptions) -> tuple[LockedEnvironment, str, Manifest | None]:
    """The environment of the lockfile beside the manifest, checked against the manifest."""
    lockfile = find_lockfile(options.manifest_path)
    data = load_lockfile(lockfile)
    subdir = platform_subdir(data, options.platform)
    manifest = load_manifest(options.manifest_path)
    try:
        env = select_environment(data, options.environment, options.platform, lockfile.parent)
    except EnvironmentNotFoundError as exc:
        if manifest is not None and options.environment in manifest.environments:
            msg = f"{exc}; {manifest.path.name} defines it, so pixi.lock looks out of date: run `pixi lock`"
            raise LockfileError(msg) from exc
        raise
    if manifest is not None:
        _warn_if_stale(manifest, env, subdir)
    return env, subdir, manifest


WORKDIR_TAG = "pixi-pack"
"""The temporary folder beside the output: ``.pixi-pack-<pid>-<random>``."""


def _warn_if_stale(manifest: Manifest, env: LockedEnvironment, subdir: str) -> None:
    """Warn when the manifest declares dependencies that the lock does not have for this environment."""
    missing = unlocked(manifest, env, subdir)
    names = [*missing.conda, *(f"{n} (pypi)" for n in missing.pypi)]
    if names:
        logger.warning(
            "pixi.lock looks out of date: %s declares %s for environment %s, which pixi.lock does not have "
            "for %s; run `pixi lock` to pack what the manifest asks for",
            manifest.path.name,
            ", ".join(names),
            env.name,
            env.platform,
        )


def _in_place(options: PackOptions, form: Form) -> bool:
    """Whether the pack can be assembled in the output file, each package written once, into its place.

    Not for a folder, nor stdout (no random access), nor ``environment.ps1`` (its payload is base64 text,
    where each package's first and last bytes share characters and lines with its neighbours'); nor
    without ``os.pwrite`` (Windows). Those are written from a staging folder.
    """
    base64 = options.create_executable and form == "ps1"
    return not options.directory_only and not base64 and hasattr(os, "pwrite")


def _check_output(options: PackOptions, stdout: BinaryIO | None) -> None:
    """Refuse early what would fail at the end: no output at all, or a folder in the way.

    The rule, on both sides: a file in the way is replaced (and the log says so); a folder never is,
    unless it is empty, since it may hold anything.
    """
    output = options.output
    if output is None and stdout is None:
        msg = "no output path was given and no stream to write the pack to: pass an output path"
        raise PixiPackError(msg)
    if output is not None and not options.directory_only and output.is_dir():
        msg = f"{output} is a folder: pixi-pack replaces files, never folders; choose a file name with -o"
        raise PixiPackError(msg)
    if (
        options.directory_only
        and output is not None
        and output.exists()
        and (not output.is_dir() or any(output.iterdir()))
    ):
        msg = (
            f"output folder {output} already exists and is not empty (pixi-pack never replaces a folder): "
            f"remove it or choose another -o"
        )
        raise PixiPackError(msg)


def _find_unpacker(options: PackOptions, fetcher: Fetcher, workdir: Path) -> Path | None:
    """The pyz to embed in a self-extracting pack, found (or downloaded) before any package is."""
    if not options.create_executable:
        return None
    from pixi_pack.pack.unpacker import find_unpacker

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


def _write_output(
    staging: Path, options: PackOptions, *, form: Form, pyz: Path | None, stdout: BinaryIO | None
) -> None:
    """Write the staged pack: move the folder into place, or write it as a tar or a self-extractor."""
    output = options.output
    if options.directory_only:
        assert output is not None
        if output.is_dir():
            output.rmdir()  # empty: checked by _check_output
        os.replace(staging, output)
        logger.info("created pack folder at %s", output)
        return
    if pyz is not None:
        payload = staging.parent / "payload.tar"
        with open(payload, "wb") as tar:
            write_tar(staging, tar)
        if form == "ps1" and payload.stat().st_size > PS1_WARN_ABOVE:
            logger.warning(
                "environment.ps1 holds the pack (%s) as base64, which PowerShell reads whole into memory; "
                "-o environment.cmd writes the same self-extractor as a batch file that needs no "
                "PowerShell and carries the pack as it is",
                human_bytes(payload.stat().st_size),
            )
        _emit(output, stdout, lambda out: write_executable(payload, pyz, out, form=form), executable=True)
        return
    _emit(output, stdout, lambda out: write_tar(staging, out), executable=False)


def _emit(
    output: Path | None,
    stdout: BinaryIO | None,
    write: Callable[[BinaryIO], None],
    *,
    executable: bool,
) -> None:
    """Write through ``write(stream)`` to ``stdout``, or to ``output`` via a temporary name and a rename."""
    if output is None:
        assert stdout is not None  # checked by _check_output
        write(stdout)
        stdout.flush()
        return
    with replacing(output, executable=executable) as fd, open(fd, "wb", closefd=False) as out:
        write(out)
