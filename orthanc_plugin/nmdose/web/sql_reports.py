"""SQL of the physicist's report (`/nmdose/api/dose/report/...`, issue 19): the reference-level comparison per
group × scanner × year, trends per month / quarter / year, histograms, the workload by weekday and hour.

The reference levels are matched by the dose page's own SQL (web/sql_levels.py: LEVELS_CTE, the age-band buckets,
match_ctes and the EVENT / STUDY / ADMIN matches, through the record sets of the box plots in web/sql_dose.py), so
a level applies here exactly where it applies on the dose page's box plots and the outlier list. Values are bound
parameters; the statements differ only by fragments chosen by key from the fixed tables below.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from psycopg2 import sql

from nmdose.web.sql_common import (
    ADMINISTRATIONS,
    EVENTS,
    NOT_LOCALIZER,
    STUDIES,
    Records,
    Rows,
    dose_where,
    rows,
)
from nmdose.web.sql_dose import BOX_ADMINISTRATIONS, BOX_EVENTS, BOX_STUDIES, BoxRecords
from nmdose.web.sql_levels import AGE_BOUNDS_CTE, LEVELS_CTE, levels_json, match_ctes

# The scanner a row was made on, as the report names it: the display name of its dose.scanner (a scanner merged
# into another counts as that one, as on the scanners page, web/sql_scanners.py), else what the study says.
# `{a}`: the alias of a table carrying the study's fields.
SCANNER_LABEL = (
    "coalesce((SELECT sl_g.display_name FROM dose.study sl_st"
    " JOIN dose.scanner sl_sc ON sl_sc.scanner_id = sl_st.scanner_id"
    " JOIN dose.scanner sl_g ON sl_g.scanner_id = coalesce(sl_sc.merged_into, sl_sc.scanner_id)"
    " WHERE sl_st.study_instance_uid = {a}.study_instance_uid),"
    " {a}.station_name, {a}.manufacturer || ' ' || {a}.model_name, '')"
)

# Paediatric age bands as in the European guidelines on paediatric DRLs (EC Radiation Protection 185: 0-<1,
# 1-<5, 5-<10, 10-<15, 15-<18 years) and adults; min inclusive, max exclusive like the dose filters.
AGE_BANDS: tuple[tuple[str, float | None], ...] = (
    ("0-1", 1), ("1-5", 5), ("5-10", 10), ("10-15", 15), ("15-18", 18), ("adult", None),
)  # fmt: skip
UNKNOWN_AGE = "unknown"


def age_band_sql(age: str) -> str:
    """The age band of the age column `age` (a fixed column name of this module), `unknown` when NULL."""
    arms = " ".join(f"WHEN {age} < {hi:g} THEN '{name}'" for name, hi in AGE_BANDS if hi is not None)
    return f"CASE WHEN {age} IS NULL THEN '{UNKNOWN_AGE}' {arms} ELSE 'adult' END"


# The columns the level match reads, as web/sql_levels.py's record sets (`ev`, `st`, `ad`) name them -> the
# column of the table (`{a}`: its alias). The report reads the columns the box plots' record sets list, so a
# matching attribute added there is read here too.
MATCH_COLUMNS = {
    "protocol": "{a}.acquisition_protocol",
    "description": "{a}.study_description",
    "target_region": "{a}.target_region",
    "standard_name": "{a}.standard_name",
    "agent": "{a}.agent",
    "study_instance_uid": "{a}.study_instance_uid",
    "age": "{a}.patient_age_years",
}


@dataclass(frozen=True)
class Source:
    """One record set of the report: its table and alias (the dose filters' Records), the box-plot record set
    whose columns, match and candidate values it reuses, and the extra WHERE clause of the dose page's
    statistics."""

    table: str
    records: Records
    box: BoxRecords
    where: str = ""

    @property
    def match_columns(self) -> str:
        a = self.records.alias
        return ", ".join(f"{MATCH_COLUMNS[c].format(a=a)} AS {c}" for c in self.box.columns)


EVENT_SOURCE = Source(
    "dose.ct_event",
    EVENTS,
    BOX_EVENTS,
    NOT_LOCALIZER,  # a localizer has no statistics of its own (sql_dose.ct_protocols)
)
STUDY_SOURCE = Source("dose.study", STUDIES, BOX_STUDIES, "s.ct_event_count > 0")
ADMIN_SOURCE = Source("dose.radiopharmaceutical", ADMINISTRATIONS, BOX_ADMINISTRATIONS)

# measure -> (the levels' quantity, unit, {group -> (source, the value's column)}); the first group is the default.
# CT per protocol: one value per irradiation event; CT per description, standard name or age band: one value per
# examination (the mean CTDIvol of its events, its total DLP), as on the dose page's box plots.
MEASURES: dict[str, tuple[str, str, dict[str, tuple[Source, str]]]] = {
    "ctdivol": ("ctdivol_mgy", "mGy", {
        "protocol": (EVENT_SOURCE, "e.ctdivol_mgy"),
        "description": (STUDY_SOURCE, "s.ct_mean_ctdivol_mgy"),
        "standard_name": (STUDY_SOURCE, "s.ct_mean_ctdivol_mgy"),
        "age_band": (STUDY_SOURCE, "s.ct_mean_ctdivol_mgy"),
    }),
    "dlp": ("dlp_mgycm", "mGy·cm", {
        "description": (STUDY_SOURCE, "s.ct_total_dlp_mgycm"),
        "protocol": (EVENT_SOURCE, "e.dlp_mgycm"),
        "standard_name": (STUDY_SOURCE, "s.ct_total_dlp_mgycm"),
        "age_band": (STUDY_SOURCE, "s.ct_total_dlp_mgycm"),
    }),
    "activity": ("activity_mbq", "MBq", {
        "agent": (ADMIN_SOURCE, "a.activity_mbq"),
        "description": (ADMIN_SOURCE, "a.activity_mbq"),
        "standard_name": (ADMIN_SOURCE, "a.activity_mbq"),
        "age_band": (ADMIN_SOURCE, "a.activity_mbq"),
    }),
    "per_kg": ("activity_mbq_per_kg", "MBq/kg", {
        "agent": (ADMIN_SOURCE, "a.activity_per_kg_mbq"),
        "description": (ADMIN_SOURCE, "a.activity_per_kg_mbq"),
        "standard_name": (ADMIN_SOURCE, "a.activity_per_kg_mbq"),
        "age_band": (ADMIN_SOURCE, "a.activity_per_kg_mbq"),
    }),
}  # fmt: skip
GROUP_COLUMNS = {
    "protocol": "{a}.acquisition_protocol",
    "description": "{a}.study_description",
    "standard_name": "{a}.standard_name",  # the study's or administration's (migration 015)
    "agent": "{a}.agent",
}
ALL_GROUPS = ("protocol", "description", "standard_name", "agent", "age_band")


def groups_of(measure: str) -> tuple[str, ...]:
    """The groups a measure may be reported by, the default first."""
    return tuple(MEASURES[measure][2])


def _source(measure: str, group: str) -> tuple[Source, str]:
    groups = MEASURES[measure][2]
    if group not in groups:
        raise ValueError(f"group {group!r} is not one of {', '.join(groups)} for measure {measure}")
    return groups[group]


def _group_sql(group: str, alias: str) -> str:
    if group == "age_band":
        return age_band_sql(f"{alias}.patient_age_years")
    return f"coalesce({GROUP_COLUMNS[group].format(a=alias)}, '')"


RECORDS = """rec AS MATERIALIZED (SELECT {match_columns}, {grp} AS grp, {scanner} AS scanner,
                                    {a}.study_year AS year, {a}.study_date AS study_date, {value} AS x
                               FROM {table} {a} {where})"""


def records(f: dict[str, Any], measure: str, group: str) -> tuple[sql.Composable, list[Any], Source]:
    """The CTE `rec`: the filtered values of `measure` (`x`) with their group (`grp`), scanner, year, date and
    the columns the level match reads; rows without a value or a study date are left out."""
    source, value = _source(measure, group)
    a = source.records.alias
    w = dose_where(f, source.records)
    if source.where:
        w.add(source.where)
    w.add(f"{value} IS NOT NULL").add(f"{a}.study_date IS NOT NULL")
    cte = sql.SQL(RECORDS).format(
        match_columns=sql.SQL(source.match_columns),
        grp=sql.SQL(_group_sql(group, a)),
        scanner=sql.SQL(SCANNER_LABEL.format(a=a)),
        a=sql.Identifier(a),
        value=sql.SQL(value),
        table=sql.SQL(source.table),
        where=w.sql(),
    )
    return cte, w.params, source


# ----- the reference-level comparison ----------------------------------------------------------------------

# Per group × scanner × year: N, median, p75; the level that applies (to the most values of the row; an official
# level before a proposed one before an example) with how many of the row's values it applies to; ratio = median /
# level (a DRL is compared with the median of a facility's distribution, ICRP 135), `above` when the median is
# above it. The levels are matched once per distinct row x matching attributes x age bucket (as the box plots do).
LEVELS = """WITH {levels}, {rec}, {age_bounds},
    keys AS MATERIALIZED (SELECT grp, scanner, year, {key_columns}, min(age) AS age, count(*)::int AS n
                            FROM rec
                           GROUP BY grp, scanner, year, {key_columns}, width_bucket(age, (SELECT b FROM ab))),
    {matches},
    app AS (SELECT r.grp, r.scanner, r.year, l.name, sum(r.n)::int AS n
              FROM keys r JOIN lv l ON l.quantity = %s AND {match}
             GROUP BY 1, 2, 3, 4),
    best AS (SELECT DISTINCT ON (app.grp, app.scanner, app.year) app.grp, app.scanner, app.year,
                    app.n AS level_n, l.name, l.value, l.status, l.source, l.year AS level_year
               FROM app JOIN lv l USING (name)
              ORDER BY app.grp, app.scanner, app.year,
                       CASE l.status WHEN 'official' THEN 0 WHEN 'proposed' THEN 1 ELSE 2 END, app.n DESC, l.name),
    q AS (SELECT grp, scanner, year, count(*)::int AS n,
                 percentile_cont(0.5) WITHIN GROUP (ORDER BY x) AS median,
                 percentile_cont(0.75) WITHIN GROUP (ORDER BY x) AS p75
            FROM rec GROUP BY 1, 2, 3)
SELECT q.grp AS "group", q.scanner, q.year, q.n, q.median, q.p75, b.name AS level_name, b.value AS level,
       b.status AS level_status, b.source AS level_source, b.level_year, b.level_n,
       q.median / NULLIF(b.value, 0) AS ratio, q.median > b.value AS above
  FROM q LEFT JOIN best b USING (grp, scanner, year)
 ORDER BY q.grp, q.scanner, q.year"""


def level_comparison(conn, f: dict[str, Any], levels: Sequence[Any], measure: str, group: str) -> Rows:
    """The reference-level comparison of `measure` per `group` × scanner × year (LEVELS), with `measure`,
    `quantity` and `unit` on every row."""
    quantity, unit, _ = MEASURES[measure]
    rec, params, source = records(f, measure, group)
    key_columns = [c for c in source.box.columns if c != "age"]
    query = sql.SQL(LEVELS).format(
        levels=LEVELS_CTE,
        rec=rec,
        age_bounds=AGE_BOUNDS_CTE,
        key_columns=sql.SQL(", ").join(map(sql.Identifier, key_columns)),
        matches=match_ctes(**source.box.values),
        match=source.box.match,
    )
    out = rows(conn, query, [levels_json(levels), *params, quantity])
    return [{"measure": measure, "quantity": quantity, "unit": unit, **r} for r in out]


# ----- trends ----------------------------------------------------------------------------------------------

PERIODS = ("month", "quarter", "year")
# The groups with the most values (`top`), then the median and N per period and group.
TRENDS = """WITH {rec},
    top AS (SELECT grp FROM rec GROUP BY grp ORDER BY count(*) DESC, grp LIMIT %s)
SELECT date_trunc(%s, study_date)::date AS start, grp AS "group", count(*)::int AS n,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY x) AS median
  FROM rec WHERE grp IN (SELECT grp FROM top)
 GROUP BY 1, 2 ORDER BY 1, 2"""


def period_label(start: dt.date, period: str) -> str:
    """`2024-03` (month), `2024-Q1` (quarter), `2024` (year)."""
    if period == "month":
        return f"{start.year}-{start.month:02d}"
    if period == "quarter":
        return f"{start.year}-Q{(start.month - 1) // 3 + 1}"
    return str(start.year)


def period_starts(first: dt.date, last: dt.date, period: str) -> list[dt.date]:
    """Every period start from `first` to `last` (both period starts): the continuous time axis."""
    step = {"month": 1, "quarter": 3, "year": 12}[period]
    out, d = [], first
    while d <= last:
        out.append(d)
        months = d.month - 1 + step
        d = dt.date(d.year + months // 12, months % 12 + 1, 1)
    return out


def trends(conn, f: dict[str, Any], measure: str, group: str, period: str, top: int) -> tuple[Rows, Rows]:
    """The median and N of `measure` per `period` for the `top` groups with most values; and every period of the
    range (label and start) so the chart's time axis has no holes."""
    rec, params, _ = records(f, measure, group)
    got = rows(conn, sql.SQL(TRENDS).format(rec=rec), [*params, top, period])
    for r in got:
        r["period"] = period_label(r["start"], period)
    if not got:
        return got, []
    starts = period_starts(got[0]["start"], got[-1]["start"], period)
    return got, [{"period": period_label(s, period), "start": s} for s in starts]


# ----- histograms ------------------------------------------------------------------------------------------

# `bins` equal bins from the smallest value to the 99th percentile of the shown groups (values above it are
# counted in the last bin and in `above_range`, so one extreme value does not squeeze every bar into one).
HISTOGRAM = """WITH {rec},
    top AS (SELECT grp FROM rec GROUP BY grp ORDER BY count(*) DESC, grp LIMIT %s),
    v AS MATERIALIZED (SELECT grp, x FROM rec WHERE grp IN (SELECT grp FROM top)),
    rg AS (SELECT min(x) AS lo, greatest(percentile_cont(0.99) WITHIN GROUP (ORDER BY x), min(x) + 1e-9) AS hi
             FROM v),
    nb AS (SELECT %s::int AS bins)
SELECT v.grp AS "group", least(width_bucket(v.x, rg.lo, rg.hi, nb.bins), nb.bins) AS bin,
       rg.lo + (least(width_bucket(v.x, rg.lo, rg.hi, nb.bins), nb.bins) - 1) * (rg.hi - rg.lo) / nb.bins AS lo,
       rg.lo + least(width_bucket(v.x, rg.lo, rg.hi, nb.bins), nb.bins) * (rg.hi - rg.lo) / nb.bins AS hi,
       count(*)::int AS n, (count(*) FILTER (WHERE v.x > rg.hi))::int AS above_range
  FROM v CROSS JOIN rg CROSS JOIN nb
 GROUP BY 1, 2, 3, 4 ORDER BY 1, 2"""


def histogram(conn, f: dict[str, Any], measure: str, group: str, bins: int, top: int) -> Rows:
    """Per group (the `top` with most values) and bin: the bin's edges and how many values fall in it."""
    rec, params, _ = records(f, measure, group)
    return rows(conn, sql.SQL(HISTOGRAM).format(rec=rec), [*params, top, bins])


# ----- workload --------------------------------------------------------------------------------------------

# Studies per kind (CT only, NM/PET only, both), ISO weekday (1 Monday .. 7 Sunday) and hour of the StudyTime
# (dose.study.study_time, migration 019; NULL: unknown).
WORKLOAD = """
SELECT k.kind, extract(isodow FROM s.study_date)::int AS weekday, extract(hour FROM s.study_time)::int AS hour,
       count(*)::int AS n
  FROM dose.study s
 CROSS JOIN LATERAL (SELECT CASE WHEN s.ct_event_count > 0 AND {nm} THEN 'CT+NM' WHEN s.ct_event_count > 0
                                 THEN 'CT' WHEN {nm} THEN 'NM' ELSE 'other' END AS kind) k
 {where}
 GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"""
HAS_ADMINISTRATION = """EXISTS (SELECT 1 FROM dose.radiopharmaceutical ra
                                 WHERE ra.study_instance_uid = s.study_instance_uid)"""


def workload(conn, f: dict[str, Any]) -> Rows:
    """Studies per kind × weekday × hour under the dose filters."""
    w = dose_where(f, STUDIES).add("s.study_date IS NOT NULL")
    query = sql.SQL(WORKLOAD).format(nm=sql.SQL(HAS_ADMINISTRATION), where=w.sql())
    return rows(conn, query, w.params)


# ----- patient size: dose against patient weight ---------------------------------------------------------

# CT per group (the report's CT groups): the source, CTDIvol, DLP and the key that tells the group's values apart
# (an event's ordinal; a study is one value). Per protocol one value per irradiation event, per description or
# standard name one per examination (its mean CTDIvol, total DLP), as in MEASURES.
SIZE_CT: dict[str, tuple[Source, str, str, str]] = {
    "protocol": (EVENT_SOURCE, "e.ctdivol_mgy", "e.dlp_mgycm", "e.ordinal::text"),
    "description": (STUDY_SOURCE, "s.ct_mean_ctdivol_mgy", "s.ct_total_dlp_mgycm", "''"),
    "standard_name": (STUDY_SOURCE, "s.ct_mean_ctdivol_mgy", "s.ct_total_dlp_mgycm", "''"),
}
SIZE_GROUPS = tuple(SIZE_CT)
# The administrations: per agent (the levels in MBq/kg are per agent), the activity.
SIZE_NM: tuple[Source, str, str, str] = (
    ADMIN_SOURCE,
    "a.activity_mbq",
    "NULL::double precision",
    "a.ordinal::text",
)

# Per group: how many values, how many with a weight (a weight of 0 or below counts as none); the `top` groups with
# the most values; of each, at most `limit` points with a weight, a deterministic sample: the values whose hash
# (`h`, uniform in [0, 1) from the study UID and the value's key) is smallest. Only values with h below a
# threshold expecting 2 × limit + 20 of them are ranked, so no group is sorted whole. One row per point, and one
# row with NULL uid for a shown group without any. `no_weight_studies`: the distinct studies with a value but no
# weight, over every group.
PATIENT_SIZE = """WITH base AS MATERIALIZED (
        SELECT {grp} AS grp, {a}.study_instance_uid AS uid,
               CASE WHEN {a}.patient_weight_kg > 0 THEN {a}.patient_weight_kg END AS w, {y1} AS y1, {y2} AS y2,
               (hashtext({a}.study_instance_uid || ':' || {key}) & 2147483647)::float8 / 2147483648.0 AS h
          FROM {table} {a} {where}),
    counts AS (SELECT grp, count(*)::int AS n, count(w)::int AS n_weight FROM base GROUP BY grp),
    top AS (SELECT grp, n, n_weight, count(*) OVER ()::int AS groups_total
              FROM counts ORDER BY n DESC, grp LIMIT %s),
    pick AS (SELECT b.grp, b.uid, b.w, b.y1, b.y2, row_number() OVER (PARTITION BY b.grp ORDER BY b.h, b.uid) AS rn
               FROM base b JOIN top t USING (grp)
              WHERE b.w IS NOT NULL AND b.h < (2.0 * %s + 20) / NULLIF(t.n_weight, 0))
SELECT t.grp AS "group", t.n, t.n_weight, t.groups_total,
       (SELECT count(DISTINCT uid) FROM base WHERE w IS NULL)::int AS no_weight_studies,
       p.uid AS study_instance_uid, p.w AS weight_kg, p.y1, p.y2
  FROM top t LEFT JOIN pick p ON p.grp = t.grp AND p.rn <= %s
 ORDER BY t.n DESC, t.grp, p.w, p.uid"""


def patient_size(conn, f: dict[str, Any], kind: str, group: str, top: int, limit: int) -> dict[str, Any]:
    """Dose against patient weight under the dose filters: `kind` CT (CTDIvol and DLP per `group` of SIZE_CT) or NM
    (activity per agent). {"groups": [{group, n, with_weight, no_weight, shown}], "points": [{group, uid, weight,
    y1, y2}], "groups_total", "no_weight_studies"}; the groups with the most values first."""
    source, y1, y2, key = SIZE_NM if kind == "NM" else SIZE_CT[group]
    a = source.records.alias
    w = dose_where(f, source.records)
    if source.where:
        w.add(source.where)
    w.add(f"{y1} IS NOT NULL" if kind == "NM" else f"({y1} IS NOT NULL OR {y2} IS NOT NULL)")
    query = sql.SQL(PATIENT_SIZE).format(
        grp=sql.SQL(_group_sql("agent" if kind == "NM" else group, a)),
        a=sql.Identifier(a),
        y1=sql.SQL(y1),
        y2=sql.SQL(y2),
        key=sql.SQL(key),
        table=sql.SQL(source.table),
        where=w.sql(),
    )
    got = rows(conn, query, [*w.params, top, limit, limit])
    groups: dict[str, dict[str, Any]] = {}
    points = []
    for r in got:
        g = groups.setdefault(
            r["group"],
            {"group": r["group"], "n": r["n"], "with_weight": r["n_weight"], "no_weight": r["n"] - r["n_weight"],
             "shown": 0},
        )  # fmt: skip
        if r["study_instance_uid"] is not None:
            g["shown"] += 1
            points.append({k: r[k] for k in ("group", "study_instance_uid", "weight_kg", "y1", "y2")})
    return {
        "groups": list(groups.values()),
        "points": points,
        "groups_total": got[0]["groups_total"] if got else 0,
        "no_weight_studies": got[0]["no_weight_studies"] if got else 0,
    }


# The reference levels whose patterns for a group's kind of name (SIZE_PATTERNS) match one of `names`: per name,
# official before proposed before example. `conditional`: the level also asks for other attributes (a description,
# a standard name, an age band...), so it applies to part of the group's values only.
SIZE_PATTERNS = {"protocol": "protocols", "description": "descriptions", "standard_name": "standard_names",
                 "agent": "agents"}  # fmt: skip
SIZE_QUANTITIES = {"CT": ("ctdivol_mgy", "dlp_mgycm"), "NM": ("activity_mbq", "activity_mbq_per_kg")}
# what one value of the group is, as the levels' `per` says (a level for another unit is not drawn)
SIZE_PER = {"protocol": "event", "description": "study", "standard_name": "study", "agent": "administration"}
SIZE_LEVELS = """WITH {levels}, g AS (SELECT DISTINCT unnest(%s::text[]) AS grp)
SELECT g.grp AS "group", l.name, l.quantity, l.per, l.value, l.status, l.source, l.year, l.age_min, l.age_max,
       (num_nonnulls(l.protocols, l.descriptions, l.target_regions, l.agents, l.standard_names) > 1
        OR l.age_min IS NOT NULL OR l.age_max IS NOT NULL) AS conditional
  FROM g JOIN lv l ON l.quantity = ANY(%s) AND l.per = %s AND {patterns} IS NOT NULL AND g.grp ~* ANY({patterns})
 ORDER BY g.grp, CASE l.status WHEN 'official' THEN 0 WHEN 'proposed' THEN 1 ELSE 2 END, l.quantity, l.name"""


def size_levels(conn, levels: Sequence[Any], kind: str, group: str, names: Sequence[str]) -> Rows:
    """The levels whose `group` patterns match one of `names` (CT: CTDIvol and DLP; NM: activity and MBq/kg)."""
    if not names or not levels:
        return []
    query = sql.SQL(SIZE_LEVELS).format(levels=LEVELS_CTE, patterns=sql.Identifier("l", SIZE_PATTERNS[group]))
    return rows(conn, query, [levels_json(levels), list(names), list(SIZE_QUANTITIES[kind]), SIZE_PER[group]])
