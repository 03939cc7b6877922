"""Progress of long work: a bar on a terminal, plain lines (at most one every few seconds) otherwise."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    def __init__(self, total: int | None, label: str, *, stream: TextIO | None = None, every_s: float = 5.0):
        self.total = total
        self.label = label
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.every_s = every_s
        self.started = time.monotonic()
        self._last = 0.0
        self.done = 0

    def update(self, done: int, extra: str = "") -> None:
        self.done = done
        now = time.monotonic()
        if not self.tty and now - self._last < self.every_s and done != self.total:
            return
        self._last = now
        elapsed = now - self.started
        eta = ""
        if self.total and done and done < self.total:
            eta = f" ETA {(elapsed / done) * (self.total - done):.0f} s"
        count = f"{done}/{self.total}" if self.total is not None else str(done)
        if self.tty:
            width = 30
            filled = int(width * done / self.total) if self.total else 0
            bar = "#" * filled + "-" * (width - filled)
            self.stream.write(f"\r{self.label} [{bar}] {count} {extra}{eta}\033[K")
        else:
            self.stream.write(f"{self.label}: {count} {extra}{eta}\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()
