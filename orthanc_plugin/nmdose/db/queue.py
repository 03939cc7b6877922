"""The durable work queue (`jobs.queue`): callbacks enqueue, workers claim with FOR UPDATE SKIP LOCKED.

The census (kind `census`, one job), the retrievals (`retrieve`, one job per study), the forwarding (`forward` per
study, `forward_reconcile`, `forward_purge`) go through it, so a crash at any point resumes. The dose ingest does
not: the dose-PACS hooks hand objects over through the file spool (`nmdose.dose.spool`). A claimed job
holds a **lease** (`lease_until`, with `locked_at` the last heartbeat): the worker's pool renews it while the job
runs (:func:`heartbeat`); a lease that expired because its holder died (kill -9, a lost host) is taken back by
any running pool (:func:`reclaim_expired`), which counts the attempt: a job that crashes its process ends
`failed` after `max_attempts` instead of looping. Whoever holds a job, the plugin of one instance or another,
or the CLI, nobody resets another's live job. `complete`, `fail` and `defer` are fenced by the claim's
`lease_token`: a holder whose lease was taken back changes nothing.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from psycopg2.extras import Json


@dataclass(frozen=True)
class Job:
    id: int
    kind: str
    key: str
    payload: dict[str, Any]
    attempts: int
    max_attempts: int
    token: str | None = None  # the claim's lease token: None for a job claimed without a lease (unfenced)


DEFAULT_LEASE_S = 60.0
# A job claimed without a lease (an older claimer that sets only locked_at) counts as held this long.
UNLEASED_S = 3600
_JOB_COLS = "q.id, q.kind, q.key, q.payload, q.attempts, q.max_attempts, q.lease_token"
_FENCE = "id = %s AND state = 'running' AND (%s::text IS NULL OR lease_token = %s)"
_RELEASE = "locked_by = NULL, lease_until = NULL, lease_token = NULL"


def enqueue(
    conn, kind: str, key: str, payload: dict | None = None, *, max_attempts: int = 5, reset: bool = False
) -> bool:
    """Queue (kind, key) once; True if a job was created. With `reset`, a finished job is queued again and a
    running one is marked to run once more when it completes (True in both cases)."""
    with conn.cursor() as cur:
        if reset:
            cur.execute(
                """INSERT INTO jobs.queue (kind, key, payload, max_attempts) VALUES (%s, %s, %s, %s)
                   ON CONFLICT (kind, key) DO UPDATE
                     SET rerun = (jobs.queue.state = 'running'),
                         state = CASE WHEN jobs.queue.state = 'running' THEN 'running' ELSE 'pending' END,
                         attempts = CASE WHEN jobs.queue.state = 'running' THEN jobs.queue.attempts ELSE 0 END,
                         not_before = now(), last_error = NULL, payload = EXCLUDED.payload, updated_at = now(),
                         finished_at = NULL
                   RETURNING id""",
                (kind, key, Json(payload or {}), max_attempts),
            )
        else:
            cur.execute(
                """INSERT INTO jobs.queue (kind, key, payload, max_attempts) VALUES (%s, %s, %s, %s)
                   ON CONFLICT (kind, key) DO NOTHING RETURNING id""",
                (kind, key, Json(payload or {}), max_attempts),
            )
        created = cur.fetchone() is not None
    conn.commit()
    return created


def claim(
    conn, kinds: list[str], worker: str, *, lease_s: float = DEFAULT_LEASE_S, key: str | None = None
) -> Job | None:
    """Take the oldest ready job of these kinds (only the one of `key` when given), or None, with a lease of
    `lease_s` that the caller renews (:func:`heartbeat`). Concurrent claimers never get the same job."""
    token = uuid.uuid4().hex
    with conn.cursor() as cur:
        cur.execute(
            f"""UPDATE jobs.queue q
                  SET state = 'running', attempts = q.attempts + 1, locked_by = %s, locked_at = now(),
                      lease_until = now() + make_interval(secs => %s), lease_token = %s, updated_at = now()
                WHERE q.id = (SELECT id FROM jobs.queue
                               WHERE kind = ANY(%s) AND state = 'pending' AND not_before <= now()
                                 AND (%s::text IS NULL OR key = %s)
                               ORDER BY not_before, id
                               FOR UPDATE SKIP LOCKED LIMIT 1)
            RETURNING {_JOB_COLS}""",
            (worker, lease_s, token, list(kinds), key, key),
        )
        row = cur.fetchone()
    conn.commit()
    return Job(*row) if row else None


def heartbeat(conn, jobs: list[Job], *, lease_s: float = DEFAULT_LEASE_S) -> set[int]:
    """Renew the leases of these running jobs; returns the ids still held (a job missing from the answer was
    taken back after its lease expired, or finished)."""
    leased = [j for j in jobs if j.token is not None]
    if not leased:
        return set()
    with conn.cursor() as cur:
        cur.execute(
            """UPDATE jobs.queue q SET locked_at = now(), lease_until = now() + make_interval(secs => %s)
                 FROM unnest(%s::bigint[], %s::text[]) AS h(id, token)
                WHERE q.id = h.id AND q.lease_token = h.token AND q.state = 'running'
            RETURNING q.id""",
            (lease_s, [j.id for j in leased], [j.token for j in leased]),
        )
        held = {r[0] for r in cur.fetchall()}
    conn.commit()
    return held


def complete(conn, job: Job) -> bool:
    """Mark done, or back to pending when it was asked for again while running (`rerun`). False when the job is
    no longer this claim's (its lease was taken back): nothing changed."""
    with conn.cursor() as cur:
        cur.execute(
            f"""UPDATE jobs.queue
                  SET state = CASE WHEN rerun THEN 'pending' ELSE 'done' END,
                      finished_at = CASE WHEN rerun THEN NULL ELSE now() END,
                      attempts = CASE WHEN rerun THEN 0 ELSE attempts END,
                      not_before = now(), rerun = false, updated_at = now(), {_RELEASE}, last_error = NULL
                WHERE {_FENCE}""",
            (job.id, job.token, job.token),
        )
        held = cur.rowcount == 1
    conn.commit()
    return held


def fail(
    conn, job: Job, error: str, *, backoff_s: float = 30, backoff_max_s: float = 3600, final: bool = False
) -> str:
    """Record a failed attempt: retry later with exponential back-off, or `failed` (the dead state: it never runs
    again by itself) after max_attempts (or at once when `final`: the error will not go away by retrying).
    Returns the new state, or "lost" when the job is no longer this claim's (nothing changed)."""
    error = error.replace("\x00", "\\0")
    final = final or job.attempts >= job.max_attempts
    delay = min(backoff_max_s, backoff_s * (2 ** max(0, job.attempts - 1)))
    state = "failed" if final else "pending"
    with conn.cursor() as cur:
        cur.execute(
            f"""UPDATE jobs.queue
                  SET state = %s, last_error = %s, {_RELEASE}, updated_at = now(),
                      not_before = now() + make_interval(secs => %s),
                      finished_at = CASE WHEN %s THEN now() END
                WHERE {_FENCE}""",
            (state, error[:4000], 0 if final else delay, final, job.id, job.token, job.token),
        )
        held = cur.rowcount == 1
    conn.commit()
    return state if held else "lost"


def defer(conn, job: Job, until, reason: str) -> bool:
    """Put a claimed job back without counting the attempt (outside the retrieval time window, a node or the
    database down). False when the job is no longer this claim's."""
    with conn.cursor() as cur:
        cur.execute(
            f"""UPDATE jobs.queue SET state = 'pending', attempts = GREATEST(attempts - 1, 0), {_RELEASE},
                      not_before = %s, last_error = %s, updated_at = now() WHERE {_FENCE}""",
            (until, reason.replace("\x00", "\\0")[:4000], job.id, job.token, job.token),
        )
        held = cur.rowcount == 1
    conn.commit()
    return held


# A lease is taken back only when its holder could have renewed it: expired, and PostgreSQL up for at least one
# lease length since (after a database restart every holder gets a lease length to reconnect and renew).
_EXPIRED = f"""q.state = 'running'
       AND coalesce(q.lease_until, q.locked_at + make_interval(secs => {UNLEASED_S})) < now()
       AND pg_postmaster_start_time()
           + coalesce(q.lease_until - q.locked_at, make_interval(secs => {UNLEASED_S})) < now()"""


@dataclass(frozen=True)
class Reclaimed:
    job: Job
    state: str  # "pending" (run again later) or "failed" (attempts exhausted)
    error: str
    holder: str | None


def reclaim_expired(
    conn, kinds: list[str] | None = None, *, backoff_s: float = 30, backoff_max_s: float = 3600
) -> list[Reclaimed]:
    """Take back the jobs (of `kinds`, or every kind) whose lease expired: their holder died or lost the database
    for longer than a lease. The attempt counts (a job that kills its worker must not loop forever): back to
    `pending` with back-off, or `failed` when it was the last one. The caller reports each (the stage's
    `on_failure`)."""
    with conn.cursor() as cur:
        cur.execute(
            f"""SELECT q.id, q.locked_by, q.lease_until FROM jobs.queue q
                 WHERE {_EXPIRED} AND (%s::text[] IS NULL OR q.kind = ANY(%s))
                 ORDER BY q.id FOR UPDATE SKIP LOCKED""",
            (kinds, kinds),
        )
        expired = cur.fetchall()
        result = []
        for job_id, holder, lease_until in expired:
            error = (
                f"worker {holder or '?'} lost the job (its lease expired at {lease_until:%Y-%m-%d %H:%M:%S %Z}: "
                "process killed or cut off from the database)"
                if lease_until is not None
                else f"worker {holder or '?'} held the job for over {UNLEASED_S} s without a lease"
            )
            cur.execute(
                f"""UPDATE jobs.queue q
                      SET state = CASE WHEN q.attempts >= q.max_attempts THEN 'failed' ELSE 'pending' END,
                          finished_at = CASE WHEN q.attempts >= q.max_attempts THEN now() END,
                          not_before = now()
                              + make_interval(secs => LEAST(%s, %s * 2 ^ GREATEST(q.attempts - 1, 0))),
                          last_error = %s || CASE WHEN q.attempts >= q.max_attempts
                                                  THEN format(' (attempt %%s of %%s: no attempt left)',
                                                              q.attempts, q.max_attempts)
                                                  ELSE '' END,
                          rerun = false, {_RELEASE}, updated_at = now()
                    WHERE q.id = %s
                RETURNING {_JOB_COLS}, q.state, q.last_error""",
                (backoff_max_s, backoff_s, error, job_id),
            )
            *cols, state, last_error = cur.fetchone()
            result.append(Reclaimed(Job(*cols[:6]), state, last_error, holder))
    conn.commit()
    return result


def requeue_running(conn, worker_prefix: str | None = None) -> int:
    """Put every job `running` (held by a worker whose name starts with `worker_prefix`) back to `pending` at once,
    whatever its lease, the attempt counted. Only for an operator who knows those holders are stopped: running
    processes take back expired leases themselves (:func:`reclaim_expired`)."""
    with conn.cursor() as cur:
        cur.execute(
            f"""UPDATE jobs.queue SET state = 'pending', {_RELEASE}, updated_at = now()
                WHERE state = 'running' AND (%s::text IS NULL OR locked_by LIKE %s || '%%')""",
            (worker_prefix, worker_prefix),
        )
        n = cur.rowcount
    conn.commit()
    return n


def overdue(conn, kinds: list[str] | None = None, limit: int = 20) -> list[dict[str, Any]]:
    """Jobs still `running` past their lease (nobody took them back yet): kind, key, holder, since when."""
    with conn.cursor() as cur:
        cur.execute(
            f"""SELECT q.kind, q.key, q.locked_by, q.locked_at, q.lease_until, q.attempts, q.max_attempts
                  FROM jobs.queue q
                 WHERE q.state = 'running'
                   AND coalesce(q.lease_until, q.locked_at + make_interval(secs => {UNLEASED_S})) < now()
                   AND (%s::text[] IS NULL OR q.kind = ANY(%s))
                 ORDER BY q.lease_until NULLS FIRST LIMIT %s""",
            (kinds, kinds, limit),
        )
        cols = [d[0] for d in cur.description]
        rows = [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]
    conn.commit()
    return rows


def unfinished(conn, kind: str) -> dict[str, Any]:
    """What is left of `kind`: running (holders), ready, waiting (and the next not_before), failed."""
    with conn.cursor() as cur:
        cur.execute(
            """SELECT count(*) FILTER (WHERE state = 'running'),
                      count(*) FILTER (WHERE state = 'pending' AND not_before <= now()),
                      count(*) FILTER (WHERE state = 'pending' AND not_before > now()),
                      min(not_before) FILTER (WHERE state = 'pending' AND not_before > now()),
                      count(*) FILTER (WHERE state = 'failed'),
                      coalesce(array_agg(DISTINCT locked_by) FILTER (WHERE state = 'running'), '{}')
                 FROM jobs.queue WHERE kind = %s AND state IN ('pending', 'running', 'failed')""",
            (kind,),
        )
        running, ready, waiting, next_at, failed, holders = cur.fetchone()
    conn.commit()
    return {
        "running": running,
        "ready": ready,
        "waiting": waiting,
        "next_at": next_at,
        "failed": failed,
        "holders": sorted(h for h in holders if h),
    }


def counts(conn, kind: str | None = None) -> dict[str, dict[str, int]]:
    """kind -> state -> number of jobs (of `kind` only when given: read from queue_state_idx)."""
    with conn.cursor() as cur:
        if kind is None:
            cur.execute(
                "SELECT kind, state, count(*) FROM jobs.queue GROUP BY kind, state ORDER BY kind, state"
            )
        else:
            cur.execute(
                "SELECT kind, state, count(*) FROM jobs.queue WHERE kind = %s GROUP BY kind, state ORDER BY kind, state",
                (kind,),
            )
        result: dict[str, dict[str, int]] = {}
        for k, state, n in cur.fetchall():
            result.setdefault(k, {})[state] = n
    return result
