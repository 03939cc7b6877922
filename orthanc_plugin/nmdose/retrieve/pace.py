"""How many C-MOVEs run at once against one source PACS: adaptive, between 1 and what that PACS allows.

More parallel moves are not always faster. On the 2-core local stack two small studies (a few instances each)
moving at once take about three times as long each as one alone, and two PET-CT studies of ~770 instances at
once take longer than one after the other (the research PACS's ingest and the source's C-MOVE handling contend
for the same cores); a clinical PACS on its own hardware may well serve two or four at once faster. So the
limit is measured, not guessed: :class:`AdaptiveSlots` starts at one association (the gentlest on a clinical
PACS), runs a window of moves there, then one at the next limit up, keeps the fewest associations within
`tolerance` of the best throughput (instances per second of wall time, moves of any size; more associations than
now only when more than `gain_up` faster) and measures a neighbour again after `reprobe_every`
windows, doubling that wait each time the probe confirms the current limit (up to `reprobe_max` windows) and
going back to `reprobe_every` when a probe changes it, because the archive's mix of study sizes changes as a
backfill goes (static NM years, then PET-CT years). It never exceeds `maximum` (`concurrency`, capped by the
node's `max_associations`).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator


class AdaptiveSlots:
    """A semaphore whose size adapts to the throughput it gets (see the module's docstring).

    `with slots.hold():` around one association; `slots.moved(instances)` after a move that held one. A window
    ends after at least `window_moves`·limit moves and `window_s` seconds at one limit."""

    def __init__(
        self,
        maximum: int,
        *,
        window_moves: int = 3,
        window_s: float = 0.5,
        reprobe_every: int = 8,
        reprobe_max: int = 128,
        tolerance: float = 0.05,
        gain_up: float = 0.10,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.maximum = max(1, maximum)
        self.limit = 1  # start gently; the next limit up is measured in the second window
        self.window_moves = window_moves
        self.window_s = window_s
        self.reprobe_every = reprobe_every
        self.reprobe_max = reprobe_max
        self._interval = reprobe_every  # windows between two probes of a neighbour (doubles while confirmed)
        self._reprobe_in = reprobe_every  # windows until the next probe
        self._probing_from: int | None = None  # the limit a probe left (to tell whether it changed anything)
        self.tolerance = tolerance
        self.gain_up = gain_up
        self.clock = clock
        self.rates: dict[int, float] = {}  # limit -> instances/s measured in its last window
        self.windows = 0
        self._active = 0
        self._cond = threading.Condition()
        self._start_window()

    def _start_window(self) -> None:
        self._window_started = self.clock()
        self._window_count = 0
        self._window_instances = 0

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        with self._cond:
            while self._active >= self.limit:
                self._cond.wait()
            self._active += 1
        try:
            yield
        finally:
            with self._cond:
                self._active -= 1
                self._cond.notify()

    def moved(self, instances: int) -> None:
        """A move that held a slot ended, bringing `instances` (0 when it failed)."""
        if self.maximum == 1:
            return
        with self._cond:
            self._window_count += 1
            self._window_instances += max(0, instances)
            elapsed = self.clock() - self._window_started
            if self._window_count < self.window_moves * self.limit or elapsed < self.window_s:
                return
            self.rates[self.limit] = self._window_instances / max(elapsed, 1e-6)
            self.windows += 1
            self.limit = self._next_limit()
            self._start_window()
            self._cond.notify_all()

    def _next_limit(self) -> int:
        current = self.limit
        best = max(self.rates.values())
        # the fewest associations within `tolerance` of the best throughput: no load on the PACS for nothing
        chosen = min(n for n, rate in self.rates.items() if rate * (1 + self.tolerance) >= best)
        base = current if self._probing_from is None else self._probing_from
        if chosen > base and self.rates[chosen] <= self.rates[base] * (1 + self.gain_up):
            chosen = base  # more associations only when clearly faster (a noisy window is no reason)
        if chosen == current:  # the best known: is the next limit up (or down) better still?
            unmeasured = [
                n for n in (current + 1, current - 1) if 1 <= n <= self.maximum and n not in self.rates
            ]
            if unmeasured:
                return self._probe(current, unmeasured[0])
        if self._probing_from is not None:  # a probe just ended: it confirmed its limit, or it changed it
            confirmed = chosen == self._probing_from
            self._interval = min(self._interval * 2, self.reprobe_max) if confirmed else self.reprobe_every
            self._reprobe_in = self._interval
            self._probing_from = None
            return chosen
        self._reprobe_in -= 1
        if self._reprobe_in <= 0:  # the mix of study sizes changes: measure a neighbour again
            neighbours = [n for n in (chosen - 1, chosen + 1) if 1 <= n <= self.maximum]
            if neighbours:
                return self._probe(chosen, neighbours[(self.windows // self.reprobe_every) % len(neighbours)])
        return chosen

    def _probe(self, current: int, limit: int) -> int:
        if self._probing_from is None:
            self._probing_from = current
        return limit

    def status(self) -> dict:
        with self._cond:
            return {
                "limit": self.limit,
                "maximum": self.maximum,
                "active": self._active,
                "instances_per_s": {n: round(r, 1) for n, r in sorted(self.rates.items())},
            }
