"""pixi-pack: pack a pixi environment from its lockfile into one archive, and unpack it anywhere.

The library API is ``pixi_pack.pack.assemble.pack(PackOptions)`` and ``pixi_pack.install.unpack.unpack(UnpackOptions)``
(options in ``pixi_pack.models``); both raise ``pixi_pack.errors.PixiPackError`` for anything a user can
fix. They are not re-exported here: the stage modules share their names, and the CLI's ``--version``
should not load the HTTP stack.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
