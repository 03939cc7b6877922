"""SQL behind the `/nmdose/api/` routes: parameter validation and aggregates computed by PostgreSQL.

Every aggregate (counts, `percentile_cont` medians and quartiles, means) is computed in SQL, never by looping
over rows in Python; filters are bound parameters, never formatted into the text. Nothing here knows HTTP:
bad parameters raise :class:`ParamError` (the routes turn it into a 400 answer).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

MAX_LIMIT = 100_000


class ParamError(ValueError):
    """A query parameter is missing, unknown or malformed; the message names it and what was expected."""


# ----- parameter parsing ---------------------------------------------------------------------------------


def _date(name: str, value: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise ParamError(f"parameter '{name}' must be a date YYYY-MM-DD, got {value!r}") from None


def _int(lo: int, hi: int) -> Callable[[str, str], int]:
    def parse(name: str, value: str) -> int:
        try:
            n = int(value)
        except ValueError:
            raise ParamError(f"parameter '{name}' must be an integer, got {value!r}") from None
        if not lo <= n <= hi:
            raise ParamError(f"parameter '{name}' must be between {lo} and {hi}, got {n}")
        return n

    return parse


def _float(name: str, value: str) -> float:
    try:
        x = float(value)
    except ValueError:
        raise ParamError(f"parameter '{name}' must be a number, got {value!r}") from None
    if x != x or x in (float("inf"), float("-inf")) or x < 0:
        raise ParamError(f"parameter '{name}' must be a non-negative number, got {value!r}")
    return x


def _number(hi: float) -> Callable[[str, str], float]:
    """A non-negative number up to `hi` (ages in years, weights in kg)."""

    def parse(name: str, value: str) -> float:
        x = _float(name, value)
        if x > hi:
            raise ParamError(f"parameter '{name}' must be at most {hi:g}, got {value!r}")
        return x

    return parse


def _text(name: str, value: str) -> str:
    if len(value) > 256:
        raise ParamError(f"parameter '{name}' is longer than 256 characters")
    return value


def _choice(*allowed: str) -> Callable[[str, str], str]:
    def parse(name: str, value: str) -> str:
        if value not in allowed:
            raise ParamError(f"parameter '{name}' must be one of {', '.join(allowed)}, got {value!r}")
        return value

    return parse


def parse_params(query: dict[str, str], spec: dict[str, Callable[[str, str], Any]]) -> dict[str, Any]:
    """Validate `query` against `spec` (name -> parser); unknown names are an error, empty values are unset."""
    query = {k: v for k, v in query.items() if k != ""}  # a bare "?" or "&&" in the URL
    unknown = sorted(set(query) - set(spec))
    if unknown:
        raise ParamError(f"unknown parameter '{unknown[0]}' (known: {', '.join(sorted(spec))})")
    out = {name: parser(name, query[name]) for name, parser in spec.items() if query.get(name, "") != ""}
    if "from" in out and "to" in out and out["from"] > out["to"]:
        raise ParamError("parameter 'from' is after 'to'")
    for lo, hi in (("age_min", "age_max"), ("weight_min", "weight_max")):
        if lo in out and hi in out and out[lo] >= out[hi]:
            raise ParamError(f"parameter '{lo}' must be below '{hi}' (min inclusive, max exclusive)")
    return out


FORMAT = {"format": _choice("json", "csv", "xlsx")}
YEARS = {"from_year": _int(1900, 2200), "to_year": _int(1900, 2200)}
DOSE_FILTERS: dict[str, Callable[[str, str], Any]] = {
    "from": _date,
    "to": _date,
    "manufacturer": _text,
    "model": _text,
    "station": _text,
    "modality": _text,
    "description": _text,
    "protocol": _text,
    "agent": _text,
    "sex": _choice("M", "F", "O"),
    "age_min": _number(150),
    "age_max": _number(150),
    "weight_min": _number(1000),
    "weight_max": _number(1000),
}


# ----- helpers -------------------------------------------------------------------------------------------


def _rows(
    conn, sql: str, params: Sequence[Any] = (), *, settings: Sequence[str] = ()
) -> list[dict[str, Any]]:
    """Run one read-only query; `settings`: extra `SET LOCAL` lines for this query only."""
    with conn.cursor() as cur:
        # JIT compilation costs PostgreSQL a second or more on these plans and never pays back on page queries.
        cur.execute("SET LOCAL jit = off")
        for setting in settings:
            cur.execute("SET LOCAL " + setting)
        cur.execute(sql, params)
        names = [c.name for c in cur.description]
        rows = [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
    conn.rollback()  # read-only: end the transaction so a pooled connection never idles inside one
    return rows


def orthanc_study_id(patient_id: str, study_uid: str) -> str:
    """Orthanc's public identifier of a study: SHA-1 of "PatientID|StudyInstanceUID" in 5 dashed groups."""
    h = hashlib.sha1(f"{patient_id}|{study_uid}".encode()).hexdigest()
    return "-".join(h[i : i + 8] for i in range(0, 40, 8))


def study_patient_id(conn, uid: str) -> str | None:
    """The PatientID the census recorded for a study (None when the census does not know it or has none)."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT patient_id FROM rpacs.study WHERE study_uid = %s AND patient_id IS NOT NULL", (uid,)
        )
        row = cur.fetchone()
    conn.commit()
    return row[0] if row else None


@dataclass
class Where:
    """A WHERE clause built from validated filters, with its bound parameters."""

    clauses: list[str]
    params: list[Any]

    def sql(self) -> str:
        return ("WHERE " + " AND ".join(self.clauses)) if self.clauses else ""


def dose_where(
    f: dict[str, Any],
    *,
    date_col: str,
    event: str | None = None,
    agent: str | None = None,
    study: str = "s",
) -> Where:
    """Filters on the study's fields (alias `study`: dose.study, or a CT event / administration row, which carry
    copies of them, sql/007_web.sql), the protocol (`event` alias, else any event of the study) and the agent
    (`agent` alias, else any administration of the study)."""
    c: list[str] = []
    p: list[Any] = []
    s = study
    simple = {
        "manufacturer": f"{s}.manufacturer",
        "model": f"{s}.model_name",
        "station": f"{s}.station_name",
        "description": f"{s}.study_description",
        "sex": f"{s}.patient_sex",
    }
    if "from" in f:
        c.append(f"{date_col} >= %s")
        p.append(f["from"])
    if "to" in f:
        c.append(f"{date_col} <= %s")
        p.append(f["to"])
    for key, col in simple.items():
        if key in f:
            c.append(f"{col} = %s")
            p.append(f[key])
    for key, col, op in (
        ("age_min", f"{s}.patient_age_years", ">="),
        ("age_max", f"{s}.patient_age_years", "<"),
        ("weight_min", f"{s}.patient_weight_kg", ">="),
        ("weight_max", f"{s}.patient_weight_kg", "<"),
    ):
        if key in f:
            c.append(f"{col} {op} %s")
            p.append(f[key])
    if "modality" in f:
        c.append(
            "EXISTS (SELECT 1 FROM dose.series_protocol sp"
            f" WHERE sp.study_instance_uid = {s}.study_instance_uid AND sp.modality = %s)"
        )
        p.append(f["modality"])
    if "protocol" in f:
        if event is None:
            c.append(
                "EXISTS (SELECT 1 FROM dose.ct_event pe"
                f" WHERE pe.study_instance_uid = {s}.study_instance_uid AND pe.acquisition_protocol = %s)"
            )
        else:
            c.append(f"{event}.acquisition_protocol = %s")
        p.append(f["protocol"])
    if "agent" in f:
        if agent is None:
            c.append(
                "EXISTS (SELECT 1 FROM dose.radiopharmaceutical ra"
                f" WHERE ra.study_instance_uid = {s}.study_instance_uid AND ra.agent = %s)"
            )
        else:
            c.append(f"{agent}.agent = %s")
        p.append(f["agent"])
    return Where(c, p)


def _stats(col: str, name: str) -> str:
    """N-free summary columns of one measure: median, quartiles, mean, 75th and 95th percentiles."""
    return f"""percentile_cont(0.5) WITHIN GROUP (ORDER BY {col}) AS {name}_median,
               percentile_cont(0.25) WITHIN GROUP (ORDER BY {col}) AS {name}_q1,
               percentile_cont(0.75) WITHIN GROUP (ORDER BY {col}) AS {name}_q3,
               avg({col}) AS {name}_mean,
               percentile_cont(0.75) WITHIN GROUP (ORDER BY {col}) AS {name}_p75,
               percentile_cont(0.95) WITHIN GROUP (ORDER BY {col}) AS {name}_p95,
               min({col}) AS {name}_min, max({col}) AS {name}_max"""


# ----- research ------------------------------------------------------------------------------------------


def research_yearly(conn, f: dict[str, Any]) -> list[dict[str, Any]]:
    """Studies per year x description x modality set (corrected when corrected) x retrieval state, summed from
    the tally `rpacs.study_tally` (sql/007_web.sql) instead of counting rpacs.study joined to rpacs.retrieval.
    The state shown comes from the study's retrieval (rpacs.study.retrieval_state mirrors rpacs.retrieval.state;
    NULL: not queued yet). Tally groups whose corrected-or-found modality sets print alike merge into one row."""
    c, p = [], []
    if "from_year" in f:
        c.append("study_year >= %s")
        p.append(f["from_year"])
    if "to_year" in f:
        c.append("study_year <= %s")
        p.append(f["to_year"])
    where = Where(c, p)
    return _rows(
        conn,
        f"""SELECT study_year AS year, description,
                   array_to_string(coalesce(modalities_corrected, modalities_found), '\\') AS modalities,
                   CASE WHEN NOT is_target THEN 'not_target'
                        WHEN retrieval_state = 'done' THEN 'retrieved'
                        WHEN retrieval_state IN ('failed', 'partial') THEN 'failed'
                        ELSE 'pending' END AS state, sum(studies)::int AS studies
              FROM rpacs.study_tally {where.sql()}
             GROUP BY 1, 2, 3, 4 HAVING sum(studies) <> 0 ORDER BY 1, 2, 3, 4""",
        where.params,
    )


def research_corrections(conn) -> list[dict[str, Any]]:
    """Modality corrections per description: found set -> corrected set, the reason, how many studies."""
    return _rows(
        conn,
        """SELECT description, array_to_string(modalities_found, '\\') AS modalities_found,
                  array_to_string(modalities_corrected, '\\') AS modalities_corrected, correction_reason,
                  count(*)::int AS studies, min(study_date) AS first_date, max(study_date) AS last_date
             FROM rpacs.study WHERE modalities_corrected IS NOT NULL
            GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4""",
    )


def research_failed(conn, limit: int) -> list[dict[str, Any]]:
    """Failed or partial retrievals with their last error and log, newest first."""
    return _rows(
        conn,
        """SELECT r.study_instance_uid, s.study_date, s.description, s.patient_id, r.state, r.attempts,
                  r.last_error, r.log_path, r.updated_at
             FROM rpacs.retrieval r LEFT JOIN rpacs.study s ON s.study_uid = r.study_instance_uid
            WHERE r.state IN ('failed', 'partial') ORDER BY r.updated_at DESC LIMIT %s""",
        (limit,),
    )


def research_forward_incomplete(conn, limit: int) -> list[dict[str, Any]]:
    """Studies whose forwarded set to the dose PACS is incomplete, stuck ones first, with the reason
    (nmdose.forward.runner.pending; `nmdose forward pending` lists the same)."""
    from nmdose.forward.runner import pending

    return [{k: v for k, v in row.items() if k != "category"} for row in pending(conn, limit)]


# ----- dose ----------------------------------------------------------------------------------------------


def ct_protocols(conn, f: dict[str, Any], group: str) -> list[dict[str, Any]]:
    """CTDIvol and DLP statistics per CT acquisition protocol (one value per irradiation event) or per study
    description (one value per study: its events' mean CTDIvol, dose.study.ct_mean_ctdivol_mgy, and its total
    DLP). Events carry their study's fields (sql/007_web.sql): no join."""
    if group == "protocol":
        w = dose_where(f, date_col="e.study_date", event="e", study="e")
        sql = f"""SELECT coalesce(e.acquisition_protocol, '') AS protocol, count(*)::int AS n,
                         count(DISTINCT e.study_instance_uid)::int AS studies,
                         {_stats("e.ctdivol_mgy", "ctdivol")}, {_stats("e.dlp_mgycm", "dlp")}
                    FROM dose.ct_event e {w.sql()} GROUP BY 1 ORDER BY 1"""
    else:
        w = dose_where(f, date_col="s.study_date")
        w.clauses.append("s.ct_event_count > 0")
        sql = f"""SELECT coalesce(s.study_description, '') AS description, count(*)::int AS n,
                         count(*)::int AS studies,
                         {_stats("s.ct_mean_ctdivol_mgy", "ctdivol")}, {_stats("s.ct_total_dlp_mgycm", "dlp")}
                    FROM dose.study s {w.sql()} GROUP BY 1 ORDER BY 1"""
    return _rows(conn, sql, w.params)


def ct_monthly(conn, f: dict[str, Any]) -> list[dict[str, Any]]:
    """Median CTDIvol and DLP per month (per irradiation event), for the trend chart."""
    w = dose_where(f, date_col="e.study_date", event="e", study="e")
    return _rows(
        conn,
        f"""SELECT to_char(date_trunc('month', e.study_date), 'YYYY-MM') AS month, count(*)::int AS n,
                   percentile_cont(0.5) WITHIN GROUP (ORDER BY e.ctdivol_mgy) AS ctdivol_median,
                   percentile_cont(0.5) WITHIN GROUP (ORDER BY e.dlp_mgycm) AS dlp_median
              FROM dose.ct_event e {w.sql()} GROUP BY 1 ORDER BY 1""",
        w.params,
    )


def ct_events(conn, f: dict[str, Any], limit: int) -> list[dict[str, Any]]:
    """The filtered CT irradiation events with their study's fields (the data behind the statistics)."""
    w = dose_where(f, date_col="e.study_date", event="e", study="e")
    return _rows(
        conn,
        f"""SELECT e.study_instance_uid, e.study_date, e.study_description, e.manufacturer, e.model_name,
                   e.station_name, e.patient_sex, e.patient_age_years, e.patient_weight_kg, e.ordinal,
                   e.acquisition_protocol, e.target_region, e.acquisition_type, e.ctdivol_mgy, e.dlp_mgycm,
                   e.phantom, e.kvp, e.tube_current_ma, e.effective_dose_msv
              FROM dose.ct_event e {w.sql()} ORDER BY e.study_date, e.study_instance_uid, e.ordinal LIMIT %s""",
        [*w.params, limit],
    )


def activity(conn, f: dict[str, Any], group: str) -> list[dict[str, Any]]:
    """Administered activity and activity per kg per radiopharmaceutical (agent) or per study description."""
    w = dose_where(f, date_col="a.study_date", agent="a", study="a")
    key = "coalesce(a.agent, '')" if group == "agent" else "coalesce(a.study_description, '')"
    name = "agent" if group == "agent" else "description"
    return _rows(
        conn,
        f"""SELECT {key} AS {name}, count(*)::int AS n,
                   {_stats("a.activity_mbq", "activity")}, {_stats("a.activity_per_kg_mbq", "per_kg")},
                   avg(a.effective_dose_msv) AS effective_dose_mean
              FROM dose.radiopharmaceutical a {w.sql()} GROUP BY 1 ORDER BY 1""",
        w.params,
    )


def activity_points(conn, f: dict[str, Any], limit: int) -> list[dict[str, Any]]:
    """Activity against patient weight, one point per administration (the scatter chart)."""
    w = dose_where(f, date_col="a.study_date", agent="a", study="a")
    w.clauses += ["a.activity_mbq IS NOT NULL", "a.patient_weight_kg IS NOT NULL"]
    return _rows(
        conn,
        f"""SELECT a.study_instance_uid, a.agent, a.patient_weight_kg AS weight_kg, a.activity_mbq
              FROM dose.radiopharmaceutical a {w.sql()} ORDER BY a.study_date, a.study_instance_uid LIMIT %s""",
        [*w.params, limit],
    )


def dose_study(conn, uid: str) -> dict[str, Any] | None:
    """One study: its merged record, every CT event and administration, its source objects."""
    study = _rows(conn, "SELECT * FROM dose.study WHERE study_instance_uid = %s", (uid,))
    if not study:
        return None
    out = study[0]
    out["ct_events"] = _rows(
        conn,
        """SELECT e.ordinal, e.event_key, e.irradiation_event_uid, e.acquisition_protocol, e.target_region,
                  e.acquisition_type, e.ctdivol_mgy, e.dlp_mgycm, e.phantom, e.scanning_length_mm, e.kvp,
                  e.tube_current_ma, e.pitch, e.k_msv_per_mgycm, e.effective_dose_msv,
                  CASE WHEN e.k_msv_per_mgycm IS NULL THEN NULL
                       WHEN s.derived->>'age_band_years' IS NULL THEN s.derived->'sources'->>'ct_k_adult'
                       ELSE s.derived->'sources'->>'ct_k_child' END AS k_source
             FROM dose.ct_event e JOIN dose.study s USING (study_instance_uid)
            WHERE e.study_instance_uid = %s ORDER BY e.ordinal""",
        (uid,),
    )
    out["radiopharmaceuticals"] = _rows(
        conn,
        """SELECT ordinal, source, agent, radionuclide, activity_mbq, activity_rule, start_datetime, route,
                  activity_per_kg_mbq, coefficient_msv_per_mbq, effective_dose_msv,
                  details->>'derived_note' AS coefficient_note
             FROM dose.radiopharmaceutical WHERE study_instance_uid = %s ORDER BY ordinal""",
        (uid,),
    )
    out["objects"] = _rows(
        conn,
        """SELECT sop_instance_uid, series_instance_uid, modality, kind, status, source, warnings, first_seen
             FROM dose.object WHERE study_instance_uid = %s ORDER BY first_seen, sop_instance_uid""",
        (uid,),
    )
    patient = _rows(conn, "SELECT patient_id FROM rpacs.study WHERE study_uid = %s", (uid,))
    out["orthanc_study_id"] = orthanc_study_id(patient[0]["patient_id"], uid) if patient else None
    return out


# ----- reference levels, outliers, box plots, effective dose, dead letters ----------------------------------

# The configured reference levels as a PostgreSQL record set (one bound jsonb parameter): matching and comparing
# happen in SQL next to the percentiles, so the page, the outlier list and the exports agree.
LEVELS_CTE = """lv AS (SELECT * FROM jsonb_to_recordset(%s::jsonb) AS l(
                    name text, modality text, quantity text, per text, value double precision, status text,
                    source text, year integer, protocols text[], descriptions text[], target_regions text[],
                    agents text[], age_min double precision, age_max double precision))"""

# A level applies to a row when every pattern list it has matches (any pattern of a list; `~*`: case-insensitive
# regular expression) and the patient's age is in its band. The patterns are run once per distinct value, not per
# row: m_protocol, m_description, m_region and m_agent (see _match_ctes) hold the (level, value) pairs that match,
# and rows look themselves up there with a hashed `IN`.
_AGE_MATCH = "(l.age_min IS NULL OR {r}.age >= l.age_min) AND (l.age_max IS NULL OR {r}.age < l.age_max)"
_IN = "(l.name, {r}.%s) IN (SELECT name, v FROM m_%s)"
EVENT_MATCH = (
    "l.modality = 'CT' AND l.per = 'event'"
    f" AND (l.protocols IS NULL OR {_IN % ('protocol', 'protocol')})"
    f" AND (l.descriptions IS NULL OR {_IN % ('description', 'description')})"
    f" AND (l.target_regions IS NULL OR {_IN % ('target_region', 'region')}) AND " + _AGE_MATCH
)
# Per-study levels matching protocols or target regions look at every event of the study (rarely used: slower).
STUDY_MATCH = (
    "l.modality = 'CT' AND l.per = 'study'"
    " AND (l.protocols IS NULL OR EXISTS (SELECT 1 FROM dose.ct_event x WHERE x.study_instance_uid ="
    " {r}.study_instance_uid AND x.acquisition_protocol ~* ANY (l.protocols)))"
    f" AND (l.descriptions IS NULL OR {_IN % ('description', 'description')})"
    " AND (l.target_regions IS NULL OR EXISTS (SELECT 1 FROM dose.ct_event x WHERE x.study_instance_uid ="
    " {r}.study_instance_uid AND x.target_region ~* ANY (l.target_regions))) AND " + _AGE_MATCH
)
ADMIN_MATCH = (
    "l.modality IN ('NM', 'PT') AND l.per = 'administration'"
    f" AND (l.agents IS NULL OR {_IN % ('agent', 'agent')})"
    f" AND (l.descriptions IS NULL OR {_IN % ('description', 'description')}) AND " + _AGE_MATCH
)
_NONE = "SELECT NULL::text AS v WHERE false"


def _match_ctes(
    *, protocol: str = _NONE, description: str = _NONE, region: str = _NONE, agent: str = _NONE
) -> str:
    """The (level name, value) pairs whose patterns match, one CTE per attribute; each argument is a query giving
    the candidate values as column `v`."""
    parts = []
    for name, source, patterns in (
        ("protocol", protocol, "protocols"),
        ("description", description, "descriptions"),
        ("region", region, "target_regions"),
        ("agent", agent, "agents"),
    ):
        parts.append(
            f"m_{name} AS MATERIALIZED (SELECT l.name, d.v FROM lv l"
            f" JOIN (SELECT DISTINCT v FROM ({source}) s) d ON d.v ~* ANY (l.{patterns}))"
        )
    return ",\n        ".join(parts)


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
                "age_min": lv.age_band.min_years if lv.age_band else None,
                "age_max": lv.age_band.max_years if lv.age_band else None,
            }
            for lv in levels
        ],
        ensure_ascii=False,
    )


def reference_level_rows(levels: Sequence[Any]) -> list[dict[str, Any]]:
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
            "age_min": lv.age_band.min_years if lv.age_band else None,
            "age_max": lv.age_band.max_years if lv.age_band else None,
        }
        for lv in levels
    ]


def _ev_cte(f: dict[str, Any]) -> tuple[str, list[Any]]:
    """`ev`: the filtered CT irradiation events with their study's description and patient age (copied onto
    each event with the other filtered fields by sql/007_web.sql's triggers: no join)."""
    w = dose_where(f, date_col="e.study_date", event="e", study="e")
    return (
        f"""ev AS (SELECT e.study_instance_uid, e.study_date, e.ordinal, e.acquisition_protocol AS protocol,
                          e.target_region, e.ctdivol_mgy, e.dlp_mgycm, e.study_description AS description,
                          e.patient_age_years AS age
                     FROM dose.ct_event e {w.sql()})""",
        w.params,
    )


def _st_cte(f: dict[str, Any], *, ctdivol: bool = False) -> tuple[str, list[Any]]:
    """`st`: the filtered studies with CT events: total DLP and, with `ctdivol`, the mean CTDIvol of their
    events (dose.study.ct_mean_ctdivol_mgy)."""
    w = dose_where(f, date_col="s.study_date")
    w.clauses.append("s.ct_event_count > 0")
    mean = "s.ct_mean_ctdivol_mgy" if ctdivol else "NULL::double precision"
    return (
        f"""st AS (SELECT s.study_instance_uid, s.study_date, s.study_description AS description,
                          s.patient_age_years AS age, s.ct_total_dlp_mgycm AS dlp, {mean} AS ctdivol
                     FROM dose.study s {w.sql()})""",
        w.params,
    )


def _ad_cte(f: dict[str, Any]) -> tuple[str, list[Any]]:
    """`ad`: the filtered radiopharmaceutical administrations (description and age as for `ev`)."""
    w = dose_where(f, date_col="a.study_date", agent="a", study="a")
    return (
        f"""ad AS (SELECT a.study_instance_uid, a.study_date, a.ordinal, a.agent, a.activity_mbq,
                          a.activity_per_kg_mbq, a.study_description AS description, a.patient_age_years AS age
                     FROM dose.radiopharmaceutical a {w.sql()})""",
        w.params,
    )


def _named(columns: str) -> str:
    """`a, b, c` -> `a AS k1, b AS k2, c AS k3` (top-level commas only)."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(columns):
        depth += ch == "("
        depth -= ch == ")"
        if ch == "," and depth == 0:
            parts.append(columns[start:i].strip())
            start = i + 1
    parts.append(columns[start:].strip())
    return ", ".join(f"{p} AS k{i}" for i, p in enumerate(parts, 1))


def outliers(conn, f: dict[str, Any], levels: Sequence[Any], limit: int) -> list[dict[str, Any]]:
    """CT events, CT examinations and administrations above a reference level that applies to them, or above
    the 95th percentile (`percentile_cont`) of their acquisition protocol / agent within the filtered set.
    Worst first (value / level)."""
    ev, ev_p = _ev_cte(f)
    st, st_p = _st_cte(f)
    ad, ad_p = _ad_cte(f)
    reason = ""
    if "reason" in f:
        reason = "WHERE reason = %s"
    common = "l.quantity, l.value AS level, l.name AS level_name, l.status AS level_status, l.source AS level_source"
    matches = _match_ctes(
        protocol="SELECT protocol AS v FROM evk",
        description="SELECT description AS v FROM evk UNION SELECT description FROM st"
        " UNION SELECT description FROM adk",
        region="SELECT target_region AS v FROM evk",
        agent="SELECT agent AS v FROM adk",
    )
    # Events and administrations are matched to the levels once per distinct (matching attributes, age bucket)
    # (evk, adk: a NULL attribute is its own key), then joined back to their rows on that key.
    evk_key = "coalesce({r}.protocol, chr(1)), coalesce({r}.description, chr(1)), coalesce({r}.target_region, chr(1))"
    adk_key = "coalesce({r}.agent, chr(1)), coalesce({r}.description, chr(1))"
    sql = f"""WITH {LEVELS_CTE}, {ev}, {st}, {ad}, {AGE_BOUNDS_CTE},
        evk AS MATERIALIZED (SELECT {_named(evk_key.format(r="ev"))}, coalesce(width_bucket(age, (SELECT b FROM ab)), -1) AS kb,
                                    min(protocol) AS protocol, min(description) AS description,
                                    min(target_region) AS target_region, min(age) AS age
                               FROM ev GROUP BY 1, 2, 3, 4),
        adk AS MATERIALIZED (SELECT {_named(adk_key.format(r="ad"))}, coalesce(width_bucket(age, (SELECT b FROM ab)), -1) AS kb,
                                    min(agent) AS agent, min(description) AS description, min(age) AS age
                               FROM ad GROUP BY 1, 2, 3),
        {matches},
        evl AS MATERIALIZED (SELECT r.k1, r.k2, r.k3, r.kb, l.*
                               FROM evk r JOIN lv l ON {EVENT_MATCH.format(r="r")}),
        adl AS MATERIALIZED (SELECT r.k1, r.k2, r.kb, l.*
                               FROM adk r JOIN lv l ON {ADMIN_MATCH.format(r="r")}),
        ev_p AS (SELECT coalesce(protocol, '') AS grp,
                        percentile_cont(0.95) WITHIN GROUP (ORDER BY ctdivol_mgy) AS ctdivol_p95,
                        percentile_cont(0.95) WITHIN GROUP (ORDER BY dlp_mgycm) AS dlp_p95
                   FROM ev GROUP BY 1),
        ad_p AS (SELECT coalesce(agent, '') AS grp,
                        percentile_cont(0.95) WITHIN GROUP (ORDER BY activity_mbq) AS activity_p95,
                        percentile_cont(0.95) WITHIN GROUP (ORDER BY activity_per_kg_mbq) AS per_kg_p95
                   FROM ad GROUP BY 1),
        hits AS (
          SELECT 'reference_level' AS reason, 'ct_event' AS kind, r.study_instance_uid, r.study_date,
                 r.description AS study_description, r.protocol AS "group", r.ordinal, v.value, {common}
            FROM ev r
            JOIN evl l ON (l.k1, l.k2, l.k3, l.kb)
                        = ({evk_key.format(r="r")}, coalesce(width_bucket(r.age, (SELECT b FROM ab)), -1))
           CROSS JOIN LATERAL (SELECT CASE l.quantity WHEN 'ctdivol_mgy' THEN r.ctdivol_mgy
                                                      ELSE r.dlp_mgycm END AS value) v
           WHERE v.value > l.value
          UNION ALL
          SELECT 'reference_level', 'ct_study', r.study_instance_uid, r.study_date, r.description, NULL, NULL,
                 r.dlp, {common}
            FROM st r JOIN lv l ON {STUDY_MATCH.format(r="r")}
           WHERE r.dlp > l.value
          UNION ALL
          SELECT 'reference_level', 'administration', r.study_instance_uid, r.study_date, r.description, r.agent,
                 r.ordinal, v.value, {common}
            FROM ad r
            JOIN adl l ON (l.k1, l.k2, l.kb)
                        = ({adk_key.format(r="r")}, coalesce(width_bucket(r.age, (SELECT b FROM ab)), -1))
           CROSS JOIN LATERAL (SELECT CASE l.quantity WHEN 'activity_mbq' THEN r.activity_mbq
                                                      ELSE r.activity_per_kg_mbq END AS value) v
           WHERE v.value > l.value
          UNION ALL
          SELECT 'p95', 'ct_event', r.study_instance_uid, r.study_date, r.description, r.protocol, r.ordinal,
                 q.value, q.quantity, q.p95, NULL, NULL, NULL
            FROM ev r JOIN ev_p p ON p.grp = coalesce(r.protocol, '')
           CROSS JOIN LATERAL (VALUES ('ctdivol_mgy', r.ctdivol_mgy, p.ctdivol_p95),
                                      ('dlp_mgycm', r.dlp_mgycm, p.dlp_p95)) q(quantity, value, p95)
           WHERE q.value > q.p95
          UNION ALL
          SELECT 'p95', 'administration', r.study_instance_uid, r.study_date, r.description, r.agent, r.ordinal,
                 q.value, q.quantity, q.p95, NULL, NULL, NULL
            FROM ad r JOIN ad_p p ON p.grp = coalesce(r.agent, '')
           CROSS JOIN LATERAL (VALUES ('activity_mbq', r.activity_mbq, p.activity_p95),
                                      ('activity_mbq_per_kg', r.activity_per_kg_mbq, p.per_kg_p95)) q(quantity, value, p95)
           WHERE q.value > q.p95)
        SELECT reason, kind, study_instance_uid, study_date, study_description, "group", ordinal, quantity, value,
               level, value / NULLIF(level, 0) AS ratio, level_name, level_status, level_source
          FROM hits {reason}
         ORDER BY value / NULLIF(level, 0) DESC NULLS FIRST, study_date DESC, study_instance_uid, kind, ordinal, quantity LIMIT %s"""
    params: list[Any] = [levels_json(levels), *ev_p, *st_p, *ad_p]
    if reason:
        params.append(f["reason"])
    # The events are joined to their levels on a key of the small evl; PostgreSQL cannot estimate the rows of a
    # materialised CTE and chose a merge join sorting every event (measured 2.5 s of 6.5 on 500k events).
    rows = _rows(conn, sql, [*params, limit], settings=("enable_mergejoin = off",))
    for row in rows:
        row["link"] = "ui/orthanc/study/" + _quote(row["study_instance_uid"])
    return rows


def _quote(value: str) -> str:
    from urllib.parse import quote

    return quote(value, safe="")


# measure -> (record set, column, the levels' quantity); group -> key column per record set
BOX_MEASURES = {
    "ctdivol": ("ct", "ctdivol_mgy", "ctdivol_mgy"),
    "dlp": ("ct", "dlp_mgycm", "dlp_mgycm"),
    "activity": ("nm", "activity_mbq", "activity_mbq"),
    "per_kg": ("nm", "activity_per_kg_mbq", "activity_mbq_per_kg"),
}
BOX_GROUPS = {"ct": ("protocol", "description"), "nm": ("agent", "description")}


# The columns each level match reads from a record set (EVENT_MATCH, STUDY_MATCH, ADMIN_MATCH).
MATCH_COLUMNS = {
    "ev": ("protocol", "description", "target_region", "age"),
    "st": ("study_instance_uid", "description", "age"),
    "ad": ("agent", "description", "age"),
}
# `ab.b`: every age-band limit of the levels, sorted; width_bucket(age, (SELECT b FROM ab)) numbers the interval an age lies in,
# and ages in one interval are inside or outside each band alike ([min, max), like _AGE_MATCH).
AGE_BOUNDS_CTE = """ab AS (SELECT coalesce(array_agg(DISTINCT x.b ORDER BY x.b), '{}'::double precision[]) AS b
                       FROM lv l CROSS JOIN LATERAL (VALUES (l.age_min), (l.age_max)) x(b)
                      WHERE x.b IS NOT NULL)"""


def box(conn, f: dict[str, Any], levels: Sequence[Any], measure: str, group: str) -> list[dict[str, Any]]:
    """Box-plot statistics of one measure per group: quartiles (`percentile_cont`), Tukey whiskers (the most
    extreme values within 1.5 IQR of the box), the count outside them, and the reference levels that apply to
    at least one value of the group. CT per protocol: one value per irradiation event; CT per description: one
    value per study (mean CTDIvol of its events, total DLP); activity: one value per administration."""
    kind, col, quantity = BOX_MEASURES[measure]
    if group not in BOX_GROUPS[kind]:
        raise ParamError(
            f"parameter 'group' must be one of {', '.join(BOX_GROUPS[kind])} for measure {measure}"
        )
    if kind == "ct" and group == "protocol":
        cte, params = _ev_cte(f)
        rel, key, value, match = "ev", "coalesce(r.protocol, '')", f"r.{col}", EVENT_MATCH
        matches = _match_ctes(
            protocol="SELECT protocol AS v FROM keys",
            description="SELECT description AS v FROM keys",
            region="SELECT target_region AS v FROM keys",
        )
    elif kind == "ct":
        cte, params = _st_cte(f, ctdivol=measure == "ctdivol")
        value = "r.ctdivol" if measure == "ctdivol" else "r.dlp"
        rel, key, match = "st", "coalesce(r.description, '')", STUDY_MATCH
        matches = _match_ctes(description="SELECT description AS v FROM keys")
    else:
        cte, params = _ad_cte(f)
        key = "coalesce(r.agent, '')" if group == "agent" else "coalesce(r.description, '')"
        rel, value, match = "ad", f"r.{col}", ADMIN_MATCH
        matches = _match_ctes(
            description="SELECT description AS v FROM keys", agent="SELECT agent AS v FROM keys"
        )
    cols = MATCH_COLUMNS[rel]
    sql = f"""WITH {LEVELS_CTE}, {cte}, {AGE_BOUNDS_CTE},
        v AS MATERIALIZED (SELECT {key} AS grp, {value} AS x, {", ".join("r." + c for c in cols)}
                             FROM {rel} r WHERE {value} IS NOT NULL),
        -- the levels are matched once per distinct group x matching attributes x age bucket (ages between the
        -- same two band limits match the same levels), not once per value
        keys AS MATERIALIZED (SELECT grp, {", ".join(c for c in cols if c != "age")}, min(age) AS age
                                FROM v
                               GROUP BY grp, {", ".join(c for c in cols if c != "age")}, width_bucket(age, (SELECT b FROM ab))),
        {matches},
        app AS MATERIALIZED (SELECT DISTINCT r.grp, l.name FROM keys r
                               JOIN lv l ON l.quantity = %s AND {match.format(r="r")}),
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
        SELECT q.grp AS "{group}", q.n, q.min, q.q1, q.median, q.q3, q.max, w.whisker_low, w.whisker_high,
               w.outside,
               (SELECT coalesce(jsonb_agg(jsonb_build_object('name', l.name, 'value', l.value, 'status', l.status,
                                                             'source', l.source, 'year', l.year)
                                          ORDER BY l.value, l.name), '[]'::jsonb)
                  FROM app JOIN lv l USING (name) WHERE app.grp = q.grp) AS levels
          FROM q JOIN w USING (grp) ORDER BY 1"""
    return _rows(conn, sql, [levels_json(levels), *params, quantity])


def effective_dose(conn, f: dict[str, Any]) -> list[dict[str, Any]]:
    """Effective dose per study description (one value per study): CT (DLP x k), radiopharmaceutical
    (activity x e) and total, with how many studies have a value and the coefficient sources used."""
    w = dose_where(f, date_col="s.study_date")
    med = "percentile_cont(0.5) WITHIN GROUP (ORDER BY s.{0}_effective_dose_msv) AS {0}_median"
    return _rows(
        conn,
        f"""SELECT coalesce(s.study_description, '') AS description, count(*)::int AS studies,
                   count(s.ct_effective_dose_msv)::int AS ct_n, {med.format("ct")},
                   avg(s.ct_effective_dose_msv) AS ct_mean,
                   count(s.nm_effective_dose_msv)::int AS nm_n, {med.format("nm")},
                   avg(s.nm_effective_dose_msv) AS nm_mean,
                   count(s.total_effective_dose_msv)::int AS total_n, {med.format("total")},
                   avg(s.total_effective_dose_msv) AS total_mean,
                   array_remove(array_agg(DISTINCT CASE
                       WHEN s.ct_effective_dose_msv IS NULL THEN NULL
                       WHEN s.derived->>'age_band_years' IS NULL THEN s.derived->'sources'->>'ct_k_adult'
                       ELSE s.derived->'sources'->>'ct_k_child' END), NULL) AS ct_sources,
                   array_remove(array_agg(DISTINCT CASE WHEN s.nm_effective_dose_msv IS NOT NULL
                       THEN s.derived->'sources'->>'nm' END), NULL) AS nm_sources
              FROM dose.study s {w.sql()} GROUP BY 1 ORDER BY 1""",
        w.params,
    )


def dead_letters(conn, state: str, limit: int) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Dose files that failed to ingest (newest first), and how many are open / resolved."""
    where = {"open": "WHERE resolved_at IS NULL", "resolved": "WHERE resolved_at IS NOT NULL", "all": ""}[
        state
    ]
    rows = _rows(
        conn,
        f"""SELECT id, file_path, error, source, attempts, first_seen, last_seen, resolved_at, file_sha256
              FROM dose.dead_letter {where} ORDER BY last_seen DESC, id DESC LIMIT %s""",
        (limit,),
    )
    counts = _rows(
        conn,
        """SELECT count(*) FILTER (WHERE resolved_at IS NULL)::int AS open,
                  count(*) FILTER (WHERE resolved_at IS NOT NULL)::int AS resolved FROM dose.dead_letter""",
    )[0]
    return rows, counts
