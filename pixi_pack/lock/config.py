"""``--config``: the parts of a pixi config file that affect downloads."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from pixi_pack.errors import PixiPackError
from pixi_pack.models import DEFAULT_CONCURRENCY, MirrorConfig

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.9/3.10 only
    import tomli as tomllib


def load_config(path: Path | None, auth_file: Path | None = None) -> MirrorConfig:
    """Read mirrors, s3-options and concurrency from a pixi config file; defaults when ``path`` is None."""
    if path is None:
        return MirrorConfig(auth_file=auth_file)
    try:
        data: dict[str, Any] = tomllib.loads(path.read_bytes().decode("utf-8"))
    except OSError as exc:
        msg = f"could not read config file {path}: {exc.strerror or exc}"
        raise PixiPackError(msg) from exc
    except (ValueError, RecursionError) as exc:  # TOMLDecodeError and UnicodeDecodeError are ValueErrors
        msg = f"failed to parse config file {path}: {exc}"
        raise PixiPackError(msg) from exc
    mirrors = data.get("mirrors", {})
    if not isinstance(mirrors, dict) or not all(
        isinstance(v, list) and all(isinstance(u, str) for u in v) for v in mirrors.values()
    ):
        msg = f"failed to parse config file {path}: [mirrors] must map URLs to lists of URLs"
        raise PixiPackError(msg)
    s3 = data.get("s3-options", {})
    if not isinstance(s3, dict) or not all(isinstance(v, dict) for v in s3.values()):
        msg = f"failed to parse config file {path}: [s3-options] must be a table of tables"
        raise PixiPackError(msg)
    for bucket, options in s3.items():
        for key, kind in (("endpoint-url", str), ("region", str), ("force-path-style", bool)):
            if key in options and not isinstance(options[key], kind):
                msg = (
                    f"failed to parse config file {path}: s3-options.{bucket}.{key} must be a {kind.__name__}"
                )
                raise PixiPackError(msg)
    table = data.get("concurrency", {})
    if not isinstance(table, dict):
        msg = f"failed to parse config file {path}: [concurrency] must be a table"
        raise PixiPackError(msg)
    concurrency = table.get("downloads", DEFAULT_CONCURRENCY)
    if not isinstance(concurrency, int) or isinstance(concurrency, bool) or concurrency < 1:
        msg = f"failed to parse config file {path}: concurrency.downloads must be a positive integer"
        raise PixiPackError(msg)
    return MirrorConfig(
        mirrors={k.rstrip("/"): tuple(u.rstrip("/") for u in v) for k, v in mirrors.items()},
        s3_options=s3,
        concurrency=concurrency,
        auth_file=auth_file,
    )
