"""PyPI wheels into an unpacked environment, with pypa/installer.

Runs after the conda packages are linked into the build folder. Nothing here runs the environment's
interpreter: its version and site-packages come from the python conda record, and scripts get the
interpreter's path at the final prefix (the build folder is renamed there at the end). Every wheel is
checked first (its sha256 against ``pixi-pack.json``, its tags against the pack's platform and the
environment's Python), then installed the way pip would: files into site-packages, ``.data`` into
their schemes, console/gui scripts (Windows launchers for Windows targets), ``INSTALLER`` and ``RECORD``.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import logging
import os
import posixpath
import warnings
import zipfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, BinaryIO, cast

from installer import install
from installer.destinations import SchemeDictionaryDestination
from installer.exceptions import InstallerError
from installer.records import RecordEntry
from installer.sources import WheelContentElement, WheelFile
from installer.utils import Scheme, construct_record_file

from pixi_pack.errors import ArchiveError, InstallError, PixiPackError
from pixi_pack.formats.archive import PackReader
from pixi_pack.formats.package_info import EntryPoint
from pixi_pack.formats.wheel_tags import Target, host_target, incompatibility, parse_wheel_name
from pixi_pack.install.entrypoints import entry_point_script, has_launchers, launcher_exe, windows_interpreter
from pixi_pack.io.hashing import check_digests, hash_stream
from pixi_pack.models import INSTALLER_NAME, METADATA_FILE, PYPI_DIR
from pixi_pack.platforms import PythonInfo, is_windows

if TYPE_CHECKING:
    from installer.scripts import ScriptSection

logger = logging.getLogger("pixi_pack")


@dataclass(frozen=True)
class PythonLayout:
    """Where a wheel's parts go in the environment, relative to its prefix, and how scripts start."""

    version: tuple[int, int]
    site_packages: str
    scripts: str
    include: str
    """Where ``.data/headers`` go, one folder per project below it."""
    interpreter: str
    """The interpreter for script shebangs: an absolute path at the final prefix."""
    prefix: str
    """The final prefix, which Windows launchers name."""
    platform: str


def python_layout(
    conda_records: Sequence[Mapping[str, Any]], platform: str, build_dir: Path, target_prefix: Path
) -> PythonLayout:
    """The layout of the environment's Python, from its conda record alone."""
    record = next((r for r in conda_records if r.get("name") == "python"), None)
    if record is None:
        msg = "the pack has PyPI wheels but the environment has no python conda package: add python to it"
        raise InstallError(msg)
    python = PythonInfo.from_record(record, platform)
    if python is None:
        msg = f"cannot tell the Python version of the python conda package {record.get('version')!r}"
        raise InstallError(msg)
    if is_windows(platform):
        interpreter, include = python.executable, "Include"
    else:
        candidates = ("bin/python", python.executable, f"bin/python{python.version[0]}")
        interpreter = next((c for c in candidates if os.path.lexists(build_dir / c)), python.executable)
        include = "include/python{}.{}".format(*python.version)
    return PythonLayout(
        python.version,
        python.site_packages,
        python.bin_dir,
        include,
        str(target_prefix / interpreter),
        str(target_prefix),
        platform,
    )


def install_wheels(
    reader: PackReader,
    names: Sequence[str],
    build_dir: Path,
    target_prefix: Path,
    platform: str,
    conda_records: Sequence[Mapping[str, Any]],
    *,
    layout_dir: Path | None = None,
) -> None:
    """Check and install the wheels ``names`` (``pypi/<file>`` members of the pack) into ``build_dir``.

    ``target_prefix`` is where ``build_dir`` will be moved: scripts name the interpreter there. The
    caller has checked the wheels' hashes with :func:`verify_wheels`. ``layout_dir`` is where the
    environment's python is, if not in ``build_dir`` (an update stages only what changes).
    """
    layout = python_layout(conda_records, platform, layout_dir or build_dir, target_prefix)
    ordered = sorted(names, key=lambda n: PurePosixPath(n).name)
    check_compatible(ordered, host_target(platform, layout.version))
    owners = _Owners(build_dir)
    for name in ordered:
        install_wheel(reader, name, build_dir, layout, owners)
    logger.info("installed %d PyPI wheels", len(ordered))


def check_compatible(names: Iterable[str], target: Target) -> None:
    """Refuse the first wheel none of whose tags fits both the platform and the environment's Python."""
    for name in names:
        file_name = PurePosixPath(name).name
        wheel = parse_wheel_name(file_name)
        if wheel is None:
            msg = f"the pack holds {name}, which is not a valid wheel file name"
            raise ArchiveError(msg)
        problem = incompatibility(wheel, target)
        if problem is not None:
            msg = f"wheel {file_name} cannot be installed: {problem}"
            raise InstallError(msg)


def verify_wheels(reader: PackReader, names: Sequence[str], expected: Mapping[str, str] | None) -> None:
    """Check every wheel against the sha256 recorded at pack time; both lists must agree exactly."""
    if expected is None:
        if names:
            logger.warning("the pack records no wheel hashes (made by another pixi-pack?): not verified")
        return
    by_file = {PurePosixPath(n).name: n for n in names}
    missing = sorted(set(expected) - set(by_file))
    if missing:
        msg = f"the pack is incomplete: {PYPI_DIR}/{missing[0]} is listed in {METADATA_FILE} but missing"
        raise ArchiveError(msg)
    for file_name, name in sorted(by_file.items()):
        if file_name not in expected:
            msg = f"the pack is inconsistent: {name} has no sha256 in {METADATA_FILE}"
            raise ArchiveError(msg)
        with reader.open(name) as stream:
            digests = hash_stream(stream)
        check_digests(digests, what=f"{name} in the pack", sha256=expected[file_name])


def install_wheel(
    reader: PackReader, name: str, build_dir: Path, layout: PythonLayout, owners: _Owners
) -> None:
    """Install one wheel of the pack (already checked) with pypa/installer."""
    file_name = PurePosixPath(name).name
    wheel = parse_wheel_name(file_name)
    if wheel is None:
        msg = f"the pack holds {name}, which is not a valid wheel file name"
        raise ArchiveError(msg)
    schemes = {
        "purelib": layout.site_packages,
        "platlib": layout.site_packages,
        "scripts": layout.scripts,
        "headers": f"{layout.include}/{wheel.name}",
        "data": ".",
    }
    destination = _EnvironmentDestination(build_dir, schemes, layout, wheel=file_name, owners=owners)
    try:
        with reader.open(name) as stream, zipfile.ZipFile(stream) as archive:
            archive.filename = file_name  # installer reads the project name and version from it
            source = _RecordCheckedWheel(archive, file_name)
            source.validate_record(validate_contents=False)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                install(source, destination, {"INSTALLER": f"{INSTALLER_NAME}\n".encode()})
    except PixiPackError:
        raise
    except (InstallerError, ValueError, KeyError, OSError, zipfile.BadZipFile) as exc:
        msg = f"could not install wheel {file_name}: {exc}"
        raise InstallError(msg) from exc
    for warning in caught:
        # installer's own deprecations concern us, not the user.
        developer = issubclass(warning.category, (DeprecationWarning, PendingDeprecationWarning))
        logger.log(logging.DEBUG if developer else logging.WARNING, "%s: %s", file_name, warning.message)


class _RecordCheckedWheel(WheelFile):
    """A wheel whose files are checked against ``RECORD`` as they are installed, in the same pass.

    ``validate_record(validate_contents=False)`` first refuses a file that ``RECORD`` does not list,
    or lists without a hash and size; each file's stream then checks its hash and size at its end.
    """

    def __init__(self, archive: zipfile.ZipFile, file_name: str) -> None:
        super().__init__(archive)
        self._file_name = file_name

    def get_contents(self) -> Iterator[WheelContentElement]:
        record_path = f"{self.dist_info_dir}/RECORD"
        for elements, stream, is_executable in super().get_contents():
            if elements[0] == record_path:
                yield elements, stream, is_executable
                continue
            entry = RecordEntry.from_elements(*elements)
            yield (
                elements,
                cast("BinaryIO", _RecordCheckedStream(stream, entry, self._file_name)),
                is_executable,
            )


class _RecordCheckedStream:
    """Reads a wheel member while hashing it; at its end, the hash and size must be RECORD's."""

    def __init__(self, stream: BinaryIO, entry: RecordEntry, wheel: str) -> None:
        assert entry.hash_ is not None and entry.size is not None  # validate_record saw to it
        self._stream = stream
        self._entry = entry
        self._wheel = wheel
        try:
            self._hash = hashlib.new(entry.hash_.name)
        except ValueError as exc:
            msg = f"refusing wheel {wheel}: RECORD hashes {entry.path} with the unknown {entry.hash_.name!r}"
            raise InstallError(msg) from exc
        self._size = 0

    def seek(self, offset: int, whence: int = 0) -> int:
        """Back to the start (installer does so to look for a ``#!python`` line), hashing anew."""
        if (offset, whence) != (0, 0):
            raise io.UnsupportedOperation("only seek(0) is supported")
        self._stream.seek(0)
        self._hash = hashlib.new(self._hash.name)
        self._size = 0
        return 0

    def readline(self, size: int = -1) -> bytes:
        data = self._stream.readline(size)
        self._hash.update(data)
        self._size += len(data)
        return data

    def read(self, size: int = -1) -> bytes:
        data = self._stream.read(size)
        if data:
            self._hash.update(data)
            self._size += len(data)
            return data
        entry = self._entry
        assert entry.hash_ is not None
        value = base64.urlsafe_b64encode(self._hash.digest()).decode("ascii").rstrip("=")
        if value != entry.hash_.value or self._size != entry.size:
            msg = (
                f"refusing wheel {self._wheel}: {entry.path} does not match RECORD "
                f"({self._size} bytes, RECORD says {entry.size} and {entry.hash_}); the wheel is damaged or altered"
            )
            raise InstallError(msg)
        return data


class _Owners:
    """Who put each file into the environment: conda packages (from conda-meta) and the wheels so far."""

    def __init__(self, root: Path) -> None:
        self._root = root
        self._owners: dict[str, str] | None = None

    def _load(self) -> dict[str, str]:
        if self._owners is None:
            self._owners = {}
            for meta in sorted((self._root / "conda-meta").glob("*.json")):
                try:
                    record = json.loads(meta.read_text(encoding="utf-8"))
                except (OSError, ValueError):
                    continue
                owner = f"conda package {meta.stem}"
                for path in record.get("files") or ():
                    self._owners[str(path).replace("\\", "/")] = owner
        return self._owners

    def owner(self, relative: str) -> str | None:
        return self._load().get(relative)

    def claim(self, relative: str, wheel: str) -> None:
        self._load()[relative] = f"wheel {wheel}"


class _EnvironmentDestination(SchemeDictionaryDestination):
    """installer's destination, made safe and conda-aware.

    Every path must stay inside the environment; a file already there (from a conda package or an
    earlier wheel) is replaced with a warning, as pip does; RECORD names files in other schemes by
    relative paths, so the environment can be moved.
    """

    def __init__(
        self, root: Path, schemes: Mapping[str, str], layout: PythonLayout, *, wheel: str, owners: _Owners
    ) -> None:
        self._root = Path(os.path.normpath(root))
        scheme_dict = {scheme: os.path.normpath(self._root / path) for scheme, path in schemes.items()}
        # Windows launchers are written by write_script below, so installer only ever writes posix scripts.
        super().__init__(scheme_dict, layout.interpreter, "posix")
        self._layout = layout
        self._relative = dict(schemes)
        self._wheel = wheel
        self._owners = owners

    def write_to_fs(self, scheme: Scheme, path: str, stream: BinaryIO, is_executable: bool) -> RecordEntry:
        target = self._checked_target(scheme, path)
        relative = target.relative_to(self._root).as_posix()
        if os.path.lexists(target):
            self._replace(target, relative)
        # As pip does: whatever lands in the scripts folder can be run, whatever its mode in the zip.
        executable = is_executable or scheme == "scripts"
        record = super().write_to_fs(scheme, path, stream, executable)
        self._owners.claim(relative, self._wheel)
        return record

    def write_script(self, name: str, module: str, attr: str, section: ScriptSection) -> RecordEntry:
        platform = self._layout.platform
        if not has_launchers(platform):
            return super().write_script(name, module, attr, section)
        gui = section == "gui"
        interpreter = windows_interpreter(self._layout.prefix, gui=gui)
        main = entry_point_script(EntryPoint(name, module, attr), "")
        data = launcher_exe(platform, interpreter, main, gui=gui)
        return self.write_to_fs(Scheme("scripts"), f"{name}.exe", io.BytesIO(data), is_executable=True)

    def _checked_target(self, scheme: Scheme, path: str) -> Path:
        target = Path(os.path.normpath(Path(self.scheme_dict[scheme]) / path))
        inside = os.path.commonpath([self._root, target]) == str(self._root) and target != self._root
        # A symlinked folder of a conda package must not lead a wheel's file out of the environment.
        if inside:
            real_root = self._root.resolve()
            real_parent = target.parent.resolve()
            inside = real_parent == real_root or real_root in real_parent.parents
        if not inside:
            msg = f"refusing wheel {self._wheel}: {path!r} would be written outside the environment"
            raise InstallError(msg)
        return target

    def _replace(self, target: Path, relative: str) -> None:
        if target.is_dir() and not target.is_symlink():
            msg = f"could not install wheel {self._wheel}: {relative} is a folder in the environment"
            raise InstallError(msg)
        owner = self._owners.owner(relative) or "the environment"
        logger.warning("wheel %s replaces %s from %s", self._wheel, relative, owner)
        target.unlink()

    def finalize_installation(
        self, scheme: Scheme, record_file_path: str, records: Iterable[tuple[Scheme, RecordEntry]]
    ) -> None:
        def prefix_for_scheme(file_scheme: Scheme) -> str | None:
            if file_scheme == scheme:
                return None
            return posixpath.relpath(self._relative[file_scheme], self._relative[scheme]) + "/"

        with construct_record_file(list(records), prefix_for_scheme) as record_stream:
            self.write_to_fs(scheme, record_file_path, record_stream, is_executable=False)
