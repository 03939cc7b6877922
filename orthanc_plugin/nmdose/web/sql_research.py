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
    where = Where()
    if "from_year" in f:
        where.add("study_year >= %s", f["from_year"])
    if "to_year" in f:
        where.add("study_year <= %s", f["to_year"])
    return rows(conn, sql.SQL(YEARLY).format(where=where.sql()), where.params)


def research_corrections(conn) -> Rows:
    """Modality corrections per description: found set -> corrected set, the reason, how many studies."""
    return rows(conn, CORRECTIONS)


def research_failed(conn, limit: int) -> Rows:
    """Failed or partial retrievals with their last error and log, newest first."""
    return rows(conn, FAILED, (limit,))


def research_forward_incomplete(conn, limit: int) -> Rows:
    """Studies whose forwarded set to the dose PACS is incomplete, stuck ones first, with the reason
    (nmdose.forward.runner.pending; `nmdose forward pending` lists the same)."""
    from nmdose.forward.runner import pending

    return [{k: v for k, v in row.items() if k != "category"} for row in pending(conn, limit)]
