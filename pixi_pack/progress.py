"""Progress of long work, reported through the ``pixi_pack`` logger (so on stderr, never stdout)."""

from __future__ import annotations

import logging
import threading
import time

logger = logging.getLogger("pixi_pack")


def human_bytes(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(size) < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


class Progress:
    """Counts finished items and bytes from many threads; logs at most every ``interval`` seconds."""

    def __init__(self, verb: str, total_items: int, total_bytes: int | None = None, interval: float = 1.0):
        self._verb = verb
        self._total_items = total_items
        self._total_bytes = total_bytes
        self._items = 0
        self._bytes = 0
        self._interval = interval
        self._last = time.monotonic()
        self._lock = threading.Lock()
        self._started = time.monotonic()

    def add_bytes(self, count: int) -> None:
        with self._lock:
            self._bytes += count
            self._maybe_report()

    def item_done(self) -> int:
        """Count one more finished item; returns how many are finished now."""
        with self._lock:
            self._items += 1
            self._maybe_report()
            return self._items

    def _maybe_report(self) -> None:
        now = time.monotonic()
        if now - self._last >= self._interval:
            self._last = now
            logger.info("%s", self._line())

    def _line(self) -> str:
        line = f"{self._verb} {self._items}/{self._total_items} packages"
        if self._bytes:
            line += f", {human_bytes(self._bytes)}"
            if self._total_bytes:
                line += f" of {human_bytes(self._total_bytes)}"
        return line

    def finish(self) -> None:
        elapsed = time.monotonic() - self._started
        logger.info("%s in %.1f s", self._line(), elapsed)
