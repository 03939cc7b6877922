"""The durable work queue (`jobs.queue`): callbacks enqueue, workers claim with FOR UPDATE SKIP LOCKED.

Every stage (census, retrieve, forward, ingest) goes through it, so a crash at any point resumes: jobs left
`running` by a dead process are put back to `pending` by :func:`requeue_running` at start.
"""

from __future__ import annotations

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


def claim(conn, kinds: list[str], worker: str) -> Job | None:
    """Take the oldest ready job of these kinds, or None. Concurrent claimers never get the same job."""
    with conn.cursor() as cur:
        cur.execute(
            """UPDATE jobs.queue q
                  SET state = 'running', attempts = q.attempts + 1, locked_by = %s, locked_at = now(),
                      updated_at = now()
                WHERE q.id = (SELECT id FROM jobs.queue
                               WHERE kind = ANY(%s) AND state = 'pending' AND not_before <= now()
                               ORDER BY not_before, id
                               FOR UPDATE SKIP LOCKED LIMIT 1)
            RETURNING q.id, q.kind, q.key, q.payload, q.attempts, q.max_attempts""",
            (worker, list(kinds)),
        )
        row = cur.fetchone()
    conn.commit()
    return Job(*row) if row else None


def complete(conn, job: Job) -> None:
    """Mark done, or back to pending when it was asked for again while running (`rerun`)."""
    with conn.cursor() as cur:
        cur.execute(
            """UPDATE jobs.queue
                  SET state = CASE WHEN rerun THEN 'pending' ELSE 'done' END,
                      finished_at = CASE WHEN rerun THEN NULL ELSE now() END,
                      attempts = CASE WHEN rerun THEN 0 ELSE attempts END,
                      not_before = now(), rerun = false, updated_at = now(), locked_by = NULL, last_error = NULL
                WHERE id = %s""",
            (job.id,),
        )
    conn.commit()


def fail(
    conn, job: Job, error: str, *, backoff_s: float = 30, backoff_max_s: float = 3600, final: bool = False
) -> str:
    """Record a failed attempt: retry later with exponential back-off, or `failed` after max_attempts
    (or at once when `final`: the error will not go away by retrying)."""
    final = final or job.attempts >= job.max_attempts
    delay = min(backoff_max_s, backoff_s * (2 ** max(0, job.attempts - 1)))
    with conn.cursor() as cur:
        cur.execute(
            """UPDATE jobs.queue
                  SET state = %s, last_error = %s, locked_by = NULL, updated_at = now(),
                      not_before = now() + make_interval(secs => %s),
                      finished_at = CASE WHEN %s THEN now() END
                WHERE id = %s""",
            ("failed" if final else "pending", error[:4000], 0 if final else delay, final, job.id),
        )
    conn.commit()
    return "failed" if final else "pending"


def defer(conn, job: Job, until, reason: str) -> None:
    """Put a claimed job back without counting the attempt (e.g. outside the retrieval time window)."""
    with conn.cursor() as cur:
        cur.execute(
            """UPDATE jobs.queue SET state = 'pending', attempts = GREATEST(attempts - 1, 0), locked_by = NULL,
                      not_before = %s, last_error = %s, updated_at = now() WHERE id = %s""",
            (until, reason, job.id),
        )
    conn.commit()


def requeue_running(conn, worker_prefix: str | None = None) -> int:
    """Put jobs left `running` by a stopped process back to `pending`; returns how many."""
    with conn.cursor() as cur:
        cur.execute(
            """UPDATE jobs.queue SET state = 'pending', locked_by = NULL, updated_at = now(),
                      attempts = GREATEST(attempts - 1, 0)
                WHERE state = 'running' AND (%s::text IS NULL OR locked_by LIKE %s || '%%')""",
            (worker_prefix, worker_prefix),
        )
        n = cur.rowcount
    conn.commit()
    return n


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
