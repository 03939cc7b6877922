"""The outlier worklist's acknowledgements (sql/021_outlier_acks.sql, web/routes_outliers.py): storing one (and its
history), the version of them that is part of the cached outlier answers' key (web/dose_views.py), and the dose
alerts acknowledged on the alerts page for the studies of a page of outliers. Every value is bound."""

from __future__ import annotations

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
