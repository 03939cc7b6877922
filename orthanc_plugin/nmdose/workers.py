"""Worker threads that drain the durable queue. They survive a lost database (reconnect with back-off) and
never let one bad job stop the others.

Each pool also runs a lease thread: it renews the leases of the jobs its workers hold (the `locked_at`
heartbeat) and takes back the jobs whose lease expired because their holder died (`queue.reclaim_expired`,
the attempt counted), so a killed process's jobs resume without a restart of anything. An outage (the
database, or a node a handler reports with :class:`Deferred`) puts the job back without counting an attempt;
the bookkeeping write that ends a job (`complete`, `fail`, `defer`) is retried on a fresh connection until the
database answers again.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta

from nmdose.db import is_alive, is_connection_error, queue
from nmdose.errors import NmdoseError

log = logging.getLogger("nmdose.workers")

JobHandler = Callable[[queue.Job], None]
DB_OUTAGE_RETRY_S = 5.0  # a job interrupted by a database outage is tried again this much later
CHECK_IDLE_S = 5.0  # a worker's own connection idle this long is checked (SELECT 1) before use


class Deferred(Exception):  # noqa: N818 (a signal, not an error)
    """Raised by a handler to put its job back until `until` without counting an attempt."""

    def __init__(self, until, reason: str):
        super().__init__(reason)
        self.until = until
        self.reason = reason


def _soon(seconds: float) -> datetime:
    return datetime.now().astimezone() + timedelta(seconds=seconds)


class _Link:
    """A thread's own connection (claims, bookkeeping, leases): checked after idling, replaced when broken."""

    def __init__(self, connect: Callable[[], object]):
        self.connect = connect
        self.conn = None
        self.used = 0.0

    def get(self):
        now = time.monotonic()
        idle = now - self.used >= CHECK_IDLE_S
        if self.conn is not None and not self.conn.closed and idle and not is_alive(self.conn):
            self.conn = None
        if self.conn is None or self.conn.closed:
            self.conn = self.connect()
        self.used = now
        return self.conn

    def reset(self) -> None:
        if self.conn is not None:
            with contextlib.suppress(Exception):
                self.conn.close()
        self.conn = None


class WorkerPool:
    def __init__(
        self,
        connect: Callable[[], object],
        handlers: dict[str, JobHandler],
        *,
        threads: int = 2,
        name: str = "nmdose",
        poll_s: float = 1.0,
        backoff_s: float = 30,
        backoff_max_s: float = 3600,
        on_failure: Callable[[queue.Job, str, str], None] | None = None,
        lease_s: float = queue.DEFAULT_LEASE_S,
        outage_retry_s: float = DB_OUTAGE_RETRY_S,
    ):
        self.connect = connect
        self.on_failure = on_failure
        self.handlers = handlers
        self.size = threads
        self.name = name
        self.poll_s = poll_s
        self.backoff_s = backoff_s
        self.backoff_max_s = backoff_max_s
        self.lease_s = lease_s
        self.outage_retry_s = outage_retry_s
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._workers_done = threading.Event()
        self._lease_tick = threading.Event()  # ends the lease thread's wait (stop, or the workers are done)
        self._threads: list[threading.Thread] = []
        self._lease_thread: threading.Thread | None = None
        self._held: dict[int, queue.Job] = {}
        self._held_lock = threading.Lock()
        self._budget: int | None = None
        self._budget_lock = threading.Lock()
        self._exit_when_idle = False
        self.last_error: str | None = None
        self.jobs_done = 0
        self.jobs_claimed = 0
        self.reclaimed = 0

    def start(self, *, exit_when_idle: bool = False, max_jobs: int | None = None) -> None:
        """Start the threads; with `exit_when_idle` each ends when no job is ready (CLI runs); with `max_jobs`
        the pool claims at most that many jobs."""
        self._stop.clear()
        self._workers_done.clear()
        self._lease_tick.clear()
        self._exit_when_idle = exit_when_idle
        self._budget = max_jobs
        self._threads = [t for t in self._threads if t.is_alive()]
        for i in range(self.size):
            t = threading.Thread(
                target=self._run, args=(f"{self.name}-{i}",), name=f"{self.name}-{i}", daemon=True
            )
            t.start()
            self._threads.append(t)
        if self._lease_thread is None or not self._lease_thread.is_alive():
            self._lease_thread = threading.Thread(
                target=self._lease_loop, name=f"{self.name}-lease", daemon=True
            )
            self._lease_thread.start()

    def stop(self, timeout_s: float = 10) -> None:
        self._stop.set()
        self._wake.set()
        self._lease_tick.set()
        for t in self._threads:
            t.join(timeout_s)
        self._threads = [t for t in self._threads if t.is_alive()]
        if self._lease_thread is not None:
            self._lease_thread.join(timeout_s)

    def finish(self) -> None:
        """Claim nothing more: each thread ends after the job it runs (then join() returns)."""
        with self._budget_lock:
            self._budget = 0
        self._exit_when_idle = True
        self._wake.set()

    def wake(self) -> None:
        """New work was queued: do not wait for the next poll."""
        self._wake.set()

    def alive(self) -> int:
        return sum(t.is_alive() for t in self._threads)

    def lease_alive(self) -> bool:
        """The thread that renews the leases of running jobs and takes back expired ones is running."""
        return self._lease_thread is not None and self._lease_thread.is_alive()

    def held(self) -> list[queue.Job]:
        """The jobs this pool's workers are running now."""
        with self._held_lock:
            return list(self._held.values())

    def join(self) -> None:
        """Wait for the threads (after start(exit_when_idle=True)); the jobs they claimed are all finished and
        recorded when it returns."""
        for t in self._threads:
            t.join()
        self._workers_done.set()
        self._lease_tick.set()
        if self._lease_thread is not None:
            self._lease_thread.join()

    # ----- workers
    def _run(self, worker: str) -> None:
        link = _Link(self.connect)
        reconnect_delay = 1.0
        while not self._stop.is_set():
            try:
                conn = link.get()
                reconnect_delay = 1.0
                if not self._take_budget():
                    break
                job = (
                    queue.claim(conn, list(self.handlers), worker, lease_s=self.lease_s)
                    if self.handlers
                    else None
                )
                if job is None:
                    self._refund_budget()
                    if self._exit_when_idle:
                        break
                    self._wake.wait(self.poll_s)
                    self._wake.clear()
                    continue
                with self._budget_lock:
                    self.jobs_claimed += 1
                self._handle(link, job)
            except Exception as exc:  # database gone or a bug: keep the thread alive, back off
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("%s: %s (retrying in %.0f s)", worker, self.last_error, reconnect_delay)
                link.reset()
                self._stop.wait(reconnect_delay)
                reconnect_delay = min(reconnect_delay * 2, 30)
        link.reset()

    def _take_budget(self) -> bool:
        if self._budget is None:
            return True
        with self._budget_lock:
            if self._budget <= 0:
                return False
            self._budget -= 1
            return True

    def _refund_budget(self) -> None:
        if self._budget is not None:
            with self._budget_lock:
                self._budget += 1

    def _handle(self, link: _Link, job: queue.Job) -> None:
        with self._held_lock:
            self._held[job.id] = job
        try:
            self._run_job(link, job)
        finally:
            with self._held_lock:
                self._held.pop(job.id, None)

    def _run_job(self, link: _Link, job: queue.Job) -> None:
        started = time.monotonic()
        handler = self.handlers[job.kind]
        try:
            handler(job)
        except Deferred as exc:
            until, reason = exc.until, exc.reason
            if self._bookkeep(link, job, "defer", lambda c: queue.defer(c, job, until, reason)):
                self._deferred(handler, job, reason)
            return
        except Exception as exc:
            if is_connection_error(exc):  # the database went away mid-job: an outage, not the job's fault
                reason = f"database unreachable during the job ({type(exc).__name__}: {' '.join(str(exc).split())})"
                log.warning(
                    "job %s %s: %s; tried again without counting the attempt", job.kind, job.key, reason
                )
                until = _soon(self.outage_retry_s)
                if self._bookkeep(link, job, "defer", lambda c: queue.defer(c, job, until, reason)):
                    self._deferred(handler, job, reason)
                return
            error = str(exc) if isinstance(exc, NmdoseError) else f"{type(exc).__name__}: {exc}"
            final = bool(getattr(exc, "permanent", False))
            state = self._bookkeep(
                link,
                job,
                "fail",
                lambda c: queue.fail(
                    c,
                    job,
                    error,
                    backoff_s=self.backoff_s,
                    backoff_max_s=self.backoff_max_s,
                    final=final,
                ),
            )
            if state in (None, "lost"):
                return
            log.warning(
                "job %s %s failed (attempt %d, now %s): %s", job.kind, job.key, job.attempts, state, error
            )
            self._report_failure(handler, job, error, state)
            return
        if self._bookkeep(link, job, "complete", lambda c: queue.complete(c, job)):
            self.jobs_done += 1
            log.debug("job %s %s done in %.2f s", job.kind, job.key, time.monotonic() - started)

    def _bookkeep(self, link: _Link, job: queue.Job, what: str, op: Callable):
        """Run the write that ends a job, retried on a fresh connection while the database is unreachable (the
        lease thread keeps the job ours meanwhile). None when it could not be written (the pool stopping, or an
        error that is not an outage, three times); False/"lost" from `op` when the lease was taken back."""
        delay = 0.5
        errors = 0
        while True:
            try:
                conn = link.get()
            except Exception as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                if self._stop.is_set():
                    log.error("job %s %s: %s not recorded (stopping): %s", job.kind, job.key, what, exc)
                    return None
                self._stop.wait(delay)
                delay = min(delay * 2, 5)
                continue
            try:
                result = op(conn)
            except Exception as exc:
                link.reset()
                self.last_error = f"{type(exc).__name__}: {exc}"
                if not is_connection_error(exc):
                    errors += 1
                    if errors >= 3:
                        log.error("job %s %s: %s could not be recorded: %s", job.kind, job.key, what, exc)
                        return None
                elif self._stop.is_set():
                    log.error("job %s %s: %s not recorded (stopping): %s", job.kind, job.key, what, exc)
                    return None
                log.warning(
                    "job %s %s: %s failed (%s); retrying on a new connection", job.kind, job.key, what, exc
                )
                self._stop.wait(delay)
                delay = min(delay * 2, 5)
                continue
            if result is False or result == "lost":
                log.warning(
                    "job %s %s: its lease was taken back before the %s was recorded (another worker runs it)",
                    job.kind,
                    job.key,
                    what,
                )
            return result

    def _report_failure(self, handler, job: queue.Job, error: str, state: str) -> None:
        callback = getattr(handler, "on_failure", None) or self.on_failure
        if callback is not None:
            try:
                callback(job, error, state)
            except Exception:
                log.exception("on_failure of job %s %s failed", job.kind, job.key)

    def _deferred(self, handler, job: queue.Job, reason: str) -> None:
        callback = getattr(handler, "on_deferred", None)
        if callback is not None:
            try:
                callback(job, reason)
            except Exception:
                log.exception("on_deferred of job %s %s failed", job.kind, job.key)

    # ----- leases
    def reclaim(self, conn=None) -> int:
        """Take back the jobs of this pool's kinds whose lease expired (their holder died): the attempt counts,
        each is reported to its handler's `on_failure`. Returns how many."""
        if not self.handlers:
            return 0
        if conn is None:
            with contextlib.closing(self.connect()) as own:
                return self.reclaim(own)
        taken = queue.reclaim_expired(
            conn, list(self.handlers), backoff_s=self.backoff_s, backoff_max_s=self.backoff_max_s
        )
        for r in taken:
            self.reclaimed += 1
            log.warning("job %s %s taken back, now %s: %s", r.job.kind, r.job.key, r.state, r.error)
            handler = self.handlers.get(r.job.kind)
            self._report_failure(handler, r.job, r.error, r.state)
        if taken:
            self._wake.set()
        return len(taken)

    def _lease_loop(self) -> None:
        link = _Link(self.connect)
        beat = max(self.lease_s / 4, 0.2)
        reclaim_every = max(self.lease_s / 2, 0.5)
        last_reclaim = float("-inf")
        retry = min(beat, 1.0)
        while not self._stop.is_set() and not self._workers_done.is_set():
            try:
                conn = link.get()
                jobs = self.held()
                if jobs:
                    kept = queue.heartbeat(conn, jobs, lease_s=self.lease_s)
                    for job in jobs:
                        if job.token is not None and job.id not in kept and job.id in self._held:
                            log.warning(
                                "job %s %s: lease lost (taken back by another worker)", job.kind, job.key
                            )
                if time.monotonic() - last_reclaim >= reclaim_every:
                    last_reclaim = time.monotonic()
                    self.reclaim(conn)
                wait = beat
                retry = min(beat, 1.0)
            except Exception as exc:  # the database away: renew as soon as it is back (a lease is short)
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("%s-lease: %s", self.name, self.last_error)
                link.reset()
                wait = retry
                retry = min(retry * 2, beat, 2.0)
            if self._lease_tick.wait(wait):
                break
        link.reset()
