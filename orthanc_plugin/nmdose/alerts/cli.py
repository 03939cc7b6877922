"""`nmdose alerts list|ack|send|test-email|rule|rules|evaluate`: dose alerts at a shell (docs/alerts.md)."""

from __future__ import annotations

import contextlib
import json
import sys
import time

from nmdose.errors import NmdoseError


def register(sub) -> None:
    p = sub.add_parser(
        "alerts", help="dose alerts: firings, acknowledge, send the outbox, rules (docs/alerts.md)"
    )
    a = p.add_subparsers(dest="alerts_command", metavar="ACTION", required=True)
    ls = a.add_parser("list", help="firings, newest first")
    ls.add_argument("--state", choices=["open", "acknowledged", "all"], default="open")
    ls.add_argument("--limit", type=int, default=50)
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=cmd_list)
    ack = a.add_parser("ack", help="acknowledge a firing")
    ack.add_argument("id", type=int)
    ack.add_argument("--comment", default="")
    ack.add_argument("--by", default=None, help="who (default: the OS user)")
    ack.set_defaults(func=cmd_ack)
    send = a.add_parser("send", help="send the due deliveries of the outbox (once, or --loop)")
    send.add_argument(
        "--loop", action="store_true", help="keep sending every sender.poll_s until interrupted"
    )
    send.add_argument("--json", action="store_true")
    send.set_defaults(func=cmd_send)
    te = a.add_parser("test-email", help="send one test message through the configured SMTP server")
    te.add_argument("to")
    te.set_defaults(func=cmd_test_email)
    rule = a.add_parser("rule", help="create or replace a rule (by name) from JSON, e.g. '{\"name\": …}'")
    rule.add_argument("json", help="the rule as JSON (fields: GET /nmdose/api/alerts/rules)")
    rule.set_defaults(func=cmd_rule)
    rules = a.add_parser("rules", help="list the rules")
    rules.add_argument("--json", action="store_true")
    rules.set_defaults(func=cmd_rules)
    sk = a.add_parser(
        "sink", help="a local SMTP sink for dev and the demo (STARTTLS + AUTH, messages kept as .eml)"
    )
    sk.add_argument("--port", type=int, default=None, help="default: smtp.port of config/alerts.yaml")
    sk.add_argument("--dir", default=None, help="certificates and mail/ (default: <var>/alerts)")
    sk.add_argument(
        "--for", dest="for_s", type=float, default=0, help="stop after this many seconds (0: never)"
    )
    sk.set_defaults(func=cmd_sink)
    ev = a.add_parser("evaluate", help="evaluate the rules on stored studies again (new firings only)")
    ev.add_argument("studies", nargs="*", help="StudyInstanceUIDs (default: every study)")
    ev.set_defaults(func=cmd_evaluate)


def _conn(ctx):
    from nmdose.db import connect

    return contextlib.closing(connect(ctx.config))


def cmd_list(args, ctx) -> int:
    from nmdose.alerts import store

    with _conn(ctx) as conn:
        rows, total = store.firings(conn, state=args.state, limit=args.limit)
    from nmdose.audit.actions import record_action

    record_action(ctx.config, "alerts list", study_uids=[r["study_instance_uid"] for r in rows],
                  params={"state": args.state, "limit": args.limit}, rows=len(rows))  # fmt: skip
    if args.json:
        print(json.dumps({"rows": rows, "total": total}, default=str, ensure_ascii=False))
        return 0
    for r in rows:
        ack = (
            f"ack {r['acknowledged_by']} {r['acknowledged_at']:%Y-%m-%d %H:%M}"
            if r["acknowledged_at"]
            else "open"
        )
        print(f"{r['id']:>6} {r['fired_at']:%Y-%m-%d %H:%M} {r['rule_name']:24} {r['study_instance_uid']:40} "
              f"{r['quantity']} {r['measured']} > {r['limit_value']}  {ack}  sent={r['deliveries_sent']}/"
              f"{r['deliveries']}")  # fmt: skip
    print(f"({len(rows)} of {total} {args.state} firings)")
    return 0


def cmd_ack(args, ctx) -> int:
    from nmdose.alerts import store
    from nmdose.audit.actions import os_user

    with _conn(ctx) as conn:
        row = store.acknowledge(conn, args.id, args.by or os_user(), args.comment)
    from nmdose.audit.actions import record_action

    record_action(ctx.config, "alerts ack", study_uids=[row["study_instance_uid"]] if row else [],
                  params={"firing": args.id, "comment": args.comment}, status=0 if row else 1)  # fmt: skip
    if row is None:
        raise NmdoseError(f"alerts ack: no firing {args.id}")
    print(f"firing {args.id} acknowledged by {row['acknowledged_by']} at {row['acknowledged_at']}")
    return 0


def cmd_send(args, ctx) -> int:
    from nmdose.alerts.outbox import Sender, drain
    from nmdose.alerts.settings import load

    settings = load(ctx.config)
    if args.loop:
        sender = Sender(ctx.config, settings)
        try:
            while True:
                stats = sender.step()
                if stats.sent or stats.errors:
                    print(f"sent={stats.sent} retried={stats.retried} failed={stats.failed}", flush=True)
                time.sleep(settings.sender.poll_s)
        except KeyboardInterrupt:
            return 0
    with _conn(ctx) as conn:
        stats = drain(conn, ctx.config, settings)
    if args.json:
        print(json.dumps(stats.__dict__))
    else:
        print(f"sent={stats.sent} retried={stats.retried} failed={stats.failed} reclaimed={stats.reclaimed}")
        for e in stats.errors:
            print(f"  {e}", file=sys.stderr)
    return 0 if not stats.errors else 1


def cmd_test_email(args, ctx) -> int:
    from nmdose.alerts import notify
    from nmdose.alerts.settings import load, smtp_credentials

    settings = load(ctx.config)
    key = f"nmdose-test-{int(time.time())}"
    try:
        notify.send_email(settings, smtp_credentials(ctx.config), [args.to], "[nmdose] test message",
                          "This is a test of the nmdose dose alerts' e-mail.\n", f"<{key}@nmdose>")  # fmt: skip
    except notify.SendError as exc:
        raise NmdoseError(f"alerts test-email: {exc}") from None
    print(f"test message accepted by {settings.smtp.host}:{settings.smtp.port} for {args.to}")
    return 0


def cmd_rule(args, ctx) -> int:
    from nmdose.alerts import store
    from nmdose.alerts.rules import RuleError

    try:
        body = json.loads(args.json)
    except ValueError as exc:
        raise NmdoseError(f"alerts rule: not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise NmdoseError("alerts rule: expected a JSON object")
    try:
        with _conn(ctx) as conn:
            rule = store.upsert_rule(conn, body, prod=ctx.config.running_mode == "prod")
    except RuleError as exc:
        raise NmdoseError(f"alerts rule: {exc}") from None
    print(f"rule {rule['id']} {rule['name']!r} ({rule['kind']}) saved")
    return 0


def cmd_rules(args, ctx) -> int:
    from nmdose.alerts import store

    with _conn(ctx) as conn:
        rows = store.rules(conn)
    if args.json:
        print(json.dumps(rows, default=str, ensure_ascii=False))
        return 0
    for r in rows:
        print(f"{r['id']:>4} {'on ' if r['enabled'] else 'off'} {r['name']:30} {r['kind']:22} "
              f"email={','.join(r['email_to']) or '-'} webhook={r['webhook_url'] or '-'}"
              f"{' digest' if r['digest'] else ''}")  # fmt: skip
    return 0


def cmd_evaluate(args, ctx) -> int:
    from nmdose.alerts import store

    with _conn(ctx) as conn:
        n = store.evaluate_stored(conn, args.studies or None)
    print(f"{n} new firing(s)")
    return 0


def cmd_sink(args, ctx) -> int:
    """Run the sink in the foreground; already running on the port (a previous demo): say so and exit 0."""
    import socket
    from pathlib import Path

    from nmdose.alerts import sink
    from nmdose.alerts.settings import SMTP_PASSWORD, SMTP_USERNAME, load

    cfg = ctx.config
    if cfg.running_mode == "prod":
        raise NmdoseError("alerts sink: a test SMTP server; refused in prod running mode")
    settings = load(cfg)
    port = args.port or settings.smtp.port
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", port)) == 0:
            print(f"alerts sink: something already listens on 127.0.0.1:{port}; not started")
            return 0
    folder = Path(args.dir) if args.dir else Path(cfg.var_dir) / "alerts"
    ensure = getattr(cfg.secrets, "ensure", None)
    if ensure is None:
        raise NmdoseError("alerts sink: needs the local secret store (NMDOSE_SECRETS_BACKEND=env)")
    running = sink.start(folder, port=port, username=ensure(SMTP_USERNAME), password=ensure(SMTP_PASSWORD),
                         keep_dir=folder / "mail")  # fmt: skip
    print(f"alerts sink: 127.0.0.1:{port} (STARTTLS, AUTH), CA {running.ca_file}, messages in {folder / 'mail'}",
          flush=True)  # fmt: skip
    deadline = time.monotonic() + args.for_s if args.for_s else None
    try:
        while deadline is None or time.monotonic() < deadline:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        running.stop()
    return 0
