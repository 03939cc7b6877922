"""SQL of the patient cumulative dose API (web/routes_patients.py; issue 16 item 4).

A patient is the keyed pseudonym of its PatientID (`dose.study.patient_pseudonym`, sql/014): the dose schema holds
no PatientID. Each study counts with its total effective dose as the dose page has it (`dose.study`'s CT + NM
total, with each study's own coefficients; none when a part is unknown, and none when the NM part of a PET/NM
study is missing: `sql_dose.NM_PART_MISSING`). A study without a total is counted and flagged, never taken as 0.

The window is rolling: for each study of a patient, the sum over the studies of the `years` before it (the study's
own date included, the date `years` earlier excluded); a patient's cumulative dose is the largest of these sums,
with the window that gave it. Every value is bound; the only composed parts are fixed fragments.
"""

from __future__ import annotations

from typing import Any

from psycopg2 import sql

from nmdose.web.sql_common import Rows, rows
from nmdose.web.sql_dose import NM_PART_MISSING

# one row per study of a keyed patient: its date and total (NULL: unknown, or the NM part missing)
_STUDIES = """
SELECT s.patient_pseudonym AS pseudonym, s.study_instance_uid, s.study_date, s.study_description,
       s.ct_effective_dose_msv, s.nm_effective_dose_msv, {nm_part_missing} AS nm_part_missing,
       CASE WHEN {nm_part_missing} THEN NULL ELSE s.total_effective_dose_msv END AS total
  FROM dose.study s WHERE {where}"""

PATIENTS = sql.SQL(
    """
WITH st AS ("""
    + _STUDIES
    + """),
win AS (
  SELECT a.pseudonym, a.study_date AS window_end, min(b.study_date) AS window_start,
         coalesce(sum(b.total), 0) AS window_msv, count(*)::int AS window_studies,
         (count(*) FILTER (WHERE b.total IS NULL))::int AS window_studies_without_total
    FROM (SELECT DISTINCT pseudonym, study_date FROM st WHERE study_date IS NOT NULL) a  -- one window per day
    JOIN st b ON b.pseudonym = a.pseudonym AND b.study_date <= a.study_date
             AND b.study_date > a.study_date - make_interval(years => %(years)s)
   GROUP BY a.pseudonym, a.study_date),
best AS (
  SELECT DISTINCT ON (pseudonym) * FROM win ORDER BY pseudonym, window_msv DESC, window_end DESC),
per AS (
  SELECT pseudonym, count(*)::int AS studies,
         (count(*) FILTER (WHERE total IS NULL))::int AS studies_without_total,
         (count(*) FILTER (WHERE study_date IS NULL))::int AS studies_without_date,
         coalesce(sum(total), 0) AS all_time_msv, min(study_date) AS first_study, max(study_date) AS last_study
    FROM st GROUP BY pseudonym)
SELECT p.pseudonym, p.studies, p.studies_without_total, p.studies_without_date, p.first_study, p.last_study,
       b.window_msv AS cumulative_msv, b.window_start, b.window_end, b.window_studies,
       b.window_studies_without_total, b.window_studies_without_total > 0 AS incomplete,
       p.all_time_msv, count(*) OVER ()::int AS total
  FROM best b JOIN per p USING (pseudonym)
 WHERE b.window_msv >= %(threshold)s
 ORDER BY b.window_msv DESC, p.pseudonym
 LIMIT %(limit)s"""
).format(nm_part_missing=sql.SQL(NM_PART_MISSING), where=sql.SQL("s.patient_pseudonym IS NOT NULL"))

WITHOUT_KEY = "SELECT count(*)::int FROM dose.study WHERE patient_pseudonym IS NULL"

TIMELINE = sql.SQL(
    """
WITH st AS ("""
    + _STUDIES
    + """)
SELECT a.study_instance_uid, a.study_date, a.study_description,
       array_to_string(ARRAY(
           SELECT m FROM (
               SELECT 'CT' AS m FROM dose.study c
                WHERE c.study_instance_uid = a.study_instance_uid
                  AND (c.ct_event_count > 0 OR c.ct_source_kind IS NOT NULL)
               UNION SELECT sp.modality FROM dose.series_protocol sp
                WHERE sp.study_instance_uid = a.study_instance_uid AND sp.modality IN ('PT', 'NM')
               UNION SELECT o.modality FROM dose.object o
                WHERE o.study_instance_uid = a.study_instance_uid AND o.modality IN ('PT', 'NM')) mods
            ORDER BY m), '/') AS modality,
       a.ct_effective_dose_msv AS ct_msv, a.nm_effective_dose_msv AS nm_msv, a.total AS total_msv,
       a.total IS NULL AS total_unknown, a.nm_part_missing,
       sum(a.total) OVER (ORDER BY a.study_date NULLS LAST, a.study_instance_uid
                          ROWS UNBOUNDED PRECEDING) AS running_msv,
       (SELECT coalesce(sum(b.total), 0) FROM st b
         WHERE b.study_date <= a.study_date
           AND b.study_date > a.study_date - make_interval(years => %(years)s)) AS window_msv
  FROM st a
 ORDER BY a.study_date NULLS LAST, a.study_instance_uid"""
).format(nm_part_missing=sql.SQL(NM_PART_MISSING), where=sql.SQL("s.patient_pseudonym = %(pseudonym)s"))

IDENTITY = """
SELECT d.study_instance_uid, d.study_date, nullif(r.patient_id, '') AS patient_id, r.study_uid IS NOT NULL AS in_census
  FROM dose.study d LEFT JOIN rpacs.study r ON r.study_uid = d.study_instance_uid
 WHERE d.patient_pseudonym = %s
 ORDER BY d.study_date NULLS LAST, d.study_instance_uid"""


def patients(conn, years: int, threshold_msv: float, limit: int) -> tuple[Rows, dict[str, Any]]:
    """Patients whose largest rolling-window sum reaches `threshold_msv`, highest first, and the counts beside
    them: how many patients matched in all (`total`) and how many studies have no patient key."""
    got = rows(conn, PATIENTS, {"years": years, "threshold": threshold_msv, "limit": limit})
    total = got[0]["total"] if got else 0
    for r in got:
        del r["total"]
    without_key = rows(conn, WITHOUT_KEY)[0]["count"]
    return got, {"total": total, "studies_without_patient_key": without_key}


def timeline(conn, pseudonym: str, years: int) -> Rows:
    """One patient's studies, oldest first: CT, NM and total effective dose, the running sum and the sum of the
    rolling window ending at each study."""
    return rows(conn, TIMELINE, {"pseudonym": pseudonym, "years": years})


def identity(conn, pseudonym: str) -> Rows:
    """The research PACS census's PatientID of each study of the pseudonym (None when the census lacks it)."""
    return rows(conn, IDENTITY, (pseudonym,))
