"""SQL of the standard-names page (`/nmdose/api/names/...`): the rules, the standard names in use with their
counts, and the raw values no rule maps yet (their grouping by normalised form is nmdose.dose.standard_names').
Values are always bound."""

from __future__ import annotations

from typing import Any

from nmdose.dose import standard_names as sn
from nmdose.web.sql_common import Rows, rows

# Each standard name with the studies, CT events and administrations that carry it, and its rules.
NAMES_IN_USE = """
SELECT n.standard_name, coalesce(s.n, 0)::int AS studies, coalesce(e.n, 0)::int AS ct_events,
       coalesce(a.n, 0)::int AS administrations, coalesce(r.n, 0)::int AS rules
  FROM (SELECT standard_name FROM dose.standard_name_rule UNION SELECT standard_name FROM dose.study
         WHERE standard_name IS NOT NULL) n
  LEFT JOIN (SELECT standard_name, count(*) AS n FROM dose.study GROUP BY 1) s USING (standard_name)
  LEFT JOIN (SELECT standard_name, count(*) AS n FROM dose.ct_event GROUP BY 1) e USING (standard_name)
  LEFT JOIN (SELECT standard_name, count(*) AS n FROM dose.radiopharmaceutical GROUP BY 1) a USING (standard_name)
  LEFT JOIN (SELECT standard_name, count(*) AS n FROM dose.standard_name_rule GROUP BY 1) r USING (standard_name)
 ORDER BY 1"""
UNNAMED = "SELECT count(*)::int AS n FROM dose.study WHERE standard_name IS NULL"


def rules(conn) -> Rows:
    """Every rule, by standard name, field and raw form."""
    with conn.cursor() as cur:
        out = sn.list_rules(cur)
    conn.rollback()
    return out


def names_in_use(conn) -> tuple[Rows, int]:
    """The standard names with their counts, and the number of studies without one."""
    got = rows(conn, NAMES_IN_USE)
    unnamed = rows(conn, UNNAMED)[0]["n"]
    conn.rollback()
    return got, unnamed


def suggestions(conn, fields: tuple[str, ...], limit: int) -> list[dict[str, Any]]:
    """Unmapped raw values grouped by field and normalised form, most studies first."""
    with conn.cursor() as cur:
        out = sn.suggestions(cur, fields, limit)
    conn.rollback()
    return out
