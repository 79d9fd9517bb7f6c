"""The manifest's ``[activation]`` for the environment being packed, as files of the pack.

pixi applies ``env`` and ``scripts`` of ``[activation]`` (top level, each feature, and their
``[target.<platform>]`` tables) when it activates an environment; upstream pixi-pack drops them. Here
the scripts are read from the project (each must stay inside it) and shipped under ``activation/``
with ``activation/activation.json``, which pixi-unpack turns into the activation scripts it writes.
"""

from __future__ import annotations

from pathlib import Path

from pixi_pack.errors import LockfileError
from pixi_pack.formats.activation import activation_json
from pixi_pack.formats.records import RecordError, check_relative_path
from pixi_pack.io.files import TooLargeError, read_limited
from pixi_pack.lock.manifest import Manifest, activation_of
from pixi_pack.models import ACTIVATION_DIR, ACTIVATION_FILE

#: The largest activation script packed (they are a few lines; this only bounds the read).
SCRIPT_LIMIT = 16 << 20


def activation_files(manifest: Manifest | None, environment: str, subdir: str) -> dict[str, bytes]:
    """Path in the pack -> content for the environment's activation; empty when it declares none."""
    if manifest is None:
        return {}
    carried = activation_of(manifest, environment, subdir)
    if not carried.env and not carried.scripts:
        return {}
    root = manifest.path.parent.resolve()
    files: dict[str, bytes] = {}
    names = []
    for script in carried.scripts:
        relative = _relative(script, manifest.path)
        files[f"{ACTIVATION_DIR}/{relative}"] = _read(root, relative, manifest.path)
        names.append(relative)
    files[ACTIVATION_FILE] = activation_json(carried.env, names).encode()
    return files


def _relative(script: str, manifest: Path) -> str:
    text = script.replace("\\", "/")
    while text.startswith("./"):
        text = text[2:]
    try:
        relative = check_relative_path(text, "scripts")
    except RecordError as exc:
        msg = f"{manifest}: activation script {script!r} must be a path inside the project ({exc})"
        raise LockfileError(msg) from exc
    if f"{ACTIVATION_DIR}/{relative}" == ACTIVATION_FILE:
        msg = f"{manifest}: an activation script may not be named {relative!r}"
        raise LockfileError(msg)
    return relative


def _read(root: Path, relative: str, manifest: Path) -> bytes:
    path = (root / relative).resolve()
    if root != path and root not in path.parents:
        msg = f"{manifest}: activation script {relative} leads outside the project (to {path})"
        raise LockfileError(msg)
    try:
        return read_limited(path, SCRIPT_LIMIT)
    except TooLargeError as exc:
        msg = f"{manifest}: activation script {relative} is larger than {SCRIPT_LIMIT >> 20} MiB"
        raise LockfileError(msg) from exc
    except OSError as exc:
        msg = f"{manifest}: could not read activation script {relative}: {exc.strerror or exc}"
        raise LockfileError(msg) from exc
