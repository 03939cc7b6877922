"""SQL of the reference levels and the outliers (`/nmdose/api/dose/reference-levels`, `/outliers`), and the parts
the box plots share with them (web/sql_dose.py): the configured levels as a record set, their matching, the
filtered record sets `ev`, `st` and `ad`.

The configured reference levels go to PostgreSQL as one bound jsonb parameter (:data:`LEVELS_CTE`): matching and
comparing happen in SQL next to the percentiles, so the page, the outlier list and the exports agree.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

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

LEVELS_CTE = sql.SQL("""lv AS (SELECT * FROM jsonb_to_recordset(%s::jsonb) AS l(
                    name text, modality text, quantity text, per text, value double precision, status text,
                    source text, year integer, protocols text[], descriptions text[], target_regions text[],
                    agents text[], standard_names text[], age_min double precision,
                    age_max double precision))""")

# `ab.b`: every age-band limit of the levels, sorted; width_bucket(age, (SELECT b FROM ab)) numbers the interval an
# age lies in, and ages in one interval are inside or outside each band alike ([min, max), like the matches below).
AGE_BOUNDS_CTE = sql.SQL("""ab AS (SELECT coalesce(array_agg(DISTINCT x.b ORDER BY x.b), '{}'::double precision[]) AS b
                       FROM lv l CROSS JOIN LATERAL (VALUES (l.age_min), (l.age_max)) x(b)
                      WHERE x.b IS NOT NULL)""")

# A level applies to a row `r` when every pattern list it has matches (any pattern of a list; `~*`: case-insensitive
# regular expression) and the patient's age is in its band. The patterns are run once per distinct value, not per
# row: m_protocol, m_description, m_region and m_agent (see match_ctes) hold the (level, value) pairs that match,
# and rows look themselves up there with a hashed `IN`.
EVENT_MATCH = sql.SQL("""l.modality = 'CT' AND l.per = 'event'
 AND (l.protocols IS NULL OR (l.name, r.protocol) IN (SELECT name, v FROM m_protocol))
 AND (l.descriptions IS NULL OR (l.name, r.description) IN (SELECT name, v FROM m_description))
 AND (l.target_regions IS NULL OR (l.name, r.target_region) IN (SELECT name, v FROM m_region))
 AND (l.standard_names IS NULL OR (l.name, r.standard_name) IN (SELECT name, v FROM m_standard_name))
 AND (l.age_min IS NULL OR r.age >= l.age_min) AND (l.age_max IS NULL OR r.age < l.age_max)""")
# Per-study levels matching protocols or target regions look at every event of the study (rarely used: slower).
STUDY_MATCH = sql.SQL("""l.modality = 'CT' AND l.per = 'study'
 AND (l.protocols IS NULL OR EXISTS (SELECT 1 FROM dose.ct_event x WHERE x.study_instance_uid =
      r.study_instance_uid AND x.acquisition_protocol ~* ANY (l.protocols)))
 AND (l.descriptions IS NULL OR (l.name, r.description) IN (SELECT name, v FROM m_description))
 AND (l.target_regions IS NULL OR EXISTS (SELECT 1 FROM dose.ct_event x WHERE x.study_instance_uid =
      r.study_instance_uid AND x.target_region ~* ANY (l.target_regions)))
 AND (l.standard_names IS NULL OR (l.name, r.standard_name) IN (SELECT name, v FROM m_standard_name))
 AND (l.age_min IS NULL OR r.age >= l.age_min) AND (l.age_max IS NULL OR r.age < l.age_max)""")
ADMIN_MATCH = sql.SQL("""l.modality IN ('NM', 'PT') AND l.per = 'administration'
 AND (l.agents IS NULL OR (l.name, r.agent) IN (SELECT name, v FROM m_agent))
 AND (l.descriptions IS NULL OR (l.name, r.description) IN (SELECT name, v FROM m_description))
 AND (l.standard_names IS NULL OR (l.name, r.standard_name) IN (SELECT name, v FROM m_standard_name))
 AND (l.age_min IS NULL OR r.age >= l.age_min) AND (l.age_max IS NULL OR r.age < l.age_max)""")

# match CTE -> the levels' pattern list it runs
MATCHED_ATTRIBUTES = {
    "protocol": "protocols",
    "description": "descriptions",
    "region": "target_regions",
    "agent": "agents",
    "standard_name": "standard_names",  # the rows' standard names (sql/015_standard_names.sql)
}
MATCH_CTE = """{cte} AS MATERIALIZED (SELECT l.name, d.v FROM lv l
                  JOIN (SELECT DISTINCT v FROM ({values}) s) d ON d.v ~* ANY ({patterns}))"""
NO_VALUES = "SELECT NULL::text AS v WHERE false"


def match_ctes(**values: str) -> sql.Composable:
    """The (level name, value) pairs whose patterns match, one CTE per attribute of MATCHED_ATTRIBUTES; each
    keyword argument is a fixed query of the caller giving the candidate values as column `v` (none: no values)."""
    unknown = set(values) - set(MATCHED_ATTRIBUTES)
    if unknown:
        raise ValueError(f"no such matched attribute: {sorted(unknown)}")
    return sql.SQL(",\n        ").join(
        sql.SQL(MATCH_CTE).format(
            cte=sql.Identifier("m_" + name),
            values=sql.SQL(values.get(name, NO_VALUES)),
            patterns=sql.Identifier("l", patterns),
        )
        for name, patterns in MATCHED_ATTRIBUTES.items()
    )


# ----- the filtered record sets ----------------------------------------------------------------------------

# `ev`: the filtered CT irradiation events with their study's description and patient age (copied onto each event
# with the other filtered fields by sql/007_web.sql's triggers: no join).
EV_CTE = """ev AS (SELECT e.study_instance_uid, e.study_date, e.ordinal, e.acquisition_protocol AS protocol,
                          e.target_region, e.ctdivol_mgy, e.dlp_mgycm, e.study_description AS description,
                          e.patient_age_years AS age, e.standard_name
                     FROM dose.ct_event e {where})"""
# `st`: the filtered studies with CT events: total DLP and the mean CTDIvol of their events (when asked for).
ST_CTE = """st AS (SELECT s.study_instance_uid, s.study_date, s.study_description AS description,
                          s.patient_age_years AS age, s.ct_total_dlp_mgycm AS dlp, {ctdivol} AS ctdivol,
                          s.standard_name
                     FROM dose.study s {where})"""
# `ad`: the filtered radiopharmaceutical administrations (description and age as for `ev`).
AD_CTE = """ad AS (SELECT a.study_instance_uid, a.study_date, a.ordinal, a.agent, a.activity_mbq,
                          a.activity_per_kg_mbq, a.study_description AS description, a.patient_age_years AS age,
                          a.standard_name
                     FROM dose.radiopharmaceutical a {where})"""


def ev_cte(f: dict[str, Any]) -> tuple[sql.Composable, list[Any]]:
    """The filtered CT events, localizers left out (sql_common.LOCALIZER)."""
    w = dose_where(f, EVENTS).add(NOT_LOCALIZER)
    return sql.SQL(EV_CTE).format(where=w.sql()), w.params


def st_cte(f: dict[str, Any], *, ctdivol: bool = False) -> tuple[sql.Composable, list[Any]]:
    """`ctdivol`: with the mean CTDIvol of the study's events (dose.study.ct_mean_ctdivol_mgy), else NULL."""
    w = dose_where(f, STUDIES).add("s.ct_event_count > 0")
    mean = sql.SQL("s.ct_mean_ctdivol_mgy" if ctdivol else "NULL::double precision")
    return sql.SQL(ST_CTE).format(ctdivol=mean, where=w.sql()), w.params


def ad_cte(f: dict[str, Any]) -> tuple[sql.Composable, list[Any]]:
    w = dose_where(f, ADMINISTRATIONS)
    return sql.SQL(AD_CTE).format(where=w.sql()), w.params


# ----- the configured levels -------------------------------------------------------------------------------

STATUS_LABELS = {
    "official": "official DRL",
    "proposed": "proposed, not an adopted DRL",
    "example": "example, not an official DRL",
}


def levels_json(levels: Sequence[Any]) -> str:
    """The configured levels (`nmdose.config.ReferenceLevel`) as the JSON array LEVELS_CTE reads."""
    return json.dumps(
        [
            {
                "name": lv.name,
                "modality": lv.modality,
                "quantity": lv.quantity,
                "per": lv.per,
                "value": lv.value,
                "status": lv.status,
                "source": lv.source,
                "year": lv.year,
                "protocols": lv.match.protocols or None,
                "descriptions": lv.match.descriptions or None,
                "target_regions": lv.match.target_regions or None,
                "agents": lv.match.agents or None,
                "standard_names": getattr(lv.match, "standard_names", None) or None,
                "age_min": lv.age_band.min_years if lv.age_band else None,
                "age_max": lv.age_band.max_years if lv.age_band else None,
            }
            for lv in levels
        ],
        ensure_ascii=False,
    )


def reference_level_rows(levels: Sequence[Any]) -> Rows:
    """The configured reference levels as API rows (no database)."""
    return [
        {
            "name": lv.name,
            "modality": lv.modality,
            "quantity": lv.quantity,
            "unit": lv.unit,
            "per": lv.per,
            "value": lv.value,
            "status": lv.status,
            "status_label": STATUS_LABELS[lv.status],
            "source": lv.source,
            "year": lv.year,
            "protocols": lv.match.protocols,
            "descriptions": lv.match.descriptions,
            "target_regions": lv.match.target_regions,
            "agents": lv.match.agents,
            "standard_names": list(getattr(lv.match, "standard_names", None) or []),
            "age_min": lv.age_band.min_years if lv.age_band else None,
            "age_max": lv.age_band.max_years if lv.age_band else None,
        }
        for lv in levels
    ]


# ----- outliers --------------------------------------------------------------------------------------------

# Events and administrations are matched to the levels once per distinct (matching attributes, age bucket) (evk,
# adk: a NULL attribute is its own key k1, k2, …), then joined back to their rows on that key.
# `fx`: the rules (bound): a single value is flagged above `factor` × the level that applies to it (DRLs are set for
# a facility's median, not for one patient), and above its group's 95th percentile only when the group holds at
# least `min_n` values (in a smaller group the p95 flags ~5 % of every group by construction).
OUTLIER_HITS = """WITH {levels}, fx AS (SELECT %s::double precision AS factor, %s::integer AS min_n, %s::text AS ack),
    {ev}, {st}, {ad}, {age_bounds},
    evk AS MATERIALIZED (SELECT coalesce(ev.protocol, chr(1)) AS k1, coalesce(ev.description, chr(1)) AS k2,
                                coalesce(ev.target_region, chr(1)) AS k3,
                                coalesce(ev.standard_name, chr(1)) AS k4,
                                coalesce(width_bucket(age, (SELECT b FROM ab)), -1) AS kb,
                                min(protocol) AS protocol, min(description) AS description,
                                min(target_region) AS target_region, min(standard_name) AS standard_name,
                                min(age) AS age
                           FROM ev GROUP BY 1, 2, 3, 4, 5),
    adk AS MATERIALIZED (SELECT coalesce(ad.agent, chr(1)) AS k1, coalesce(ad.description, chr(1)) AS k2,
                                coalesce(ad.standard_name, chr(1)) AS k3,
                                coalesce(width_bucket(age, (SELECT b FROM ab)), -1) AS kb,
                                min(agent) AS agent, min(description) AS description,
                                min(standard_name) AS standard_name, min(age) AS age
                           FROM ad GROUP BY 1, 2, 3, 4),
    {matches},
    evl AS MATERIALIZED (SELECT r.k1, r.k2, r.k3, r.k4, r.kb, l.*
                           FROM evk r JOIN lv l ON {event_match}),
    adl AS MATERIALIZED (SELECT r.k1, r.k2, r.k3, r.kb, l.*
                           FROM adk r JOIN lv l ON {admin_match}),
    ev_p AS (SELECT coalesce(protocol, '') AS grp,
                    count(ctdivol_mgy) AS ctdivol_n, count(dlp_mgycm) AS dlp_n,
                    percentile_cont(0.95) WITHIN GROUP (ORDER BY ctdivol_mgy) AS ctdivol_p95,
                    percentile_cont(0.95) WITHIN GROUP (ORDER BY dlp_mgycm) AS dlp_p95
               FROM ev GROUP BY 1),
    ad_p AS (SELECT coalesce(agent, '') AS grp,
                    count(activity_mbq) AS activity_n, count(activity_per_kg_mbq) AS per_kg_n,
                    percentile_cont(0.95) WITHIN GROUP (ORDER BY activity_mbq) AS activity_p95,
                    percentile_cont(0.95) WITHIN GROUP (ORDER BY activity_per_kg_mbq) AS per_kg_p95
               FROM ad GROUP BY 1),
    hits AS (
      SELECT 'reference_level' AS reason, 'ct_event' AS kind, r.study_instance_uid, r.study_date,
             r.description AS study_description, r.protocol AS "group", r.ordinal, v.value, {level},
             l.value * (SELECT factor FROM fx) AS threshold
        FROM ev r
        JOIN evl l ON (l.k1, l.k2, l.k3, l.k4, l.kb)
                    = (coalesce(r.protocol, chr(1)), coalesce(r.description, chr(1)),
                       coalesce(r.target_region, chr(1)), coalesce(r.standard_name, chr(1)),
                       coalesce(width_bucket(r.age, (SELECT b FROM ab)), -1))
       CROSS JOIN LATERAL (SELECT CASE l.quantity WHEN 'ctdivol_mgy' THEN r.ctdivol_mgy
                                                  ELSE r.dlp_mgycm END AS value) v
       WHERE v.value > l.value * (SELECT factor FROM fx)
      UNION ALL
      SELECT 'reference_level', 'ct_study', r.study_instance_uid, r.study_date, r.description, NULL, NULL,
             r.dlp, {level}, l.value * (SELECT factor FROM fx)
        FROM st r JOIN lv l ON {study_match}
       WHERE r.dlp > l.value * (SELECT factor FROM fx)
      UNION ALL
      SELECT 'reference_level', 'administration', r.study_instance_uid, r.study_date, r.description, r.agent,
             r.ordinal, v.value, {level}, l.value * (SELECT factor FROM fx)
        FROM ad r
        JOIN adl l ON (l.k1, l.k2, l.k3, l.kb)
                    = (coalesce(r.agent, chr(1)), coalesce(r.description, chr(1)),
                       coalesce(r.standard_name, chr(1)), coalesce(width_bucket(r.age, (SELECT b FROM ab)), -1))
       CROSS JOIN LATERAL (SELECT CASE l.quantity WHEN 'activity_mbq' THEN r.activity_mbq
                                                  ELSE r.activity_per_kg_mbq END AS value) v
       WHERE v.value > l.value * (SELECT factor FROM fx)
      UNION ALL
      SELECT 'p95', 'ct_event', r.study_instance_uid, r.study_date, r.description, r.protocol, r.ordinal,
             q.value, q.quantity, q.p95, NULL, NULL, NULL, q.p95
        FROM ev r JOIN ev_p p ON p.grp = coalesce(r.protocol, '')
       CROSS JOIN LATERAL (VALUES ('ctdivol_mgy', r.ctdivol_mgy, p.ctdivol_p95, p.ctdivol_n),
                                  ('dlp_mgycm', r.dlp_mgycm, p.dlp_p95, p.dlp_n)) q(quantity, value, p95, n)
       WHERE q.value > q.p95 AND q.n >= (SELECT min_n FROM fx)
      UNION ALL
      SELECT 'p95', 'administration', r.study_instance_uid, r.study_date, r.description, r.agent, r.ordinal,
             q.value, q.quantity, q.p95, NULL, NULL, NULL, q.p95
        FROM ad r JOIN ad_p p ON p.grp = coalesce(r.agent, '')
       CROSS JOIN LATERAL (VALUES ('activity_mbq', r.activity_mbq, p.activity_p95, p.activity_n),
                                  ('activity_mbq_per_kg', r.activity_per_kg_mbq, p.per_kg_p95, p.per_kg_n))
                          q(quantity, value, p95, n)
       WHERE q.value > q.p95 AND q.n >= (SELECT min_n FROM fx))"""
# One page of the hits with their acknowledgements, the counts: the list for an export, a single study's hits
# (web/routes_outliers.py), and a page the cached index (OUTLIER_INDEX) cannot answer.
OUTLIERS = (
    OUTLIER_HITS
    + """,
    -- the acknowledgements (sql/021_outlier_acks.sql): per study and reason, or 'any' reason; the latest applies
    ack AS MATERIALIZED (SELECT DISTINCT ON (a.study_instance_uid, r.reason) a.study_instance_uid, r.reason,
                                a.acknowledged_by, a.acknowledged_at, a.ack_comment
                           FROM dose.outlier_ack a CROSS JOIN (VALUES ('reference_level'), ('p95')) r(reason)
                          WHERE a.reason IN (r.reason, 'any')
                          ORDER BY a.study_instance_uid, r.reason, a.acknowledged_at DESC),
    acked AS (SELECT h.*, k.acknowledged_by, k.acknowledged_at, k.ack_comment
                FROM hits h LEFT JOIN ack k ON (k.study_instance_uid, k.reason) = (h.study_instance_uid, h.reason)),
    shown AS (SELECT * FROM acked
               WHERE (SELECT ack FROM fx) = 'all' OR ((SELECT ack FROM fx) = 'yes') = (acknowledged_at IS NOT NULL)),
    counted AS (SELECT reason, count(*)::int AS n FROM shown GROUP BY reason),
    page AS (SELECT reason, kind, study_instance_uid, study_date, study_description, "group", ordinal, quantity,
                    value, level, threshold, value / NULLIF(level, 0) AS ratio, level_name, level_status,
                    level_source, acknowledged_by, acknowledged_at, ack_comment,
                    row_number() OVER (ORDER BY value / NULLIF(level, 0) DESC NULLS FIRST, study_date DESC,
                                       study_instance_uid, kind, ordinal, quantity) AS rn
               FROM shown {reason}
              ORDER BY rn LIMIT %s OFFSET %s)
SELECT (SELECT coalesce(jsonb_object_agg(reason, n), jsonb_build_object()) FROM counted) AS counts,
       (SELECT jsonb_build_object('yes', count(*) FILTER (WHERE acknowledged_at IS NOT NULL),
                                  'no', count(*) FILTER (WHERE acknowledged_at IS NULL)) FROM acked) AS ack_counts,
       page.*
  FROM (VALUES (1)) one(x) LEFT JOIN page ON true
 ORDER BY page.rn"""
)
# Every hit without the acknowledgements (web/sql_outliers.py applies them per request, so acknowledging one never
# recomputes this): the first `top` rows of each reason in the list's order (rn), the hits per reason and study.
OUTLIER_INDEX = (
    OUTLIER_HITS
    + """,
    ranked AS (SELECT reason, kind, study_instance_uid, study_date, study_description, "group", ordinal, quantity,
                      value, level, threshold, value / NULLIF(level, 0) AS ratio, level_name, level_status,
                      level_source,
                      row_number() OVER (ORDER BY value / NULLIF(level, 0) DESC NULLS FIRST, study_date DESC,
                                         study_instance_uid, kind, ordinal, quantity) AS rn
                 FROM hits),
    per_study AS (SELECT reason, study_instance_uid, count(*)::int AS n FROM hits GROUP BY 1, 2),
    top AS (SELECT * FROM (SELECT *, row_number() OVER (PARTITION BY reason ORDER BY rn) AS rr FROM ranked) r
             WHERE rr <= %s)
SELECT CASE WHEN row_number() OVER (ORDER BY top.rn) = 1  -- (once, not in every row: megabytes on a big list)
            THEN (SELECT coalesce(jsonb_object_agg(reason, s), jsonb_build_object())
                    FROM (SELECT reason, jsonb_object_agg(study_instance_uid, n) AS s
                            FROM per_study GROUP BY reason) x) END AS studies,
       top.*
  FROM (VALUES (1)) one(x) LEFT JOIN top ON true
 ORDER BY top.rn"""
)
LEVEL_COLUMNS = sql.SQL(
    "l.quantity, l.value AS level, l.name AS level_name, l.status AS level_status, l.source AS level_source"
)
OUTLIER_VALUES = {
    "protocol": "SELECT protocol AS v FROM evk",
    "description": "SELECT description AS v FROM evk UNION SELECT description FROM st"
    " UNION SELECT description FROM adk",
    "region": "SELECT target_region AS v FROM evk",
    "agent": "SELECT agent AS v FROM adk",
    "standard_name": "SELECT standard_name AS v FROM evk UNION SELECT standard_name FROM st"
    " UNION SELECT standard_name FROM adk",
}


OUTLIER_LEVELS = {"official": ("official",), "all": ("official", "proposed", "example")}


def outliers(
    conn,
    f: dict[str, Any],
    levels: Sequence[Any],
    limit: int,
    *,
    offset: int = 0,
    factor: float = 2.0,
    p95_min_n: int = 20,
    acknowledged: str = "all",
    study: str | None = None,
) -> dict[str, Any]:
    """CT events, CT examinations and administrations above `factor` × a reference level that applies to them
    (official levels only unless `f["levels"]` is `all`), or above the 95th percentile (`percentile_cont`) of their
    acquisition protocol / agent within the filtered set when it holds at least `p95_min_n` values. Worst first
    (value / level); one page of them (`limit`, `offset`). Returns `rows`, `total` (the hits of `f["reason"]`, or
    all) and `counts` per reason, and `ack_counts` (hits acknowledged: yes / no). Each row has its study's
    acknowledgement for its reason (`acknowledged_by`, `_at`, `ack_comment`; sql/021_outlier_acks.sql);
    `acknowledged`: yes | no | all (default) keeps those hits only. `study`: only that study's hits in `rows` (the
    p95 still of the whole filtered set, the counts of the whole list)."""
    where = ["reason = %s"] if "reason" in f else []
    if study is not None:
        where.append("study_instance_uid = %s")
    query, params = _outlier_query(OUTLIERS, f, levels, factor, p95_min_n, acknowledged, where)
    if "reason" in f:
        params.append(f["reason"])
    if study is not None:
        params.append(study)
    # The events are joined to their levels on a key of the small evl; PostgreSQL cannot estimate the rows of a
    # materialised CTE and chose a merge join sorting every event (measured 2.5 s of 6.5 on 500k events).
    out = rows(conn, query, [*params, limit, offset], settings=("enable_mergejoin = off",))
    counts = dict(out[0].get("counts") or {}) if out else {}
    ack_counts = dict(out[0].get("ack_counts") or {}) if out else {}
    page = []
    for row in out:
        row.pop("counts", None)
        row.pop("ack_counts", None)
        row.pop("rn", None)
        if row.get("reason") is None:  # the one row of an empty page
            continue
        row["link"] = "ui/orthanc/study/" + quote(row["study_instance_uid"], safe="")
        page.append(row)
    total = counts.get(f["reason"], 0) if "reason" in f else sum(counts.values())
    return {"rows": page, "total": total, "counts": counts, "ack_counts": ack_counts}


def _outlier_query(
    text: str,
    f: dict[str, Any],
    levels: Sequence[Any],
    factor: float,
    p95_min_n: int,
    ack: str,
    where: list[str],
) -> tuple[sql.Composed, list[Any]]:
    """One of the outlier queries (OUTLIERS, OUTLIER_INDEX) for the filters `f`, and its parameters up to the
    hits (the caller appends those of its tail)."""
    statuses = OUTLIER_LEVELS[f.get("levels", "official")]
    levels = [lv for lv in levels if lv.status in statuses]
    ev, ev_p = ev_cte(f)
    st, st_p = st_cte(f)
    ad, ad_p = ad_cte(f)
    query = sql.SQL(text).format(
        levels=LEVELS_CTE,
        ev=ev,
        st=st,
        ad=ad,
        age_bounds=AGE_BOUNDS_CTE,
        matches=match_ctes(**OUTLIER_VALUES),
        event_match=EVENT_MATCH,
        admin_match=ADMIN_MATCH,
        study_match=STUDY_MATCH,
        level=LEVEL_COLUMNS,
        reason=sql.SQL("WHERE " + " AND ".join(where) if where else ""),  # (OUTLIERS only)
    )
    return query, [levels_json(levels), factor, p95_min_n, ack, *ev_p, *st_p, *ad_p]


def outlier_index(
    conn, f: dict[str, Any], levels: Sequence[Any], top: int, *, factor: float = 2.0, p95_min_n: int = 20
) -> dict[str, Any]:
    """The outliers of the filters `f` (see :func:`outliers`) without their acknowledgements, for the cache
    (web/sql_outliers.py `page_from_index` applies those, the paging and the counts per request): `top`, the
    first `top` hits of each reason in the list's order (worst first; `rn` their place in the whole list);
    `studies`, per reason the number of hits of each study; `n`, the hits per reason; `ends`, per reason the place
    (`rn`) of its last hit held when the index does not hold them all (else None)."""
    query, params = _outlier_query(OUTLIER_INDEX, f, levels, factor, p95_min_n, "all", [])
    out = rows(conn, query, [*params, top], settings=("enable_mergejoin = off",))
    studies = next((dict(r["studies"]) for r in out if r.get("studies") is not None), {})
    hits = []
    for row in out:
        row.pop("studies", None)
        row.pop("rr", None)
        if row.get("reason") is not None:  # (the one row of an empty list has none)
            hits.append(row)
    n = {r: sum(s.values()) for r, s in studies.items()}
    shown = {r: [h["rn"] for h in hits if h["reason"] == r] for r in n}
    # where the hits of a reason the index does not hold all of end: beyond, its missing hits interleave
    ends = {r: shown[r][-1] if len(shown[r]) < n[r] else None for r in n}
    return {"top": hits, "studies": studies, "n": n, "ends": ends}
