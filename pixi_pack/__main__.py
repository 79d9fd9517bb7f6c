"""``python -m pixi_pack pack|unpack ...``."""

from __future__ import annotations

import sys

from pixi_pack.cli import main

if __name__ == "__main__":
    sys.exit(main())
