"""A fair share of the CPU: torch's threads follow the cores other processes leave free.

On a CPU shared with other busy processes (Blender rendering, a bake, a second job), a
parallel region of ``t`` threads ends only when its slowest thread does. A thread that shares
its core with another process waits for its time slice (milliseconds) at every one of the
hundreds of small parallel regions of a training step, and the job runs 10-25 times slower
instead of about twice. :class:`FairShare` measures how many cores the *other* processes keep
busy and sets torch's thread count to the cores left (at least one, at most the maximum).

Threads are set per calling thread in OpenMP, so :meth:`FairShare.tick` must be called from
the thread that computes; it is cheap and meant for the core's cancel hooks, which every long
loop already calls. OpenMP's wait policy is left as it is: with ``OMP_WAIT_POLICY=PASSIVE``
(threads sleep at once when idle) a training step's hundreds of short parallel regions each
pay a wake-up, and a fast remesh alone took twice as long (41 s against 21 s for 600 steps
on 2 cores); once the thread count follows the free cores, no thread spins on a busy core.

Measuring needs ``psutil``; without it the thread count is left as it is.
"""

from __future__ import annotations

import os
import time

try:  # pragma: no cover - exercised by the environment, not by a test
    import psutil
except ImportError:  # pragma: no cover
    psutil = None


def fair_share_wanted(environ=os.environ) -> bool:
    """Whether threads should follow the free cores: yes unless ``LIPSDF_FAIR_SHARE=0``."""
    return environ.get("LIPSDF_FAIR_SHARE", "1") != "0"


class FairShare:
    """Sets torch's intra-op threads to the cores other processes leave free.

    Parameters
    ----------
    max_threads : int, optional
        Never more threads than this (default: torch's thread count when made).
    interval : float
        Seconds between measurements; :meth:`tick` does nothing in between.
    cpu : callable returning (busy seconds of all processes, cores), optional
        For tests; default: ``psutil``.
    own : callable returning this process's busy seconds, optional
        For tests; default: ``psutil``.
    clock : callable returning seconds
    set_threads : callable(int), optional
        Default: ``torch.set_num_threads``.

    Attributes
    ----------
    threads : int
        The thread count now.
    others : float
        Cores the other processes kept busy, smoothed over the last few measurements.
    """

    def __init__(
        self,
        max_threads: int | None = None,
        interval: float = 0.5,
        cpu=None,
        own=None,
        clock=time.monotonic,
        set_threads=None,
    ):
        if set_threads is None:
            import torch

            set_threads = torch.set_num_threads
            max_threads = max_threads or torch.get_num_threads()
        self.max = max(1, int(max_threads or os.cpu_count() or 1))
        self.interval = interval
        self.clock = clock
        self.set_threads = set_threads
        self.cpu = cpu or (_system_busy if psutil is not None else None)
        self.own = own or (_own_busy if psutil is not None else None)
        self.threads = self.max
        self.others = 0.0
        self._last = None

    @property
    def active(self) -> bool:
        return self.cpu is not None and self.own is not None

    def tick(self) -> int:
        """Measure (at most once an ``interval``) and set the thread count; returns it."""
        if not self.active:
            return self.threads
        now = self.clock()
        if self._last is not None and now - self._last[0] < self.interval:
            return self.threads
        busy, cores = self.cpu()
        mine = self.own()
        if self._last is not None:
            t0, busy0, mine0 = self._last
            dt = now - t0
            others = max(0.0, ((busy - busy0) - (mine - mine0)) / dt) if dt > 0 else 0.0
            # smoothed: a competitor that pauses for a moment is not worth two switches
            self.others = 0.5 * self.others + 0.5 * min(others, cores)
            free = cores - self.others
            want = int(min(self.max, max(1, int(free + 0.5))))
            if want != self.threads:
                self.set_threads(want)
                self.threads = want
        self._last = (now, busy, mine)
        return self.threads

    def __call__(self) -> bool:
        """A cancel hook that never cancels: :meth:`tick` wherever the core checks for one."""
        self.tick()
        return False

    def restore(self) -> None:
        """Back to the maximum (between jobs, so a quiet machine starts at full speed)."""
        if self.threads != self.max:
            self.set_threads(self.max)
            self.threads = self.max
        self._last = None
        self.others = 0.0


def _system_busy() -> tuple[float, int]:
    t = psutil.cpu_times()
    idle = t.idle + getattr(t, "iowait", 0.0)
    total = sum(t) - getattr(t, "guest", 0.0) - getattr(t, "guest_nice", 0.0)
    return total - idle, psutil.cpu_count() or 1


_SELF = None


def _own_busy() -> float:
    global _SELF
    if _SELF is None:
        _SELF = psutil.Process()
    t = _SELF.cpu_times()
    return t.user + t.system
