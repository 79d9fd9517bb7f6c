"""The pixi-pack zipapp that a self-extracting environment embeds: the running one, a file, or a download."""

from __future__ import annotations

import re
import zipfile
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urldefrag

from pixi_pack.errors import IntegrityError, PixiPackError
from pixi_pack.formats.locations import is_url, redacted_url
from pixi_pack.io._vendor_loader import running_zipapp
from pixi_pack.io.files import expanded
from pixi_pack.io.hashing import hash_file


def find_unpacker(source: str | None, download: Callable[[str, Path], None], *, directory: Path) -> Path:
    """The pixi-pack zipapp to embed in a self-extracting environment.

    ``source`` is ``--pixi-unpack-source``: a path, or a URL fetched with ``download(url, destination)``
    (so mirrors and authentication apply) that may end in ``#sha256=<hex>`` to be verified. Without it,
    the ``.pyz`` this process runs from. A downloaded file goes into ``directory``, which the caller
    owns and removes.
    """
    if source is None:
        path = running_zipapp()
        if path is None:
            msg = (
                "--create-executable embeds the pixi-pack zipapp, and this pixi-pack does not run from one: "
                "pass --pixi-unpack-source dist/pixi-pack.pyz (`make zipapp` builds it) or a URL of one"
            )
            raise PixiPackError(msg)
    elif is_url(source):
        path = _download_unpacker(source, download, directory)
    else:
        path = expanded(source)
        if not path.is_file():
            msg = f"--pixi-unpack-source {source}: no such file"
            raise PixiPackError(msg)
    _check_zipapp(path, source or str(path))
    return path


def _download_unpacker(url: str, download: Callable[[str, Path], None], directory: Path) -> Path:
    location, fragment = urldefrag(url)
    expected = None
    if fragment:
        match = re.fullmatch(r"sha256=([0-9a-fA-F]{64})", fragment)
        if match is None:
            msg = f"--pixi-unpack-source {redacted_url(url)}: the only fragment understood is #sha256=<64 hex digits>"
            raise PixiPackError(msg)
        expected = match.group(1).lower()
    name = location.rstrip("/").rsplit("/", 1)[-1] or "pixi-pack.pyz"
    path = directory / name
    download(location, path)
    if expected is not None:
        actual = hash_file(path).sha256
        if actual != expected:
            msg = f"--pixi-unpack-source {redacted_url(location)}: sha256 mismatch (expected {expected})"
            raise IntegrityError(msg)
    return path


def _check_zipapp(path: Path, what: str) -> None:
    """Refuse anything but a plain pixi-pack zipapp (a native pixi-unpack binary, a self-extracting file)."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            first = min((info.header_offset for info in archive.infolist()), default=0)
    except (zipfile.BadZipFile, OSError) as exc:
        msg = f"--pixi-unpack-source {what}: not a pixi-pack zipapp (.pyz): {exc}"
        raise PixiPackError(msg) from exc
    if "__main__.py" not in names or "site-packages/pixi_pack/cli.py" not in names:
        msg = f"--pixi-unpack-source {what}: a zip file, but not a pixi-pack zipapp (.pyz)"
        raise PixiPackError(msg)
    if first > 4096:
        msg = (
            f"{what} is a self-extracting environment, not a pixi-pack zipapp: "
            "pass --pixi-unpack-source with the pixi-pack .pyz to embed"
        )
        raise PixiPackError(msg)
