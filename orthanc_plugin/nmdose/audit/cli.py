"""`nmdose audit purge|list`: the retention purge by hand, and the audit rows for a privacy officer at a shell."""

from __future__ import annotations

import contextlib
import json

from nmdose.errors import NmdoseError


def register(sub) -> None:
    p = sub.add_parser("audit", help="audit trail: retention purge, list rows (docs/audit.md)")
    asub = p.add_subparsers(dest="audit_command", metavar="ACTION", required=True)
    pu = asub.add_parser("purge", help="remove audit rows older than the retention (config/audit.yaml)")
    pu.add_argument("--retention-days", type=int, default=None, help="default: audit.retention_days (>= 730)")
    pu.add_argument("--json", action="store_true")
    pu.set_defaults(func=cmd_purge)
    ls = asub.add_parser("list", help="audit rows, newest first (same filters as GET /nmdose/api/audit)")
    for name in ("user", "study", "patient", "route", "source", "from", "to"):
        ls.add_argument(f"--{name}", default=None)
    ls.add_argument("--limit", type=int, default=50)
    ls.add_argument("--page", type=int, default=1)
    ls.add_argument("--csv", action="store_true", help="CSV instead of one line per row")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=cmd_list)


def cmd_purge(args, ctx) -> int:
    from nmdose.audit import store
    from nmdose.audit.actions import os_user
    from nmdose.db import connect

    cfg = ctx.config
    days = args.retention_days or cfg.audit.retention_days
    if days < 730:
        raise NmdoseError(
            f"audit purge: --retention-days must be at least 730 (records kept >= 2 years), got {days}"
        )
    with contextlib.closing(connect(cfg)) as conn:
        removed = store.purge(conn, days, source="cli", by=os_user())
    from nmdose.audit.routes import send_purge

    send_purge(cfg, days, removed, source="cli", by=os_user())
    if args.json:
        print(json.dumps({"removed": removed, "retention_days": days}))
    else:
        print(f"audit purge: {removed} rows older than {days} days removed")
    return 0


def cmd_list(args, ctx) -> int:
    from nmdose.audit import store
    from nmdose.db import connect

    query = {k: str(v) for k in store.FILTERS if (v := getattr(args, k, None)) is not None and k != "format"}
    try:
        f = store.parse_filters(query)
    except store.FilterError as exc:
        raise NmdoseError(f"audit list: {exc}") from None
    with contextlib.closing(connect(ctx.config)) as conn:
        rows, more = store.query(conn, f)
    if args.csv:
        print(store.to_csv(rows), end="")
    elif args.json:
        print(json.dumps({"rows": rows, "more": more}, ensure_ascii=False, default=str))
    else:
        for r in rows:
            studies = " ".join(r["study_uids"][:3]) + (" …" if (r["study_uids_total"] or 0) > 3 else "")
            print(
                f"{r['at']}  {r['source']:6} {r['actor_username'] or '-':12} {r['client_address'] or '-':15} "
                f"{r['method'] or '':4} {r['action']}  rows={r['rows_returned']} {r['format'] or ''} "
                f"status={r['status']} {studies}"
            )
        if more:
            print(f"(more: --page {f['page'] + 1})")
    return 0
