"""`nmdose db migrate|status`."""

from __future__ import annotations

import contextlib
import json

from nmdose.db import connect
from nmdose.db.migrate import migrate, status
from nmdose.db.roles import admin_available, bootstrap


def register(sub) -> None:
    p = sub.add_parser("db", help="database migrations")
    dsub = p.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    m = dsub.add_parser("migrate", help="apply pending sql/NNN_*.sql migrations (idempotent)")
    m.set_defaults(func=cmd_migrate)
    s = dsub.add_parser("status", help="applied and pending migrations")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_status)


def cmd_migrate(args, ctx) -> int:
    """As the owner role; with the bootstrap superuser's password at hand (local stack, or a one-off upgrade of an
    install made before the roles), the roles, databases and ownership first (nmdose.db.roles.bootstrap)."""
    cfg = ctx.config
    if admin_available(cfg):
        bootstrap(cfg)
    with contextlib.closing(connect(cfg, role="owner")) as conn:
        done = migrate(conn, cfg.migrations_dir)
    print(f"applied: {', '.join(done)}" if done else "database is up to date")
    return 0


def cmd_status(args, ctx) -> int:
    cfg = ctx.config
    with contextlib.closing(connect(cfg)) as conn:
        result = status(conn, cfg.migrations_dir)
    if args.json:
        print(json.dumps(result))
    else:
        for name in result["applied"]:
            print(f"applied  {name}")
        for name in result["pending"]:
            print(f"pending  {name}")
    return 0
