"""The outlier worklist's acknowledgements (sql/021_outlier_acks.sql, web/routes_outliers.py): storing one (and its
history), the version of them that is part of the cached outlier answers' key (web/dose_views.py), and the dose
alerts acknowledged on the alerts page for the studies of a page of outliers, and the history of the
acknowledgements (GET /api/dose/outliers/ack-history). Every value is bound."""

from __future__ import annotations

import datetime as dt
from typing import Any
from urllib.parse import quote

REASONS = ("reference_level", "p95")
ANY = "any"  # an acknowledgement of every reason of the study
MAX_COMMENT = 2000


def _rows(cur) -> list[dict[str, Any]]:
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


def ack_version(conn) -> int:
    """The newest acknowledgement's number (0: none): it changes with every acknowledgement, so a cached outlier
    answer (which shows them) is read back only while no acknowledgement came after it."""
    with conn.cursor() as cur:
        cur.execute("SELECT coalesce(max(id), 0) FROM dose.outlier_ack_log")
        return int(cur.fetchone()[0])


def acks(conn) -> dict[tuple[str, str], dict[str, Any]]:
    """Every acknowledgement per (study, reason): one of `any` reason stands for each reason; the latest applies
    (as the OUTLIERS query joins them, web/sql_levels.py). A small table: a physicist's reviews."""
    with conn, conn.cursor() as cur:
        cur.execute(
            """SELECT DISTINCT ON (a.study_instance_uid, r.reason) a.study_instance_uid, r.reason,
                      a.acknowledged_by, a.acknowledged_at, a.ack_comment
                 FROM dose.outlier_ack a CROSS JOIN (VALUES ('reference_level'), ('p95')) r(reason)
                WHERE a.reason IN (r.reason, 'any')
                ORDER BY a.study_instance_uid, r.reason, a.acknowledged_at DESC"""
        )
        return {(r["study_instance_uid"], r["reason"]): r for r in _rows(cur)}


ACK_FIELDS = ("acknowledged_by", "acknowledged_at", "ack_comment")


def page_from_index(
    index: dict[str, Any],
    acked: dict[tuple[str, str], dict[str, Any]],
    reason: str | None,
    acknowledged: str,
    limit: int,
    offset: int,
) -> dict[str, Any] | None:
    """One page of the outlier list from its cached index (web/sql_levels.py `outlier_index`) and the
    acknowledgements `acked` (:func:`acks`): the answer of `sql_levels.outliers` (`rows`, `total`, `counts` per
    reason of the rows shown, `ack_counts`), or None when the page lies beyond the index's first hits (the
    caller computes it)."""
    studies = index["studies"]
    yes = dict.fromkeys(studies, 0)
    for uid, r in acked:
        yes[r] = yes.get(r, 0) + studies.get(r, {}).get(uid, 0)
    n = index["n"]
    shown = {r: {"no": n[r] - yes[r], "yes": yes[r], "all": n[r]}[acknowledged] for r in n}
    counts = {r: k for r, k in shown.items() if k}
    total = counts.get(reason, 0) if reason else sum(counts.values())
    need = min(offset + limit, total)
    # the index's order is the list's only up to the first end of a reason shown that it holds in part
    ends = [e for r, e in index["ends"].items() if e is not None and reason in (None, r)]
    end = min(ends, default=None)
    page: list[dict[str, Any]] = []
    for hit in index["top"]:
        if len(page) >= need or (end is not None and hit["rn"] > end):
            break
        if reason and hit["reason"] != reason:
            continue
        ack = acked.get((hit["study_instance_uid"], hit["reason"]))
        if acknowledged != "all" and (acknowledged == "yes") != (ack is not None):
            continue
        row = {k: v for k, v in hit.items() if k != "rn"}
        row.update({k: ack[k] if ack else None for k in ACK_FIELDS})
        row["link"] = "ui/orthanc/study/" + quote(row["study_instance_uid"], safe="")
        page.append(row)
    if len(page) < need:
        return None
    ack_yes = sum(yes.values())
    return {
        "rows": page[offset:],
        "total": total,
        "counts": counts,
        "ack_counts": {"yes": ack_yes, "no": sum(n.values()) - ack_yes},
    }


def study_exists(conn, uid: str) -> bool:
    with conn, conn.cursor() as cur:
        cur.execute("SELECT 1 FROM dose.study WHERE study_instance_uid = %s", (uid,))
        return cur.fetchone() is not None


def acknowledge(conn, uid: str, reason: str | None, who: str, comment: str) -> dict[str, Any]:
    """Acknowledge the outliers of study `uid` of `reason` (None: every reason) by `who` with `comment`, in one
    transaction: the acknowledgement (again: the latest who, when and comment; the first time kept) and a row of
    its history. Returns the acknowledgement with how many times it was given."""
    key = reason or ANY
    with conn, conn.cursor() as cur:
        cur.execute(
            """INSERT INTO dose.outlier_ack (study_instance_uid, reason, acknowledged_by, ack_comment)
               VALUES (%s, %s, %s, %s)
               ON CONFLICT (study_instance_uid, reason) DO UPDATE
                  SET acknowledged_by = EXCLUDED.acknowledged_by, ack_comment = EXCLUDED.ack_comment,
                      acknowledged_at = now()
               RETURNING study_instance_uid, reason, acknowledged_by, acknowledged_at, first_acknowledged_at,
                         ack_comment""",
            (uid, key, who, comment),
        )
        row = _rows(cur)[0]
        cur.execute(
            """INSERT INTO dose.outlier_ack_log (study_instance_uid, reason, acknowledged_by, acknowledged_at,
                                                ack_comment) VALUES (%s, %s, %s, %s, %s)""",
            (uid, key, who, row["acknowledged_at"], comment),
        )
        cur.execute(
            "SELECT count(*) FROM dose.outlier_ack_log WHERE study_instance_uid = %s AND reason = %s",
            (uid, key),
        )
        row["times"] = cur.fetchone()[0]
    return row


def add_alert_acks(conn, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`rows` (outliers) with the latest acknowledged dose alert of their study (docs/alerts.md): who, when and
    the comment (`alert_acknowledged_by`, `_at`, `alert_ack_comment`), None when none. Read after the cached
    outlier answer, so acknowledging an alert never makes that answer stale."""
    uids = sorted({r["study_instance_uid"] for r in rows})
    found: dict[str, dict[str, Any]] = {}
    if uids:
        with conn, conn.cursor() as cur:
            cur.execute(
                """SELECT DISTINCT ON (study_instance_uid) study_instance_uid, acknowledged_by, acknowledged_at,
                          ack_comment
                     FROM dose.alert_firing
                    WHERE study_instance_uid = ANY(%s) AND acknowledged_at IS NOT NULL
                    ORDER BY study_instance_uid, acknowledged_at DESC, id DESC""",
                (uids,),
            )
            found = {r["study_instance_uid"]: r for r in _rows(cur)}
    for r in rows:
        a = found.get(r["study_instance_uid"], {})
        r["alert_acknowledged_by"] = a.get("acknowledged_by")
        r["alert_acknowledged_at"] = a.get("acknowledged_at")
        r["alert_ack_comment"] = a.get("ack_comment")
    return rows


def add_ack_history(conn, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`rows` (outliers) with `ack_history`: how many acknowledgements ever covered the row's study and reason
    (given for that reason or for every reason, `any`: the `total` of GET /api/dose/outliers/ack-history with the
    row's study and reason), None when the row is not acknowledged. One small query (dose.outlier_ack_log by its
    study index) for the acknowledged rows of the page only, read after the cached outlier answer."""
    uids = sorted({r["study_instance_uid"] for r in rows if r.get("acknowledged_at") is not None})
    counts: dict[tuple[str, str], int] = {}
    if uids:
        with conn, conn.cursor() as cur:
            cur.execute(
                """SELECT study_instance_uid, reason, count(*) FROM dose.outlier_ack_log
                    WHERE study_instance_uid = ANY(%s) GROUP BY study_instance_uid, reason""",
                (uids,),
            )
            counts = {(uid, reason): n for uid, reason, n in cur.fetchall()}
    for r in rows:
        uid = r["study_instance_uid"]
        r["ack_history"] = (
            None
            if r.get("acknowledged_at") is None
            else counts.get((uid, r["reason"]), 0) + counts.get((uid, ANY), 0)
        )
    return rows


# ----- the history of the acknowledgements (GET /api/dose/outliers/ack-history)

HISTORY_REASONS = (*REASONS, ANY)
MAX_HISTORY_LIMIT = 500

# One page of dose.outlier_ack_log, newest first, then for each of its rows the acknowledgement that replaced it
# (the next one of its study and reason, by the log's study index) and whether it is the current one (the latest
# of its study and reason, still in dose.outlier_ack: what the outlier list shows).
HISTORY = """
SELECT p.id, p.study_instance_uid, p.reason, p.acknowledged_by, p.acknowledged_at, p.ack_comment AS comment,
       n.acknowledged_at AS replaced_at,
       n.id IS NULL AND EXISTS (SELECT 1 FROM dose.outlier_ack a
                                 WHERE (a.study_instance_uid, a.reason) = (p.study_instance_uid, p.reason))
         AS current
  FROM (SELECT * FROM dose.outlier_ack_log l {where}
         ORDER BY l.acknowledged_at DESC, l.id DESC LIMIT %s OFFSET %s) p
  LEFT JOIN LATERAL (SELECT m.id, m.acknowledged_at FROM dose.outlier_ack_log m
                      WHERE m.study_instance_uid = p.study_instance_uid AND m.reason = p.reason AND m.id > p.id
                      ORDER BY m.id LIMIT 1) n ON true
 ORDER BY p.acknowledged_at DESC, p.id DESC"""


def history(
    conn,
    *,
    uid: str | None = None,
    reason: str | None = None,
    date_from: dt.date | None = None,
    date_to: dt.date | None = None,
    who: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> tuple[list[dict[str, Any]], int]:
    """(one page of the acknowledgements ever given, newest first; how many match). `reason`: those that covered
    it (given for that reason or for every reason); `any`: those given for every reason only. The dates bound the
    day of the acknowledgement (inclusive, the database's time zone, as the alerts' dates); `who`: the user
    (exact). Each row: its study, reason, who, when (ISO 8601 with the offset), comment, `current` (the latest of
    its study and reason: the one the outlier list shows) and `replaced_at` (when the next one replaced it)."""
    where, params = [], []
    if uid is not None:
        where.append("l.study_instance_uid = %s")
        params.append(uid)
    if reason == ANY:
        where.append("l.reason = %s")
        params.append(ANY)
    elif reason is not None:
        where.append("l.reason IN (%s, %s)")
        params += [reason, ANY]
    if date_from is not None:
        where.append("l.acknowledged_at >= %s::date")
        params.append(date_from)
    if date_to is not None:
        where.append("l.acknowledged_at < %s::date + 1")
        params.append(date_to)
    if who is not None:
        where.append("l.acknowledged_by = %s")
        params.append(who)
    clause = ("WHERE " + " AND ".join(where)) if where else ""
    with conn, conn.cursor() as cur:
        cur.execute(HISTORY.format(where=clause), (*params, limit, offset))
        rows = _rows(cur)
        cur.execute(f"SELECT count(*) FROM dose.outlier_ack_log l {clause}", params)
        total = cur.fetchone()[0]
    for r in rows:
        for k in ("acknowledged_at", "replaced_at"):
            if r[k] is not None:
                r[k] = r[k].isoformat()
    return rows, total
