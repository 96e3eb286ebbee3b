"""The load test's progress bar."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """A progress bar on stderr: redrawn in place on a terminal, else a line every few seconds."""

    def __init__(self, total: int, stream: TextIO = sys.stderr) -> None:
        self.total = total
        self.stream = stream
        self.tty = stream.isatty()
        self.started = time.monotonic()
        self._last = 0.0

    def line(self, done: int, in_flight: int) -> str:
        elapsed = time.monotonic() - self.started
        width = 30
        filled = int(width * done / self.total) if self.total else width
        rate = done / elapsed if elapsed > 0 else 0.0
        return (
            f"[{'#' * filled}{'.' * (width - filled)}] {done}/{self.total} terminal, "
            f"{in_flight} in flight, {rate:.1f} images/s, {elapsed:.0f}s"
        )

    def update(self, done: int, in_flight: int, *, final: bool = False) -> None:
        now = time.monotonic()
        if not final and now - self._last < (0.25 if self.tty else 5.0):
            return
        self._last = now
        if self.tty:
            self.stream.write("\r" + self.line(done, in_flight) + ("\n" if final else ""))
        else:
            self.stream.write(self.line(done, in_flight) + "\n")
        self.stream.flush()
