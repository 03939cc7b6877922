"""The audit writer: a bounded in-memory queue drained by one thread that keeps one PostgreSQL connection and
writes what has accumulated with one INSERT per batch.

Orthanc's HTTP thread only appends a :class:`WebCall` (microseconds: no connection, no parsing while the GIL is
held). The thread turns it into a row (rows counted, study UIDs found) and inserts. When PostgreSQL is away the
rows wait and are retried (back-off up to 30 s); when the queue is full, the caller writes its row itself on a
short-lived connection (slower, never dropped). `flush()` waits until everything queued is written (tests, stop).
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import queue as stdqueue
import threading
import time
from collections.abc import Callable
from typing import Any

from nmdose.audit import store
from nmdose.audit.event import AuditEvent, WebCall, from_web_call

log = logging.getLogger("nmdose.audit")

Item = AuditEvent | WebCall


class AuditWriter:
    def __init__(
        self,
        connect: Callable[[], Any],
        *,
        max_study_uids: int = 1000,
        queue_max: int = 100_000,
        batch: int = 500,
        linger_s: float = 0.2,
        sinks: list[Callable[[list[AuditEvent]], None]] | None = None,
    ):
        self.connect = connect
        self.max_study_uids = max_study_uids
        self.batch = batch
        self.linger_s = linger_s  # after a first row, wait this long for others: one INSERT for all of them
        self.sinks = list(sinks or [])  # called with each written batch (e.g. the ATNA syslog sender)
        self._q: stdqueue.Queue[Item] = stdqueue.Queue(maxsize=queue_max)
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._stop = threading.Event()
        self._conn = None
        self.written = 0
        self.failures = 0
        self.last_error: str | None = None

    # ----- producers
    def submit(self, item: Item) -> None:
        """Queue one row (a WebCall or a finished AuditEvent); never raises."""
        self._ensure_started()
        try:
            self._q.put_nowait(item)
        except stdqueue.Full:
            try:
                self._write_direct([self._event(item)])
            except Exception as exc:
                self.failures += 1
                self.last_error = str(exc)
                log.error("nmdose audit: queue full and direct write failed, row lost: %s", exc)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every row queued so far is written; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._q.all_tasks_done:
            while self._q.unfinished_tasks:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._q.all_tasks_done.wait(left)
        return True

    def stop(self, timeout: float = 5.0) -> None:
        self.flush(timeout)
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()

    @property
    def pending(self) -> int:
        return self._q.unfinished_tasks

    # ----- the thread
    def _ensure_started(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        with self._start_lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="nmdose-audit", daemon=True)
            self._thread.start()
            atexit.register(self.flush, 5.0)

    def _event(self, item: Item) -> AuditEvent:
        return from_web_call(item, self.max_study_uids) if isinstance(item, WebCall) else item

    def _run(self) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            try:
                first = self._q.get(timeout=0.5)
            except stdqueue.Empty:
                continue
            if self.linger_s and self._q.qsize() < self.batch:
                self._stop.wait(self.linger_s)
            items = [first]
            while len(items) < self.batch:
                try:
                    items.append(self._q.get_nowait())
                except stdqueue.Empty:
                    break
            events = []
            for item in items:
                try:
                    events.append(self._event(item))
                except Exception:  # a bug in row building must not lose the others
                    log.exception("nmdose audit: could not build an audit row")
            while True:
                try:
                    self._write(events)
                    backoff = 0.5
                    break
                except Exception as exc:
                    self.failures += 1
                    self.last_error = str(exc)
                    log.error("nmdose audit: writing %d rows failed (retrying): %s", len(events), exc)
                    if self._conn is not None:
                        with contextlib.suppress(Exception):
                            self._conn.close()
                    self._conn = None
                    if self._stop.wait(backoff):
                        break
                    backoff = min(backoff * 2, 30)
            for _ in items:
                self._q.task_done()

    def _write(self, events: list[AuditEvent]) -> None:
        if self._conn is None or self._conn.closed:
            self._conn = self.connect()
        try:
            store.insert(self._conn, events)
        except Exception:
            with contextlib.suppress(Exception):
                self._conn.rollback()
            raise
        self.written += len(events)
        self._after(events)

    def _write_direct(self, events: list[AuditEvent]) -> None:
        with contextlib.closing(self.connect()) as conn:
            store.insert(conn, events)
        self.written += len(events)
        self._after(events)

    def _after(self, events: list[AuditEvent]) -> None:
        for sink in self.sinks:
            try:
                sink(events)
            except Exception as exc:  # the database row is the record; a sink is a copy
                log.error("nmdose audit: sink %r failed: %s", sink, exc)


# The writers of this process, per database (the plugin registers its own; the command line has none and writes
# directly). Keyed by database so that a test process holding several plugins never mixes them up.
_writers: dict[tuple[str, int, str], AuditWriter] = {}


def _key(cfg) -> tuple[str, int, str]:
    pg = cfg.postgresql
    return (pg.host, pg.port, pg.database)


def for_config(cfg) -> AuditWriter | None:
    return _writers.get(_key(cfg))


def register(cfg, writer: AuditWriter) -> None:
    _writers[_key(cfg)] = writer
