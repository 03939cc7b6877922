"""Forwarding: a stable study's dose objects and one image per series go to the dose PACS.

Each study is one `forward` job in the durable queue (key = StudyInstanceUID, re-armed each time the study
becomes stable again) and one row in `rpacs.forward_study`; every SOP instance sent is a row in
`rpacs.forwarded_instance` (unique per destination), so nothing is sent twice unless forced. A dose PACS that is
down fails the attempt; the job backs off and retries (`FORWARD_MAX_ATTEMPTS`, effectively never dropped), and a
retry first asks the dose PACS (C-FIND) which instances of a half-sent batch arrived.

Complete or visibly not (issue 14): a study is never forwarded while its retrieval can still bring instances
(`pending`, `moving`, `verifying`, or `partial` with its retrieve job still alive): the job defers and comes
back. Each plan records what it saw (`planned_at`, the research PACS's study ids and `LastUpdate`, instances);
:func:`reconcile` (plugin start, then every 10 minutes) re-plans every study whose research-PACS copy changed
since, and :func:`requeue_stale` (every 30 s) every study whose retrieval changed after its plan, whose forward
was left without a job, or that was retrieved and never seen. :func:`pending` lists every study whose forwarded
set is incomplete, with why; :func:`problem_counts` counts them for the health check.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from nmdose.config import Config
from nmdose.db import ThreadLocalConnection, queue
from nmdose.forward import sender
from nmdose.forward.facts import OrthancFacts
from nmdose.forward.select import Role, Selected, select_study
from nmdose.forward.sender import ForwardError
from nmdose.pacs.orthanc_http import OrthancHttp
from nmdose.workers import Deferred

KIND = "forward"
RETRIEVE_KIND = "retrieve"  # nmdose.retrieve.runner.KIND (read only: the retrieval is never changed here)
# A dose PACS down for days must not drop anything: back-off is capped (retry.backoff_max_s), attempts are not.
FORWARD_MAX_ATTEMPTS = 1000
# Retrieval states that are not final while the study's `retrieve` job is alive: forwarding waits.
RETRIEVAL_UNFINISHED = ("pending", "moving", "verifying", "partial")
RETRIEVAL_IN_PROGRESS = ("moving", "verifying")  # instances arriving now: looked at again soon
# Queue states of a job that will never run again (the queue may add a dead-letter state: counted as ended).
JOB_ENDED = ("done", "failed", "dead")
NOT_STABLE_RETRY_S = 2.0
RETRIEVAL_RETRY_S = 10.0
RETRIEVAL_RETRY_MAX_S = 300.0
# The deferral's reason while the retrieval is not final (the forward job's last_error while it waits).
WAITING_FOR_RETRIEVAL = "retrieval not finished"
RECONCILE_KIND = "forward_reconcile"
RECONCILE_KEY = "periodic"
RECONCILE_INTERVAL_S = 30.0
FULL_RECONCILE_S = 600.0  # the periodic job compares the research PACS with the plans this often
# A retrieved study the stage has not seen this long after its retrieval ended is stuck (a lost stable event).
NOT_SEEN_GRACE_S = 180

log = logging.getLogger("nmdose.forward")


def orthanc_time(value: str | None) -> datetime | None:
    """Orthanc's `LastUpdate` ("20260630T101500") as an aware datetime: Orthanc writes it in UTC ("use UTC time
    (not local time)", ServerIndex since 1.x), not in the host's local time."""
    if not value:
        return None
    try:
        return datetime.strptime(value, "%Y%m%dT%H%M%S").replace(tzinfo=UTC)
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
    conn.commit()
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


@dataclass(frozen=True)
class RetrievalCheck:
    """Whether the study's retrieval can still bring instances, read with the database's clock."""

    waiting: str | None  # why forwarding waits (None: the retrieval is final, or the study has none)
    retry_in_s: float
    checked_at: datetime  # the database's now(): the plan's `planned_at`


def retrieval_check(conn, study_uid: str) -> RetrievalCheck:
    """A retrieval is unfinished while its state is pending / moving / verifying / partial AND its `retrieve`
    job is still alive (pending or running); a retrieval whose job ended (attempts used up, dead) is final,
    whatever its state says: what it brought is forwarded."""
    with conn.cursor() as cur:
        cur.execute(
            """SELECT now(), r.state, q.state, extract(epoch FROM q.not_before - now())
                 FROM (SELECT 1) AS one
                 LEFT JOIN rpacs.retrieval r ON r.study_instance_uid = %s
                 LEFT JOIN jobs.queue q ON q.kind = %s AND q.key = r.study_instance_uid""",
            (study_uid, RETRIEVE_KIND),
        )
        now, state, job_state, job_due_in = cur.fetchone()
    conn.commit()
    if state in RETRIEVAL_UNFINISHED and job_state is not None and job_state not in JOB_ENDED:
        if state in RETRIEVAL_IN_PROGRESS or job_state == "running":
            retry = RETRIEVAL_RETRY_S
        else:  # waiting for its next attempt: come back just after it
            retry = min(RETRIEVAL_RETRY_MAX_S, max(RETRIEVAL_RETRY_S, float(job_due_in or 0) + 5))
        return RetrievalCheck(f"{WAITING_FOR_RETRIEVAL} ({state})", retry, now)
    return RetrievalCheck(None, 0.0, now)


def fingerprint(studies: Iterable[tuple[str, str | None]]) -> str:
    """What the research PACS holds of a study, cheaply: its Orthanc ids and their `LastUpdate` (Orthanc sets
    it at every stored instance, so any instance stored since changes it)."""
    return ",".join(sorted(f"{orthanc_id}@{last_update or ''}" for orthanc_id, last_update in studies))


def research_studies(rest: OrthancHttp, page: int = 1000) -> dict[str, list[tuple[str, str | None]]]:
    """StudyInstanceUID -> [(Orthanc id, LastUpdate)] of every study the research PACS holds (one expanded
    listing per `page` studies)."""
    result: dict[str, list[tuple[str, str | None]]] = {}
    since = 0
    while True:
        rows = rest.get("/studies", params={"expand": "", "since": since, "limit": page})
        for row in rows:
            uid = row.get("MainDicomTags", {}).get("StudyInstanceUID")
            if uid:
                result.setdefault(uid, []).append((row["ID"], row.get("LastUpdate")))
        if len(rows) < page:
            return result
        since += page


@dataclass
class ReconcileResult:
    """What the start-up reconciliation found (and how long it took)."""

    research_studies: int = 0
    candidates: int = 0  # studies of the research PACS the stage is responsible for
    unchanged: int = 0  # forwarded (or failed) and untouched since: skipped without a look
    adopted: int = 0  # forwarded before fingerprints existed, nothing stored since: fingerprint recorded
    live: int = 0  # a forward job is already queued or running
    queued: dict[str, int] = field(default_factory=dict)  # why -> studies queued
    stale_queued: int = 0  # requeue_stale (retrieval changed after the plan, lost jobs, never seen)
    seconds: float = 0.0

    @property
    def total_queued(self) -> int:
        return sum(self.queued.values()) + self.stale_queued


def reconcile(cfg: Config, rest: OrthancHttp, conn) -> ReconcileResult:
    """At plugin start: Orthanc forgot which studies were about to become stable. Every study of the research
    PACS the stage is responsible for (every retrieved one, or every one with `only_retrieved: false`) is
    compared with its last plan: a study forwarded whose Orthanc ids and `LastUpdate` are those its plan saw is
    skipped (one listing of the research PACS and one query, no per-study look); every other one (never seen,
    changed since, left without a job) is queued, and its job re-plans it against `forwarded_instance`."""
    started = time.monotonic()
    result = ReconcileResult()
    held = research_studies(rest)
    result.research_studies = len(held)
    with conn.cursor() as cur:
        cur.execute(
            """SELECT study_instance_uid, r.study_instance_uid IS NOT NULL, f.state, f.trigger,
                      f.research_fingerprint, coalesce(f.planned_at, f.started_at), q.state
                 FROM rpacs.forward_study f FULL JOIN rpacs.retrieval r USING (study_instance_uid)
                 LEFT JOIN jobs.queue q ON q.kind = %s AND q.key = study_instance_uid""",
            (KIND,),
        )
        known = {row[0]: row[1:] for row in cur.fetchall()}
    conn.commit()
    adopt: list[tuple[str, str]] = []
    for uid, studies in held.items():
        retrieved, state, _trigger, seen, planned_at, job_state = known.get(
            uid, (False, None, None, None, None, None)
        )
        if cfg.retrieve.forward.only_retrieved and not retrieved:
            continue
        result.candidates += 1
        if job_state is not None and job_state not in JOB_ENDED:
            result.live += 1
            continue
        current = fingerprint(studies)
        if state in ("done", "failed") and seen == current:
            result.unchanged += 1
            continue
        if state == "done" and seen is None and planned_at is not None:
            # forwarded before plans recorded a fingerprint: nothing stored after the plan began -> adopt
            last = max((orthanc_time(lu) for _, lu in studies if lu), default=None)
            if last is not None and last < planned_at - timedelta(seconds=2):
                adopt.append((current, uid))
                continue
        why = (
            "never seen"
            if state is None
            else "changed since planned"
            if state in ("done", "failed")
            else "left without a job"
        )
        orthanc_id = studies[0][0] if len(studies) == 1 else None
        queue_study(conn, uid, cfg.dose_node.name, trigger="start", orthanc_id=orthanc_id)
        result.queued[why] = result.queued.get(why, 0) + 1
    if adopt:
        with conn.cursor() as cur:
            cur.executemany(
                "UPDATE rpacs.forward_study SET research_fingerprint = %s WHERE study_instance_uid = %s",
                adopt,
            )
        conn.commit()
        result.adopted = len(adopt)
    result.stale_queued = requeue_stale(cfg, conn)
    result.seconds = time.monotonic() - started
    return result


def requeue_unforwarded(cfg: Config, rest: OrthancHttp, conn) -> int:
    """Start-up re-queueing (kept for callers of the old name): see :func:`reconcile`."""
    return reconcile(cfg, rest, conn).total_queued


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


@dataclass(frozen=True)
class Plan:
    selection: list[Selected]
    todo: list[Selected]  # selected and not forwarded yet
    ids: list[str]  # Orthanc ids of the study
    fingerprint: str  # see fingerprint(): what the research PACS held when the plan began
    instances: int  # instances of the study the plan saw


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
        p = self.plan_study(study_uid, force=force)
        return p.selection, p.todo, p.ids

    def plan_study(self, study_uid: str, *, force: bool = False) -> Plan:
        """The selection, what of it to send now, and what the research PACS held when it was made."""
        facts = OrthancFacts(self.rest)
        ids = facts.study_ids(study_uid)
        if not ids:
            raise ForwardError(f"research PACS has no study {study_uid}", permanent=True)
        seen = []
        for orthanc_id in ids:
            study = facts.study(orthanc_id)
            if not study.get("IsStable", True):
                raise Deferred(
                    self.now().astimezone() + timedelta(seconds=NOT_STABLE_RETRY_S), "study is still arriving"
                )
            seen.append((orthanc_id, study.get("LastUpdate")))
        series = [s for orthanc_id in ids for s in facts.series(orthanc_id)]
        selection = select_study(series, facts.details)
        return Plan(
            selection,
            self._to_send(study_uid, selection, force=force),
            ids,
            fingerprint(seen),
            sum(len(s.instances) for s in series),
        )

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
        check = retrieval_check(conn, uid)
        if check.waiting:  # what the retrieval still brings would be missed: come back when it is final
            raise Deferred(self.now().astimezone() + timedelta(seconds=check.retry_in_s), check.waiting)
        p = self.plan_study(uid, force=force)
        selection, todo = p.selection, p.todo
        _update(
            conn,
            uid,
            state="sending",
            attempts=job.attempts,
            started_at=self.now().astimezone(),
            selected=len(selection),
            dose_objects=sum(s.role != Role.SAMPLE_IMAGE for s in selection),
            sample_images=sum(s.role == Role.SAMPLE_IMAGE for s in selection),
            planned_at=check.checked_at,
            research_fingerprint=p.fingerprint,
            research_instances=p.instances,
            missing=len(todo),
        )
        if todo:
            result = sender.store(self.rest, self.destination, [s.instance.instance_id for s in todo])
            if not result.ok:
                record(conn, uid, self.destination, todo, "failed", job=result.job, error=result.error)
                _update(conn, uid, last_error=result.error)
                raise ForwardError(f"{uid}: {result.error}")
            record(conn, uid, self.destination, todo, "sent", job=result.job)
        _update(
            conn,
            uid,
            state="done",
            sent=len(todo),
            missing=0,
            last_error=None,
            finished_at=self.now().astimezone(),
        )
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
        "incomplete": problem_counts(conn),  # studies whose forwarded set is incomplete (`forward pending`)
    }


# Every study whose forwarded set is not (known to be) complete, one row each, with a category:
#   retrieval   its retrieval can still bring instances: the forward waits (progress possible)
#   forwarding  not done, its forward job is queued or running (queued, sending, retrying after an error)
#   failed      the forward failed for good (stuck unless queued again)
#   stale       said done, but its retrieval changed after the plan: instances may be missing (re-planned by the
#               reconciliation; stuck while no job is queued)
#   orphan      not done and no forward job: nothing would ever forward it (stuck; the reconciliation re-queues)
#   not_seen    retrieved (done / partial) and never seen by the stage (stuck after NOT_SEEN_GRACE_S)
_INCOMPLETE = """
WITH fw AS (
    SELECT f.study_instance_uid, f.state, f.trigger, f.selected, f.missing, f.research_instances,
           coalesce(f.last_error, q.last_error) AS last_error, f.stable_at, f.planned_at,
           coalesce(q.attempts, 0) AS attempts, q.not_before AS next_try, r.state AS retrieval,
           r.updated_at AS retrieval_updated_at, r.study_instance_uid IS NOT NULL AS retrieved,
           (q.state IS NOT NULL AND q.state <> ALL(%(ended)s)) AS job_live,
           (q.state = 'pending' AND q.not_before > now() + interval '5 seconds'
            AND q.last_error LIKE %(waiting)s) AS deferred_for_retrieval,
           (r.state = ANY(%(unfinished)s) AND rq.state IS NOT NULL AND rq.state <> ALL(%(ended)s))
               AS retrieval_running
      FROM rpacs.forward_study f
      LEFT JOIN jobs.queue q ON q.kind = %(kind)s AND q.key = f.study_instance_uid
      LEFT JOIN rpacs.retrieval r ON r.study_instance_uid = f.study_instance_uid
      LEFT JOIN jobs.queue rq ON rq.kind = %(retrieve)s AND rq.key = f.study_instance_uid
), rows AS (
    SELECT study_instance_uid, state,
           CASE WHEN retrieval_running THEN 'retrieval'
                WHEN state = 'failed' THEN 'failed'
                WHEN state = 'done' THEN 'stale'
                WHEN job_live THEN 'forwarding'
                ELSE 'orphan' END AS category,
           trigger, job_live, deferred_for_retrieval, selected, missing, research_instances, attempts, next_try,
           last_error, retrieval, stable_at, planned_at, retrieval_updated_at
      FROM fw
     WHERE state <> 'done' OR retrieval_running
        OR (retrieved AND trigger <> 'selective'
            AND retrieval_updated_at > coalesce(planned_at, '-infinity'::timestamptz))
    UNION ALL
    SELECT r.study_instance_uid, 'not seen', 'not_seen', NULL, false, false, NULL, NULL, NULL, 0, NULL, r.last_error,
           r.state, NULL, NULL, r.updated_at
      FROM rpacs.retrieval r
      LEFT JOIN rpacs.forward_study f ON f.study_instance_uid = r.study_instance_uid
      LEFT JOIN jobs.queue rq ON rq.kind = %(retrieve)s AND rq.key = r.study_instance_uid
     WHERE f.study_instance_uid IS NULL
       AND (r.state IN ('done', 'partial') OR (r.state = 'failed' AND r.received_instances > 0))
       AND NOT (r.state = ANY(%(unfinished)s) AND rq.state IS NOT NULL AND rq.state <> ALL(%(ended)s))
)
SELECT rows.*,
       CASE category WHEN 'failed' THEN NOT job_live
                     WHEN 'stale' THEN NOT job_live
                     WHEN 'orphan' THEN true
                     WHEN 'not_seen' THEN retrieval_updated_at < now() - make_interval(secs => %(grace)s)
                     ELSE false END AS stuck
  FROM rows
"""


def _incomplete_params() -> dict[str, Any]:
    return {
        "kind": KIND,
        "retrieve": RETRIEVE_KIND,
        "ended": list(JOB_ENDED),
        "unfinished": list(RETRIEVAL_UNFINISHED),
        "grace": NOT_SEEN_GRACE_S,
        "waiting": WAITING_FOR_RETRIEVAL + "%",
    }


def _reason(row: dict[str, Any]) -> str:
    category = row["category"]
    if category == "retrieval":
        return f"waiting for its retrieval ({row['retrieval']}) to finish"
    if category == "failed":
        return f"forward failed: {row['last_error'] or 'no reason recorded'}" + (
            "" if row["stuck"] else " (queued again)"
        )
    if category == "stale":
        return f"said done, but its retrieval ({row['retrieval']}) changed after the forward was planned" + (
            ": re-planning" if row["job_live"] else ": not re-planned yet"
        )
    if category == "orphan":
        return f"{row['state']} with no forward job: nothing would forward it"
    if category == "not_seen":
        return f"retrieved ({row['retrieval']}), never seen by the forward stage (lost stable event?)"
    if row["last_error"] and row["attempts"]:
        return f"retrying after {row['attempts']} failed attempts: {row['last_error']}"
    return "sending" if row["state"] == "sending" else "queued"


def pending(conn, limit: int = 500) -> list[dict[str, Any]]:
    """Studies whose forwarded set is not complete, stuck ones first: waiting for their retrieval, queued,
    retrying, failed, said done but planned before their retrieval changed, without a job, never seen. Each
    with `reason`, `stuck` (nothing queued would complete it), `selected` and `missing` (selected but not
    forwarded, as of the last plan), `forwarded` (instances sent so far)."""
    with conn.cursor() as cur:
        cur.execute(
            f"""SELECT i.study_instance_uid, i.state, i.category, i.stuck, i.job_live, i.selected, i.missing,
                       (SELECT count(*) FROM rpacs.forwarded_instance fi
                         WHERE fi.study_instance_uid = i.study_instance_uid AND fi.status = 'sent') AS forwarded,
                       i.research_instances, i.attempts, i.next_try, i.last_error, i.retrieval, i.stable_at,
                       i.planned_at
                  FROM ({_INCOMPLETE}) i
                 ORDER BY i.stuck DESC, i.stable_at NULLS LAST, i.study_instance_uid LIMIT %(limit)s""",
            {**_incomplete_params(), "limit": limit},
        )
        cols = [d[0] for d in cur.description]
        rows = [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]
    conn.commit()
    result = []
    for row in rows:
        reason = _reason(row)
        del row["job_live"]
        result.append({"study_instance_uid": row.pop("study_instance_uid"), "reason": reason, **row})
    return result


FAILING_ATTEMPTS = 3  # a forward retried this often is reported by health_problems


def problem_counts(conn) -> dict[str, int]:
    """`incomplete` (pending rows), `stuck` (nothing queued would complete them), `failing` (queued, but failed
    FAILING_ATTEMPTS times or more): one aggregate query."""
    with conn.cursor() as cur:
        cur.execute(
            f"""SELECT count(*), count(*) FILTER (WHERE stuck),
                       count(*) FILTER (WHERE NOT stuck AND category = 'forwarding' AND attempts >= %(failing)s
                                          AND last_error IS NOT NULL)
                  FROM ({_INCOMPLETE}) i""",
            {**_incomplete_params(), "failing": FAILING_ATTEMPTS},
        )
        incomplete, stuck, failing = cur.fetchone()
    conn.commit()
    return {"incomplete": incomplete, "stuck": stuck, "failing": failing}


def requeue_stale(cfg: Config, conn) -> int:
    """Queue again what nothing would otherwise forward (database only, cheap): studies said done whose
    retrieval changed after the plan, forwards left without a job, retrieved studies never seen after
    NOT_SEEN_GRACE_S, and forwards deferred for a retrieval that has finished since (run now, not at the end of
    their deferral). A forward that failed for good is left for a person (`nmdose forward study`)."""
    with conn.cursor() as cur:
        cur.execute(
            f"""SELECT study_instance_uid, category, trigger FROM ({_INCOMPLETE}) i
                 WHERE (stuck AND category IN ('stale', 'orphan', 'not_seen'))
                    OR (category = 'forwarding' AND deferred_for_retrieval)""",
            _incomplete_params(),
        )
        rows = cur.fetchall()
    conn.commit()
    for uid, category, trigger in rows:
        if category == "forwarding":  # the same request, run now (its trigger kept)
            log.info("study %s: its retrieval finished, the forward deferred for it runs now", uid)
            queue_study(conn, uid, cfg.dose_node.name, trigger=trigger or "reconcile")
        else:
            log.warning("study %s: forward queued again (%s)", uid, category)
            queue_study(conn, uid, cfg.dose_node.name, trigger="reconcile")
    return len(rows)


def schedule_reconcile(conn) -> None:
    """Make sure the periodic `forward_reconcile` job is queued (the plugin calls this at start)."""
    queue.enqueue(conn, RECONCILE_KIND, RECONCILE_KEY, max_attempts=FORWARD_MAX_ATTEMPTS, reset=True)


class ReconcileJob:
    """Every RECONCILE_INTERVAL_S: :func:`requeue_stale`; every FULL_RECONCILE_S the whole :func:`reconcile`
    instead (a stable event lost while the plugin runs: the database down when it came, say). Then it puts itself
    back (a deferral uses no attempt)."""

    def __init__(self, cfg: Config, rest: OrthancHttp | None = None, *, full_every_s: float | None = None):
        self.cfg = cfg
        self.rest = rest
        self.full_every_s = FULL_RECONCILE_S if full_every_s is None else full_every_s
        self._last_full = time.monotonic()  # the plugin's start runs the first one (routes.on_started)
        self._db = ThreadLocalConnection(cfg)

    def __call__(self, job: queue.Job) -> None:
        conn = self._db.get()
        now = time.monotonic()
        if self.rest is not None and now - self._last_full >= self.full_every_s:
            self._last_full = now
            result = reconcile(self.cfg, self.rest, conn)
            n = result.total_queued
        else:
            n = requeue_stale(self.cfg, conn)
        if n:
            log.warning("nmdose: %d studies queued again for forwarding (incomplete forwarded set)", n)
        raise Deferred(
            datetime.now().astimezone() + timedelta(seconds=RECONCILE_INTERVAL_S),
            "next forward reconciliation",
        )


# ----- one study from the command line
@contextlib.contextmanager
def _leased(cfg: Config, job: queue.Job | None, every_s: float = 15):
    """Renew a claimed job's lease while this process works on it (another process takes it back only after
    this one dies)."""
    if job is None:
        yield
        return
    stop = threading.Event()

    def renew() -> None:
        from nmdose.db import connect

        while not stop.wait(every_s):
            with contextlib.suppress(Exception), contextlib.closing(connect(cfg)) as conn:
                queue.heartbeat(conn, [job])

    thread = threading.Thread(target=renew, name="forward-lease", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(5)


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
        job = queue.claim(conn, [KIND], f"cli:{os.getpid()}", key=study_uid)
        outcome = "done"
        if job is not None:
            with _leased(cfg, job):
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
