"""Progress of long work, reported through the ``pixi_pack`` logger (so on stderr, never stdout).

The library only counts, and logs a :class:`Snapshot` (in the record's ``progress`` attribute) at most
every :data:`TICK` seconds and once at the end; how it is shown is the CLI's choice: one live line on a
terminal, a plain line every 10 % or 5 s in a log. Each finished item is logged at debug level (``-v``).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

logger = logging.getLogger("pixi_pack")

TICK = 0.1
"""Seconds between two snapshots: often enough for a live line, rarely enough to cost nothing."""


def human_bytes(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(size) < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


@dataclass(frozen=True)
class Snapshot:
    """Where one phase of the work stands."""

    verb: str
    items: int
    total_items: int
    bytes: int
    total_bytes: int | None
    elapsed: float
    current: str | None
    """The item last started or finished (a package), for the live line."""
    final: bool

    @property
    def fraction(self) -> float:
        """How much is done, by bytes where the total is known, else by items."""
        if self.total_bytes:
            return min(1.0, self.bytes / self.total_bytes)
        return self.items / self.total_items if self.total_items else 1.0

    def summary(self) -> str:
        """``downloaded 3/25 packages, 40.0 MiB of 84.6 MiB``."""
        line = f"{self.verb} {self.items}/{self.total_items} packages"
        if self.bytes:
            line += f", {human_bytes(self.bytes)}"
            if self.total_bytes:
                line += f" of {human_bytes(self.total_bytes)}"
        return line

    def live(self) -> str:
        """The summary with the rate, the time left and the current item."""
        line = self.summary()
        if self.bytes and self.elapsed > 0:
            rate = self.bytes / self.elapsed
            line += f", {human_bytes(rate)}/s"
            if self.total_bytes and rate > 0 and self.bytes < self.total_bytes:
                line += f", {(self.total_bytes - self.bytes) / rate:.0f} s left"
        if self.current:
            line += f" ({self.current})"
        return line

    def final_line(self) -> str:
        return f"{self.summary()} in {self.elapsed:.1f} s"


class Progress:
    """Counts finished items and bytes from many threads, and logs snapshots of them."""

    def __init__(self, verb: str, total_items: int, total_bytes: int | None = None, interval: float = TICK):
        self._verb = verb
        self._total_items = total_items
        self._total_bytes = total_bytes
        self._items = 0
        self._bytes = 0
        self._current: str | None = None
        self._interval = interval
        self._lock = threading.Lock()
        self._started = time.monotonic()
        self._last = self._started

    def add_bytes(self, count: int) -> None:
        with self._lock:
            self._bytes += count
            self._maybe_report()

    def working_on(self, name: str) -> None:
        """Name the item now being worked on, for the live line."""
        with self._lock:
            self._current = name

    def item_done(self, name: str | None = None) -> int:
        """Count one more finished item; returns how many are finished now."""
        with self._lock:
            self._items += 1
            if name is not None:
                self._current = name
                logger.debug("%s %s", self._verb, name)
            self._maybe_report()
            return self._items

    def _snapshot(self, *, final: bool) -> Snapshot:
        return Snapshot(
            verb=self._verb,
            items=self._items,
            total_items=self._total_items,
            bytes=self._bytes,
            total_bytes=self._total_bytes,
            elapsed=time.monotonic() - self._started,
            current=None if final else self._current,
            final=final,
        )

    def _maybe_report(self) -> None:
        now = time.monotonic()
        if now - self._last >= self._interval:
            self._last = now
            snapshot = self._snapshot(final=False)
            logger.info("%s", snapshot.summary(), extra={"progress": snapshot})

    def finish(self) -> None:
        with self._lock:
            snapshot = self._snapshot(final=True)
        logger.info("%s", snapshot.final_line(), extra={"progress": snapshot})
