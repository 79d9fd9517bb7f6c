"""What to pack: pixi.lock, the mirror config and conda's match specs. No network I/O."""
