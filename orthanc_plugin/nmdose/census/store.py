"""`rpacs.study`: one row per StudyInstanceUID. Upserts are idempotent; a change on the PACS is recorded in
`rpacs.study_change` with the old and new values."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from datetime import date
from typing import Any

from psycopg2.extras import Json, execute_values

from nmdose.census import modalities as M
from nmdose.census.ranges import parse_date
from nmdose.config import ModalityRule
from nmdose.db import lock_study_writes

log = logging.getLogger("nmdose.census")
# One line per study goes to census.log only (runner.attach_log_file), not to the console or Orthanc's log.
study_log = logging.getLogger("nmdose.census.studies")
study_log.propagate = False

# Columns that mirror the PACS (compared on every census; a difference is a recorded change).
DATA_COLUMNS = (
    "study_date",
    "study_time",
    "description",
    "modalities_found",
    "accession_number",
    "patient_id",
    "series_count",
    "instance_count",
)


def _int(value: str) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _date(value: str) -> date | None:
    try:
        return parse_date(value) if value else None
    except ValueError:
        return None


def to_row(answer: dict[str, str]) -> dict[str, Any]:
    """A C-FIND answer as `rpacs.study` data columns."""
    return {
        "study_uid": answer["StudyInstanceUID"],
        "study_date": _date(answer.get("StudyDate", "")),
        "study_time": answer.get("StudyTime", ""),
        "description": answer.get("StudyDescription", ""),
        "modalities_found": M.split_modalities(answer.get("ModalitiesInStudy")),
        "accession_number": answer.get("AccessionNumber", ""),
        "patient_id": answer.get("PatientID", ""),
        "series_count": _int(answer.get("NumberOfStudyRelatedSeries", "")),
        "instance_count": _int(answer.get("NumberOfStudyRelatedInstances", "")),
    }


def upsert(conn, rows: Iterable[dict[str, Any]], *, source_node: str, run_id: int) -> tuple[int, int]:
    """Insert new studies, update and record changed ones, touch the others. Returns (new, changed).
    The caller commits."""
    by_uid = {r["study_uid"]: r for r in rows if r.get("study_uid")}
    if not by_uid:
        return 0, 0
    lock_study_writes(conn)
    cols = ", ".join(DATA_COLUMNS)
    with conn.cursor() as cur:
        cur.execute(f"SELECT study_uid, {cols} FROM rpacs.study WHERE study_uid = ANY(%s)", (list(by_uid),))
        existing = {r[0]: dict(zip(DATA_COLUMNS, r[1:], strict=True)) for r in cur.fetchall()}
        new = [r for uid, r in by_uid.items() if uid not in existing]
        changed: list[tuple[dict[str, Any], dict[str, Any]]] = []
        for uid, row in by_uid.items():
            old = existing.get(uid)
            if old is None:
                continue
            diff = {c: [_j(old[c]), _j(row[c])] for c in DATA_COLUMNS if old[c] != row[c]}
            if diff:
                changed.append((row, diff))
        if new:
            execute_values(
                cur,
                f"""INSERT INTO rpacs.study (study_uid, source_node, {cols}, first_run_id, last_run_id)
                    VALUES %s ON CONFLICT (study_uid) DO NOTHING""",
                [(r["study_uid"], source_node, *(r[c] for c in DATA_COLUMNS), run_id, run_id) for r in new],
            )
            for r in new:
                study_log.info(
                    "new study %s %s %s", r["study_uid"], r["study_date"], M.fmt(r["modalities_found"])
                )
        for row, diff in changed:
            sets = ", ".join(f"{c} = %s" for c in DATA_COLUMNS)
            cur.execute(
                f"UPDATE rpacs.study SET {sets}, last_changed = now() WHERE study_uid = %s",
                (*(row[c] for c in DATA_COLUMNS), row["study_uid"]),
            )
            cur.execute(
                """INSERT INTO rpacs.study_change (study_uid, run_id, changes) VALUES (%s, %s, %s)
                   ON CONFLICT (study_uid, run_id) DO UPDATE SET changes = rpacs.study_change.changes || EXCLUDED.changes""",
                (row["study_uid"], run_id, Json(diff)),
            )
            study_log.info("changed on the PACS: study %s %s", row["study_uid"], ", ".join(sorted(diff)))
        cur.execute(
            "UPDATE rpacs.study SET last_seen = now(), last_run_id = %s WHERE study_uid = ANY(%s)",
            (run_id, list(by_uid)),
        )
    return len(new), len(changed)


def _j(value: Any) -> Any:
    return value.isoformat() if isinstance(value, date) else value


def apply_corrections(conn, source_node: str, rules: Sequence[ModalityRule]) -> int:
    """Recompute the expected modalities of every description and store corrected sets and reasons.
    Returns the number of studies that now carry a correction. The caller commits."""
    with conn.cursor() as cur:
        cur.execute(
            """SELECT study_uid, description, modalities_found, modalities_corrected, correction_reason
                 FROM rpacs.study WHERE source_node = %s""",
            (source_node,),
        )
        rows = cur.fetchall()
        exps = M.expectations(((r[1], r[2]) for r in rows), rules)
        updates = []
        corrected = 0
        for uid, description, found, old_corrected, old_reason in rows:
            new_corrected, reason = M.correction(found, exps[description])
            corrected += new_corrected is not None
            if new_corrected != old_corrected or reason != old_reason:
                updates.append((new_corrected, reason, uid))
                if new_corrected is not None:
                    study_log.info(
                        "corrected study %s: %s -> %s (%s)", uid, M.fmt(found), M.fmt(new_corrected), reason
                    )
        if updates:
            lock_study_writes(conn)
            execute_values(
                cur,
                """UPDATE rpacs.study s SET modalities_corrected = v.c::text[], correction_reason = v.r
                     FROM (VALUES %s) AS v(c, r, uid) WHERE s.study_uid = v.uid""",
                updates,
            )
    return corrected


def set_targets(conn, targets: Iterable[str]) -> int:
    """Mark studies whose description is a target (and unmark the others). Returns rows changed."""
    lock_study_writes(conn)
    with conn.cursor() as cur:
        cur.execute(
            """UPDATE rpacs.study SET is_target = (description = ANY(%s))
                WHERE is_target IS DISTINCT FROM (description = ANY(%s))""",
            (list(targets), list(targets)),
        )
        return cur.rowcount


def snapshot(conn, source_node: str | None = None) -> dict[str, tuple]:
    """study_uid -> data columns + correction + target flag (for comparing runs)."""
    with conn.cursor() as cur:
        cur.execute(
            f"""SELECT study_uid, source_node, {", ".join(DATA_COLUMNS)}, modalities_corrected, correction_reason,
                       is_target FROM rpacs.study WHERE %s::text IS NULL OR source_node = %s ORDER BY study_uid""",
            (source_node, source_node),
        )
        return {r[0]: tuple(r[1:]) for r in cur.fetchall()}
