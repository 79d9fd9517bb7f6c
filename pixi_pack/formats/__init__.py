"""The documents and archives both sides share: records, repodata, packs, conda packages, wheel tags."""
