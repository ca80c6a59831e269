"""Seconds per phase of a run (read, prepare, label, train, detail, extract, write).

A run that wants the split opens :func:`recording`; the code marks its phases with
:func:`phase`. Phases nest, and each second goes to the innermost phase only, so the detail
queries made during extraction count as ``detail``, not twice. Outside a recording
:func:`phase` costs one context-variable lookup.

Example
-------
>>> with recording() as seconds:
...     with phase("extract"):
...         with phase("detail"):
...             pass
>>> sorted(seconds)
['detail', 'extract']
"""

from __future__ import annotations

import contextvars
import time
from contextlib import contextmanager

#: The phases in the order a remesh runs them (what benchmarks print).
ORDER = ("read", "prepare", "label", "train", "detail", "extract", "write")

_clock: contextvars.ContextVar = contextvars.ContextVar("lipsdf_phases", default=None)


class _Clock:
    def __init__(self):
        self.seconds: dict[str, float] = {}
        self.stack: list[str] = []
        self.since = time.perf_counter()

    def _charge(self) -> None:
        now = time.perf_counter()
        if self.stack:
            name = self.stack[-1]
            self.seconds[name] = self.seconds.get(name, 0.0) + now - self.since
        self.since = now


@contextmanager
def recording():
    """Record the phases run inside the block; yields the ``{phase: seconds}`` it fills."""
    clock = _Clock()
    token = _clock.set(clock)
    try:
        yield clock.seconds
    finally:
        clock._charge()
        _clock.reset(token)


@contextmanager
def phase(name: str):
    """Count the block's seconds (less those of phases inside it) as ``name``."""
    clock = _clock.get()
    if clock is None:
        yield
        return
    clock._charge()
    clock.stack.append(name)
    try:
        yield
    finally:
        clock._charge()
        clock.stack.pop()
