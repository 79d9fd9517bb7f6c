"""The data that flows between the stages, and the layout of a pack."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

#: The format version written to and accepted in ``pixi-pack.json``.
PACK_FORMAT_VERSION = "1"

# Names inside a pack (the tar, or the folder written with --directory-only).
METADATA_FILE = "pixi-pack.json"
INSTALLER_NAME = "pixi-unpack"
"""What ``<dist-info>/INSTALLER`` of the wheels pixi-unpack installs says, as pip writes ``pip``."""
ENVIRONMENT_FILE = "environment.yml"
CHANNEL_DIR = "channel"
PYPI_DIR = "pypi"
ACTIVATION_DIR = "activation"
"""The manifest's activation: ``activation/activation.json`` and the scripts it names (upstream ignores it)."""
ACTIVATION_FILE = f"{ACTIVATION_DIR}/activation.json"
REPODATA_FILE = "repodata.json"

DEFAULT_OUTPUT_FILE = "environment.tar"
DEFAULT_ENV_NAME = "env"
DEFAULT_CONCURRENCY = 50

CONDA_EXTENSIONS = (".conda", ".tar.bz2")


def strip_conda_extension(file_name: str) -> str:
    """``numpy-2.1.0-py312_0.conda`` -> ``numpy-2.1.0-py312_0``; other names are returned unchanged."""
    for ext in CONDA_EXTENSIONS:
        if file_name.endswith(ext):
            return file_name[: -len(ext)]
    return file_name


@dataclass(frozen=True)
class CondaPackage:
    """A conda package as the lockfile pins it."""

    location: str
    """Where to get it: an ``http(s)://`` or ``file://`` URL, or an absolute filesystem path."""
    file_name: str
    """The package's file name, e.g. ``zlib-1.3.1-hb9d3cd8_2.conda``."""
    subdir: str
    """The channel subdir it belongs in (``noarch`` included)."""
    record: Mapping[str, Any]
    """Its repodata record: name, version, build, build_number, depends, hashes, ... (no ``fn``/``url``)."""
    origin: str | None = None
    """Where it is published, when it is fetched from elsewhere (a package cache): its record's URL."""

    @property
    def name(self) -> str:
        return str(self.record["name"])

    @property
    def version(self) -> str:
        return str(self.record["version"])

    @property
    def build(self) -> str:
        return str(self.record["build"])

    @property
    def sha256(self) -> str | None:
        value = self.record.get("sha256")
        return str(value) if value else None

    @property
    def md5(self) -> str | None:
        value = self.record.get("md5")
        return str(value) if value else None

    @property
    def size(self) -> int | None:
        value = self.record.get("size")
        return int(value) if value is not None else None

    @property
    def dist_name(self) -> str:
        """``name-version-build``, as conda-meta and environment.yml name it."""
        return f"{self.name}-{self.version}-{self.build}"


@dataclass(frozen=True)
class PypiPackage:
    """A PyPI distribution as the lockfile pins it."""

    location: str
    """An ``http(s)://`` or ``file://`` URL or an absolute path (``direct+`` already stripped)."""
    file_name: str
    """The distribution's file name, percent-decoded."""
    name: str
    version: str
    sha256: str | None
    """The lockfile's hash; absent for local paths and some direct URLs."""

    @property
    def is_wheel(self) -> bool:
        return self.file_name.endswith(".whl")


@dataclass(frozen=True)
class LockedEnvironment:
    """One environment of a lockfile, for one platform."""

    name: str
    platform: str
    channels: tuple[str, ...]
    conda_packages: tuple[CondaPackage, ...]
    pypi_packages: tuple[PypiPackage, ...] = ()
    source_packages: tuple[str, ...] = ()
    """Conda source packages (lockfile v7 ``conda_source``), which pixi builds and we cannot fetch."""


@dataclass(frozen=True)
class PackMetadata:
    """The content of ``pixi-pack.json``."""

    version: str
    pixi_pack_version: str
    platform: str


@dataclass(frozen=True)
class MirrorConfig:
    """Download settings from ``--config`` (a pixi config file)."""

    mirrors: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """URL prefix -> mirrors to try in order instead of it."""
    s3_options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """Bucket name -> endpoint-url, region, force-path-style."""
    concurrency: int = DEFAULT_CONCURRENCY
    """How many downloads run at once."""
    auth_file: Path | None = None
    """A rattler authentication file (JSON: host -> credentials)."""


@dataclass(frozen=True)
class PackOptions:
    """Everything ``pack()`` needs; the CLI builds it from its arguments."""

    manifest_path: Path
    """A pixi.toml, a pyproject.toml, or the folder holding them; pixi.lock is read beside it."""
    output: Path | None
    """Where to write the pack; ``None`` writes the tar (or executable) to stdout."""
    platform: str
    environment: str = "default"
    directory_only: bool = False
    create_executable: bool = False
    pixi_unpack_source: str | None = None
    inject: tuple[Path, ...] = ()
    ignore_pypi_non_wheel: bool = False
    cache_dir: Path | None = None
    config: MirrorConfig = field(default_factory=MirrorConfig)
    list_contents: bool = False
    """Read what was packed back, and return it (``--sbom``)."""
    from_prefix: Path | None = None
    """Pack the environment installed here instead of a lockfile's (``platform`` ``""``: its records')."""
    package_dirs: tuple[Path, ...] = ()
    """With ``from_prefix``: the folders to find its archives in, in order."""
    base: Path | None = None
    """Write a delta pack against this earlier pack (or its ``pixi-pack.json``): only the archives it lacks."""


@dataclass(frozen=True)
class UnpackOptions:
    """Everything ``unpack()`` needs."""

    pack: Path | None
    """The pack: a tar, a folder written with --directory-only, or ``None`` to read a tar from stdin."""
    output_directory: Path
    env_name: str = DEFAULT_ENV_NAME
    shell: str | None = None
    """Which activation script to write; ``None`` picks the platform's default."""
    payload_offset: int = 0
    """Where the tar starts inside ``pack`` (a self-extracting executable carries it after its stub)."""
    payload_length: int | None = None
    """How many bytes the tar has from ``payload_offset``; ``None`` means up to the end."""
    payload_sha256: str | None = None
    """If given, the tar's bytes are checked against it before the environment moves into place (they are
    hashed while it is built, and the packages are then not hashed one by one)."""
    ignore_platform: bool = False
    """Unpack a pack made for another platform (with a warning) instead of refusing it."""
    ignore_virtual_packages: bool = False
    """Skip the check that this host has the virtual packages (``__glibc`` ...) the packages need."""
    force: bool = False
    """Replace an existing environment folder (one with ``conda-meta/``) with a fresh install of the pack,
    once the new one is complete."""
    update: bool = False
    """Update an existing environment in place to the pack's packages (a delta pack always does)."""


@dataclass(frozen=True)
class PackageSource:
    """A conda package inside a pack, ready to be verified and installed."""

    file_name: str
    record: Mapping[str, Any]
    """Its record from the pack's ``repodata.json`` (name, version, build, depends, sha256, md5, ...)."""
    open: Callable[[], BinaryIO]
    """Opens a fresh, seekable reader of the package file's bytes; the caller closes it."""
    url: str | None = None
    """Where pixi-pack downloaded it from, as ``pixi-pack.json`` records it (none for a local file)."""
