"""The retrieval run: queued studies are moved from the source PACS into the research PACS and verified.

Each study is one `retrieve` job in the durable queue (key = StudyInstanceUID) and one row in
`rpacs.retrieval` (`pending → moving → verifying → done`, or `partial` / `failed`), every step in
`rpacs.retrieval_event`. A job outside the time window is deferred without using an attempt; a failed move or an
incomplete study is retried with exponential back-off (an incomplete one only for its missing series); a study the
source no longer has fails at once with that reason. An outage of the source PACS or of the research PACS is
not a failure of the study: a circuit breaker per node (:mod:`nmdose.breaker`) puts the jobs back without
counting an attempt until a probe (C-ECHO, `GET /system`) answers; the database going away mid-job is waited out
(its writes retried on a fresh connection). Crash-safe: a job whose holder died is taken back when its lease
expires (:mod:`nmdose.db.queue`), and a study found already complete in the research PACS is marked done without
moving anything.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from nmdose.breaker import Breakers
from nmdose.config import Config
from nmdose.db import ThreadLocalConnection, connect, lock_study_writes, queue
from nmdose.errors import PacsError
from nmdose.logfiles import attach_log_file
from nmdose.pacs.orthanc_http import OrthancHttp
from nmdose.retrieve.mover import Mover, MovescuMover, OrthancMover, Verification, verify
from nmdose.retrieve.pace import AdaptiveSlots
from nmdose.retrieve.window import in_window, next_open
from nmdose.workers import Deferred, WorkerPool

KIND = "retrieve"
log = logging.getLogger("nmdose.retrieve")


class RetrieveError(PacsError):
    """A move or its verification did not succeed (retried with back-off unless permanent)."""

    def __init__(self, message: str, *, permanent: bool = False, study: bool = False):
        super().__init__(message)
        self.permanent = permanent
        self.study = study  # a fault of the study itself (incomplete after the move): never an outage


@dataclass
class Target:
    study_uid: str
    source_node: str
    expected_instances: int | None = None
    origin: str = "census"
    backend: str | None = None  # None: the configured backend of whichever worker handles it


def queue_studies(conn, targets: Iterable[Target], *, max_attempts: int = 5) -> int:
    """Queue studies once each (re-queueing a known study changes nothing); returns how many are new."""
    new = 0
    lock_study_writes(conn)  # each new retrieval sets its study's retrieval_state (sql/007_web.sql)
    with conn.cursor() as cur:
        for t in targets:
            cur.execute(
                """INSERT INTO rpacs.retrieval (study_instance_uid, source_node, origin, expected_instances)
                   VALUES (%s, %s, %s, %s) ON CONFLICT (study_instance_uid) DO NOTHING RETURNING 1""",
                (t.study_uid, t.source_node, t.origin, t.expected_instances),
            )
            if cur.fetchone() is None:
                continue
            cur.execute(
                "INSERT INTO rpacs.retrieval_event (study_instance_uid, step, detail) VALUES (%s, 'queued', %s)",
                (t.study_uid, t.origin),
            )
            cur.execute(
                """INSERT INTO jobs.queue (kind, key, payload, max_attempts) VALUES (%s, %s, %s, %s)
                   ON CONFLICT (kind, key) DO NOTHING""",
                (
                    KIND,
                    t.study_uid,
                    _json({"source": t.source_node, "expected": t.expected_instances, "backend": t.backend}),
                    max_attempts,
                ),
            )
            new += 1
    conn.commit()
    return new


def queue_census_targets(conn, source_node: str, *, max_attempts: int = 5) -> int:
    """Queue every census study of `source_node` whose description is a target (new ones only)."""
    with conn.cursor() as cur:
        cur.execute("SELECT to_regclass('rpacs.study')")
        if cur.fetchone()[0] is None:
            return 0
        cur.execute(
            """SELECT s.study_uid, s.instance_count FROM rpacs.study s
                WHERE s.is_target AND s.source_node = %s
                  AND NOT EXISTS (SELECT 1 FROM rpacs.retrieval r WHERE r.study_instance_uid = s.study_uid)
                ORDER BY s.study_date, s.study_uid""",
            (source_node,),
        )
        rows = cur.fetchall()
    return queue_studies(conn, [Target(uid, source_node, n) for uid, n in rows], max_attempts=max_attempts)


def retry(conn, states: tuple[str, ...] = ("failed",)) -> int:
    """Put failed (or partial) studies back in the queue with fresh attempts."""
    lock_study_writes(conn)  # the retrievals' states are copied to their studies (sql/007_web.sql)
    with conn.cursor() as cur:
        cur.execute(
            """UPDATE rpacs.retrieval SET state = 'pending', last_error = NULL, updated_at = now()
                WHERE state = ANY(%s) RETURNING study_instance_uid, source_node, expected_instances""",
            (list(states),),
        )
        rows = cur.fetchall()
    conn.commit()
    for uid, source, expected in rows:
        queue.enqueue(conn, KIND, uid, {"source": source, "expected": expected}, reset=True)
        _event(conn, uid, "retry", detail="requeued by user")
    return len(rows)


def status(conn) -> dict[str, Any]:
    with conn.cursor() as cur:
        # per state from the tally of sql/007_web.sql, not a scan of rpacs.retrieval
        cur.execute(
            """SELECT state, sum(studies)::bigint, sum(instances)::bigint, sum(bytes)
                 FROM rpacs.retrieval_tally GROUP BY state HAVING sum(studies) <> 0"""
        )
        rows = cur.fetchall()
    by_state = {s: n for s, n, _, _ in rows}
    return {
        "studies": sum(by_state.values()),
        "by_state": by_state,
        "instances_received": sum(int(i) for _, _, i, _ in rows),
        "bytes_received": sum(int(b) for _, _, _, b in rows),
        "queue": queue.counts(conn, KIND).get(KIND, {}),
    }


def studies(conn, state: str | None = None, limit: int = 500) -> list[dict[str, Any]]:
    with conn.cursor() as cur:
        cur.execute(
            """SELECT study_instance_uid, source_node, origin, state, attempts, expected_instances,
                      received_instances, missing_series, last_status, last_error, log_path, updated_at
                 FROM rpacs.retrieval WHERE (%s::text IS NULL OR state = %s)
                 ORDER BY updated_at DESC LIMIT %s""",
            (state, state, limit),
        )
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]


def _json(value: Any):
    from psycopg2.extras import Json

    return Json(value)


def _record(
    conn,
    uid: str,
    *,
    events: Iterable[tuple[str, dict[str, Any]]] = (),
    durable: bool = True,
    **fields: Any,
) -> None:
    """Some events of a retrieval and one update of its row (`fields`, when any), in one transaction.
    `durable=False`: a progress mark whose loss in a database crash changes nothing (the job's lease brings the
    study back): committed without waiting for the WAL flush (`synchronous_commit = off` for this transaction)."""
    with conn.cursor() as cur:
        if not durable:
            cur.execute("SET LOCAL synchronous_commit TO off")
        for step, values in events:
            cols = ["study_instance_uid", "step", *values]
            cur.execute(
                f"INSERT INTO rpacs.retrieval_event ({', '.join(cols)}) VALUES ({', '.join(['%s'] * len(cols))})",
                [uid, step, *values.values()],
            )
        if fields:
            sets = ", ".join(f"{k} = %s" for k in fields)
            cur.execute(
                f"UPDATE rpacs.retrieval SET {sets}, updated_at = now() WHERE study_instance_uid = %s",
                [*fields.values(), uid],
            )
    conn.commit()


def _event(conn, uid: str, step: str, **fields: Any) -> None:
    _record(conn, uid, events=[(step, fields)])


def _update(conn, uid: str, **fields: Any) -> None:
    _record(conn, uid, **fields)


def associations(cfg: Config, node: str) -> int:
    """C-MOVEs at once against `node` from one process: `retrieve_options.yaml: concurrency`, capped by the
    node's `max_associations` (what that PACS allows us) when set."""
    cap = cfg.nodes[node].max_associations
    return min(cfg.retrieve.concurrency, cap) if cap else cfg.retrieve.concurrency


def pipeline_threads(cfg: Config) -> int:
    """Worker threads of `retrieve run`: twice the moves at once, so that while some studies move, others are
    claimed, checked and recorded (the next study's C-MOVE starts as soon as a move ends, not after the previous
    study's verification and database writes)."""
    return 2 * cfg.retrieve.concurrency


class Retriever:
    """Handles `retrieve` jobs; used by the plugin's workers and by `nmdose retrieve run`."""

    def __init__(
        self,
        cfg: Config,
        rest: OrthancHttp,
        *,
        backend: str | None = None,
        now: Callable[[], datetime] = datetime.now,
        db_retry_s: float = 60.0,
    ):
        self.cfg = cfg
        self.rest = rest
        self.override = backend  # `nmdose retrieve run --backend`
        self.backend = backend or cfg.retrieve.backend
        self.now = now
        self._slots: dict[str, AdaptiveSlots] = {}
        self._lock = threading.Lock()
        self._db = ThreadLocalConnection(cfg)
        # how long a write waits out a database outage before the job is put back (no attempt counted)
        self.db_retry_s = db_retry_s
        retry = cfg.retrieve.retry
        self.breakers = Breakers(
            self.probe, backoff_s=min(retry.backoff_s, 5.0), backoff_max_s=min(retry.backoff_max_s, 60.0)
        )
        self.studies_done = 0
        self.instances_done = 0
        self.bytes_done = 0

    def slots(self, node: str) -> AdaptiveSlots:
        """The associations this process holds against `node` at once: adaptive, at most :func:`associations`."""
        with self._lock:
            if node not in self._slots:
                self._slots[node] = AdaptiveSlots(associations(self.cfg, node))
            return self._slots[node]

    def _count(self, studies: int, instances: int, size: int) -> None:
        with self._lock:
            self.studies_done += studies
            self.instances_done += instances
            self.bytes_done += size

    def _record(
        self,
        uid: str,
        *,
        events: Iterable[tuple[str, dict[str, Any]]] = (),
        durable: bool = True,
        **fields: Any,
    ) -> None:
        events = list(events)
        self._write(lambda c: _record(c, uid, events=events, durable=durable, **fields))

    def mover(self, source_name: str, backend: str) -> Mover:
        source = self.cfg.nodes[source_name]
        target = self.cfg.research_node.aet
        if backend == "dcmtk":
            return MovescuMover(self.cfg, source, target)
        return OrthancMover(self.rest, source, target, timeout_s=max(600, source.timeout_s * 60))

    def probe(self, node: str) -> str | None:
        """None when `node` answers: the research PACS a `GET /system`, a source PACS a C-ECHO (through the
        research PACS); else why not."""
        try:
            if node == self.cfg.research_node.name:
                self.rest.get("/system", timeout_s=10)
            else:
                timeout = int(min(max(self.cfg.nodes[node].timeout_s, 1), 10))
                self.rest.post(f"/modalities/{node}/echo", {"Timeout": timeout}, timeout_s=timeout + 10)
        except PacsError as exc:
            return str(exc)
        return None

    def _conn(self):
        return self._db.get()

    def _write(self, work: Callable[[Any], Any]) -> Any:
        """One write transaction, waiting out a database outage on a fresh connection (`db_retry_s`)."""
        return self._db.run(work, retry_s=self.db_retry_s)

    def _update(self, uid: str, **fields: Any) -> None:
        self._write(lambda c: _update(c, uid, **fields))

    def _event(self, uid: str, step: str, **fields: Any) -> None:
        self._write(lambda c: _event(c, uid, step, **fields))

    def close(self) -> None:
        self._db.close()

    # ----- the job
    def handle(self, job: queue.Job) -> None:
        uid = job.key
        source_name = job.payload.get("source") or self.cfg.source_node.name
        now = self.now()
        if self.cfg.nodes[source_name].use_time_window and not in_window(now, self.cfg.retrieve.time_window):
            until = next_open(now, self.cfg.retrieve.time_window)
            self._event(uid, "defer", detail=f"outside the time window until {until:%Y-%m-%d %H:%M}")
            raise Deferred(until.astimezone(), "outside the retrieval time window")
        nodes = (self.cfg.research_node.name, source_name)
        for node in nodes:
            self.breakers.guard(node)  # NodeDown while a node is known down: the job waits, no attempt
        started = time.monotonic()
        try:
            self._retrieve(job, uid, source_name)
        except PacsError as exc:
            if getattr(exc, "permanent", False) or getattr(exc, "study", False):
                raise
            for node in nodes:  # the research PACS first: the source is probed through it
                if self.breakers.outage(node, since=started):
                    down = self.breakers.down(node)
                    log.warning("study %s waits: %s (was: %s)", uid, down.reason, exc)
                    raise down from exc
            raise

    def _retrieve(self, job: queue.Job, uid: str, source_name: str) -> None:
        source = self.cfg.nodes[source_name]
        expected = job.payload.get("expected")
        backend = self.override or job.payload.get("backend") or self.backend
        self._record(  # a progress mark: not waiting for its WAL flush (a crash loses only the mark)
            uid,
            durable=False,
            state="moving",
            attempts=job.attempts,
            backend=backend,
            started_at=datetime.now().astimezone(),
        )
        if self.cfg.retrieve.transfer.strategy == "selective":
            self._selective(job, uid, source)
            return
        # Fast path: what the research PACS already holds is a local lookup; the source is asked (series-level
        # C-FIND) only when the announced count is unknown or the study is partly there.
        present, size = self._research_count(uid)
        series = None
        if expected is not None and present >= expected:
            self._done(uid, Verification(uid, expected, present, []), size, skipped=True)
            return
        if present or expected is None:
            before = self._verify(source, uid, expected)
            if before.expected is None and not before.missing_series and before.received == 0:
                raise RetrieveError(
                    f"{source_name} has no study {uid} (deleted after the census?)", permanent=True
                )
            if before.complete:
                self._done(uid, before, size, skipped=True)
                return
            series = before.missing_series if before.received else None
        slots = self.slots(source_name)
        with slots.hold():  # at most `associations()` C-MOVEs against this source at once, adaptive
            result = self.mover(source_name, backend).move(uid, series_uids=series)
        moved = (
            "move",
            {
                "attempt": job.attempts,
                "backend": backend,
                "ok": result.ok,
                "dicom_status": result.status,
                "seconds": result.seconds,
                "completed": result.completed,
                "failed": result.failed,
                "detail": result.error or (f"series {len(series)}" if series else "study"),
                "log_path": result.log_path,
            },
        )
        outcome = {"last_status": result.status, "log_path": result.log_path}
        if not result.ok:
            slots.moved(0)
            self._record(uid, events=[moved], **outcome, last_error=result.error)
            raise RetrieveError(
                f"C-MOVE of {uid} from {source_name} failed: {result.error or result.status}",
                permanent=result.status == "not-found",
            )
        # Verification: the research PACS's own count first (a local lookup); the source's series-level
        # C-FIND only when that count falls short of what the census announced, or nothing was announced.
        received, size = self._research_count(uid)
        slots.moved(received - present)
        if expected is not None and received >= expected:
            after = Verification(uid, expected, received, [])
            checked = (
                "verify",
                {"attempt": job.attempts, "ok": True, "detail": f"{received}/{expected} instances"},
            )
            self._done(uid, after, size, events=[moved, checked], **outcome)  # one transaction
            return
        self._record(uid, events=[moved], state="verifying", **outcome)
        after = self._verify(source, uid, expected)
        if after.expected is None and not after.missing_series and after.received == 0:
            raise RetrieveError(
                f"{source_name} has no study {uid} (deleted after the census?)", permanent=True
            )
        checked = (
            "verify",
            {
                "attempt": job.attempts,
                "ok": after.complete,
                "detail": f"{after.received}/{after.expected} instances",
            },
        )
        if not after.complete:
            self._record(
                uid,
                events=[checked],
                state="partial",
                received_instances=after.received,
                missing_series=after.missing_series,
                last_error=f"{after.received}/{after.expected} instances after the move",
            )
            raise RetrieveError(
                f"{uid}: {after.received} of {after.expected} instances arrived; "
                f"{len(after.missing_series)} series missing (retried for those only)",
                study=True,
            )
        if after.received != received:
            size = self._research_count(uid)[1]
        self._done(uid, after, size, events=[checked])

    def _verify(self, source, uid: str, expected: int | None) -> Verification:
        """Per-series verification against the source (its C-FIND holds one of the source's association slots)."""
        with self.slots(source.name).hold():
            return verify(self.rest, source, uid, expected_instances=expected)

    def _selective(self, job: queue.Job, uid: str, source) -> None:
        """transfer.strategy = selective: only dose objects + one image per series are moved (.selective)."""
        from nmdose.retrieve.selective import retrieve_selected

        with self.slots(source.name).hold():
            sel = retrieve_selected(self.cfg, self.rest, source, uid)
        self._event(
            uid,
            "move",
            attempt=job.attempts,
            backend="selective",
            ok=sel.ok,
            seconds=sel.seconds,
            completed=sel.selected_instances,
            detail=sel.error
            or f"{sel.selected_instances}/{sel.announced_instances} instances -> "
            f"{sel.destination}, {sel.bytes_moved} bytes",
        )
        if not sel.ok:
            raise RetrieveError(
                f"selective transfer of {uid}: {sel.error}", permanent="has no study" in (sel.error or "")
            )
        self._update(
            uid,
            state="done",
            received_instances=sel.selected_instances,
            expected_instances=sel.selected_instances,
            bytes_received=sel.bytes_moved,
            last_error=None,
            finished_at=datetime.now().astimezone(),
        )
        self._count(1, sel.selected_instances, sel.bytes_moved or 0)

    def _research_count(self, uid: str) -> tuple[int, int]:
        """(instances, bytes) the research PACS holds for a study: a local index lookup, no DICOM traffic."""
        ids = self.rest.post("/tools/find", {"Level": "Study", "Query": {"StudyInstanceUID": uid}})
        count = size = 0
        for study_id in ids:
            st = self.rest.get(f"/studies/{study_id}/statistics")
            count += int(st.get("CountInstances", 0))
            size += int(st.get("DiskSize", 0))
        return count, size

    def _done(
        self,
        uid: str,
        check,
        size: int | None,
        *,
        skipped: bool = False,
        events: Iterable[tuple[str, dict[str, Any]]] = (),
        **fields: Any,
    ) -> None:
        """The study is complete: `events`, its `done` (or `skipped`) event and its row, in one transaction."""
        done = (
            "skipped" if skipped else "done",
            {"detail": "already complete in the research PACS" if skipped else f"{check.received} instances"},
        )
        self._record(
            uid,
            events=[*events, done],
            state="done",
            received_instances=check.received,
            expected_instances=check.expected,
            missing_series=[],
            bytes_received=size,
            last_error=None,
            finished_at=datetime.now().astimezone(),
            **fields,
        )
        log.info(
            "study %s %s: %d instances", uid, "already complete" if skipped else "retrieved", check.received
        )
        self._count(1, 0 if skipped else check.received, 0 if skipped else size or 0)

    __call__ = handle

    def on_failure(self, job: queue.Job, error: str, state: str) -> None:
        """The queue recorded a failed attempt (`pending`: retried later) or the last one (`failed`, the dead
        state: attempts exhausted, or an error that retrying cannot cure): the retrieval row says so, with why."""
        if state == "failed":
            self._update(job.key, state="failed", last_error=error, finished_at=datetime.now().astimezone())
            self._event(job.key, "failed", attempt=job.attempts, ok=False, detail=error)
            return

        def back_to_pending(conn) -> None:
            with conn.cursor() as cur:
                cur.execute(
                    """UPDATE rpacs.retrieval SET state = CASE WHEN state = 'partial' THEN 'partial' ELSE 'pending'
                       END, attempts = %s, last_error = %s, updated_at = now() WHERE study_instance_uid = %s""",
                    (job.attempts, error, job.key),
                )
            conn.commit()

        self._write(back_to_pending)
        self._event(job.key, "retry", attempt=job.attempts, ok=False, detail=error)

    def on_deferred(self, job: queue.Job, reason: str) -> None:
        """The job was put back without using an attempt (a node or the database down): a study left `moving` or
        `verifying` by it is `pending` again, and the event says why."""

        def back_to_pending(conn) -> bool:
            with conn.cursor() as cur:
                cur.execute(
                    """UPDATE rpacs.retrieval SET state = 'pending', last_error = %s, updated_at = now()
                        WHERE study_instance_uid = %s AND state IN ('moving', 'verifying') RETURNING 1""",
                    (reason, job.key),
                )
                changed = cur.fetchone() is not None
            conn.commit()
            return changed

        if self._write(back_to_pending):
            self._event(job.key, "defer", attempt=job.attempts, detail=reason[:1000])


def worker_name() -> str:
    return f"cli:{socket.gethostname()}:{os.getpid()}"


def run(
    cfg: Config,
    *,
    backend: str | None = None,
    limit: int | None = None,
    progress: Callable[[Retriever], None] | None = None,
    wait_s: float = 0,
    lease_s: float = queue.DEFAULT_LEASE_S,
) -> Retriever:
    """Run the ready `retrieve` jobs from this process (the CLI), `concurrency` studies at a time, after taking back
    the jobs whose holder died (expired leases, the attempt counted). Returns when every job this process claimed
    is finished and recorded and nothing is ready; with `wait_s`, it also waits up to that long for jobs running
    elsewhere (the plugin's workers) and for jobs whose back-off ends in that time, running those. What is left is
    :func:`unfinished`."""
    attach_log_file(cfg, "retrieve.log", log, logging.getLogger("nmdose.workers"))
    rest = OrthancHttp.for_node(cfg, cfg.research_node.name, timeout_s=120)
    retriever = Retriever(cfg, rest, backend=backend)

    def handler(job: queue.Job) -> None:
        try:
            retriever.handle(job)
        finally:
            if progress:
                progress(retriever)

    handler.on_failure = retriever.on_failure  # type: ignore[attr-defined]
    handler.on_deferred = retriever.on_deferred  # type: ignore[attr-defined]
    pool = WorkerPool(
        lambda: connect(cfg),
        {KIND: handler},
        threads=pipeline_threads(cfg),
        name=worker_name(),
        backoff_s=cfg.retrieve.retry.backoff_s,
        backoff_max_s=cfg.retrieve.retry.backoff_max_s,
        lease_s=lease_s,
    )
    pool.reclaim()
    deadline = time.monotonic() + wait_s
    try:
        while True:
            budget = None if limit is None else limit - pool.jobs_claimed
            if budget is not None and budget <= 0:
                break
            pool.start(exit_when_idle=True, max_jobs=budget)
            try:
                pool.join()
            except KeyboardInterrupt:  # never leave our studies `moving`: finish them, claim nothing more
                log.warning(
                    "interrupted: finishing the %d studies running (Ctrl-C again aborts)", len(pool.held())
                )
                pool.finish()
                pool.join()
                raise
            if time.monotonic() >= deadline:
                break
            with contextlib.closing(connect(cfg)) as conn:
                left = queue.unfinished(conn, KIND)
            due_soon = (
                left["next_at"] is not None
                and (left["next_at"] - datetime.now().astimezone()).total_seconds()
                <= deadline - time.monotonic()
            )
            if not (left["running"] or left["ready"] or due_soon):
                break
            if not left["ready"]:
                time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
                pool.reclaim()
    finally:
        retriever.close()
    return retriever


def unfinished(conn) -> dict[str, Any]:
    """The `retrieve` work left: jobs running (and who holds them), ready, waiting (back-off, a node down, the
    time window; and when the next is due) and failed (attempts exhausted)."""
    return queue.unfinished(conn, KIND)
