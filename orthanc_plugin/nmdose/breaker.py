"""Circuit breakers per node: an outage of a node is not a failure of the studies that wait for it.

A job that fails talking to a node asks :meth:`Breakers.outage`: the node is probed (a C-ECHO, a cheap REST
request); when it does not answer, or an outage of it was seen since the job started, the breaker opens and the
job is put back without counting an attempt (:class:`NodeDown`, a :class:`~nmdose.workers.Deferred`). While a
breaker is open, :meth:`Breakers.guard` defers every job for that node at once, until the next probe is due; the
job that finds it due probes (one at a time), which closes the breaker on success or re-opens it with a doubled
back-off. A seven-second source outage thus costs no study an attempt.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from nmdose.workers import Deferred

log = logging.getLogger("nmdose.breaker")

MIN_WAIT_S = 1.0  # a deferred job waits at least this long (never a busy loop while a probe runs)


class NodeDown(Deferred):
    """A node is unreachable: the job waits for it (no attempt counted)."""

    def __init__(self, node: str, reason: str, until: datetime):
        super().__init__(until, f"{node} unreachable: {reason}")
        self.node = node


@dataclass
class _State:
    failures: int = 0
    opened_at: float | None = None  # clock() when the outage was first seen; None: closed
    next_probe: float = 0.0
    last_outage: float = float("-inf")  # the last moment the node was known down
    last_error: str = ""
    probing: bool = False


class Breakers:
    """One breaker per node name; `probe(node)` returns None when the node answers, else the reason."""

    def __init__(
        self,
        probe: Callable[[str], str | None],
        *,
        backoff_s: float = 2.0,
        backoff_max_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.probe = probe
        self.backoff_s = backoff_s
        self.backoff_max_s = max(backoff_max_s, backoff_s)
        self.clock = clock
        self._states: dict[str, _State] = {}
        self._lock = threading.Lock()

    def guard(self, node: str) -> None:
        """Before a job uses `node`: returns while the node is believed up; raises NodeDown while its breaker is
        open. When the next probe is due, this caller probes and closes the breaker if the node answers."""
        with self._lock:
            st = self._states.get(node)
            if st is None or st.opened_at is None:
                return
            if st.probing or self.clock() < st.next_probe:
                raise self._down(node, st)
            st.probing = True
        error = self._run_probe(node)
        with self._lock:
            st.probing = False
            if error is None:
                self._close(node, st)
                return
            self._open(node, st, error)
            raise self._down(node, st)

    def outage(self, node: str, since: float) -> bool:
        """After an error talking to `node` in a job that started at `since` (this object's clock): True when it
        was an outage (the node does not answer a probe now, or it was down at some point since `since`), and
        the breaker is then open; False when the node answers and was not down: a failure of the job itself."""
        with self._lock:
            st = self._states.setdefault(node, _State())
            if st.opened_at is not None:
                return True
        error = self._run_probe(node)
        with self._lock:
            if error is not None:
                self._open(node, st, error)
                return True
            return st.last_outage >= since

    def down(self, node: str) -> NodeDown:
        """The NodeDown to raise for an open breaker (after :meth:`outage` returned True)."""
        with self._lock:
            return self._down(node, self._states.setdefault(node, _State()))

    def status(self) -> dict[str, dict]:
        """The open breakers: node -> since how long, the last error, the next probe."""
        now = self.clock()
        with self._lock:
            return {
                node: {
                    "down_for_s": round(now - st.opened_at, 1),
                    "failures": st.failures,
                    "last_error": st.last_error,
                    "next_probe_in_s": round(max(0.0, st.next_probe - now), 1),
                }
                for node, st in self._states.items()
                if st.opened_at is not None
            }

    # ----- inside
    def _run_probe(self, node: str) -> str | None:
        try:
            return self.probe(node)
        except Exception as exc:  # a probe that raises is a failed probe
            return f"{type(exc).__name__}: {exc}"

    def _open(self, node: str, st: _State, error: str) -> None:
        now = self.clock()
        if st.opened_at is None:
            st.opened_at = now
            log.warning("%s unreachable (%s): jobs for it wait, probing with back-off", node, error)
        st.failures += 1
        st.next_probe = now + min(self.backoff_max_s, self.backoff_s * 2 ** (st.failures - 1))
        st.last_outage = now
        st.last_error = error[:500]

    def _close(self, node: str, st: _State) -> None:
        now = self.clock()
        log.warning("%s reachable again after %.1f s", node, now - (st.opened_at or now))
        st.opened_at = None
        st.failures = 0
        st.last_outage = now  # jobs that started during the outage and fail now failed because of it

    def _down(self, node: str, st: _State) -> NodeDown:
        wait = max(MIN_WAIT_S, st.next_probe - self.clock())
        until = datetime.now().astimezone() + timedelta(seconds=wait)
        return NodeDown(node, st.last_error or "down", until)
