"""``activation/activation.json``: the manifest's ``[activation]`` carried in a pack.

``{"env": [["NAME", "value"], ...], "scripts": ["scripts/setup.sh", ...]}``: the variables in the order
they are set, the scripts (stored beside it under ``activation/``) in the order they run. Both sides
check it the same way: names that a shell can export, script paths relative and inside the folder.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass

from pixi_pack.errors import ArchiveError
from pixi_pack.formats.records import RecordError, check_relative_path

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class CarriedActivation:
    env: tuple[tuple[str, str], ...] = ()
    scripts: tuple[str, ...] = ()


def activation_json(env: Sequence[tuple[str, str]], scripts: Sequence[str]) -> str:
    return json.dumps({"env": [list(pair) for pair in env], "scripts": list(scripts)}, indent=2) + "\n"


def parse_activation_json(text: str, source: str) -> CarriedActivation:
    """The activation a pack carries; anything malformed is an :class:`ArchiveError` naming ``source``."""
    try:
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        env, scripts = data.get("env", []), data.get("scripts", [])
        if not isinstance(env, list) or not all(
            isinstance(p, list)
            and len(p) == 2
            and all(isinstance(x, str) for x in p)
            and _ENV_NAME.fullmatch(p[0])
            and "\0" not in p[1]
            for p in env
        ):
            raise ValueError("env must be a list of [name, value] pairs")
        if not isinstance(scripts, list):
            raise ValueError("scripts must be a list of paths")
        checked = tuple(check_relative_path(s, "scripts") for s in scripts)
    except (ValueError, RecursionError, RecordError) as exc:
        msg = f"malformed {source}: {exc}"
        raise ArchiveError(msg) from exc
    return CarriedActivation(tuple((str(k), str(v)) for k, v in env), checked)
