"""Worker threads that drain the durable queue. They survive a lost database (reconnect with back-off) and
never let one bad job stop the others."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable

from nmdose.db import queue
from nmdose.errors import NmdoseError

log = logging.getLogger("nmdose.workers")

JobHandler = Callable[[queue.Job], None]


class Deferred(Exception):  # noqa: N818 (a signal, not an error)
    """Raised by a handler to put its job back until `until` without counting an attempt."""

    def __init__(self, until, reason: str):
        super().__init__(reason)
        self.until = until
        self.reason = reason


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
    ):
        self.connect = connect
        self.on_failure = on_failure
        self.handlers = handlers
        self.size = threads
        self.name = name
        self.poll_s = poll_s
        self.backoff_s = backoff_s
        self.backoff_max_s = backoff_max_s
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._threads: list[threading.Thread] = []
        self.last_error: str | None = None
        self.jobs_done = 0

    def start(self, *, exit_when_idle: bool = False, max_jobs: int | None = None) -> None:
        """Start the threads; with `exit_when_idle` each ends when no job is ready (CLI runs); with `max_jobs`
        the pool claims at most that many jobs."""
        self._stop.clear()
        self._exit_when_idle = exit_when_idle
        self._budget = max_jobs
        self._budget_lock = threading.Lock()
        for i in range(self.size):
            t = threading.Thread(
                target=self._run, args=(f"{self.name}-{i}",), name=f"{self.name}-{i}", daemon=True
            )
            t.start()
            self._threads.append(t)

    def stop(self, timeout_s: float = 10) -> None:
        self._stop.set()
        self._wake.set()
        for t in self._threads:
            t.join(timeout_s)
        self._threads = [t for t in self._threads if t.is_alive()]

    def wake(self) -> None:
        """New work was queued: do not wait for the next poll."""
        self._wake.set()

    def alive(self) -> int:
        return sum(t.is_alive() for t in self._threads)

    def _run(self, worker: str) -> None:
        conn = None
        reconnect_delay = 1.0
        while not self._stop.is_set():
            try:
                if conn is None or conn.closed:
                    conn = self.connect()
                    reconnect_delay = 1.0
                if not self._take_budget():
                    break
                job = queue.claim(conn, list(self.handlers), worker) if self.handlers else None
                if job is None:
                    if getattr(self, "_exit_when_idle", False):
                        break
                    self._wake.wait(self.poll_s)
                    self._wake.clear()
                    continue
                self._handle(conn, job)
            except Exception as exc:  # database gone or a bug: keep the thread alive, back off
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("%s: %s (retrying in %.0f s)", worker, self.last_error, reconnect_delay)
                if conn is not None:
                    with contextlib.suppress(Exception):
                        conn.close()
                conn = None
                self._stop.wait(reconnect_delay)
                reconnect_delay = min(reconnect_delay * 2, 30)
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    def _take_budget(self) -> bool:
        budget = getattr(self, "_budget", None)
        if budget is None:
            return True
        with self._budget_lock:
            if self._budget <= 0:
                return False
            self._budget -= 1
            return True

    def join(self) -> None:
        """Wait for the threads (after start(exit_when_idle=True))."""
        for t in self._threads:
            t.join()

    def _handle(self, conn, job: queue.Job) -> None:
        started = time.monotonic()
        try:
            self.handlers[job.kind](job)
        except Deferred as exc:
            queue.defer(conn, job, exc.until, exc.reason)
            return
        except Exception as exc:
            error = str(exc) if isinstance(exc, NmdoseError) else f"{type(exc).__name__}: {exc}"
            state = queue.fail(
                conn,
                job,
                error,
                backoff_s=self.backoff_s,
                backoff_max_s=self.backoff_max_s,
                final=getattr(exc, "permanent", False),
            )
            log.warning(
                "job %s %s failed (attempt %d, now %s): %s", job.kind, job.key, job.attempts, state, error
            )
            callback = getattr(self.handlers[job.kind], "on_failure", None) or self.on_failure
            if callback is not None:
                try:
                    callback(job, error, state)
                except Exception:
                    log.exception("on_failure of job %s %s failed", job.kind, job.key)
            return
        queue.complete(conn, job)
        self.jobs_done += 1
        log.debug("job %s %s done in %.2f s", job.kind, job.key, time.monotonic() - started)
