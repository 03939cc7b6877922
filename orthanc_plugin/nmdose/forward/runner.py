"""Forwarding: a stable study's dose objects and one image per series go to the dose PACS.

Each study is one `forward` job in the durable queue (key = StudyInstanceUID, re-armed each time the study
becomes stable again) and one row in `rpacs.forward_study`; every SOP instance sent is a row in
`rpacs.forwarded_instance` (unique per destination), so nothing is sent twice unless forced. A dose PACS that is
down fails the attempt; the job backs off and retries (`FORWARD_MAX_ATTEMPTS`, effectively never dropped), and a
retry first asks the dose PACS (C-FIND) which instances of a half-sent batch arrived.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from nmdose.config import Config
from nmdose.db import ThreadLocalConnection, queue
from nmdose.errors import PacsError
from nmdose.forward import sender
from nmdose.forward.facts import OrthancFacts
from nmdose.forward.select import Role, Selected, select_study
from nmdose.forward.sender import ForwardError
from nmdose.pacs.orthanc_http import OrthancHttp
from nmdose.workers import Deferred

KIND = "forward"
# A dose PACS down for days must not drop anything: back-off is capped (retry.backoff_max_s), attempts are not.
FORWARD_MAX_ATTEMPTS = 1000
# Retrieval states during which the study is still arriving: forwarding waits.
RETRIEVAL_IN_PROGRESS = ("moving", "verifying")
NOT_STABLE_RETRY_S = 2.0
RETRIEVAL_RETRY_S = 10.0

log = logging.getLogger("nmdose.forward")


def orthanc_time(value: str | None) -> datetime | None:
    """Orthanc's `LastUpdate` ("20260630T101500", local time) as an aware datetime."""
    if not value:
        return None
    try:
        return datetime.strptime(value, "%Y%m%dT%H%M%S").astimezone()
    except ValueError:
        return None


def queue_study(
    conn,
    study_uid: str,
    destination: str,
    *,
    trigger: str = "stable",
    orthanc_id: str | None = None,
    force: bool = False,
    study_last_update: datetime | None = None,
) -> bool:
    """Record the study and (re-)arm its `forward` job; returns True if the job was (re)armed.

    A job already running is not re-armed (it is forwarding the study right now)."""
    with conn.cursor() as cur:
        cur.execute(
            """INSERT INTO rpacs.forward_study
                      (study_instance_uid, orthanc_id, destination, trigger, stable_at, study_last_update)
               VALUES (%s, %s, %s, %s, now(), %s)
               ON CONFLICT (study_instance_uid) DO UPDATE
                 SET orthanc_id = coalesce(EXCLUDED.orthanc_id, rpacs.forward_study.orthanc_id),
                     trigger = EXCLUDED.trigger, stable_at = now(), updated_at = now(),
                     study_last_update = coalesce(EXCLUDED.study_last_update,
                                                  rpacs.forward_study.study_last_update),
                     state = CASE WHEN rpacs.forward_study.state = 'sending' THEN 'sending' ELSE 'pending' END""",
            (study_uid, orthanc_id, destination, trigger, study_last_update),
        )
    conn.commit()
    return queue.enqueue(
        conn,
        KIND,
        study_uid,
        {"orthanc_id": orthanc_id, "force": force, "trigger": trigger},
        max_attempts=FORWARD_MAX_ATTEMPTS,
        reset=True,
    )


def retrieval_state(conn, study_uid: str) -> str | None:
    """State of the study in `rpacs.retrieval`, None when it did not come through the retrieval."""
    with conn.cursor() as cur:
        cur.execute("SELECT state FROM rpacs.retrieval WHERE study_instance_uid = %s", (study_uid,))
        row = cur.fetchone()
    return row[0] if row else None


def on_stable(cfg: Config, rest: OrthancHttp, conn, orthanc_id: str) -> bool:
    """STABLE_STUDY: queue the study (unless only retrieved studies are forwarded and this one was not)."""
    study = rest.get(f"/studies/{orthanc_id}")
    uid = study.get("MainDicomTags", {}).get("StudyInstanceUID")
    if not uid:
        return False
    if cfg.retrieve.forward.only_retrieved and retrieval_state(conn, uid) is None:
        log.info("study %s is stable but did not come through the retrieval: not forwarded", uid)
        return False
    return queue_study(
        conn,
        uid,
        cfg.dose_node.name,
        trigger="stable",
        orthanc_id=orthanc_id,
        study_last_update=orthanc_time(study.get("LastUpdate")),
    )


def requeue_unforwarded(cfg: Config, rest: OrthancHttp, conn) -> int:
    """At plugin start: Orthanc forgot which studies were about to become stable; queue those never forwarded."""
    n = 0
    if cfg.retrieve.forward.only_retrieved:
        with conn.cursor() as cur:
            cur.execute(
                """SELECT r.study_instance_uid FROM rpacs.retrieval r
                     LEFT JOIN rpacs.forward_study f USING (study_instance_uid)
                    WHERE r.state IN ('done', 'partial', 'moving', 'verifying') AND f.study_instance_uid IS NULL"""
            )
            uids = [r[0] for r in cur.fetchall()]
        for uid in uids:
            n += queue_study(conn, uid, cfg.dose_node.name, trigger="start")
        return n
    with conn.cursor() as cur:
        cur.execute("SELECT orthanc_id FROM rpacs.forward_study WHERE orthanc_id IS NOT NULL")
        known = {r[0] for r in cur.fetchall()}
    for orthanc_id in rest.get("/studies"):
        if orthanc_id in known:
            continue
        with contextlib.suppress(PacsError):
            uid = rest.get(f"/studies/{orthanc_id}")["MainDicomTags"]["StudyInstanceUID"]
            n += queue_study(conn, uid, cfg.dose_node.name, trigger="start", orthanc_id=orthanc_id)
    return n


def _update(conn, uid: str, **fields: Any) -> None:
    sets = ", ".join(f"{k} = %s" for k in fields)
    with conn.cursor() as cur:
        cur.execute(
            f"UPDATE rpacs.forward_study SET {sets}, updated_at = now() WHERE study_instance_uid = %s",
            [*fields.values(), uid],
        )
    conn.commit()


def record(
    conn,
    study_uid: str,
    destination: str,
    items: list[Selected],
    status: str,
    *,
    via: str = "c-store",
    job: str | None = None,
    error: str | None = None,
) -> None:
    """One `forwarded_instance` row per item; a SOP already `sent` never goes back to `failed`."""
    sent = status == "sent"
    with conn.cursor() as cur:
        for item in items:
            cur.execute(
                """INSERT INTO rpacs.forwarded_instance
                          (sop_instance_uid, destination, study_instance_uid, series_instance_uid, sop_class_uid,
                           role, orthanc_id, status, via, orthanc_job, error, times_sent, first_sent_at, sent_at)
                   VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s,
                           CASE WHEN %s THEN now() END, now())
                   ON CONFLICT (sop_instance_uid, destination) DO UPDATE SET
                          status = CASE WHEN rpacs.forwarded_instance.status = 'sent' THEN 'sent'
                                        ELSE EXCLUDED.status END,
                          via = CASE WHEN EXCLUDED.status = 'sent' THEN EXCLUDED.via
                                     ELSE rpacs.forwarded_instance.via END,
                          role = EXCLUDED.role, orthanc_id = EXCLUDED.orthanc_id,
                          orthanc_job = EXCLUDED.orthanc_job, error = EXCLUDED.error,
                          times_sent = rpacs.forwarded_instance.times_sent + EXCLUDED.times_sent,
                          first_sent_at = coalesce(rpacs.forwarded_instance.first_sent_at, EXCLUDED.first_sent_at),
                          sent_at = now()""",
                (
                    item.instance.sop_instance_uid,
                    destination,
                    study_uid,
                    item.series_instance_uid,
                    item.instance.sop_class_uid,
                    item.role,
                    item.instance.instance_id,
                    status,
                    via,
                    job,
                    error,
                    1 if sent and via != "found" else 0,
                    sent,
                ),
            )
    conn.commit()


def forwarded(conn, study_uid: str, destination: str) -> dict[str, tuple[str, str, str | None]]:
    """SOPInstanceUID -> (status, role, series) already recorded for this study and destination."""
    with conn.cursor() as cur:
        cur.execute(
            """SELECT sop_instance_uid, status, role, series_instance_uid FROM rpacs.forwarded_instance
                WHERE study_instance_uid = %s AND destination = %s""",
            (study_uid, destination),
        )
        return {sop: (status, role, series) for sop, status, role, series in cur.fetchall()}


class Forwarder:
    """Handles `forward` jobs; used by the plugin's workers and by `nmdose forward study`."""

    def __init__(self, cfg: Config, rest: OrthancHttp, *, now: Callable[[], datetime] = datetime.now):
        self.cfg = cfg
        self.rest = rest
        self.now = now
        self.destination = cfg.dose_node.name
        self._db = ThreadLocalConnection(cfg)
        self.studies_done = 0
        self.instances_sent = 0

    def conn(self):
        """This thread's database connection (the plugin runs several workers)."""
        return self._db.get()

    def close(self) -> None:
        self._db.close()

    def plan(
        self, study_uid: str, *, force: bool = False
    ) -> tuple[list[Selected], list[Selected], list[str]]:
        """(selection, what to send now, Orthanc study ids); raises Deferred while the study is arriving."""
        facts = OrthancFacts(self.rest)
        ids = facts.study_ids(study_uid)
        if not ids:
            raise ForwardError(f"research PACS has no study {study_uid}", permanent=True)
        for orthanc_id in ids:
            if not facts.study(orthanc_id).get("IsStable", True):
                raise Deferred(
                    self.now().astimezone() + timedelta(seconds=NOT_STABLE_RETRY_S), "study is still arriving"
                )
        series = [s for orthanc_id in ids for s in facts.series(orthanc_id)]
        selection = select_study(series, facts.details)
        return selection, self._to_send(study_uid, selection, force=force), ids

    def _to_send(self, study_uid: str, selection: list[Selected], *, force: bool) -> list[Selected]:
        conn = self.conn()
        if force:
            return list(selection)
        done = forwarded(conn, study_uid, self.destination)
        if any(status == "failed" for status, _, _ in done.values()):
            # an earlier attempt failed midway: whatever the dose PACS holds already is not sent again
            present = sender.present_on(self.rest, self.destination, study_uid)
            found = [s for s in selection if s.instance.sop_instance_uid in present]
            if found:
                record(conn, study_uid, self.destination, found, "sent", via="found")
            done = forwarded(conn, study_uid, self.destination)
        sampled = {
            series for status, role, series in done.values() if status == "sent" and role == Role.SAMPLE_IMAGE
        }
        todo = []
        for item in selection:
            prior = done.get(item.instance.sop_instance_uid)
            if prior is not None and prior[0] == "sent":
                continue
            if item.role == Role.SAMPLE_IMAGE and item.series_instance_uid in sampled:
                continue  # the series' sample went already (the series grew since): one image per series
            todo.append(item)
        return todo

    def handle(self, job: queue.Job) -> None:
        uid = job.key
        conn = self.conn()
        force = bool(job.payload.get("force"))
        if retrieval_state(conn, uid) in RETRIEVAL_IN_PROGRESS:
            raise Deferred(
                self.now().astimezone() + timedelta(seconds=RETRIEVAL_RETRY_S), "retrieval still running"
            )
        selection, todo, _ = self.plan(uid, force=force)
        _update(
            conn,
            uid,
            state="sending",
            attempts=job.attempts,
            started_at=self.now().astimezone(),
            selected=len(selection),
            dose_objects=sum(s.role != Role.SAMPLE_IMAGE for s in selection),
            sample_images=sum(s.role == Role.SAMPLE_IMAGE for s in selection),
        )
        if todo:
            result = sender.store(self.rest, self.destination, [s.instance.instance_id for s in todo])
            if not result.ok:
                record(conn, uid, self.destination, todo, "failed", job=result.job, error=result.error)
                _update(conn, uid, last_error=result.error)
                raise ForwardError(f"{uid}: {result.error}")
            record(conn, uid, self.destination, todo, "sent", job=result.job)
        _update(conn, uid, state="done", sent=len(todo), last_error=None, finished_at=self.now().astimezone())
        self.studies_done += 1
        self.instances_sent += len(todo)
        log.info("study %s forwarded: %d of %d selected instances sent", uid, len(todo), len(selection))
        from nmdose.audit import record_action

        record_action(self.cfg, "study forwarded", study_uids=[uid], params={"destination": self.destination, "force": force}, rows=len(todo), detail={"selected": len(selection)}, plugin_only=True)  # fmt: skip

    __call__ = handle

    def on_failure(self, job: queue.Job, error: str, state: str) -> None:
        _update(
            self.conn(),
            job.key,
            state="failed" if state == "failed" else "pending",
            last_error=error,
            attempts=job.attempts,
        )


# ----- reports
def status(conn) -> dict[str, Any]:
    with conn.cursor() as cur:
        cur.execute("SELECT state, count(*) FROM rpacs.forward_study GROUP BY state")
        by_state = dict(cur.fetchall())
        cur.execute(
            """SELECT destination, role, status, count(*), coalesce(sum(times_sent), 0)
                 FROM rpacs.forwarded_instance GROUP BY destination, role, status"""
        )
        instances: dict[str, Any] = {}
        for destination, role, st, n, times in cur.fetchall():
            d = instances.setdefault(destination, {})
            d.setdefault(st, {})[role] = n
            d["c_stores"] = d.get("c_stores", 0) + int(times)
        cur.execute(
            """SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM finished_at - stable_at)),
                      percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM finished_at - stable_at))
                 FROM rpacs.forward_study WHERE state = 'done' AND trigger = 'stable'"""
        )
        median, p95 = cur.fetchone()
        cur.execute("SELECT count(*), coalesce(sum(bytes), 0) FROM rpacs.deletion_log")
        deleted, deleted_bytes = cur.fetchone()
    return {
        "studies": sum(by_state.values()),
        "by_state": by_state,
        "instances": instances,
        "stable_to_forwarded_s": {"median": median, "p95": p95},
        "deleted": {"instances": deleted, "bytes": int(deleted_bytes)},
        "queue": queue.counts(conn, KIND).get(KIND, {}),
    }


def pending(conn, limit: int = 500) -> list[dict[str, Any]]:
    """Studies not forwarded yet: waiting, retrying or failed, and retrieved studies the stage never saw."""
    with conn.cursor() as cur:
        cur.execute(
            """SELECT f.study_instance_uid, f.state, f.trigger, coalesce(q.attempts, 0) AS attempts,
                      q.not_before AS next_try, coalesce(f.last_error, q.last_error) AS last_error, f.stable_at
                 FROM rpacs.forward_study f
                 LEFT JOIN jobs.queue q ON q.kind = %s AND q.key = f.study_instance_uid
                WHERE f.state <> 'done'
               UNION ALL
               SELECT r.study_instance_uid, 'not seen', NULL, 0, NULL, NULL, NULL
                 FROM rpacs.retrieval r LEFT JOIN rpacs.forward_study f USING (study_instance_uid)
                WHERE r.state IN ('done', 'partial') AND f.study_instance_uid IS NULL
                ORDER BY 7 NULLS LAST LIMIT %s""",
            (KIND, limit),
        )
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]


# ----- one study from the command line
def _claim_key(conn, study_uid: str, worker: str) -> queue.Job | None:
    with conn.cursor() as cur:
        cur.execute(
            """UPDATE jobs.queue q
                  SET state = 'running', attempts = q.attempts + 1, locked_by = %s, locked_at = now(),
                      updated_at = now()
                WHERE q.id = (SELECT id FROM jobs.queue WHERE kind = %s AND key = %s AND state = 'pending'
                               FOR UPDATE SKIP LOCKED)
            RETURNING q.id, q.kind, q.key, q.payload, q.attempts, q.max_attempts""",
            (worker, KIND, study_uid),
        )
        row = cur.fetchone()
    conn.commit()
    return queue.Job(*row) if row else None


def forward_now(
    cfg: Config, study_uid: str, *, force: bool = False, timeout_s: float = 300
) -> dict[str, Any]:
    """Queue one study (manual trigger) and forward it from this process, or wait for the worker that took it."""
    import os

    rest = OrthancHttp.for_node(cfg, cfg.research_node.name, timeout_s=120)
    forwarder = Forwarder(cfg, rest)
    conn = forwarder.conn()
    try:
        queue_study(conn, study_uid, cfg.dose_node.name, trigger="manual", force=force)
        job = _claim_key(conn, study_uid, f"cli:{os.getpid()}")
        outcome = "done"
        if job is not None:
            try:
                forwarder.handle(job)
                queue.complete(conn, job)
            except Deferred as exc:
                queue.defer(conn, job, exc.until, exc.reason)
                outcome = f"deferred: {exc.reason}"
            except Exception as exc:
                error = str(exc)
                state = queue.fail(
                    conn,
                    job,
                    error,
                    backoff_s=cfg.retrieve.retry.backoff_s,
                    backoff_max_s=cfg.retrieve.retry.backoff_max_s,
                    final=getattr(exc, "permanent", False),
                )
                forwarder.on_failure(job, error, state)
                outcome = f"{state}: {error}"
        else:  # a plugin worker has it: wait for the outcome
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                with conn.cursor() as cur:
                    cur.execute(
                        "SELECT state FROM jobs.queue WHERE kind = %s AND key = %s", (KIND, study_uid)
                    )
                    (st,) = cur.fetchone()
                conn.commit()
                if st != "running":
                    break
                time.sleep(0.2)
        with conn.cursor() as cur:
            cur.execute(
                """SELECT state, selected, dose_objects, sample_images, sent, last_error
                     FROM rpacs.forward_study WHERE study_instance_uid = %s""",
                (study_uid,),
            )
            cols = [d[0] for d in cur.description]
            row = dict(zip(cols, cur.fetchone(), strict=True))
        conn.commit()
        return {"study": study_uid, "outcome": outcome if job is not None else row["state"], **row}
    finally:
        forwarder.close()
