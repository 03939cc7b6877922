"""SQL behind the `/nmdose/api/` routes: parameter validation and aggregates computed by PostgreSQL.

Every aggregate (counts, `percentile_cont` medians and quartiles, means) is computed in SQL, never by looping
over rows in Python; filters are bound parameters, never formatted into the text. Nothing here knows HTTP:
bad parameters raise :class:`ParamError` (the routes turn it into a 400 answer).
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

# Retrieval state as shown on the research page, from rpacs.retrieval.state (NULL: not queued yet).
STATE_SQL = """CASE WHEN NOT s.is_target THEN 'not_target'
                    WHEN r.state = 'done' THEN 'retrieved'
                    WHEN r.state IN ('failed', 'partial') THEN 'failed'
                    ELSE 'pending' END"""

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
    unknown = sorted(set(query) - set(spec))
    if unknown:
        raise ParamError(f"unknown parameter '{unknown[0]}' (known: {', '.join(sorted(spec))})")
    out = {name: parser(name, query[name]) for name, parser in spec.items() if query.get(name, "") != ""}
    if "from" in out and "to" in out and out["from"] > out["to"]:
        raise ParamError("parameter 'from' is after 'to'")
    return out


FORMAT = {"format": _choice("json", "csv")}
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
    "age_min": _float,
    "age_max": _float,
    "weight_min": _float,
    "weight_max": _float,
}


# ----- helpers -------------------------------------------------------------------------------------------


def _rows(conn, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
    with conn.cursor() as cur:
        cur.execute(sql, params)
        names = [c.name for c in cur.description]
        rows = [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
    conn.rollback()  # read-only: end the transaction so a pooled connection never idles inside one
    return rows


def to_csv(rows: list[dict[str, Any]], columns: Sequence[str] | None = None) -> str:
    """Rows as CSV (header line, then one line per row), lists joined with backslash as in DICOM."""
    columns = list(columns or (rows[0].keys() if rows else []))
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow(columns)
    for row in rows:
        w.writerow(["\\".join(map(str, v)) if isinstance(v, list) else ("" if v is None else v) for v in
                    (row.get(c) for c in columns)])  # fmt: skip
    return buf.getvalue()


def orthanc_study_id(patient_id: str, study_uid: str) -> str:
    """Orthanc's public identifier of a study: SHA-1 of "PatientID|StudyInstanceUID" in 5 dashed groups."""
    h = hashlib.sha1(f"{patient_id}|{study_uid}".encode()).hexdigest()
    return "-".join(h[i : i + 8] for i in range(0, 40, 8))


@dataclass
class Where:
    """A WHERE clause built from validated filters, with its bound parameters."""

    clauses: list[str]
    params: list[Any]

    def sql(self) -> str:
        return ("WHERE " + " AND ".join(self.clauses)) if self.clauses else ""


def dose_where(
    f: dict[str, Any], *, date_col: str, event: str | None = None, agent: str | None = None
) -> Where:
    """Filters on dose.study `s` joined with an event table (`event` alias for protocol, `agent` alias)."""
    c: list[str] = []
    p: list[Any] = []
    simple = {
        "manufacturer": "s.manufacturer",
        "model": "s.model_name",
        "station": "s.station_name",
        "description": "s.study_description",
        "sex": "s.patient_sex",
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
        ("age_min", "s.patient_age_years", ">="),
        ("age_max", "s.patient_age_years", "<"),
        ("weight_min", "s.patient_weight_kg", ">="),
        ("weight_max", "s.patient_weight_kg", "<"),
    ):
        if key in f:
            c.append(f"{col} {op} %s")
            p.append(f[key])
    if "modality" in f:
        c.append(
            "EXISTS (SELECT 1 FROM dose.series_protocol sp"
            " WHERE sp.study_instance_uid = s.study_instance_uid AND sp.modality = %s)"
        )
        p.append(f["modality"])
    if "protocol" in f:
        if event is None:
            c.append(
                "EXISTS (SELECT 1 FROM dose.ct_event pe"
                " WHERE pe.study_instance_uid = s.study_instance_uid AND pe.acquisition_protocol = %s)"
            )
        else:
            c.append(f"{event}.acquisition_protocol = %s")
        p.append(f["protocol"])
    if "agent" in f:
        if agent is None:
            c.append(
                "EXISTS (SELECT 1 FROM dose.radiopharmaceutical ra"
                " WHERE ra.study_instance_uid = s.study_instance_uid AND ra.agent = %s)"
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
    """Studies per year x description x modality set (corrected when corrected) x retrieval state."""
    c, p = [], []
    if "from_year" in f:
        c.append("s.study_date >= make_date(%s, 1, 1)")
        p.append(f["from_year"])
    if "to_year" in f:
        c.append("s.study_date < make_date(%s + 1, 1, 1)")
        p.append(f["to_year"])
    where = Where(c, p)
    return _rows(
        conn,
        f"""SELECT extract(year FROM s.study_date)::int AS year, s.description,
                   array_to_string(coalesce(s.modalities_corrected, s.modalities_found), '\\') AS modalities,
                   {STATE_SQL} AS state, count(*)::int AS studies
              FROM rpacs.study s LEFT JOIN rpacs.retrieval r ON r.study_instance_uid = s.study_uid
              {where.sql()}
             GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4""",
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


# ----- dose ----------------------------------------------------------------------------------------------


def ct_protocols(conn, f: dict[str, Any], group: str) -> list[dict[str, Any]]:
    """CTDIvol and DLP statistics per CT acquisition protocol (one value per irradiation event) or per study
    description (one value per study: its events' mean CTDIvol and total DLP)."""
    if group == "protocol":
        w = dose_where(f, date_col="e.study_date", event="e")
        sql = f"""SELECT coalesce(e.acquisition_protocol, '') AS protocol, count(*)::int AS n,
                         count(DISTINCT e.study_instance_uid)::int AS studies,
                         {_stats("e.ctdivol_mgy", "ctdivol")}, {_stats("e.dlp_mgycm", "dlp")}
                    FROM dose.ct_event e JOIN dose.study s USING (study_instance_uid)
                    {w.sql()} GROUP BY 1 ORDER BY 1"""
    else:
        w = dose_where(f, date_col="s.study_date")
        w.clauses.append("s.ct_event_count > 0")
        sql = f"""WITH per_study AS (
                    SELECT s.study_instance_uid, coalesce(s.study_description, '') AS description,
                           (SELECT avg(e.ctdivol_mgy) FROM dose.ct_event e
                             WHERE e.study_instance_uid = s.study_instance_uid) AS ctdivol,
                           s.ct_total_dlp_mgycm AS dlp
                      FROM dose.study s {w.sql()})
                  SELECT description, count(*)::int AS n, count(*)::int AS studies,
                         {_stats("ctdivol", "ctdivol")}, {_stats("dlp", "dlp")}
                    FROM per_study GROUP BY 1 ORDER BY 1"""
    return _rows(conn, sql, w.params)


def ct_monthly(conn, f: dict[str, Any]) -> list[dict[str, Any]]:
    """Median CTDIvol and DLP per month (per irradiation event), for the trend chart."""
    w = dose_where(f, date_col="e.study_date", event="e")
    return _rows(
        conn,
        f"""SELECT to_char(date_trunc('month', e.study_date), 'YYYY-MM') AS month, count(*)::int AS n,
                   percentile_cont(0.5) WITHIN GROUP (ORDER BY e.ctdivol_mgy) AS ctdivol_median,
                   percentile_cont(0.5) WITHIN GROUP (ORDER BY e.dlp_mgycm) AS dlp_median
              FROM dose.ct_event e JOIN dose.study s USING (study_instance_uid)
              {w.sql()} GROUP BY 1 ORDER BY 1""",
        w.params,
    )


def ct_events(conn, f: dict[str, Any], limit: int) -> list[dict[str, Any]]:
    """The filtered CT irradiation events with their study's fields (the data behind the statistics)."""
    w = dose_where(f, date_col="e.study_date", event="e")
    return _rows(
        conn,
        f"""SELECT e.study_instance_uid, e.study_date, s.study_description, s.manufacturer, s.model_name,
                   s.station_name, s.patient_sex, s.patient_age_years, s.patient_weight_kg, e.ordinal,
                   e.acquisition_protocol, e.target_region, e.acquisition_type, e.ctdivol_mgy, e.dlp_mgycm,
                   e.phantom, e.kvp, e.tube_current_ma, e.effective_dose_msv
              FROM dose.ct_event e JOIN dose.study s USING (study_instance_uid)
              {w.sql()} ORDER BY e.study_date, e.study_instance_uid, e.ordinal LIMIT %s""",
        [*w.params, limit],
    )


def activity(conn, f: dict[str, Any], group: str) -> list[dict[str, Any]]:
    """Administered activity and activity per kg per radiopharmaceutical (agent) or per study description."""
    w = dose_where(f, date_col="a.study_date", agent="a")
    key = "coalesce(a.agent, '')" if group == "agent" else "coalesce(s.study_description, '')"
    name = "agent" if group == "agent" else "description"
    return _rows(
        conn,
        f"""SELECT {key} AS {name}, count(*)::int AS n,
                   {_stats("a.activity_mbq", "activity")}, {_stats("a.activity_per_kg_mbq", "per_kg")},
                   avg(a.effective_dose_msv) AS effective_dose_mean
              FROM dose.radiopharmaceutical a JOIN dose.study s USING (study_instance_uid)
              {w.sql()} GROUP BY 1 ORDER BY 1""",
        w.params,
    )


def activity_points(conn, f: dict[str, Any], limit: int) -> list[dict[str, Any]]:
    """Activity against patient weight, one point per administration (the scatter chart)."""
    w = dose_where(f, date_col="a.study_date", agent="a")
    w.clauses += ["a.activity_mbq IS NOT NULL", "s.patient_weight_kg IS NOT NULL"]
    return _rows(
        conn,
        f"""SELECT a.study_instance_uid, a.agent, s.patient_weight_kg AS weight_kg, a.activity_mbq
              FROM dose.radiopharmaceutical a JOIN dose.study s USING (study_instance_uid)
              {w.sql()} ORDER BY a.study_date, a.study_instance_uid LIMIT %s""",
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
        """SELECT ordinal, event_key, irradiation_event_uid, acquisition_protocol, target_region,
                  acquisition_type, ctdivol_mgy, dlp_mgycm, phantom, scanning_length_mm, kvp, tube_current_ma,
                  pitch, k_msv_per_mgycm, effective_dose_msv
             FROM dose.ct_event WHERE study_instance_uid = %s ORDER BY ordinal""",
        (uid,),
    )
    out["radiopharmaceuticals"] = _rows(
        conn,
        """SELECT ordinal, source, agent, radionuclide, activity_mbq, activity_rule, start_datetime, route,
                  activity_per_kg_mbq, coefficient_msv_per_mbq, effective_dose_msv
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
