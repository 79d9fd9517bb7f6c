"""What goes into a pack: its package files, its small metadata files, and fetching the former."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from pixi_pack import __version__
from pixi_pack.formats.channel import environment_yml, metadata_json, package_digest, repodata_files
from pixi_pack.formats.locations import is_url, public_url
from pixi_pack.models import (
    CHANNEL_DIR,
    ENVIRONMENT_FILE,
    METADATA_FILE,
    PACK_FORMAT_VERSION,
    PYPI_DIR,
    REPODATA_FILE,
    CondaPackage,
    PackMetadata,
    PypiPackage,
)
from pixi_pack.pack.fetch import Expected, Fetcher, Slot
from pixi_pack.progress import Progress, human_bytes

logger = logging.getLogger("pixi_pack")


@dataclass(frozen=True)
class PackFile:
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


def pack_files(conda: Sequence[CondaPackage], wheels: Sequence[PypiPackage]) -> list[PackFile]:
    """The package files of the pack, one per path in it."""
    files = [
        PackFile(
            name=f"{CHANNEL_DIR}/{p.subdir}/{p.file_name}",
            location=p.location,
            what=p.dist_name,
            expected=Expected(p.sha256, p.md5, p.size),
            cache_key=f"{p.subdir}/{p.file_name}",
            is_wheel=False,
        )
        for p in conda
    ]
    files += [
        PackFile(
            name=f"{PYPI_DIR}/{w.file_name}",
            location=w.location,
            what=f"{w.name} {w.version}".strip(),
            expected=Expected(w.sha256),
            # A local wheel without a hash may be rebuilt under the same name: never cache it.
            cache_key=f"{PYPI_DIR}/{w.file_name}" if is_url(w.location) or w.sha256 else None,
            is_wheel=True,
        )
        for w in wheels
    ]
    # Two entries for one file (a malformed lockfile) must not share a slot; the last one wins, as in
    # repodata.json.
    return list({f.name: f for f in files}.values())


class Metadata:
    """The small files of the pack, made from the lockfile: ``pixi-pack.json``, ``environment.yml``, a
    ``repodata.json`` per subdir, and ``extra`` ones (the manifest's activation)."""

    def __init__(
        self,
        conda: Sequence[CondaPackage],
        wheels: Sequence[PypiPackage],
        subdir: str,
        extra: Mapping[str, bytes] | None = None,
        base: str | None = None,
    ) -> None:
        """``base``: for a delta pack, the identity of the environment it updates."""
        self._wheel_names = [w.file_name for w in wheels]
        self._base = base
        self._conda_digests = {f"{p.subdir}/{p.file_name}": package_digest(p.record) for p in conda}
        self._conda_urls = {
            f"{p.subdir}/{p.file_name}": url
            for p in conda
            if (url := public_url(p.origin or p.location)) is not None
        }
        self._fixed = {
            f"{CHANNEL_DIR}/{repodata_subdir}/{REPODATA_FILE}": text.encode()
            for repodata_subdir, text in repodata_files(conda, subdir).items()
        }
        self._fixed[ENVIRONMENT_FILE] = environment_yml(conda, wheels).encode()
        self._fixed.update(extra or {})
        self._metadata = PackMetadata(PACK_FORMAT_VERSION, __version__, subdir)
        if wheels and not any(p.name == "pip" for p in conda):
            logger.warning(
                "the environment has PyPI wheels but no pip conda package: the conda/micromamba "
                "compatibility mode (environment.yml) will not be able to install them"
            )

    def files(self, wheel_sha256: Mapping[str, str]) -> dict[str, bytes]:
        """Path in the pack -> content; ``pixi-pack.json`` records ``wheel_sha256``."""
        text = metadata_json(self._metadata, wheel_sha256, self._conda_urls, self._conda_digests, self._base)
        return {METADATA_FILE: text.encode(), **self._fixed}

    def sizes(self) -> dict[str, int]:
        """The size of each file, known before the wheels' hashes are (each is 64 hex digits)."""
        placeholder = dict.fromkeys(self._wheel_names, _NO_SHA256)
        return {name: len(data) for name, data in self.files(placeholder).items()}


_NO_SHA256 = "0" * 64


@dataclass(frozen=True)
class Contents:
    """Everything a way of writing the pack needs: the files, how to fetch them, the small files, and a
    scratch folder beside the output for what cannot be written straight into place."""

    files: Sequence[PackFile]
    metadata: Metadata
    fetcher: Fetcher
    progress: Progress
    staging: Path

    def fetch(self, jobs: Sequence[tuple[PackFile, Path | Slot]]) -> dict[str, str]:
        """Fetch every file to its destination, concurrently; the sha256 of each wheel by file name."""
        wheel_sha256: dict[str, str] = {}

        def fetch(file: PackFile, destination: Path | Slot) -> None:
            self.progress.working_on(file.what)
            digests = self.fetcher.fetch(
                file.location,
                destination,
                what=file.what,
                expected=file.expected,
                cache_key=file.cache_key,
                on_bytes=self.progress.add_bytes,
            )
            if file.is_wheel:
                wheel_sha256[PurePosixPath(file.name).name] = digests.sha256
            self.progress.item_done(file.what)

        if not jobs:
            return wheel_sha256
        with ThreadPoolExecutor(
            max_workers=min(self.fetcher.concurrency, len(jobs)), thread_name_prefix="pixi-pack-fetch"
        ) as pool:
            futures = [pool.submit(fetch, file, destination) for file, destination in jobs]
            try:
                for future in futures:
                    future.result()
            except BaseException:
                # Ctrl-C, SIGTERM or a failed file: stop the other downloads now, not when they finish.
                self.fetcher.cancel()
                for future in futures:
                    future.cancel()
                raise
        return wheel_sha256

    def stage(self) -> None:
        """Fetch every file into ``staging`` and write the small files beside them."""
        wheel_sha256 = self.fetch([(f, self.staging / f.name) for f in self.files])
        self.progress.finish()
        for name, text in self.metadata.files(wheel_sha256).items():
            (self.staging / name).parent.mkdir(parents=True, exist_ok=True)
            (self.staging / name).write_bytes(text)


def start_progress(conda: Sequence[CondaPackage], files: Sequence[PackFile]) -> Progress:
    """Announce the downloads and count them."""
    total_bytes = sum(p.size or 0 for p in conda)
    logger.info(
        "downloading %d packages%s", len(files), f" ({human_bytes(total_bytes)})" if total_bytes else ""
    )
    return Progress("downloaded", len(files), total_bytes or None)
