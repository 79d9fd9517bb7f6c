"""pixi-pack: pack a pixi environment from its lockfile into one archive, and unpack it anywhere."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
