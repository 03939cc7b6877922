"""SQL of the dose page's statistics (`/nmdose/api/dose/...`): CT per protocol or description, monthly medians,
the events, activity, the activity-weight points, effective dose, box plots; one study's record; the dead letter.

Values are bound parameters; the statements differ per group or measure only by fragments chosen by key from the
fixed tables below (web/sql_common.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from psycopg2 import sql

from nmdose.orthanc_ids import orthanc_study_id
from nmdose.web import names
from nmdose.web.sql_common import (
    ADMINISTRATIONS,
    EVENTS,
    LOCALIZER,
    NOT_LOCALIZER,
    STUDIES,
    Rows,
    dose_where,
    rows,
    stats,
)
from nmdose.web.sql_levels import (
    ADMIN_MATCH,
    AGE_BOUNDS_CTE,
    EVENT_MATCH,
    LEVELS_CTE,
    STUDY_MATCH,
    ad_cte,
    ev_cte,
    levels_json,
    match_ctes,
    st_cte,
)

# CTDIvol and DLP per acquisition protocol (one value per irradiation event) or per study description (one value
# per study: its events' mean CTDIvol, dose.study.ct_mean_ctdivol_mgy, and its total DLP). Events carry their
# study's fields (sql/007_web.sql): no join.
# Per protocol also the median size-specific dose estimate (SSDE, AAPM 204/220) of the events that have one, and
# how many have one (an RDSR without SSDE leaves it NULL): shown beside CTDIvol.
CT_PROTOCOLS = {
    "protocol": """
SELECT coalesce(e.acquisition_protocol, '') AS protocol, count(*)::int AS n,
       count(DISTINCT e.study_instance_uid)::int AS studies, {ctdivol}, {dlp},
       percentile_cont(0.5) WITHIN GROUP (ORDER BY e.ssde_mgy) AS ssde_median,
       count(e.ssde_mgy)::int AS ssde_n
  FROM dose.ct_event e {where} GROUP BY 1 ORDER BY 1""",
    "description": """
SELECT coalesce(s.study_description, '') AS description, count(*)::int AS n, count(*)::int AS studies,
       {ctdivol}, {dlp}
  FROM dose.study s {where} GROUP BY 1 ORDER BY 1""",
    # the study's standard name (sql/015_standard_names.sql; '' : none yet), one value per study as above
    "standard_name": """
SELECT coalesce(s.standard_name, '') AS standard_name, count(*)::int AS n, count(*)::int AS studies,
       {ctdivol}, {dlp}
  FROM dose.study s {where} GROUP BY 1 ORDER BY 1""",
}

# Per month and study description (the exam type), one value per study: the median of the studies' total DLP
# and of their mean CTDIvol (localizers have neither, so they count in no `n`). Every month from the first to the
# last is there: a month without a study is one row with no description and n = 0 (a continuous month axis).
CT_MONTHLY = """
WITH g AS (SELECT date_trunc('month', s.study_date)::date AS m, {group},
                  count(s.ct_total_dlp_mgycm)::int AS n,
                  percentile_cont(0.5) WITHIN GROUP (ORDER BY s.ct_total_dlp_mgycm) AS dlp_median,
                  percentile_cont(0.5) WITHIN GROUP (ORDER BY s.ct_mean_ctdivol_mgy) AS ctdivol_median
             FROM dose.study s {where} GROUP BY 1, 2)
SELECT to_char(x.m, 'YYYY-MM') AS month, g.{name}, coalesce(g.n, 0) AS n, g.dlp_median, g.ctdivol_median
  FROM (SELECT min(m) AS lo, max(m) AS hi FROM g) b
 CROSS JOIN LATERAL generate_series(b.lo, b.hi, interval '1 month') AS x(m)
  LEFT JOIN g ON g.m = x.m::date
 ORDER BY x.m, g.n DESC, g.{name}"""

CT_EVENTS = """
SELECT e.study_instance_uid, e.study_date, e.study_description, e.manufacturer, e.model_name,
       e.station_name, e.patient_sex, e.patient_age_years, e.patient_weight_kg, e.ordinal,
       e.acquisition_protocol, e.target_region, e.acquisition_type, e.ctdivol_mgy, e.dlp_mgycm,
       e.ssde_mgy, e.ssde_method, e.ssde_size_mm, e.ssde_size_kind, e.water_equivalent_diameter_mm,
       e.water_equivalent_diameter_method, e.effective_diameter_mm, e.lateral_dimension_mm, e.ap_dimension_mm,
       e.phantom, e.kvp, e.tube_current_ma, e.effective_dose_msv, {localizer} AS localizer, e.standard_name
  FROM dose.ct_event e {where} ORDER BY e.study_date, e.study_instance_uid, e.ordinal LIMIT %s"""

ACTIVITY = """
SELECT {group}, count(*)::int AS n, {activity}, {per_kg}, avg(a.effective_dose_msv) AS effective_dose_mean,
       (count(*) FILTER (WHERE a.plausibility IS NOT NULL))::int AS plausibility_warnings
  FROM dose.radiopharmaceutical a {where} GROUP BY 1 ORDER BY 1"""
ACTIVITY_GROUPS = {
    "agent": "coalesce(a.agent, '') AS agent",
    "description": "coalesce(a.study_description, '') AS description",
    "standard_name": "coalesce(a.standard_name, '') AS standard_name",  # the agent's rule, else the study's
}

ACTIVITY_POINTS = """
SELECT a.study_instance_uid, a.study_date, a.agent, a.patient_weight_kg AS weight_kg, a.activity_mbq,
       a.net_activity_mbq, a.administered_activity_rule, a.start_datetime, a.start_datetime_source,
       a.pre_measured_datetime, a.post_measured_datetime, a.plausibility, a.standard_name
  FROM dose.radiopharmaceutical a {where} ORDER BY a.study_date, a.study_instance_uid LIMIT %s"""

# A PET-CT / SPECT-CT / NM study whose radiopharmaceutical part was not found (no administration: the PET images or
# the RRDSR never arrived or held none) has no total: dose.study's total would be the CT part alone (dose/derived.py
# adds the parts it has), which pulls the group's statistics below the NM part alone. Such a study: a series or
# object of modality PT or NM, or a description naming PET, SPECT or scintigraphy, and no administration.
NM_PART_MISSING = """(NOT EXISTS (SELECT 1 FROM dose.radiopharmaceutical ra
                             WHERE ra.study_instance_uid = s.study_instance_uid)
     AND (EXISTS (SELECT 1 FROM dose.series_protocol sp WHERE sp.study_instance_uid = s.study_instance_uid
                     AND sp.modality IN ('PT', 'NM'))
          OR EXISTS (SELECT 1 FROM dose.object o WHERE o.study_instance_uid = s.study_instance_uid
                        AND o.modality IN ('PT', 'NM'))
          OR s.study_description ~* '(PET|SPECT|scintigra|신티)'))"""

EFFECTIVE_DOSE = """
SELECT {group}, count(*)::int AS studies,
       count(s.ct_effective_dose_msv)::int AS ct_n,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY s.ct_effective_dose_msv) AS ct_median,
       avg(s.ct_effective_dose_msv) AS ct_mean,
       count(s.nm_effective_dose_msv)::int AS nm_n,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY s.nm_effective_dose_msv) AS nm_median,
       avg(s.nm_effective_dose_msv) AS nm_mean,
       count(s.total)::int AS total_n,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY s.total) AS total_median,
       avg(s.total) AS total_mean,
       (count(*) FILTER (WHERE s.nm_part_missing))::int AS nm_missing_n,
       array_remove(array_agg(DISTINCT CASE
           WHEN s.ct_effective_dose_msv IS NULL THEN NULL
           WHEN s.derived->>'age_band_years' IS NULL THEN s.derived->'sources'->>'ct_k_adult'
           ELSE s.derived->'sources'->>'ct_k_child' END), NULL) AS ct_sources,
       array_remove(array_agg(DISTINCT CASE WHEN s.nm_effective_dose_msv IS NOT NULL
           THEN s.derived->'sources'->>'nm' END), NULL) AS nm_sources
  FROM (SELECT s.*, m.nm_part_missing,
               CASE WHEN m.nm_part_missing THEN NULL ELSE s.total_effective_dose_msv END AS total
          FROM dose.study s CROSS JOIN LATERAL (SELECT {nm_part_missing} AS nm_part_missing) m {where}) s
 GROUP BY 1 ORDER BY 1"""

# effective dose per study description (default) or per standard name (sql/015_standard_names.sql)
EFFECTIVE_GROUPS = {
    "description": "coalesce(s.study_description, '') AS description",
    "standard_name": "coalesce(s.standard_name, '') AS standard_name",
}

STORED_AGENTS = "SELECT DISTINCT agent FROM dose.radiopharmaceutical WHERE agent IS NOT NULL"


def resolve_agent(conn, f: dict[str, Any]) -> dict[str, Any]:
    """The filters with `agent` as the stored agent texts it names: the text itself, and every stored text whose
    display name (web/names.py: `¹⁸F-FDG` for `Fluorodeoxyglucose F^18^`) it is, and every one holding it as a
    part of either name, any case (`fdg`). The page shows display names; a filter typed as shown or as DICOM wrote it finds the same rows."""
    if "agent" not in f or isinstance(f["agent"], (list, tuple)):
        return f
    wanted = f["agent"]
    part = wanted.casefold()  # also part of either name, any case: 'fdg' finds Fluorodeoxyglucose F^18^
    stored = [
        r["agent"]
        for r in rows(conn, STORED_AGENTS)
        if names.agent_matches(wanted, r["agent"])
        or part in r["agent"].casefold()
        or part in (names.agent_name(r["agent"]) or "").casefold()
    ]
    return {**f, "agent": tuple(dict.fromkeys([wanted, *stored]))}


def ct_protocols(conn, f: dict[str, Any], group: str) -> Rows:
    """CTDIvol and DLP statistics per CT acquisition protocol or per study description (`group`)."""
    if group == "protocol":
        w = dose_where(f, EVENTS).add(NOT_LOCALIZER)  # a localizer protocol has no statistics of its own
        ctdivol, dlp = stats("e", "ctdivol_mgy", "ctdivol"), stats("e", "dlp_mgycm", "dlp")
    else:
        w = dose_where(f, STUDIES).add("s.ct_event_count > 0")
        ctdivol = stats("s", "ct_mean_ctdivol_mgy", "ctdivol")
        dlp = stats("s", "ct_total_dlp_mgycm", "dlp")
    query = sql.SQL(CT_PROTOCOLS[group]).format(ctdivol=ctdivol, dlp=dlp, where=w.sql())
    return rows(conn, query, w.params)


def ct_monthly(conn, f: dict[str, Any]) -> Rows:
    """Median DLP per study (and median of the studies' mean CTDIvol) per month and study description, every
    month of the range present, for the trend chart."""
    w = dose_where(f, STUDIES).add("s.ct_event_count > 0").add("s.ct_total_dlp_mgycm IS NOT NULL")
    w.add("s.study_date IS NOT NULL")
    group = f.get("group", "description")  # or standard_name (docs/standard_names.md)
    query = sql.SQL(CT_MONTHLY).format(
        group=sql.SQL(EFFECTIVE_GROUPS[group]), name=sql.Identifier(group), where=w.sql()
    )
    return rows(conn, query, w.params)


def ct_events_query(f: dict[str, Any], limit: int) -> tuple[sql.Composable, list[Any]]:
    """The statement of `ct_events` and its parameters (the CSV export runs it inside export.sql_csv)."""
    w = dose_where(f, EVENTS)
    return sql.SQL(CT_EVENTS).format(where=w.sql(), localizer=sql.SQL(LOCALIZER)), [*w.params, limit]


def ct_events(conn, f: dict[str, Any], limit: int) -> Rows:
    """The filtered CT irradiation events with their study's fields (the data behind the statistics)."""
    return rows(conn, *ct_events_query(f, limit))


def activity(conn, f: dict[str, Any], group: str) -> Rows:
    """Administered activity and activity per kg per radiopharmaceutical (agent) or per study description."""
    w = dose_where(f, ADMINISTRATIONS)
    query = sql.SQL(ACTIVITY).format(
        group=sql.SQL(ACTIVITY_GROUPS[group]),
        activity=stats("a", "activity_mbq", "activity"),
        per_kg=stats("a", "activity_per_kg_mbq", "per_kg"),
        where=w.sql(),
    )
    return rows(conn, query, w.params)


def activity_points(conn, f: dict[str, Any], limit: int) -> Rows:
    """Activity against patient weight, one point per administration (the scatter chart)."""
    w = dose_where(f, ADMINISTRATIONS)
    w.add("a.activity_mbq IS NOT NULL").add("a.patient_weight_kg IS NOT NULL")
    return rows(conn, sql.SQL(ACTIVITY_POINTS).format(where=w.sql()), [*w.params, limit])


def effective_dose(conn, f: dict[str, Any]) -> Rows:
    """Effective dose per study description (one value per study): CT (DLP x k), radiopharmaceutical
    (activity x e) and total, with how many studies have a value and the coefficient sources used. A study whose
    NM part is missing (NM_PART_MISSING) has no total and is counted in `nm_missing_n`."""
    w = dose_where(f, STUDIES)
    group = sql.SQL(EFFECTIVE_GROUPS[f.get("group", "description")])
    query = sql.SQL(EFFECTIVE_DOSE).format(
        group=group, where=w.sql(), nm_part_missing=sql.SQL(NM_PART_MISSING)
    )
    return rows(conn, query, w.params)


# ----- choices: the values a text filter may take (the page's suggestions) -----------------------------------

CHOICES_LIMIT = 200  # values per field, most frequent first
# field -> (records, the value's column, what is counted); the field's own filter is left out (sql_dose.choices)
CHOICE_FIELDS: dict[str, tuple[str, str]] = {
    "protocol": ("events", "e.acquisition_protocol"),
    "description": ("studies", "s.study_description"),
    "station": ("studies", "s.station_name"),
    "manufacturer": ("studies", "s.manufacturer"),
    "model": ("studies", "s.model_name"),
    "modality": ("series", "sp.modality"),
    "agent": ("administrations", "a.agent"),
}
_CHOICE_FROM = {
    "events": ("dose.ct_event e", EVENTS, "count(*)"),
    "studies": ("dose.study s", STUDIES, "count(*)"),
    "series": (
        "dose.study s JOIN dose.series_protocol sp ON sp.study_instance_uid = s.study_instance_uid",
        STUDIES,
        "count(DISTINCT s.study_instance_uid)",
    ),
    "administrations": ("dose.radiopharmaceutical a", ADMINISTRATIONS, "count(*)"),
}
CHOICES = """SELECT {value} AS value, {count} AS n FROM {source} {where}
              GROUP BY 1 ORDER BY n DESC, value LIMIT %s"""


def choices(conn, f: dict[str, Any], field: str) -> Rows:
    """The distinct values of one text filter (`field`) with how many events (protocol), administrations (agent)
    or studies (the others) have each, most frequent first (CHOICES_LIMIT), under the other filters `f`."""
    kind, column = CHOICE_FIELDS[field]
    source, records, count = _CHOICE_FROM[kind]
    others = {k: v for k, v in f.items() if k != field}
    w = dose_where(others, records).add(sql.SQL("{} IS NOT NULL").format(sql.SQL(column)))
    query = sql.SQL(CHOICES).format(
        value=sql.SQL(column), count=sql.SQL(count), source=sql.SQL(source), where=w.sql()
    )
    return rows(conn, query, [*w.params, CHOICES_LIMIT])


# ----- box plots -------------------------------------------------------------------------------------------

# measure -> (record set, column, the levels' quantity); group -> key column per record set
BOX_MEASURES = {
    "ctdivol": ("ct", "ctdivol_mgy", "ctdivol_mgy"),
    "dlp": ("ct", "dlp_mgycm", "dlp_mgycm"),
    "activity": ("nm", "activity_mbq", "activity_mbq"),
    "per_kg": ("nm", "activity_per_kg_mbq", "activity_mbq_per_kg"),
}
BOX_GROUPS = {
    "ct": ("protocol", "description", "standard_name"),
    "nm": ("agent", "description", "standard_name"),
}


@dataclass(frozen=True)
class BoxRecords:
    """A record set of web/sql_levels.py (`ev`, `st`, `ad`) as the box plots read it: the columns its level
    match reads (`age` last), the match, the candidate values of the match CTEs."""

    name: str
    columns: tuple[str, ...]
    match: sql.Composable
    values: dict[str, str]


BOX_EVENTS = BoxRecords(
    "ev",
    ("protocol", "description", "target_region", "standard_name", "age"),
    EVENT_MATCH,
    {
        "protocol": "SELECT protocol AS v FROM keys",
        "description": "SELECT description AS v FROM keys",
        "region": "SELECT target_region AS v FROM keys",
        "standard_name": "SELECT standard_name AS v FROM keys",
    },
)
BOX_STUDIES = BoxRecords(
    "st",
    ("study_instance_uid", "description", "standard_name", "age"),
    STUDY_MATCH,
    {
        "description": "SELECT description AS v FROM keys",
        "standard_name": "SELECT standard_name AS v FROM keys",
    },
)
BOX_ADMINISTRATIONS = BoxRecords(
    "ad",
    ("agent", "description", "standard_name", "age"),
    ADMIN_MATCH,
    {
        "description": "SELECT description AS v FROM keys",
        "agent": "SELECT agent AS v FROM keys",
        "standard_name": "SELECT standard_name AS v FROM keys",
    },
)

BOX = """WITH {levels}, {records}, {age_bounds},
    v AS MATERIALIZED (SELECT coalesce({key}, '') AS grp, {value} AS x, {columns}
                         FROM {rel} r WHERE {value} IS NOT NULL),
    -- the levels are matched once per distinct group x matching attributes x age bucket (ages between the
    -- same two band limits match the same levels), not once per value
    keys AS MATERIALIZED (SELECT grp, {key_columns}, min(age) AS age
                            FROM v
                           GROUP BY grp, {key_columns}, width_bucket(age, (SELECT b FROM ab))),
    {matches},
    app AS MATERIALIZED (SELECT DISTINCT r.grp, l.name FROM keys r
                           JOIN lv l ON l.quantity = %s AND {match}),
    q AS MATERIALIZED (SELECT grp, count(*)::int AS n, min(x) AS min,
                 percentile_cont(0.25) WITHIN GROUP (ORDER BY x) AS q1,
                 percentile_cont(0.5) WITHIN GROUP (ORDER BY x) AS median,
                 percentile_cont(0.75) WITHIN GROUP (ORDER BY x) AS q3, max(x) AS max
            FROM v GROUP BY grp),
    -- Tukey's fences of each group, then one more pass over the values grouped by the group alone
    w AS (SELECT v.grp, min(v.x) FILTER (WHERE v.x >= f.lo) AS whisker_low,
                 max(v.x) FILTER (WHERE v.x <= f.hi) AS whisker_high,
                 (count(*) FILTER (WHERE v.x < f.lo OR v.x > f.hi))::int AS outside
            FROM v JOIN (SELECT grp, q1 - 1.5 * (q3 - q1) AS lo, q3 + 1.5 * (q3 - q1) AS hi FROM q) f
                 USING (grp)
           GROUP BY v.grp)
SELECT q.grp AS {group}, q.n, q.min, q.q1, q.median, q.q3, q.max, w.whisker_low, w.whisker_high,
       w.outside,
       (SELECT coalesce(jsonb_agg(jsonb_build_object('name', l.name, 'value', l.value, 'status', l.status,
                                                     'source', l.source, 'year', l.year)
                                  ORDER BY l.value, l.name), '[]'::jsonb)
          FROM app JOIN lv l USING (name) WHERE app.grp = q.grp) AS levels
  FROM q JOIN w USING (grp) ORDER BY 1"""


def box(conn, f: dict[str, Any], levels: Sequence[Any], measure: str, group: str) -> Rows:
    """Box-plot statistics of one measure per group: quartiles (`percentile_cont`), Tukey whiskers (the most
    extreme values within 1.5 IQR of the box), the count outside them, and the reference levels that apply to
    at least one value of the group. CT per protocol: one value per irradiation event; CT per description: one
    value per study (mean CTDIvol of its events, total DLP); activity: one value per administration."""
    kind, column, quantity = BOX_MEASURES[measure]
    if group not in BOX_GROUPS[kind]:
        raise ValueError(f"group {group!r} is not one of {', '.join(BOX_GROUPS[kind])} for measure {measure}")
    if kind == "ct" and group == "protocol":
        (cte, params), records = ev_cte(f), BOX_EVENTS
    elif kind == "ct":
        (cte, params), records = st_cte(f, ctdivol=measure == "ctdivol"), BOX_STUDIES
        column = measure  # st's columns: ctdivol (mean of the study's events), dlp (its total)
    else:
        (cte, params), records = ad_cte(f), BOX_ADMINISTRATIONS
    key_columns = [c for c in records.columns if c != "age"]
    query = sql.SQL(BOX).format(
        levels=LEVELS_CTE,
        records=cte,
        age_bounds=AGE_BOUNDS_CTE,
        key=sql.Identifier("r", group),
        value=sql.Identifier("r", column),
        columns=sql.SQL(", ").join(sql.Identifier("r", c) for c in records.columns),
        rel=sql.Identifier(records.name),
        key_columns=sql.SQL(", ").join(map(sql.Identifier, key_columns)),
        matches=match_ctes(**records.values),
        match=records.match,
        group=sql.Identifier(group),
    )
    return rows(conn, query, [levels_json(levels), *params, quantity])


# ----- one study, the dead letter --------------------------------------------------------------------------

STUDY = sql.SQL("""SELECT s.*, {nm_part_missing} AS nm_part_missing
  FROM dose.study s WHERE s.study_instance_uid = %s""").format(nm_part_missing=sql.SQL(NM_PART_MISSING))
STUDY_EVENTS = """
SELECT e.ordinal, e.event_key, e.irradiation_event_uid, e.acquisition_protocol, e.target_region,
       e.acquisition_type, e.ctdivol_mgy, e.dlp_mgycm, e.phantom, e.scanning_length_mm, e.kvp,
       e.tube_current_ma, e.pitch, e.k_msv_per_mgycm, e.effective_dose_msv, e.ssde_mgy, e.ssde_method,
       e.ssde_method_code, e.ssde_size_mm, e.ssde_size_kind, e.water_equivalent_diameter_mm,
       e.water_equivalent_diameter_method, e.water_equivalent_diameter_method_code, e.effective_diameter_mm,
       e.lateral_dimension_mm, e.ap_dimension_mm,
       CASE WHEN e.k_msv_per_mgycm IS NULL THEN NULL
            WHEN s.derived->>'age_band_years' IS NULL THEN s.derived->'sources'->>'ct_k_adult'
            ELSE s.derived->'sources'->>'ct_k_child' END AS k_source
  FROM dose.ct_event e JOIN dose.study s USING (study_instance_uid)
 WHERE e.study_instance_uid = %s ORDER BY e.ordinal"""
STUDY_ADMINISTRATIONS = """
SELECT ordinal, source, agent, radionuclide, activity_mbq, activity_rule, start_datetime, route,
       activity_per_kg_mbq, coefficient_msv_per_mbq, effective_dose_msv,
       details->>'derived_note' AS coefficient_note, net_activity_mbq, details->>'net_activity_note' AS
       net_activity_note, pre_measured_datetime, post_measured_datetime, administered_activity_rule,
       start_datetime_source, plausibility
  FROM dose.radiopharmaceutical WHERE study_instance_uid = %s ORDER BY ordinal"""
STUDY_OBJECTS = """
SELECT sop_instance_uid, series_instance_uid, modality, kind, status, source, warnings, first_seen
  FROM dose.object WHERE study_instance_uid = %s ORDER BY first_seen, sop_instance_uid"""
CENSUS_PATIENT = "SELECT patient_id FROM rpacs.study WHERE study_uid = %s"


def dose_study(conn, uid: str) -> dict[str, Any] | None:
    """One study: its merged record, every CT event and administration, its source objects."""
    study = rows(conn, STUDY, (uid,))
    if not study:
        return None
    out = study[0]
    if out.get("nm_part_missing"):  # the stored total is the CT part alone: no total (the page says why)
        out["total_effective_dose_msv"] = None
    out["ct_events"] = rows(conn, STUDY_EVENTS, (uid,))
    out["radiopharmaceuticals"] = names.display_rows(
        rows(conn, STUDY_ADMINISTRATIONS, (uid,)), ("agent", "radionuclide")
    )
    out["objects"] = rows(conn, STUDY_OBJECTS, (uid,))
    patient = rows(conn, CENSUS_PATIENT, (uid,))
    out["orthanc_study_id"] = orthanc_study_id(patient[0]["patient_id"], uid) if patient else None
    return out


def study_patient_id(conn, uid: str) -> str | None:
    """The PatientID the census recorded for a study (None when the census does not know it or has none)."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT patient_id FROM rpacs.study WHERE study_uid = %s AND patient_id IS NOT NULL", (uid,)
        )
        row = cur.fetchone()
    conn.commit()
    return row[0] if row else None


DEAD_LETTERS = """
SELECT id, file_path, error, source, attempts, first_seen, last_seen, resolved_at, file_sha256
  FROM dose.dead_letter {where} ORDER BY last_seen DESC, id DESC LIMIT %s"""
DEAD_LETTER_STATES = {
    "open": "WHERE resolved_at IS NULL",
    "resolved": "WHERE resolved_at IS NOT NULL",
    "all": "",
}
DEAD_LETTER_COUNTS = """
SELECT count(*) FILTER (WHERE resolved_at IS NULL)::int AS open,
       count(*) FILTER (WHERE resolved_at IS NOT NULL)::int AS resolved FROM dose.dead_letter"""


def dead_letters(conn, state: str, limit: int) -> tuple[Rows, dict[str, int]]:
    """Dose files that failed to ingest (newest first) in `state` (open, resolved, all), and how many are open /
    resolved."""
    query = sql.SQL(DEAD_LETTERS).format(where=sql.SQL(DEAD_LETTER_STATES[state]))
    return rows(conn, query, (limit,)), rows(conn, DEAD_LETTER_COUNTS)[0]
