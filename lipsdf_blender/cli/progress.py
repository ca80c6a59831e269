"""A one-line terminal progress bar for training and extraction."""

from __future__ import annotations

import math
import sys
import time


class ProgressBar:
    """A one-line terminal progress bar fed with :class:`core.training.train.Progress` objects."""

    def __init__(self, stream=sys.stderr, width: int = 28):
        self.stream, self.width = stream, width
        self.tty = stream.isatty()
        self.last_line = 0.0

    def __call__(self, p) -> None:
        if p.phase != "train":
            self._write(f"{p.phase}: {p.device}", end=True)
            return
        frac = p.step / max(p.total, 1)
        bar = "#" * int(frac * self.width)
        eta = "" if not math.isfinite(p.eta) else f" ETA {p.eta:5.0f}s"
        line = (
            f"train [{bar:<{self.width}}] {p.step}/{p.total} loss {p.loss:.4f} "
            f"{p.elapsed:5.0f}s{eta}"
        )
        done = p.step >= p.total
        # Without a terminal, print a full line at most every 5 s instead of redrawing.
        if self.tty or done or time.monotonic() - self.last_line > 5:
            self.last_line = time.monotonic()
            self._write(line, end=done or not self.tty)

    def extraction(self, done: int, total: int) -> None:
        if self.tty:
            self._write(f"extract {done}/{total} points", end=False)

    def _write(self, text: str, end: bool) -> None:
        if self.tty:
            self.stream.write("\r\033[K" + text + ("\n" if end else ""))
        else:
            self.stream.write(text + "\n")
        self.stream.flush()
