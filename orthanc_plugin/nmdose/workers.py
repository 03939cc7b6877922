"""Worker threads that drain the durable queue. They survive a lost database (reconnect with back-off) and
never let one bad job stop the others."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable

from nmdose.db import queue

log = logging.getLogger("nmdose.workers")

JobHandler = Callable[[queue.Job], None]


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
    ):
        self.connect = connect
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

    def start(self) -> None:
        self._stop.clear()
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
                job = queue.claim(conn, list(self.handlers), worker) if self.handlers else None
                if job is None:
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

    def _handle(self, conn, job: queue.Job) -> None:
        started = time.monotonic()
        try:
            self.handlers[job.kind](job)
        except Exception as exc:
            state = queue.fail(
                conn,
                job,
                f"{type(exc).__name__}: {exc}",
                backoff_s=self.backoff_s,
                backoff_max_s=self.backoff_max_s,
            )
            log.warning(
                "job %s %s failed (attempt %d, now %s): %s", job.kind, job.key, job.attempts, state, exc
            )
            return
        queue.complete(conn, job)
        self.jobs_done += 1
        log.debug("job %s %s done in %.2f s", job.kind, job.key, time.monotonic() - started)
