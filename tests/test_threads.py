"""The fair share of threads: torch's thread count follows the cores other processes leave."""

from __future__ import annotations

from lipsdf_blender.core.threads import FairShare, fair_share_wanted


class FakeMachine:
    """Two cores; ``others`` cores busy with other processes, ``mine`` busy with us."""

    def __init__(self, cores=2):
        self.cores, self.t, self.busy, self.mine = cores, 0.0, 0.0, 0.0
        self.others, self.ours = 0.0, 2.0

    def run(self, seconds):
        self.t += seconds
        self.busy += (self.others + self.ours) * seconds
        self.mine += self.ours * seconds


def governed(m: FakeMachine):
    calls = []
    share = FairShare(
        max_threads=2,
        interval=0.5,
        cpu=lambda: (m.busy, m.cores),
        own=lambda: m.mine,
        clock=lambda: m.t,
        set_threads=calls.append,
    )
    return share, calls


def test_threads_follow_the_free_cores():
    m = FakeMachine()
    share, calls = governed(m)
    for _ in range(6):  # alone: both cores
        m.run(0.5)
        share.tick()
    assert share.threads == 2 and calls == []
    m.others, m.ours = 1.0, 1.0  # a competitor takes a whole core
    for _ in range(6):
        m.run(0.5)
        share.tick()
    assert share.threads == 1 and calls == [1]
    m.others, m.ours = 0.0, 1.0  # it ends
    for _ in range(6):
        m.run(0.5)
        share.tick()
    assert share.threads == 2 and calls == [1, 2]


def test_a_brief_blip_changes_nothing_and_ticks_between_measurements_are_free():
    m = FakeMachine()
    share, calls = governed(m)
    m.run(0.5)
    share.tick()
    m.others = 0.6  # a short burst: smoothed below half a core
    m.run(0.5)
    share.tick()
    m.others = 0.0
    for _ in range(40):  # many ticks within one interval measure nothing
        m.run(0.01)
        assert share.tick() == 2
    assert calls == []


def test_never_below_one_thread_and_restored_between_jobs():
    m = FakeMachine()
    share, calls = governed(m)
    m.others, m.ours = 2.0, 0.5  # both cores busy elsewhere
    for _ in range(8):
        m.run(0.5)
        share.tick()
    assert share.threads == 1
    assert share() is False  # as a cancel hook it never cancels
    share.restore()
    assert share.threads == 2 and calls[-1] == 2


def test_without_measurements_the_count_is_left_alone():
    calls = []
    share = FairShare(max_threads=4, set_threads=calls.append, cpu=None, own=None)
    share.cpu = share.own = None  # as without psutil
    assert not share.active and share.tick() == 4 and calls == []


def test_fair_share_can_be_turned_off():
    assert fair_share_wanted({}) and fair_share_wanted({"LIPSDF_FAIR_SHARE": "1"})
    assert not fair_share_wanted({"LIPSDF_FAIR_SHARE": "0"})
