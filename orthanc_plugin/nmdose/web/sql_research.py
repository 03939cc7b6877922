"""SQL of the research page (`/nmdose/api/research/...`): studies per year, modality corrections, failed
retrievals, forwarding not complete. Values are bound parameters (web/sql_common.py)."""

from __future__ import annotations

from typing import Any

from psycopg2 import sql

from nmdose.web.sql_common import Rows, Where, rows

# The state shown comes from the study's retrieval (rpacs.study.retrieval_state mirrors rpacs.retrieval.state;
# NULL: not queued yet). Tally groups whose corrected-or-found modality sets print alike merge into one row.
YEARLY = """
SELECT study_year AS year, description,
       array_to_string(coalesce(modalities_corrected, modalities_found), '\\') AS modalities,
       CASE WHEN NOT is_target THEN 'not_target'
            WHEN retrieval_state = 'done' THEN 'retrieved'
            WHEN retrieval_state IN ('failed', 'partial') THEN 'failed'
            ELSE 'pending' END AS state, sum(studies)::int AS studies
  FROM rpacs.study_tally {where}
 GROUP BY 1, 2, 3, 4 HAVING sum(studies) <> 0 ORDER BY 1, 2, 3, 4"""

# The grid's cells: one row per description x modality set x year with its studies per retrieval state, from the
# same tally (a few thousand groups for a million studies); pivoted in Python (research_grid).
GRID = """
SELECT description, array_to_string(coalesce(modalities_corrected, modalities_found), '\\') AS modalities,
       study_year AS year, sum(studies)::int AS studies,
       coalesce(sum(studies) FILTER (WHERE is_target AND retrieval_state = 'done'), 0)::int AS retrieved,
       coalesce(sum(studies) FILTER (WHERE is_target AND retrieval_state IN ('failed', 'partial')), 0)::int
           AS failed,
       coalesce(sum(studies) FILTER (WHERE NOT is_target), 0)::int AS not_target
  FROM rpacs.study_tally {where}
 GROUP BY 1, 2, 3 HAVING sum(studies) <> 0"""
STATES = ("retrieved", "pending", "failed", "not_target")

CORRECTIONS = """
SELECT description, array_to_string(modalities_found, '\\') AS modalities_found,
       array_to_string(modalities_corrected, '\\') AS modalities_corrected, correction_reason,
       count(*)::int AS studies, min(study_date) AS first_date, max(study_date) AS last_date
  FROM rpacs.study WHERE modalities_corrected IS NOT NULL
 GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4"""

FAILED = """
SELECT r.study_instance_uid, s.study_date, s.description, s.patient_id, r.state, r.attempts,
       r.last_error, r.log_path, r.updated_at
  FROM rpacs.retrieval r LEFT JOIN rpacs.study s ON s.study_uid = r.study_instance_uid
 WHERE r.state IN ('failed', 'partial') ORDER BY r.updated_at DESC LIMIT %s"""


def research_yearly(conn, f: dict[str, Any]) -> Rows:
    """Studies per year x description x modality set (corrected when corrected) x retrieval state, summed from
    the tally `rpacs.study_tally` (sql/007_web.sql) instead of counting rpacs.study joined to rpacs.retrieval."""
    where = _years(f)
    return rows(conn, sql.SQL(YEARLY).format(where=where.sql()), where.params)


def _years(f: dict[str, Any]) -> Where:
    where = Where()
    if "from_year" in f:
        where.add("study_year >= %s", f["from_year"])
    if "to_year" in f:
        where.add("study_year <= %s", f["to_year"])
    return where


def research_grid(conn, f: dict[str, Any]) -> dict[str, Any]:
    """Studies per description x modality set (rows) and year (columns: every year from the first to the last
    found, or the filter's range; studies without a StudyDate in `no_date`), each cell split by retrieval
    state, with row and column totals; rows by total, descending. Returns {"years", "rows", "totals"}: a row is
    {"description", "modalities", "cells": {year: cell}, "no_date": cell, "total": cell}, a cell
    {"studies", "retrieved", "pending", "failed", "not_target"}."""
    where = _years(f)
    got = rows(conn, sql.SQL(GRID).format(where=where.sql()), where.params)
    found = [r["year"] for r in got if r["year"] is not None]
    first = f.get("from_year", min(found, default=None))
    last = f.get("to_year", max(found, default=None))
    if found:
        first, last = min(first, min(found)), max(last, max(found))
    years = list(range(first, last + 1)) if first is not None and last is not None and found else []

    def cell() -> dict[str, int]:
        return dict.fromkeys(("studies", *STATES), 0)

    def add(c: dict[str, int], r: dict[str, Any]) -> None:
        c["studies"] += r["studies"]
        c["retrieved"] += r["retrieved"]
        c["failed"] += r["failed"]
        c["not_target"] += r["not_target"]
        c["pending"] = c["studies"] - c["retrieved"] - c["failed"] - c["not_target"]

    by: dict[tuple[str, str], dict[str, Any]] = {}
    totals = {"cells": {y: cell() for y in years}, "no_date": cell(), "total": cell()}
    for r in got:
        row = by.setdefault(
            (r["description"], r["modalities"]),
            {"description": r["description"], "modalities": r["modalities"],
             "cells": {y: cell() for y in years}, "no_date": cell(), "total": cell()},
        )  # fmt: skip
        for target in (row, totals):
            add(target["cells"][r["year"]] if r["year"] is not None else target["no_date"], r)
            add(target["total"], r)
    ordered = sorted(by.values(), key=lambda r: (-r["total"]["studies"], r["description"], r["modalities"]))
    return {"years": years, "rows": ordered, "totals": totals}


def grid_table(grid: dict[str, Any]) -> Rows:
    """The grid as flat rows for CSV/XLSX: description, modalities, one column per year (studies), no date
    (when any), total, retrieved; a last row `(total)`."""
    show_no_date = grid["totals"]["no_date"]["studies"] > 0

    def flat(description: str, modalities: str, r: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {"description": description, "modalities": modalities}
        out.update({str(y): r["cells"][y]["studies"] for y in grid["years"]})
        if show_no_date:
            out["no_date"] = r["no_date"]["studies"]
        out["total"] = r["total"]["studies"]
        out["retrieved"] = r["total"]["retrieved"]
        return out

    table = [flat(r["description"], r["modalities"], r) for r in grid["rows"]]
    return [*table, flat("(total)", "", grid["totals"])]


def research_corrections(conn) -> Rows:
    """Modality corrections per description: found set -> corrected set, the reason as stored (the census's
    text) and read back (`reason`: code and values, census.modalities.explain_reason), how many studies."""
    from nmdose.census.modalities import explain_reason

    got = rows(conn, CORRECTIONS)
    for r in got:
        r["reason"] = explain_reason(r["correction_reason"])
    return got


def research_failed(conn, limit: int) -> Rows:
    """Failed or partial retrievals with their last error and log, newest first."""
    return rows(conn, FAILED, (limit,))


def research_forward_incomplete(conn, limit: int) -> Rows:
    """Studies whose forwarded set to the dose PACS is incomplete, stuck ones first, with the reason
    (nmdose.forward.runner.pending; `nmdose forward pending` lists the same)."""
    from nmdose.forward.runner import pending

    return [{k: v for k, v in row.items() if k != "category"} for row in pending(conn, limit)]
