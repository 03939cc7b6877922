"""Adaptive C-MOVE concurrency per source PACS: never more than allowed, and the limit follows the throughput."""

from __future__ import annotations

import threading
import time

from nmdose.config import Node
from nmdose.retrieve.pace import AdaptiveSlots
from nmdose.retrieve.runner import associations, pipeline_threads
from tests.support import load, make_config_dir, make_tempdir


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def run_windows(slots: AdaptiveSlots, clock: Clock, rate_at: dict[int, float], windows: int) -> list[int]:
    """Feed `windows` windows of moves of 10 instances each at the throughput `rate_at[limit]` (instances/s);
    the limit in force in each window."""
    seen = []
    for _ in range(windows):
        limit = slots.limit
        seen.append(limit)
        for _ in range(slots.window_moves * limit):
            clock.t += 10 / rate_at[limit]
            slots.moved(10)
    return seen


def test_small_studies_that_contend_stay_on_one_association_and_are_re_measured_less_and_less_often():
    clock = Clock()
    slots = AdaptiveSlots(2, window_s=0, reprobe_every=4, clock=clock)
    seen = run_windows(slots, clock, {1: 120.0, 2: 80.0}, 59)
    # starts gently, measures one more, keeps the faster; measures the other again (the mix of study sizes
    # changes during a backfill) after 8, then 16, then 32 windows: each probe confirmed the limit
    assert seen[:3] == [1, 2, 1]
    assert [i for i, limit in enumerate(seen) if limit == 2] == [1, 10, 27]
    assert slots.status()["instances_per_s"] == {1: 120.0, 2: 80.0}


def test_studies_that_gain_from_parallel_moves_get_two_associations_and_a_changed_mix_is_followed():
    clock = Clock()
    slots = AdaptiveSlots(2, window_s=0, reprobe_every=4, clock=clock)
    seen = run_windows(slots, clock, {1: 80.0, 2: 140.0}, 10)
    assert seen[:3] == [1, 2, 2] and seen.count(1) == 2  # one probe back down, confirmed: 2 stays
    seen = run_windows(slots, clock, {1: 120.0, 2: 60.0}, 30)  # now small studies: the next probe finds 1
    assert seen[-1] == 1 and seen[-10:].count(2) <= 1


def test_a_difference_within_the_tolerance_keeps_the_fewer_associations():
    clock = Clock()
    slots = AdaptiveSlots(3, window_s=0, reprobe_every=100, clock=clock)
    seen = run_windows(slots, clock, {1: 100.0, 2: 102.0, 3: 200.0}, 8)
    assert seen[:3] == [1, 2, 1] and set(seen[2:]) == {1}  # 3 is never tried: 2 was no better than 1


def test_one_allowed_association_never_adapts():
    slots = AdaptiveSlots(1)
    for _ in range(50):
        slots.moved(10)
    assert slots.limit == 1 and slots.windows == 0


def test_never_more_moves_at_once_than_the_limit():
    slots = AdaptiveSlots(2)
    slots.limit = 1
    active, peak, lock = [0], [0], threading.Lock()

    def move():
        with slots.hold():
            with lock:
                active[0] += 1
                peak[0] = max(peak[0], active[0])
            time.sleep(0.02)
            with lock:
                active[0] -= 1

    threads = [threading.Thread(target=move) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert peak[0] == 1
    slots.limit = 2
    threads = [threading.Thread(target=move) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert peak[0] == 2


def test_a_nodes_max_associations_caps_the_concurrency_and_is_validated():
    root = make_tempdir("nmdose-pace-")
    cfg = load(
        make_config_dir(root, nodes={"simulationPACS": {"max_associations": 1}}, retrieve={"concurrency": 3})
    )
    assert associations(cfg, "simulationPACS") == 1
    assert associations(cfg, "researchPACS") == 3  # not capped: the configured concurrency
    assert pipeline_threads(cfg) == 6
    for bad in (0, 65, "many"):
        try:
            Node(aet="X", host="h", port=104, max_associations=bad)
        except ValueError:
            continue
        raise AssertionError(f"max_associations={bad!r} accepted")


def test_climbs_as_long_as_each_step_up_is_faster():
    clock = Clock()
    slots = AdaptiveSlots(4, window_s=0, reprobe_every=100, clock=clock)
    seen = run_windows(slots, clock, {1: 80.0, 2: 140.0, 3: 200.0, 4: 150.0}, 8)
    assert seen[:5] == [1, 2, 3, 4, 3] and set(seen[4:]) == {3}


def test_more_associations_only_when_clearly_faster():
    clock = Clock()
    slots = AdaptiveSlots(2, window_s=0, reprobe_every=100, clock=clock)
    seen = run_windows(slots, clock, {1: 100.0, 2: 108.0}, 6)  # 8 % faster: within the noise of a window
    assert seen[:3] == [1, 2, 1] and set(seen[2:]) == {1}
