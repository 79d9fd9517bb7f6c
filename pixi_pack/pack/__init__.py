"""pixi.lock to an archive: fetch, verify, inject and assemble a pack, optionally self-extracting."""
