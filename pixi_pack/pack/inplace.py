"""Writing a pack file in place: the tar laid out from the lockfile's sizes, each package fetched once,
straight into its slot of the output."""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from pixi_pack.errors import PixiPackError
from pixi_pack.formats.archive import TarLayout, copy_range, tar_layout, write_at
from pixi_pack.io import tempfiles
from pixi_pack.pack.contents import Contents, PackFile
from pixi_pack.pack.fetch import Slot
from pixi_pack.progress import human_bytes

if TYPE_CHECKING:
    from pixi_pack.pack.selfextract import Form

logger = logging.getLogger("pixi_pack")


def write_in_place(contents: Contents, output: Path, *, pyz: Path | None, form: Form = "sh") -> None:
    """Write the pack (with ``pyz``, ``environment.sh`` or ``.cmd`` as ``form`` says) at ``output``, via a
    temporary name and a rename."""
    with replacing(output, executable=pyz is not None) as fd:
        _assemble(fd, contents, output=output, pyz=pyz, form=form)


@contextmanager
def replacing(output: Path, *, executable: bool) -> Iterator[int]:
    """:func:`tempfiles.replacing` for a pack: its descriptor, and our error for what the OS says.

    A file already at ``output`` is replaced once the new one is complete, and the log says so.
    """
    replaced = output.exists() or output.is_symlink()
    try:
        with tempfiles.replacing(output, mode=0o777 if executable else 0o666) as out:
            yield out.fileno()
    except OSError as exc:
        msg = f"could not write {output}: {exc.strerror or exc}"
        raise PixiPackError(msg) from exc
    size = human_bytes(output.stat().st_size)
    if replaced:
        logger.info("created pack at %s (%s), replacing the file that was there", output, size)
    else:
        logger.info("created pack at %s (%s)", output, size)


def _assemble(fd: int, contents: Contents, *, output: Path, pyz: Path | None, form: Form) -> None:
    """Lay the tar out from the lockfile's sizes, then fetch each package straight into its place.

    A file of unknown size (a wheel, usually) is fetched into staging and copied in once its size
    fixes the place of what follows it. The stub of ``environment.sh`` states the payload's length, so
    with ``pyz`` those files are fetched before anything else.
    """
    files, staging = contents.files, contents.staging
    sizes: dict[str, int | None] = {**contents.metadata.sizes(), **{f.name: f.expected.size for f in files}}
    staged = [f for f in files if f.expected.size is None] if pyz is not None else []
    wheel_sha256 = contents.fetch([(f, staging / f.name) for f in staged])
    sizes.update({f.name: (staging / f.name).stat().st_size for f in staged})
    layout = tar_layout(sizes)
    base = 0
    if pyz is not None:
        from pixi_pack.pack.selfextract import stub_payload_offset

        assert layout.length is not None  # every size is known
        base = stub_payload_offset(form, layout.length, pyz.stat().st_size)
    _reserve(fd, base + (layout.length or layout.placed_end))
    fetched_first = {f.name for f in staged}
    rest = [f for f in files if f.name not in fetched_first]
    jobs = _destinations(rest, layout, staging=staging, fd=fd, base=base, output=output)
    wheel_sha256.update(contents.fetch(jobs))
    contents.progress.finish()
    staged += [file for file, destination in jobs if isinstance(destination, Path)]
    layout = tar_layout({**sizes, **{f.name: (staging / f.name).stat().st_size for f in staged}})
    assert layout.length is not None  # every size is known
    _fill_in(
        fd,
        base,
        layout,
        contents.metadata.files(wheel_sha256),
        {f.name: staging / f.name for f in staged},
    )
    if pyz is None:
        os.ftruncate(fd, layout.length)
        return
    from pixi_pack.pack.selfextract import complete_stub

    complete_stub(fd, form, layout.length, pyz)


def _destinations(
    files: Sequence[PackFile], layout: TarLayout, *, staging: Path, fd: int, base: int, output: Path
) -> list[tuple[PackFile, Path | Slot]]:
    """Where to fetch each file: its slot in the output (the tar starting at ``base`` of ``fd``) where the
    layout has one, else into staging."""
    jobs: list[tuple[PackFile, Path | Slot]] = []
    for file in files:
        slot = layout.slots.get(file.name)
        if slot is None:
            jobs.append((file, staging / file.name))
        else:
            jobs.append((file, Slot(fd, base + slot.data_offset, slot.size, output)))
    return jobs


def _reserve(fd: int, length: int) -> None:
    """Allocate the first ``length`` bytes of the output before the downloads fill them in.

    Threads writing into one file contend less when its blocks exist (see benchmarks/README.md), and a
    full disk stops the pack before anything is downloaded.
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
