"""The scanners page's SQL (`/nmdose/api/scanners...`, docs/dose.md "Scanners"): the scanner list with its study
counts, renaming and merging (through the SECURITY DEFINER functions of sql/016_scanners.sql: the web role writes
no dose table itself), and "side by side": one measure's statistics per scanner under the dose filters.

A scanner merged into another counts for that one: its group is `coalesce(merged_into, scanner_id)`, shown under
the display name of the scanner it was merged into. Values are always bound parameters.
"""

from __future__ import annotations

from typing import Any

import psycopg2
from psycopg2 import sql

from nmdose.web.sql_common import (
    ADMINISTRATIONS,
    EVENTS,
    NOT_LOCALIZER,
    STUDIES,
    Rows,
    dose_where,
    rows,
)

LIST = """
SELECT sc.scanner_id, sc.display_name, sc.manufacturer, sc.model_name, sc.device_serial_number,
       sc.device_observer_uid, sc.device_observer_uids, sc.station_names, sc.software_versions,
       sc.merged_into, m.display_name AS merged_into_name, sc.renamed_by,
       coalesce(c.studies, 0)::int AS studies, c.first_study, c.last_study
  FROM dose.scanner sc
  LEFT JOIN dose.scanner m ON m.scanner_id = sc.merged_into
  LEFT JOIN (SELECT scanner_id, count(*) AS studies, min(study_date) AS first_study, max(study_date) AS last_study
               FROM dose.study WHERE scanner_id IS NOT NULL GROUP BY scanner_id) c
         ON c.scanner_id = sc.scanner_id
 ORDER BY coalesce(sc.merged_into, sc.scanner_id), sc.merged_into NULLS FIRST, sc.scanner_id"""


def _names(seen: dict[str, Any] | None) -> list[dict[str, Any]]:
    """{name: {first, last}} as a list, oldest first."""
    return sorted(
        ({"name": k, "first": v.get("first"), "last": v.get("last")} for k, v in (seen or {}).items()),
        key=lambda r: (r["first"] or "", r["name"]),
    )


def scanners(conn) -> Rows:
    """Every scanner with its own study counts (`studies`, first and last study date) and its group's
    (`group_studies`: with the scanners merged into it; 0 for a merged one), the station names and software
    versions seen with their first and last study date."""
    got = rows(conn, LIST)
    totals: dict[int, int] = {}
    for r in got:
        group = r["merged_into"] or r["scanner_id"]
        totals[group] = totals.get(group, 0) + r["studies"]
    for r in got:
        r["group_studies"] = 0 if r["merged_into"] else totals.get(r["scanner_id"], 0)
        r["station_names"] = _names(r["station_names"])
        r["software_versions"] = _names(r["software_versions"])
        r["names_seen"] = [n["name"] for n in r["station_names"]]
    return got


class Refused(Exception):
    """A merge the database refused (a cycle): the message says why."""


def rename(conn, scanner_id: int, name: str, by: str | None) -> bool:
    """Set a scanner's display name; False when there is no such scanner. Commits."""
    with conn, conn.cursor() as cur:
        cur.execute("SELECT dose.scanner_rename(%s, %s, %s)", (scanner_id, name, by))
        return cur.fetchone()[0] > 0


def merge(conn, scanner_id: int, into: int | None) -> bool:
    """Merge a scanner into another (`into` None: undo its merge); False when either is unknown. Commits."""
    try:
        with conn, conn.cursor() as cur:
            if into is not None:
                cur.execute("SELECT count(*) FROM dose.scanner WHERE scanner_id = %s", (into,))
                if cur.fetchone()[0] == 0:
                    return False
            cur.execute("SELECT dose.scanner_merge(%s, %s)", (scanner_id, into))
            return cur.fetchone()[0] > 0
    except psycopg2.errors.InvalidParameterValue as exc:
        raise Refused(str(exc.diag.message_primary or exc).strip()) from None


# measure -> (records, column); CT: one value per irradiation event (localizers left out), or per study (its mean
# CTDIvol, its total DLP: the examination a DRL is about); activity: one per administration, as the dose page's
# box plots
MEASURES: dict[str, tuple[str, str]] = {
    "ctdivol": ("ct", "ctdivol_mgy"),
    "dlp": ("ct", "dlp_mgycm"),
    "ctdivol_study": ("study", "ct_mean_ctdivol_mgy"),
    "dlp_study": ("study", "ct_total_dlp_mgycm"),
    "activity": ("nm", "activity_mbq"),
    "per_kg": ("nm", "activity_per_kg_mbq"),
}

SIDE_BY_SIDE = """
WITH v AS MATERIALIZED (
    SELECT coalesce(sc.merged_into, sc.scanner_id) AS sid, r.x
      FROM (SELECT {r}.study_instance_uid, {value} AS x FROM {table} {where}) r
      JOIN dose.study st ON st.study_instance_uid = r.study_instance_uid
      JOIN dose.scanner sc ON sc.scanner_id = st.scanner_id
     WHERE r.x IS NOT NULL),
q AS (SELECT sid, count(*)::int AS n, count(DISTINCT x)::int AS distinct_values, min(x) AS min,
             percentile_cont(0.25) WITHIN GROUP (ORDER BY x) AS q1,
             percentile_cont(0.5) WITHIN GROUP (ORDER BY x) AS median,
             percentile_cont(0.75) WITHIN GROUP (ORDER BY x) AS q3,
             percentile_cont(0.95) WITHIN GROUP (ORDER BY x) AS p95,
             avg(x) AS mean, max(x) AS max
        FROM v GROUP BY sid),
w AS (SELECT v.sid, min(v.x) FILTER (WHERE v.x >= f.lo) AS whisker_low,
             max(v.x) FILTER (WHERE v.x <= f.hi) AS whisker_high,
             (count(*) FILTER (WHERE v.x < f.lo OR v.x > f.hi))::int AS outside
        FROM v JOIN (SELECT sid, q1 - 1.5 * (q3 - q1) AS lo, q3 + 1.5 * (q3 - q1) AS hi FROM q) f USING (sid)
       GROUP BY v.sid)
SELECT q.sid AS scanner_id, g.display_name AS scanner, g.manufacturer, g.model_name, q.n, q.min, q.q1,
       q.median, q.q3, q.p95, q.mean, q.max, w.whisker_low, w.whisker_high, w.outside, '[]'::jsonb AS levels
  FROM q JOIN w USING (sid) JOIN dose.scanner g ON g.scanner_id = q.sid
 ORDER BY g.display_name, q.sid"""


def side_by_side(conn, f: dict[str, Any], measure: str) -> Rows:
    """Box-plot statistics (quartiles, Tukey whiskers, count outside) with the mean and 95th percentile of one
    measure per scanner group, under the dose filters `f` (a protocol, description or agent chooses the exam).
    Studies of no known scanner are left out."""
    kind, column = MEASURES[measure]
    if kind == "ct":
        w = dose_where(f, EVENTS).add(NOT_LOCALIZER)
        table, alias = "dose.ct_event e", "e"
    elif kind == "study":
        w = dose_where(f, STUDIES).add("s.ct_event_count > 0")
        table, alias = "dose.study s", "s"
    else:
        w = dose_where(f, ADMINISTRATIONS)
        table, alias = "dose.radiopharmaceutical a", "a"
    query = sql.SQL(SIDE_BY_SIDE).format(
        r=sql.Identifier(alias),
        value=sql.Identifier(alias, column),
        table=sql.SQL(table),
        where=w.sql(),
    )
    return rows(conn, query, w.params)
