"""`auto_delete`: after `transfer.retention_days`, the research PACS deletes what the selection did not keep.

A study is purged once it was forwarded (`rpacs.forward_study.state = 'done'`) more than the retention period
ago and is not in `rpacs.protected_study`. Kept: the selection (dose objects, one image per image series) and
anything recorded as sent. Every deleted instance is a row in `rpacs.deletion_log`. In the plugin a
`forward_purge` job runs it once a day; `nmdose forward purge` runs it from the command line.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from nmdose.config import Config
from nmdose.db import connect, queue
from nmdose.errors import PacsError
from nmdose.forward.facts import OrthancFacts
from nmdose.forward.select import select_study
from nmdose.pacs.orthanc_http import OrthancHttp
from nmdose.workers import Deferred

KIND = "forward_purge"
JOB_KEY = "daily"
INTERVAL = timedelta(days=1)
log = logging.getLogger("nmdose.forward.purge")


@dataclass
class PurgeResult:
    studies: list[str] = field(default_factory=list)
    deleted_instances: int = 0
    deleted_bytes: int = 0
    kept_instances: int = 0
    skipped_protected: list[str] = field(default_factory=list)
    dry_run: bool = False


def protect(conn, study_uid: str, reason: str | None = None, by: str | None = None) -> None:
    with conn.cursor() as cur:
        cur.execute(
            """INSERT INTO rpacs.protected_study (study_instance_uid, reason, protected_by) VALUES (%s, %s, %s)
               ON CONFLICT (study_instance_uid) DO UPDATE SET reason = EXCLUDED.reason,
                      protected_by = EXCLUDED.protected_by, at = now()""",
            (study_uid, reason, by),
        )
    conn.commit()


def unprotect(conn, study_uid: str) -> bool:
    with conn.cursor() as cur:
        cur.execute("DELETE FROM rpacs.protected_study WHERE study_instance_uid = %s", (study_uid,))
        n = cur.rowcount
    conn.commit()
    return bool(n)


def candidates(conn, retention_days: int, now: datetime) -> tuple[list[str], list[str]]:
    """(studies due for purging, due studies skipped because protected)."""
    cutoff = now.astimezone() - timedelta(days=retention_days)
    with conn.cursor() as cur:
        cur.execute(
            """SELECT f.study_instance_uid, p.study_instance_uid IS NOT NULL
                 FROM rpacs.forward_study f LEFT JOIN rpacs.protected_study p USING (study_instance_uid)
                WHERE f.state = 'done' AND f.purged_at IS NULL AND f.finished_at <= %s
                ORDER BY f.finished_at""",
            (cutoff,),
        )
        rows = cur.fetchall()
    return [u for u, protected in rows if not protected], [u for u, protected in rows if protected]


def purge_study(rest: OrthancHttp, conn, study_uid: str, *, dry_run: bool = False) -> tuple[int, int, int]:
    """Delete the unselected instances of one study; returns (deleted, bytes, kept)."""
    facts = OrthancFacts(rest)
    ids = facts.study_ids(study_uid)
    series = [s for orthanc_id in ids for s in facts.series(orthanc_id)]
    keep = {s.instance.sop_instance_uid for s in select_study(series, facts.details)}
    with conn.cursor() as cur:
        cur.execute(
            "SELECT sop_instance_uid FROM rpacs.forwarded_instance WHERE study_instance_uid = %s AND status = 'sent'",
            (study_uid,),
        )
        keep |= {r[0] for r in cur.fetchall()}
    deleted = size_total = kept = 0
    for s in series:
        for instance in s.instances:
            if instance.sop_instance_uid in keep:
                kept += 1
                continue
            size = facts.instance_size(instance.instance_id)
            if not dry_run:
                rest.delete(f"/instances/{instance.instance_id}")
                with conn.cursor() as cur:
                    cur.execute(
                        """INSERT INTO rpacs.deletion_log (study_instance_uid, series_instance_uid, sop_instance_uid,
                                  orthanc_id, bytes, reason) VALUES (%s, %s, %s, %s, %s, %s)""",
                        (
                            study_uid,
                            s.series_instance_uid,
                            instance.sop_instance_uid,
                            instance.instance_id,
                            size,
                            "auto_delete: not selected for the dose PACS",
                        ),
                    )
                conn.commit()
            deleted += 1
            size_total += size or 0
    if not dry_run:
        with conn.cursor() as cur:
            cur.execute(
                "UPDATE rpacs.forward_study SET purged_at = now(), updated_at = now() WHERE study_instance_uid = %s",
                (study_uid,),
            )
        conn.commit()
    return deleted, size_total, kept


def purge(
    cfg: Config,
    rest: OrthancHttp,
    conn,
    *,
    retention_days: int | None = None,
    now: datetime | None = None,
    dry_run: bool = False,
) -> PurgeResult:
    """Purge every due, unprotected study."""
    days = cfg.retrieve.transfer.retention_days if retention_days is None else retention_days
    due, protected = candidates(conn, days, now or datetime.now())
    result = PurgeResult(skipped_protected=protected, dry_run=dry_run)
    for uid in due:
        try:
            deleted, size, kept = purge_study(rest, conn, uid, dry_run=dry_run)
        except PacsError as exc:
            log.warning("auto_delete of %s failed (retried next run): %s", uid, exc)
            continue
        result.studies.append(uid)
        result.deleted_instances += deleted
        result.deleted_bytes += size
        result.kept_instances += kept
    return result


def schedule(conn, first_run_in: timedelta = timedelta(hours=1)) -> None:
    """Make sure the daily `forward_purge` job exists (the plugin calls this at start under auto_delete); a new
    one first runs `first_run_in` after start, not while the start-up forwarding is still going on."""
    with conn.cursor() as cur:
        cur.execute(
            """INSERT INTO jobs.queue (kind, key, payload, max_attempts, not_before)
               VALUES (%s, %s, '{}'::jsonb, 1000, now() + make_interval(secs => %s))
               ON CONFLICT (kind, key) DO NOTHING""",
            (KIND, JOB_KEY, first_run_in.total_seconds()),
        )
    conn.commit()


class PurgeJob:
    """The daily job: purge, then put itself back for tomorrow (a deferral uses no attempt)."""

    def __init__(self, cfg: Config, rest: OrthancHttp):
        self.cfg = cfg
        self.rest = rest
        self._lock = threading.Lock()

    def __call__(self, job: queue.Job) -> None:
        with self._lock, contextlib.closing(connect(self.cfg)) as conn:
            result = purge(self.cfg, self.rest, conn)
        from nmdose.audit import record_action

        record_action(self.cfg, "auto_delete purge", study_uids=result.studies, rows=result.deleted_instances, detail={"deleted_bytes": result.deleted_bytes, "kept_instances": result.kept_instances, "protected_skipped": len(result.skipped_protected)}, source="plugin")  # fmt: skip
        if result.studies:
            log.warning(
                "auto_delete: %d instances (%.1f MB) deleted from %d studies",
                result.deleted_instances,
                result.deleted_bytes / 1e6,
                len(result.studies),
            )
        raise Deferred(datetime.now().astimezone() + INTERVAL, "next auto_delete run")
