"""``pixi-unpack --verify-only``: every check unpacking makes, and more, with nothing written.

Beyond what unpack checks (``pixi-pack.json``, each package's and wheel's hash and size, each member's
path and type), every file inside each conda package is hashed against its ``paths.json`` sha256 and
size, and every wheel's files against its ``RECORD``. A package whose inner file was changed and the
package re-hashed, so that its repodata sha256 still matches, is caught here and only here.

Every problem is collected; a broken package does not stop the others being checked.
"""

from __future__ import annotations

import hashlib
import os
import zipfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from pixi_pack.errors import PixiPackError
from pixi_pack.formats.archive import PackReader
from pixi_pack.formats.channel import parse_metadata, parse_pypi_sha256
from pixi_pack.formats.listing import pack_packages, wheel_names
from pixi_pack.formats.package import iter_payload
from pixi_pack.formats.package_info import Package, load_package
from pixi_pack.install.unpack import verify_package
from pixi_pack.io.hashing import Readable, check_digests, hash_file_range, hash_stream
from pixi_pack.io.zstd import Decompressor
from pixi_pack.models import METADATA_FILE, PYPI_DIR, PackageSource
from pixi_pack.progress import Progress

_CHUNK = 1 << 20


@dataclass
class Verification:
    """What ``--verify-only`` found: the problems (empty when all is well) and what it looked at."""

    problems: list[str] = field(default_factory=list)
    packages: int = 0
    wheels: int = 0
    files: int = 0
    bytes: int = 0

    def summary(self) -> str:
        """One line: what was checked and whether it passed."""
        what = f"{self.packages} conda packages, {self.wheels} wheels, {self.files} files inside them"
        if not self.problems:
            return f"verified {what}: all intact"
        return f"{len(self.problems)} problems in {what}"


def verify_pack(
    reader: PackReader,
    *,
    payload: tuple[Path, int, int, str] | None = None,
    zstd: Decompressor | None = None,
) -> Verification:
    """Check everything in the pack that ``reader`` reads; ``payload`` (file, offset, length, sha256) is
    the tar of a self-extracting file, whose whole digest is checked too."""
    result = Verification()
    zstd = zstd or Decompressor()
    if payload is not None:
        path, offset, length, sha256 = payload
        _collect(
            result,
            lambda: check_digests(
                hash_file_range(path, offset, length),
                what=f"the pack inside {path}",
                sha256=sha256,
                size=length,
            ),
        )
    _collect(result, lambda: parse_metadata(reader.read_text(METADATA_FILE)))
    try:
        sources, problems = pack_packages(reader)
    except PixiPackError as exc:
        result.problems.append(str(exc))
        return result
    result.problems += problems
    wheels = wheel_names(reader)
    progress = Progress("verified", len(sources) + len(wheels))

    def check(source: PackageSource) -> _Checked:
        progress.working_on(source.file_name)
        checked = _verify_conda(source, zstd, progress)
        progress.item_done(source.file_name)
        return checked

    # Decompressing and hashing let go of the GIL: packages are checked side by side, the biggest
    # first so that it does not finish last, alone; the problems are reported in the pack's order.
    biggest_first = sorted(sources, key=lambda s: -int(str(s.record.get("size") or 0)))
    with ThreadPoolExecutor(
        max_workers=min(4, os.cpu_count() or 1), thread_name_prefix="pixi-verify"
    ) as pool:
        futures = {id(source): pool.submit(check, source) for source in biggest_first}
        for source in sources:
            checked = futures[id(source)].result()
            result.packages += 1
            result.files += checked.files
            result.bytes += checked.bytes
            result.problems += checked.problems
    _verify_wheels(reader, wheels, result, progress)
    progress.finish()
    return result


def _collect(result: Verification, check: Callable[[], object]) -> None:
    """Run one check; its failure becomes a problem of ``result``."""
    try:
        check()
    except PixiPackError as exc:
        result.problems.append(str(exc))


@dataclass
class _Checked:
    """What checking one package found."""

    problems: list[str] = field(default_factory=list)
    files: int = 0
    bytes: int = 0


def _verify_conda(source: PackageSource, zstd: Decompressor, progress: Progress) -> _Checked:
    """One conda package: its file against its record, each payload file against ``paths.json``."""
    checked = _Checked()
    try:
        verify_package(source)
        package = load_package(source, zstd=zstd)
    except PixiPackError as exc:
        checked.problems.append(str(exc))
        return checked
    try:
        checked.problems += _payload_problems(package, checked, zstd, progress)
    except PixiPackError as exc:
        checked.problems.append(f"package {package.dist}: {exc}")
    return checked


def _payload_problems(
    package: Package, checked: _Checked, zstd: Decompressor, progress: Progress
) -> Iterator[str]:
    dist = package.dist
    entries = {e.path: e for e in package.entries}
    seen: set[str] = set()
    with (
        package.source.open() as stream,
        iter_payload(stream, package.source.file_name, zstd=zstd) as members,
    ):
        for member, data in members:
            entry = entries.get(member.path)
            if member.kind == "directory":
                continue
            seen.add(member.path)
            if entry is None:
                yield f"package {dist}: {member.path} is in the payload but not in paths.json"
                continue
            if member.kind == "symlink":
                if entry.path_type not in ("softlink", ""):
                    yield f"package {dist}: {member.path} is a symlink, but paths.json says {entry.path_type}"
                continue
            if entry.path_type == "softlink":
                yield f"package {dist}: {member.path} is a file, but paths.json says softlink"
                continue
            if member.kind != "file" or data is None:
                continue
            digest, size = _hash(data)
            checked.files += 1
            checked.bytes += size
            progress.add_bytes(size)
            if entry.sha256 is not None and digest != entry.sha256.lower():
                yield f"package {dist}: {member.path} sha256 differs from paths.json"
            if entry.size is not None and size != entry.size:
                yield f"package {dist}: {member.path} is {size} bytes, paths.json says {entry.size}"
    for path in sorted(set(entries) - seen):
        if entries[path].path_type != "directory":
            yield f"package {dist}: {path} is in paths.json but not in the payload"


def _hash(data: bytes | Readable) -> tuple[str, int]:
    if isinstance(data, bytes):
        return hashlib.sha256(data).hexdigest(), len(data)
    digests = hash_stream(data)
    return digests.sha256, digests.size


def _verify_wheels(reader: PackReader, names: list[str], result: Verification, progress: Progress) -> None:
    """Each wheel against ``pixi-pack.json``'s sha256, and each of its files against its ``RECORD``."""
    try:
        expected = parse_pypi_sha256(reader.read_text(METADATA_FILE)) or {}
    except PixiPackError as exc:
        result.problems.append(str(exc))
        expected = {}
    by_file = {PurePosixPath(n).name: n for n in names}
    for file_name in sorted(set(expected) - set(by_file)):
        result.problems.append(
            f"the pack is incomplete: {PYPI_DIR}/{file_name} is listed in {METADATA_FILE} but missing"
        )
    for file_name, name in sorted(by_file.items()):
        result.wheels += 1
        if file_name not in expected:
            result.problems.append(f"the pack is inconsistent: {name} has no sha256 in {METADATA_FILE}")
        else:
            with reader.open(name) as stream:
                digests = hash_stream(stream)
            try:
                check_digests(digests, what=f"{name} in the pack", sha256=expected[file_name])
            except PixiPackError as exc:
                result.problems.append(str(exc))
        result.problems += _record_problems(reader, name)
        progress.item_done(file_name)


def _record_problems(reader: PackReader, name: str) -> list[str]:
    """Each file of the wheel against its ``RECORD`` hash and size (pypa/installer's own check)."""
    from installer.exceptions import InstallerError
    from installer.sources import WheelFile

    file_name = PurePosixPath(name).name
    try:
        with reader.open(name) as stream, zipfile.ZipFile(stream) as archive:
            archive.filename = file_name  # installer names the wheel by it
            WheelFile(archive).validate_record(validate_contents=True)
    except InstallerError as exc:  # the validation error lists each file that failed
        issues = getattr(exc, "issues", None) or [str(exc)]
        return [f"wheel {file_name}: {issue.removeprefix(f'In {file_name}, ')}" for issue in issues]
    except (zipfile.BadZipFile, OSError, ValueError, KeyError) as exc:
        return [f"wheel {file_name}: not a readable wheel ({exc})"]
    return []
