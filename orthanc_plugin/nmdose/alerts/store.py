"""The alerts' SQL shared by the web routes (web/routes_alerts.py) and the command line: firings with their
deliveries (filtered, paged), acknowledgement, rules (create, replace, delete), and evaluating stored studies again.
Every value is bound; the only identifiers are this module's own column names."""

from __future__ import annotations

import datetime as _dt
from typing import Any

from psycopg2 import sql

from nmdose.alerts.rules import COLUMNS, RuleError, check_rule, on_study

FIRING_COLUMNS = """f.id, f.rule_id, r.name AS rule_name, r.kind, f.study_instance_uid, f.patient_pseudonym,
       f.study_date, s.study_description, f.quantity, f.measured, f.limit_value, f.level_name, f.level_source,
       f.details, f.fired_at, f.acknowledged_by, f.acknowledged_at, f.ack_comment,
       (SELECT count(*) FROM dose.alert_delivery d WHERE d.firing_id = f.id) AS deliveries,
       (SELECT count(*) FROM dose.alert_delivery d WHERE d.firing_id = f.id AND d.state = 'sent') AS deliveries_sent,
       (SELECT count(*) FROM dose.alert_delivery d WHERE d.firing_id = f.id AND d.state = 'failed')
           AS deliveries_failed,
       (SELECT max(d.last_error) FROM dose.alert_delivery d WHERE d.firing_id = f.id AND d.state <> 'sent')
           AS delivery_error"""


def _rows(cur) -> list[dict[str, Any]]:
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


def firings(
    conn,
    *,
    state: str = "open",
    rule_id: int | None = None,
    date_from: _dt.date | None = None,
    date_to: _dt.date | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[dict[str, Any]], int]:
    """(one page of firings newest first, how many match). `state`: open | acknowledged | all; the dates bound
    the day the alert fired (inclusive)."""
    where, params = [], []
    if state == "open":
        where.append("f.acknowledged_at IS NULL")
    elif state == "acknowledged":
        where.append("f.acknowledged_at IS NOT NULL")
    if rule_id is not None:
        where.append("f.rule_id = %s")
        params.append(rule_id)
    if date_from is not None:
        where.append("f.fired_at >= %s::date")
        params.append(date_from)
    if date_to is not None:
        where.append("f.fired_at < %s::date + 1")
        params.append(date_to)
    clause = ("WHERE " + " AND ".join(where)) if where else ""
    with conn, conn.cursor() as cur:
        cur.execute(
            f"""SELECT {FIRING_COLUMNS} FROM dose.alert_firing f JOIN dose.alert_rule r ON r.id = f.rule_id
                LEFT JOIN dose.study s ON s.study_instance_uid = f.study_instance_uid
                {clause} ORDER BY f.fired_at DESC, f.id DESC LIMIT %s OFFSET %s""",
            (*params, limit, offset),
        )
        rows = _rows(cur)
        cur.execute(f"SELECT count(*) FROM dose.alert_firing f {clause}", params)
        total = cur.fetchone()[0]
    return rows, total


def acknowledge(conn, firing_id: int, who: str, comment: str) -> dict[str, Any] | None:
    """Mark a firing acknowledged (who, now, comment); acknowledging again replaces the comment and keeps the
    first time. None: no such firing."""
    with conn, conn.cursor() as cur:
        cur.execute(
            """UPDATE dose.alert_firing SET acknowledged_by = %s, ack_comment = %s,
                   acknowledged_at = coalesce(acknowledged_at, now())
               WHERE id = %s RETURNING id, study_instance_uid, acknowledged_by, acknowledged_at, ack_comment""",
            (who, comment, firing_id),
        )
        got = _rows(cur)
    return got[0] if got else None


def rules(conn) -> list[dict[str, Any]]:
    with conn, conn.cursor() as cur:
        cur.execute(
            "SELECT id, "
            + ", ".join(COLUMNS)
            + """, created_at, updated_at,
                 (SELECT count(*) FROM dose.alert_firing f WHERE f.rule_id = r.id) AS firings,
                 (SELECT count(*) FROM dose.alert_firing f WHERE f.rule_id = r.id AND f.acknowledged_at IS NULL)
                     AS open_firings
               FROM dose.alert_rule r ORDER BY id"""
        )
        return _rows(cur)


def _save(cur, r: dict[str, Any], rule_id: int | None) -> dict[str, Any]:
    cols = [sql.Identifier(c) for c in COLUMNS]
    values = [r[c] for c in COLUMNS]
    if rule_id is None:
        query = sql.SQL(
            """INSERT INTO dose.alert_rule ({cols}) VALUES ({vals})
               ON CONFLICT (name) DO UPDATE SET ({cols}) = ROW({excluded}), updated_at = now()
               RETURNING id, {cols}"""
        ).format(
            cols=sql.SQL(", ").join(cols),
            vals=sql.SQL(", ").join(sql.Placeholder() * len(cols)),
            excluded=sql.SQL(", ").join(sql.SQL("EXCLUDED.") + c for c in cols),
        )
        cur.execute(query, values)
    else:
        query = sql.SQL(
            "UPDATE dose.alert_rule SET ({cols}) = ROW({vals}), updated_at = now() WHERE id = %s RETURNING id, {cols}"
        ).format(cols=sql.SQL(", ").join(cols), vals=sql.SQL(", ").join(sql.Placeholder() * len(cols)))
        cur.execute(query, [*values, rule_id])
    got = _rows(cur)
    return got[0] if got else {}


def upsert_rule(
    conn, body: dict[str, Any], *, rule_id: int | None = None, prod: bool = False
) -> dict[str, Any]:
    """Create a rule (or replace the one of the same name), or replace rule `rule_id`; RuleError when it cannot
    work or its name is another rule's; {} when `rule_id` does not exist."""
    import psycopg2

    r = check_rule(body, prod=prod)
    try:
        with conn, conn.cursor() as cur:
            return _save(cur, r, rule_id)
    except psycopg2.errors.UniqueViolation:
        raise RuleError(f"name: another rule is called {r['name']!r}") from None


def delete_rule(conn, rule_id: int) -> bool:
    with conn, conn.cursor() as cur:
        cur.execute("DELETE FROM dose.alert_rule WHERE id = %s", (rule_id,))
        return cur.rowcount > 0


def evaluate_stored(conn, studies: list[str] | None = None) -> int:
    """Evaluate the enabled rules on stored studies (all, or those given): firings that are new (a rule added
    after the studies arrived), each study in its own transaction."""
    with conn, conn.cursor() as cur:
        if studies is None:
            cur.execute(
                "SELECT study_instance_uid FROM dose.study ORDER BY study_date NULLS FIRST, study_instance_uid"
            )
            studies = [r[0] for r in cur.fetchall()]
    n = 0
    for uid in studies:
        with conn, conn.cursor() as cur:
            n += len(on_study(cur, uid))
    return n
