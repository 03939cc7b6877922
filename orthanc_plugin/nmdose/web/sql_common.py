"""What the SQL modules of the pages share (web/sql_research.py, sql_dose.py, sql_levels.py): running one
read-only query, and the dose page's filters as a WHERE clause.

Values are always bound parameters (`%s`), never part of the SQL text; the text is composed with
:mod:`psycopg2.sql` from fixed fragments chosen by key and identifiers (:class:`psycopg2.sql.Identifier`). Every
aggregate (counts, `percentile_cont` medians and quartiles, means) is computed by PostgreSQL, never by looping over
rows in Python.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from psycopg2 import sql

Rows = list[dict[str, Any]]


def rows(
    conn, query: sql.Composable | str, params: Sequence[Any] = (), *, settings: Sequence[str] = ()
) -> Rows:
    """Run one read-only query; its rows as dicts named by the result's columns (`cursor.description`).
    `settings`: extra `SET LOCAL` lines for this query only (fixed text of the callers, never a value)."""
    with conn.cursor() as cur:
        # JIT compilation costs PostgreSQL a second or more on these plans and never pays back on page queries.
        cur.execute("SET LOCAL jit = off")
        for setting in settings:
            cur.execute("SET LOCAL " + setting)
        cur.execute(query, params)
        names = [c.name for c in cur.description]
        out = [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
    conn.rollback()  # read-only: end the transaction so a pooled connection never idles inside one
    return out


@dataclass
class Where:
    """A WHERE clause (its conditions, joined by AND) with its bound parameters, in the order of the `%s`."""

    clauses: list[sql.Composable] = field(default_factory=list)
    params: list[Any] = field(default_factory=list)

    def add(self, clause: str | sql.Composable, *params: Any) -> Where:
        self.clauses.append(sql.SQL(clause) if isinstance(clause, str) else clause)
        self.params.extend(params)
        return self

    def sql(self) -> sql.Composable:
        if not self.clauses:
            return sql.SQL("")
        return sql.SQL("WHERE ") + sql.SQL(" AND ").join(self.clauses)


@dataclass(frozen=True)
class Records:
    """A table the dose filters apply to, under its alias. CT events and administrations carry copies of their
    study's fields (sql/007_web.sql), so every filter reads the row itself; `protocol_here` / `agent_here`: the
    protocol / agent filter compares the row's own column instead of looking for an event / administration."""

    alias: str
    protocol_here: bool = False
    agent_here: bool = False


EVENTS = Records("e", protocol_here=True)  # dose.ct_event e
STUDIES = Records("s")  # dose.study s
ADMINISTRATIONS = Records("a", agent_here=True)  # dose.radiopharmaceutical a

# filter -> (column of the study's fields, comparison); the value is bound. Ages and weights: min inclusive, max
# exclusive.
COLUMN_FILTERS: dict[str, tuple[str, str]] = {
    "from": ("study_date", ">="),
    "to": ("study_date", "<="),
    "sex": ("patient_sex", "="),
    "age_min": ("patient_age_years", ">="),
    "age_max": ("patient_age_years", "<"),
    "weight_min": ("patient_weight_kg", ">="),
    "weight_max": ("patient_weight_kg", "<"),
    # not a route parameter: one study's own rows (web/routes_outliers.py, whether it is an outlier)
    "study_instance_uid": ("study_instance_uid", "="),
}
# Text filters -> column of the study's fields: part of the text, any case (ILIKE with the value's `%`, `_` and `\`
# escaped, bound: like_pattern), so 'chest' finds 'CT Chest' and '%' finds only a '%'.
TEXT_FILTERS: dict[str, str] = {
    "manufacturer": "manufacturer",
    "model": "model_name",
    "station": "station_name",
    "description": "study_description",
}


def like_pattern(value: str) -> str:
    """An ILIKE pattern finding `value` anywhere in a text; its wildcards (`%`, `_`) and backslash literal."""
    return "%" + value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


# Filters on what a study holds: any of its series (the modality: part of it, any case, so 'pt' finds 'PT' and a
# multi-valued 'PT\CT'), CT events (the protocol) or administrations (the agent, exact: sql_dose.resolve_agent).
_ANY_SERIES = """EXISTS (SELECT 1 FROM dose.series_protocol sp
                 WHERE sp.study_instance_uid = {r}.study_instance_uid AND sp.modality ILIKE %s)"""
_ANY_EVENT = """EXISTS (SELECT 1 FROM dose.ct_event pe
                 WHERE pe.study_instance_uid = {r}.study_instance_uid AND pe.acquisition_protocol ILIKE %s)"""
_ANY_ADMINISTRATION = """EXISTS (SELECT 1 FROM dose.radiopharmaceutical ra
                 WHERE ra.study_instance_uid = {r}.study_instance_uid AND ra.agent = ANY(%s))"""
# The scanner filter (docs/dose.md "Scanners"): its scanner_id or its display name (exact, any case), with the
# scanners merged into it; a study row compares its own scanner_id, an event or administration its study's.
SCANNER_IDS = """(SELECT sc.scanner_id FROM dose.scanner sc WHERE coalesce(sc.merged_into, sc.scanner_id) IN
                   (SELECT coalesce(t.merged_into, t.scanner_id) FROM dose.scanner t
                     WHERE t.scanner_id::text = %s OR lower(t.display_name) = lower(%s)))"""
_STUDY_SCANNER = "{r}.scanner_id IN " + SCANNER_IDS
_ANY_SCANNER = f"""{{r}}.study_instance_uid IN (SELECT ss.study_instance_uid FROM dose.study ss
                    WHERE ss.scanner_id IN {SCANNER_IDS})"""
# The standard-name filter (docs/standard_names.md "Filtering by standard name"): the whole name, any case (a
# controlled vocabulary: 'ct chest' finds 'CT chest', not 'CT chest low dose'). A CT event or an administration
# compares its own name (which is its study's when no rule names its protocol or agent); a study its own or that
# of any of its CT events or administrations, as the protocol and agent filters look into the study's events and
# administrations.
# The names compared: those of the rules that are the value in any case (every name on a row was given by a rule,
# dose/standard_names.py apply), and the value as typed; so `= ANY` uses the (standard_name, study_year) indexes.
_NAMES = """ARRAY(SELECT nr.standard_name FROM dose.standard_name_rule nr
                      WHERE lower(nr.standard_name) = lower(%s)) || %s::text"""
_OWN_STANDARD_NAME = "{r}.standard_name = ANY(" + _NAMES + ")"
# A study: its own name, or one of the studies of the CT events / administrations so named, as one set (a semi-join
# on the union; an OR of two IN sub-queries was not hashed at 300 000 studies and ran per study, 75 s+:
# bench/standard_name_filter.py).
_STUDY_STANDARD_NAME = f"""{{r}}.study_instance_uid IN (
                 SELECT ns.study_instance_uid FROM dose.study ns WHERE ns.standard_name = ANY({_NAMES})
                 UNION SELECT ne.study_instance_uid FROM dose.ct_event ne WHERE ne.standard_name = ANY({_NAMES})
                 UNION SELECT na.study_instance_uid FROM dose.radiopharmaceutical na
                        WHERE na.standard_name = ANY({_NAMES}))"""


def dose_where(f: dict[str, Any], records: Records) -> Where:
    """The validated dose filters `f` (web/params.py DOSE_FILTERS) on `records`: the study's fields, the modality
    (any series of the study), the protocol (the event itself, else any event of the study) and the agent (the
    administration itself, else any administration of the study). Text filters match part of the text, any case;
    the scanner and the standard name the whole text, any case (an event's or administration's own standard name, a
    study's own or any of its events' or administrations')."""
    r = sql.Identifier(records.alias)
    w = Where()
    for key, (column, op) in COLUMN_FILTERS.items():
        if key in f:
            w.add(sql.SQL("{} " + op + " %s").format(sql.Identifier(records.alias, column)), f[key])
    for key, column in TEXT_FILTERS.items():
        if key in f:
            w.add(sql.SQL("{} ILIKE %s").format(sql.Identifier(records.alias, column)), like_pattern(f[key]))
    if "modality" in f:
        w.add(sql.SQL(_ANY_SERIES).format(r=r), like_pattern(f["modality"]))
    if "protocol" in f:
        clause = "{r}.acquisition_protocol ILIKE %s" if records.protocol_here else _ANY_EVENT
        w.add(sql.SQL(clause).format(r=r), like_pattern(f["protocol"]))
    if "agent" in f:  # one text, or the stored texts it names (sql_dose.resolve_agent: raw or display name)
        agents = list(f["agent"]) if isinstance(f["agent"], (list, tuple)) else [f["agent"]]
        clause = "{r}.agent = ANY(%s)" if records.agent_here else _ANY_ADMINISTRATION
        w.add(sql.SQL(clause).format(r=r), agents)
    if "scanner" in f:
        clause = _STUDY_SCANNER if records is STUDIES else _ANY_SCANNER
        w.add(sql.SQL(clause).format(r=r), str(f["scanner"]), str(f["scanner"]))
    if "standard_name" in f:
        clause, times = (_STUDY_STANDARD_NAME, 3) if records is STUDIES else (_OWN_STANDARD_NAME, 1)
        w.add(sql.SQL(clause).format(r=r), *[str(f["standard_name"])] * (2 * times))
    return w


# A CT localizer (scout, topogram: CID 10013 "Constant Angle Acquisition", as dose/codes.py names it), or an event
# with neither CTDIvol nor DLP: no statistics row, box or per-protocol sheet of its own (it stays in the event export
# with its type). Never NULL, so `NOT` of it is safe.
LOCALIZER = """(coalesce(e.acquisition_type = 'Constant Angle Acquisition', false)
                OR (e.ctdivol_mgy IS NULL AND e.dlp_mgycm IS NULL))"""
NOT_LOCALIZER = "NOT " + LOCALIZER

STATS = """percentile_cont(0.5) WITHIN GROUP (ORDER BY {col}) AS {median},
           percentile_cont(0.25) WITHIN GROUP (ORDER BY {col}) AS {q1},
           percentile_cont(0.75) WITHIN GROUP (ORDER BY {col}) AS {q3},
           avg({col}) AS {mean},
           percentile_cont(0.75) WITHIN GROUP (ORDER BY {col}) AS {p75},
           percentile_cont(0.95) WITHIN GROUP (ORDER BY {col}) AS {p95},
           min({col}) AS {min}, max({col}) AS {max}"""


def stats(alias: str, column: str, name: str) -> sql.Composable:
    """The summary columns of one measure `alias.column`, named `name_median`, `name_q1`, … `name_max`."""
    suffixes = ("median", "q1", "q3", "mean", "p75", "p95", "min", "max")
    return sql.SQL(STATS).format(
        col=sql.Identifier(alias, column), **{s: sql.Identifier(f"{name}_{s}") for s in suffixes}
    )
