"""``nmdose names list|import FILE|export|suggest|apply``: the standard-name rules from the command line
(docs/standard_names.md). A change (import, apply) names every stored study at once and is recorded in the
audit trail. Exit status: 0, or 1 when an imported file has bad lines (nothing is imported; each line named)."""

from __future__ import annotations

import argparse
import json
import sys
from contextlib import closing
from pathlib import Path
from typing import Any

from nmdose.dose import standard_names as sn


def register(subparsers: Any) -> None:
    names = subparsers.add_parser("names", help="standard names: rules mapping raw exam names to one name")
    sub = names.add_subparsers(dest="names_command", metavar="NAMES_COMMAND")
    p = sub.add_parser("list", help="the rules")
    p.add_argument("--json", action="store_true", help="one JSON object per rule")
    p.set_defaults(func=list_handler)
    p = sub.add_parser(
        "import",
        help="add or update rules from a CSV or YAML file, then name the studies they concern (all or nothing)",
        epilog="Exit status: 0, or 1 when the file has bad lines (each named; nothing imported).",
    )
    p.add_argument("file", metavar="FILE", help="CSV (field,raw_value,scanner_id,standard_name) or YAML")
    p.add_argument(
        "--format", choices=["csv", "yaml"], default=None, help="default: from the file's extension"
    )
    p.set_defaults(func=import_handler)
    p = sub.add_parser("export", help="the rules as CSV or YAML (the import format)")
    p.add_argument("--format", choices=["csv", "yaml"], default="csv")
    p.add_argument("-o", "--output", default=None, help="file to write (default: standard output)")
    p.set_defaults(func=export_handler)
    p = sub.add_parser("suggest", help="raw values no rule maps yet, grouped by normalised form, with counts")
    p.add_argument("--field", choices=list(sn.FIELDS), default=None, help="only this field")
    p.add_argument("--limit", type=int, default=100, help="at most this many groups (default 100)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=suggest_handler)
    p = sub.add_parser(
        "apply", help="name every stored study, CT event and administration again (idempotent)"
    )
    p.set_defaults(func=apply_handler)


def _connect(ctx):
    from nmdose.db import connect

    return closing(connect(ctx.config))


def _record(ctx, action: str, **kw) -> None:
    from nmdose.audit.actions import record_action

    record_action(ctx.config, action, **kw)


def list_handler(args: argparse.Namespace, ctx: Any) -> int:
    with _connect(ctx) as conn, conn.cursor() as cur:
        rules = sn.list_rules(cur)
    if args.json:
        for r in rules:
            sys.stdout.write(json.dumps(r, ensure_ascii=False, default=str) + "\n")
        return 0
    sys.stdout.write(f"{'id':>5} {'field':<21} {'scanner':>7}  {'raw value':<36} standard name\n")
    for r in rules:
        scanner = "all" if r["scanner_id"] is None else str(r["scanner_id"])
        sys.stdout.write(
            f"{r['id']:>5} {r['field']:<21} {scanner:>7}  {r['raw_value']:<36} {r['standard_name']}\n"
        )
    return 0


def import_handler(args: argparse.Namespace, ctx: Any) -> int:
    path = Path(args.file)
    fmt = args.format or ("yaml" if path.suffix.lower() in (".yaml", ".yml") else "csv")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        sys.stderr.write(f"nmdose names import: {path}: cannot read ({exc})\n")
        return 1
    try:
        rules = sn.parse_csv(text) if fmt == "csv" else sn.parse_yaml(text)
    except sn.RuleError as exc:
        sys.stderr.write(f"nmdose names import: {path}: nothing imported, {len(exc.errors)} problem(s):\n")
        for e in exc.errors:
            sys.stderr.write(f"  {e}\n")
        return 1
    with _connect(ctx) as conn, conn, conn.cursor() as cur:
        counts = sn.upsert_rules(cur, rules, "cli")
        applied = sn.apply_changed(cur, sn.changed_keys(rules))
    _record(ctx, "names import", params={"file": path.name, "format": fmt}, rows=len(rules), detail=counts)
    sys.stdout.write(
        f"{len(rules)} rules: {counts['inserted']} new, {counts['updated']} renamed, "
        f"{counts['unchanged']} unchanged; renamed {applied['studies']} studies, {applied['ct_events']} CT "
        f"events, {applied['administrations']} administrations\n"
    )
    return 0


def export_handler(args: argparse.Namespace, ctx: Any) -> int:
    with _connect(ctx) as conn, conn.cursor() as cur:
        rules = sn.list_rules(cur)
    text = sn.to_yaml(rules) if args.format == "yaml" else sn.to_csv(rules)
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


def suggest_handler(args: argparse.Namespace, ctx: Any) -> int:
    fields = (args.field,) if args.field else sn.FIELDS
    with _connect(ctx) as conn, conn.cursor() as cur:
        groups = sn.suggestions(cur, fields, max(1, args.limit))
    if args.json:
        for g in groups:
            sys.stdout.write(json.dumps(g, ensure_ascii=False) + "\n")
        return 0
    for g in groups:
        raws = ", ".join(f"{r['raw_value']} ({r['studies']})" for r in g["raw_values"][:8])
        more = f" and {len(g['raw_values']) - 8} more" if len(g["raw_values"]) > 8 else ""
        sys.stdout.write(f"{g['studies']:>7}  {g['field']:<21} {g['normalised']:<30} {raws}{more}\n")
    return 0


def apply_handler(args: argparse.Namespace, ctx: Any) -> int:
    with _connect(ctx) as conn, conn, conn.cursor() as cur:
        applied = sn.apply(cur)
    _record(ctx, "names apply", detail=applied)
    sys.stdout.write(
        f"renamed {applied['studies']} studies, {applied['ct_events']} CT events, "
        f"{applied['administrations']} administrations\n"
    )
    return 0
