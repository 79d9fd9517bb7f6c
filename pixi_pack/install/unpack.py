"""``unpack()``: pack -> checked metadata -> verified packages -> environment -> activation script.

The environment is built in a temporary sibling of its final folder and renamed into place at the end,
so a failure never leaves a half-made environment where the environment should be.

What is verified, and when:

- A pack (tar, folder, stdin): every conda package against the sha256 (md5 when that is all) and size
  of its record in the pack's ``repodata.json``, every wheel against ``pixi-pack.json``, before anything
  is extracted.
- A self-extracting file (``--payload-sha256``): the sha256 of its whole payload, the tar, which covers
  every package and the metadata too. It is computed in a thread while the environment is built and
  checked before the rename, so packages are extracted into the temporary folder before their bytes
  are known to be good (rattler, too, hashes a package while extracting it). Nothing reaches the
  environment's folder unless the digest matched; on a mismatch the temporary folder is removed and the
  mismatch is the error, even when extracting had already failed on the damaged bytes.

Either way the hashes travel in the same file as the bytes they check: they catch a damaged or
incomplete download, not a deliberate change.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, ExitStack, contextmanager, nullcontext, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from pixi_pack.errors import ArchiveError, IntegrityError, PixiPackError
from pixi_pack.formats.activation import activation_json, parse_activation_json
from pixi_pack.formats.archive import PackReader
from pixi_pack.formats.channel import parse_identity, parse_metadata, parse_pypi_sha256
from pixi_pack.formats.listing import pack_packages, wheel_names
from pixi_pack.install.activate import CARRIED_DIR, write_activation_script
from pixi_pack.install.journal import JOURNAL, STAGING, complete_pending
from pixi_pack.install.link import install_packages
from pixi_pack.install.payload import payload_checked
from pixi_pack.install.preflight import check_free_space, check_virtual_packages, installed_size, this_host
from pixi_pack.install.tree import TreeWriter
from pixi_pack.install.update import commit_update, is_delta, prepare_update
from pixi_pack.io import tempfiles
from pixi_pack.io.hashing import check_digests, hash_stream
from pixi_pack.io.zstd import Decompressor
from pixi_pack.models import (
    ACTIVATION_DIR,
    ACTIVATION_FILE,
    METADATA_FILE,
    PackageSource,
    UnpackOptions,
)
from pixi_pack.platforms import current_subdir
from pixi_pack.progress import Progress

logger = logging.getLogger("pixi_pack")


@dataclass(frozen=True)
class _Run:
    """What the caller hands in besides the options: the standard input, interpreter tuning, zstd, and
    whether the install may fork worker processes."""

    stdin: BinaryIO | None
    tuning: Callable[[], AbstractContextManager[object]]
    zstd: Decompressor
    processes: bool


def unpack(
    options: UnpackOptions,
    *,
    stdin: BinaryIO | None = None,
    tuning: Callable[[], AbstractContextManager[object]] = nullcontext,
    zstd: Decompressor | None = None,
    processes: bool = False,
) -> None:
    """Create ``<output_directory>/<env_name>`` and its activation script from a pack.

    ``stdin`` is the stream read when ``options.pack`` is ``None`` (the command line hands in its
    standard input). ``tuning``, ``zstd`` and ``processes`` are passed on to
    :func:`~pixi_pack.install.link.install_packages`.

    On failure nothing is left: not the temporary folder, nor the output folders this run created. What
    a killed earlier run left beside the environment (``.<env_name>-<pid>-….partial``) is removed first.
    """
    output_dir = options.output_directory.resolve()
    prefix = output_dir / options.env_name
    if (prefix / JOURNAL).exists() or (prefix / STAGING).exists():
        complete_pending(prefix)
    _check_prefix(prefix, options)
    created: list[Path] = []
    try:
        with ExitStack() as cleanup:
            created = _make_output_dir(output_dir)
            _unpack_into(
                options, output_dir, prefix, cleanup, _Run(stdin, tuning, zstd or Decompressor(), processes)
            )
    except OSError as exc:
        _remove_created(created)
        msg = f"could not unpack into {exc.filename or output_dir}: {exc.strerror or exc}"
        raise PixiPackError(msg) from exc
    except BaseException:
        _remove_created(created)
        raise


def _check_prefix(prefix: Path, options: UnpackOptions) -> None:
    """Refuse an environment folder that is in the way: anything but a missing or empty folder, or with
    ``--force``, ``--update`` or a delta pack an environment (a folder with ``conda-meta/``), replaced or
    updated. Whether the pack is a delta is read only when there is an environment to update."""
    if prefix.is_symlink() or (prefix.exists() and not prefix.is_dir()):
        msg = f"environment folder {prefix} already exists as a link or a file: remove it, or choose another --env-name"
        raise PixiPackError(msg)
    if not prefix.is_dir() or not any(prefix.iterdir()):
        return
    if not options.force and not options.update and not is_delta(options):
        msg = (
            f"environment folder {prefix} already exists and is not empty: pass --update to update it to "
            f"this pack's packages, --force to replace it "
            f"with this pack's environment, remove it, or choose another --env-name or --output-directory"
        )
        raise PixiPackError(msg)
    if not (prefix / "conda-meta").is_dir() or (prefix / "conda-meta").is_symlink():
        msg = (
            f"{prefix} is not an environment (it has no conda-meta folder): --force and --update only "
            "take environments; remove it yourself, or choose another --env-name or --output-directory"
        )
        raise PixiPackError(msg)


def _unpack_into(
    options: UnpackOptions, output_dir: Path, prefix: Path, cleanup: ExitStack, run: _Run
) -> None:
    path = _pack_path(options, output_dir, cleanup, run.stdin)
    with payload_checked(path, options):
        reader = PackReader(path, options.payload_offset, options.payload_length)
        platform = _check_metadata(reader, ignore_platform=options.ignore_platform)
        base = parse_identity(reader.read_text(METADATA_FILE))[1]
        existing = prefix.is_dir() and any(prefix.iterdir())
        if base is not None and (not existing or options.force):
            msg = (
                f"this is a delta pack: it updates the environment unpacked from its base (the environment "
                f"{base}), and {'--force would replace' if existing else 'there is no environment at'} "
                f"{prefix}; unpack the full pack instead"
            )
            raise PixiPackError(msg)
        # With --payload-sha256 the packages are part of the payload, checked before the environment
        # changes: hashing them on their own too would read the same bytes again.
        verify = None if options.payload_sha256 else verify_package
        if existing and not options.force:
            prepared = prepare_update(
                reader,
                prefix,
                platform,
                base=base,
                verify=verify,
                carry=lambda folder: _carry_activation(reader, folder),
                tuning=run.tuning,
                zstd=run.zstd,
                processes=run.processes,
            )
        else:
            build_dir, count = _fresh_install(
                reader, options, output_dir, prefix, platform, verify, cleanup, run
            )
    if existing and not options.force:
        commit_update(prefix, prepared, output_dir, platform, options.shell)
        return
    # A new folder's mode, not mkdtemp's 0700: an environment in /opt is shared.
    build_dir.chmod(0o777 & ~tempfiles.umask())
    old = None
    if existing:  # --force: checked by _check_prefix
        # The old environment goes where the new one was built, which the cleanup removes.
        old = tempfiles.swap_in(build_dir, prefix, options.env_name)
        if old != build_dir:
            cleanup.callback(shutil.rmtree, old, ignore_errors=True)
        logger.info("replaced the environment that was at %s (--force)", prefix)
    else:
        if prefix.is_dir():
            prefix.rmdir()
        os.replace(build_dir, prefix)
    try:
        script = write_activation_script(output_dir, prefix, platform, options.shell)
    except BaseException:
        if old is None:
            shutil.rmtree(prefix, ignore_errors=True)
        else:  # put the old environment back; the new one goes with the cleanup
            cleanup.callback(
                shutil.rmtree, tempfiles.swap_in(old, prefix, options.env_name), ignore_errors=True
            )
        raise
    logger.info("unpacked %d packages into %s; activate it with %s", count, prefix, script)


@contextmanager
def reading_pack(
    options: UnpackOptions, *, stdin: BinaryIO | None = None
) -> Iterator[tuple[PackReader, tuple[Path, int, int, str] | None]]:
    """The pack of ``options`` opened for reading, and, for a self-extracting file, its payload to check
    (file, offset, length, sha256). A pack from ``stdin`` is spooled to an exclusive temporary file,
    removed on the way out; nothing else is written."""
    with ExitStack() as cleanup:
        path = _pack_path(options, Path(tempfile.gettempdir()), cleanup, stdin)
        reader = PackReader(path, options.payload_offset, options.payload_length)
        payload = None
        if options.payload_sha256:
            length = path.stat().st_size - options.payload_offset
            if options.payload_length is not None:
                length = options.payload_length
            payload = (path, options.payload_offset, length, options.payload_sha256)
        yield reader, payload


def _make_output_dir(output_dir: Path) -> list[Path]:
    """Create ``output_dir`` and its missing parents; returns those created, deepest first."""
    missing = [p for p in (output_dir, *output_dir.parents) if not p.exists()]
    output_dir.mkdir(parents=True, exist_ok=True)
    return missing


def _remove_created(folders: Sequence[Path]) -> None:
    """Remove the folders a failed run created, deepest first, where they are still empty."""
    for folder in folders:
        with suppress(OSError):
            folder.rmdir()


def _pack_path(options: UnpackOptions, output_dir: Path, cleanup: ExitStack, stdin: BinaryIO | None) -> Path:
    """The pack's file (or folder); from ``stdin``, a temporary copy that ``cleanup`` removes."""
    if options.pack is None:
        if stdin is None:
            msg = "no pack given: pass its path, or the stream to read it from"
            raise ValueError(msg)
        fd, spooled = tempfiles.create_file(output_dir, "pixi-unpack-stdin", ".tar")
        cleanup.callback(spooled.unlink, missing_ok=True)
        with open(fd, "wb") as out:
            shutil.copyfileobj(stdin, out, 1 << 20)
        return spooled
    if not options.pack.exists():
        msg = f"pack not found: {options.pack}"
        raise PixiPackError(msg)
    return options.pack


def _make_build_dir(output_dir: Path, env_name: str, cleanup: ExitStack) -> Path:
    """A temporary sibling of the environment's folder, removed by ``cleanup`` unless renamed first."""
    for stale in tempfiles.remove_stale(output_dir, env_name):
        logger.debug("removed %s, left by an interrupted run", stale)
    build_dir = tempfiles.create_dir(output_dir, env_name)
    cleanup.callback(shutil.rmtree, build_dir, ignore_errors=True)
    return build_dir


def _fresh_install(
    reader: PackReader,
    options: UnpackOptions,
    output_dir: Path,
    prefix: Path,
    platform: str,
    verify: Callable[[PackageSource], None] | None,
    cleanup: ExitStack,
    run: _Run,
) -> tuple[Path, int]:
    """Install the pack into a new temporary sibling of ``prefix``; return it and how many packages it has."""
    packages = collect_packages(reader)
    wheels = wheel_names(reader)
    if not options.ignore_virtual_packages:
        check_virtual_packages(packages, this_host())
    check_free_space(
        output_dir,
        sum(int(str(p.record.get("size") or 0)) for p in packages) + sum(reader.size(w) for w in wheels),
        lambda: installed_size(packages, zstd=run.zstd, wheel_sizes=lambda: _wheel_bytes(reader, wheels)),
    )
    wheel_sha256 = parse_pypi_sha256(reader.read_text(METADATA_FILE))
    if wheels or wheel_sha256:
        # Only then: pypa/installer takes longer to import than a small environment to unpack.
        from pixi_pack.install.wheels import verify_wheels

        verify_wheels(reader, wheels, wheel_sha256)
    build_dir = _make_build_dir(output_dir, options.env_name, cleanup)
    _install(
        reader,
        packages,
        wheels,
        build_dir=build_dir,
        prefix=prefix,
        platform=platform,
        verify=verify,
        run=run,
    )
    _carry_activation(reader, build_dir)
    return build_dir, len(packages)


def _check_metadata(reader: PackReader, *, ignore_platform: bool) -> str:
    metadata = parse_metadata(reader.read_text(METADATA_FILE))
    here = current_subdir()
    if metadata.platform != here:
        if ignore_platform:
            logger.warning(
                "the pack is for %s and this machine is %s: unpacking it anyway (--ignore-platform); "
                "it will run on %s",
                metadata.platform,
                here,
                metadata.platform,
            )
            return metadata.platform
        msg = (
            f"the pack is for {metadata.platform} but this machine is {here}: "
            f"create the pack with `pixi-pack --platform {here}`, or pass --ignore-platform to unpack it "
            f"for another machine"
        )
        raise PixiPackError(msg)
    return metadata.platform


def _packed_size(package: PackageSource) -> int:
    return int(str(package.record.get("size") or 0))


def _carry_activation(reader: PackReader, build_dir: Path) -> None:
    """Store the manifest's activation the pack carries in the environment, where the activation
    scripts of every shell find it (never through a link a package made)."""
    if not reader.exists(ACTIVATION_FILE):
        return
    carried = parse_activation_json(reader.read_text(ACTIVATION_FILE), ACTIVATION_FILE)
    writer = TreeWriter(build_dir)
    for script in carried.scripts:
        member = f"{ACTIVATION_DIR}/{script}"
        if not reader.exists(member):
            msg = f"the pack is incomplete: {ACTIVATION_FILE} names {member}, which it does not hold"
            raise ArchiveError(msg)
        with reader.open(member) as data:
            writer.write(f"{CARRIED_DIR}/{script}", data, 0o644, None)
    writer.write(
        f"{CARRIED_DIR}/activation.json", activation_json(carried.env, carried.scripts).encode(), 0o644, None
    )


def _wheel_bytes(reader: PackReader, names: Sequence[str]) -> int:
    """What the wheels take once installed, from their zip directories."""
    total = 0
    for name in names:
        try:
            with reader.open(name) as stream, zipfile.ZipFile(stream) as archive:
                total += sum(info.file_size for info in archive.infolist())
        except (zipfile.BadZipFile, OSError, ValueError):
            continue  # verify_wheels and the install say what is wrong with it
    return total


def collect_packages(reader: PackReader) -> list[PackageSource]:
    """Every conda package of the pack with its repodata record; the two must agree exactly."""
    sources, problems = pack_packages(reader)
    if problems:
        raise ArchiveError(problems[0])
    return sources


def verify_package(package: PackageSource) -> None:
    """Check a package file against its record's sha256 (md5 if that is all) and size."""
    sha256, md5 = package.record.get("sha256"), package.record.get("md5")
    if not sha256 and not md5:
        msg = f"{package.file_name} has no sha256 or md5 in the pack's repodata.json: cannot verify it"
        raise IntegrityError(msg)
    with package.open() as f:
        digests = hash_stream(f, md5=not sha256)
    size = package.record.get("size")
    check_digests(
        digests,
        what=f"{package.file_name} in the pack",
        sha256=str(sha256) if sha256 else None,
        md5=str(md5) if md5 else None,
        size=int(str(size)) if size is not None else None,
    )


def _install(
    reader: PackReader,
    packages: Sequence[PackageSource],
    wheels: Sequence[str],
    *,
    build_dir: Path,
    prefix: Path,
    platform: str,
    verify: Callable[[PackageSource], None] | None,
    run: _Run,
) -> None:
    total = sum(_packed_size(p) for p in packages) or None
    counted_verify = None
    if verify is not None:
        checked = Progress("verified", len(packages), total)

        def counted_verify(package: PackageSource) -> None:
            verify(package)
            checked.add_bytes(_packed_size(package))
            if checked.item_done(package.file_name) == len(packages):
                checked.finish()

    progress = Progress("installed", len(packages), total)

    def installed(package: PackageSource) -> None:
        progress.add_bytes(_packed_size(package))
        progress.item_done(package.file_name)

    install_packages(
        packages,
        build_dir,
        prefix,
        platform,
        verify=counted_verify,
        on_installed=installed,
        tuning=run.tuning,
        zstd=run.zstd,
        processes=run.processes,
    )
    progress.finish()
    if wheels:
        from pixi_pack.install.wheels import install_wheels

        install_wheels(reader, wheels, build_dir, prefix, platform, [p.record for p in packages])
