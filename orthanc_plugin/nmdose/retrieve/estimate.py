"""How long the retrieval of what is left will take: the pending studies projected at the throughput measured so far.

Pending: the census's target studies of the source PACS not queued yet, and the queued retrievals not done yet
(`pending`, `moving`, `verifying`, `partial`; `failed` ones wait for `retrieve retry` and are only counted). Each
falls in a size class by its instance count (the census's `NumberOfStudyRelatedInstances`, else the retrieval's
expected count).

Measured: the last `sample` studies this installation actually moved (a `done` event; studies found already
complete are left out), per size class the mean time from the start of their retrieval to its end; those times
overlap (several studies move at once, others are verified meanwhile), so they are scaled by the measured
parallelism: the sum of the studies' times over the wall time during which any of them ran. A class measured by
no study yet takes the seconds per instance of all the measured studies. The wall time of each class is then
laid onto the calendar through the retrieval time window (when the source node uses it): the estimate says
when the backfill ends, not only how many hours of retrieval it needs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from nmdose.config import Config
from nmdose.retrieve.window import in_window

# Size classes by instances per study: static NM / thyroid / bone scans, SPECT and small CT, whole PET-CT.
CLASSES: tuple[tuple[str, int | None], ...] = (("small", 50), ("medium", 500), ("large", None))
UNKNOWN = "unknown"  # no instance count known: projected at the mean study
SAMPLE = 1000
STEP = timedelta(minutes=15)
HORIZON = timedelta(days=3 * 366)  # a window that leaves less than this is reported as beyond it


def size_class(instances: int | None) -> str:
    if instances is None:
        return UNKNOWN
    for name, below in CLASSES:
        if below is None or instances < below:
            return name
    return CLASSES[-1][0]


@dataclass
class ClassEstimate:
    size_class: str
    pending_studies: int = 0
    pending_instances: int = 0
    measured_studies: int = 0
    seconds_per_study: float | None = None  # wall seconds per study at the measured parallelism
    seconds: float | None = None  # wall seconds of retrieval for this class's pending studies


def _pending(conn, source_node: str) -> tuple[dict[str, ClassEstimate], int]:
    classes = {name: ClassEstimate(name) for name, _ in CLASSES} | {UNKNOWN: ClassEstimate(UNKNOWN)}
    rows: list[tuple[int | None, int]] = []
    with conn.cursor() as cur:
        cur.execute("SELECT to_regclass('rpacs.study') IS NOT NULL")
        if cur.fetchone()[0]:
            cur.execute(
                """SELECT s.instance_count, count(*) FROM rpacs.study s
                    WHERE s.is_target AND s.source_node = %s
                      AND NOT EXISTS (SELECT 1 FROM rpacs.retrieval r WHERE r.study_instance_uid = s.study_uid)
                    GROUP BY 1""",
                (source_node,),
            )
            rows += cur.fetchall()
        cur.execute(
            """SELECT r.expected_instances, count(*) FROM rpacs.retrieval r
                WHERE r.state IN ('pending', 'moving', 'verifying', 'partial') GROUP BY 1"""
        )
        rows += cur.fetchall()
        cur.execute("SELECT count(*) FROM rpacs.retrieval WHERE state = 'failed'")
        failed = cur.fetchone()[0]
    conn.commit()
    for instances, n in rows:
        c = classes[size_class(instances)]
        c.pending_studies += n
        c.pending_instances += (instances or 0) * n
    return classes, failed


def _measured(conn, sample: int) -> list[tuple[int, datetime, datetime]]:
    """(instances, started, finished) of the last `sample` studies that were moved (not found complete)."""
    with conn.cursor() as cur:
        cur.execute(
            """SELECT r.received_instances, r.started_at, r.finished_at FROM rpacs.retrieval r
                WHERE r.state = 'done' AND r.started_at IS NOT NULL AND r.finished_at > r.started_at
                  AND r.received_instances > 0
                  AND EXISTS (SELECT 1 FROM rpacs.retrieval_event e
                               WHERE e.study_instance_uid = r.study_instance_uid AND e.step = 'done')
                ORDER BY r.finished_at DESC LIMIT %s""",
            (sample,),
        )
        rows = cur.fetchall()
    conn.commit()
    return rows


def _union_seconds(intervals: list[tuple[datetime, datetime]]) -> float:
    total, end = 0.0, None
    for a, b in sorted(intervals):
        if end is None or a > end:
            total += (b - a).total_seconds()
            end = b
        elif b > end:
            total += (b - end).total_seconds()
            end = b
    return total


def open_until(start: datetime, seconds: float, cfg: Config, *, use_window: bool) -> datetime | None:
    """When `seconds` of retrieval starting at `start` end, counting only time inside the window; None beyond
    the horizon (a window that hardly opens)."""
    if not use_window:
        return start + timedelta(seconds=seconds)
    t, left = start, seconds
    while left > 0:
        if t - start > HORIZON:
            return None
        if in_window(t, cfg.retrieve.time_window):
            step = min(STEP.total_seconds(), left)
            left -= step
            t += timedelta(seconds=step)
        else:
            t += STEP
    return t


def estimate(conn, cfg: Config, *, now: datetime | None = None, sample: int = SAMPLE) -> dict[str, Any]:
    """The backfill estimate (JSON-ready): per size class what is pending, what was measured, the projected wall
    seconds; the total, and when it ends through the time window."""
    now = now or datetime.now().astimezone()
    source = cfg.source_node
    classes, failed = _pending(conn, source.name)
    measured = _measured(conn, sample)
    busy = [(f - s).total_seconds() for _, s, f in measured]
    wall = _union_seconds([(s, f) for _, s, f in measured])
    parallelism = sum(busy) / wall if wall > 0 else None
    per_instance = (wall / sum(n for n, _, _ in measured)) if measured and wall > 0 else None
    per_study_all = wall / len(measured) if measured and wall > 0 else None
    for c in classes.values():
        times = [b for (n, _, _), b in zip(measured, busy, strict=True) if size_class(n) == c.size_class]
        c.measured_studies = len(times)
        if times and parallelism:
            c.seconds_per_study = sum(times) / len(times) / parallelism
        elif c.size_class != UNKNOWN and per_instance and c.pending_studies:
            c.seconds_per_study = per_instance * c.pending_instances / c.pending_studies
        elif per_study_all:
            c.seconds_per_study = per_study_all
        if c.seconds_per_study is not None:
            c.seconds = c.seconds_per_study * c.pending_studies
    pending = sum(c.pending_studies for c in classes.values())
    known = pending == 0 or all(c.seconds is not None for c in classes.values() if c.pending_studies)
    seconds = sum(c.seconds or 0.0 for c in classes.values()) if known else None
    use_window = source.use_time_window
    ends = open_until(now, seconds, cfg, use_window=use_window) if seconds is not None else None
    return {
        "source_node": source.name,
        "pending_studies": pending,
        "pending_instances": sum(c.pending_instances for c in classes.values()),
        "failed_studies": failed,
        "measured_studies": len(measured),
        "measured_since": min((s for _, s, _ in measured), default=None),
        "parallelism": round(parallelism, 2) if parallelism else None,
        "retrieval_seconds": round(seconds, 1) if seconds is not None else None,
        "time_window": (
            {"weekdays": cfg.retrieve.time_window.weekdays, "weekends": cfg.retrieve.time_window.weekends}
            if use_window
            else None
        ),
        "ends_at": ends,
        "by_class": [
            {
                **asdict(c),
                "seconds_per_study": round(c.seconds_per_study, 3)
                if c.seconds_per_study is not None
                else None,
                "seconds": round(c.seconds, 1) if c.seconds is not None else None,
            }
            for c in classes.values()
            if c.pending_studies or c.measured_studies
        ],
        "why_unknown": None
        if known
        else "no study has been moved yet: run `nmdose retrieve run` (the first studies give the throughput)",
    }


def describe(seconds: float | None) -> str:
    if seconds is None:
        return "unknown"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 3 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"
