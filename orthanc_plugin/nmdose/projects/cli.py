"""`nmdose project create|add|list|members|remove`: research projects from the shell (docs/projects.md).

The command line acts as the administrator (it runs on the research PACS's host with its database credentials):
it sees every project. Each state-changing command is recorded in the audit trail (source `cli`)."""

from __future__ import annotations

import contextlib
import functools
import json
import sys
from pathlib import Path

from nmdose.audit import record_action
from nmdose.db import connect
from nmdose.projects import store
from nmdose.projects.access import Access
from nmdose.projects.names import ProjectError, check_name, parse_id_csv


def register(sub) -> None:
    p = sub.add_parser(
        "project", help="research projects: named sets of studies with members (docs/projects.md)"
    )
    psub = p.add_subparsers(dest="project_command", metavar="ACTION", required=True)
    c = psub.add_parser("create", help="create a project (nothing when it exists)")
    c.add_argument("name")
    c.add_argument("--description", default="")
    c.set_defaults(func=cmd_create)
    a = psub.add_parser(
        "add", help="add studies: UIDs, a CSV of accession numbers or UIDs, or a census filter"
    )
    a.add_argument("name")
    how = a.add_mutually_exclusive_group(required=True)
    how.add_argument("--uid", nargs="+", metavar="UID", help="StudyInstanceUIDs")
    how.add_argument("--csv", type=Path, metavar="FILE", help="accession numbers or UIDs (header detected)")
    how.add_argument("--description", metavar="PATTERN", help="census studies whose description holds it")
    a.add_argument("--year", type=int, help="with --description: studies of this year only")
    a.add_argument("--state", help="with --description: retrieval state (done, pending, failed, …)")
    a.add_argument("--json", action="store_true")
    a.set_defaults(func=cmd_add)
    ls = psub.add_parser("list", help="the projects, or one project's studies")
    ls.add_argument("name", nargs="?")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=cmd_list)
    m = psub.add_parser("members", help="a project's explicit members; --add / --remove change them")
    m.add_argument("name")
    m.add_argument("--add", metavar="PRINCIPAL", help="a user name (or with --group a group path)")
    m.add_argument("--remove", metavar="PRINCIPAL")
    m.add_argument("--group", action="store_true", help="the principal is a group path (/projects/x)")
    m.add_argument("--access", choices=["read", "write"], default="read")
    m.add_argument("--json", action="store_true")
    m.set_defaults(func=cmd_members)
    r = psub.add_parser(
        "remove", help="take studies out of a project (their files stay in the research PACS)"
    )
    r.add_argument("name")
    r.add_argument("--uid", nargs="+", metavar="UID", required=True)
    r.set_defaults(func=cmd_remove)


def _by() -> str:
    from nmdose.audit.actions import os_user

    return f"cli:{os_user()}"


def _conn(ctx):
    return contextlib.closing(connect(ctx.config))


def _refusals(cmd):
    """A ProjectError (bad name, unknown project, bad input) is said on stderr, exit code 2; nothing changed."""

    @functools.wraps(cmd)
    def run(args, ctx) -> int:
        try:
            return cmd(args, ctx)
        except ProjectError as exc:
            print(f"nmdose project: {exc.message}", file=sys.stderr)
            return 2

    return run


def _print(data, as_json: bool) -> None:
    if as_json:
        print(json.dumps(data, default=str, ensure_ascii=False))
        return
    rows = data if isinstance(data, list) else [data]
    for r in rows:
        print("  ".join(f"{k}={v}" for k, v in r.items()))


@_refusals
def cmd_create(args, ctx) -> int:
    with _conn(ctx) as conn:
        created = store.create(conn, args.name, args.description, _by())
    record_action(ctx.config, "project create", params={"project": args.name, "created": created})
    print(f"project {args.name}: {'created' if created else 'exists already'}")
    return 0


@_refusals
def cmd_add(args, ctx) -> int:
    cfg = ctx.config
    with _conn(ctx) as conn:
        check_name(args.name)
        store.get(conn, args.name)
        unknown: list[str] = []
        bad: list[str] = []
        if args.uid:
            uids, how = args.uid, "uid"
        elif args.csv:
            try:
                text = args.csv.read_text(encoding="utf-8-sig")
            except (OSError, UnicodeDecodeError) as exc:
                raise ProjectError(400, f"cannot read {args.csv}: {exc}") from None
            ids = parse_id_csv(text)
            found, unknown = store.uids_of_accessions(conn, ids.accessions) if ids.accessions else ([], [])
            uids, how, bad = ids.uids + found, "csv", ids.bad
        else:
            uids = store.uids_of_description(conn, args.description, year=args.year, state=args.state)
            how = "description"
        result = store.add_studies(conn, args.name, uids, _by(), how)
    params = {"project": args.name, "how": how, "description": args.description, "year": args.year}
    record_action(cfg, "project add", study_uids=result["study_instance_uids"], params=params,
                  rows=result["added"])  # fmt: skip
    summary = {k: result[k] for k in ("added", "already")} | {
        "not_in_census": len(result["not_in_census"]),
        "unknown_accessions": unknown,
        "bad_lines": bad,
    }
    if args.json:
        _print(summary, True)
    else:
        missing = len(result["not_in_census"])
        extra = f", {missing} not in the census" if missing else ""
        print(f"project {args.name}: {result['added']} added, {result['already']} already there{extra}")
        for a in unknown:
            print(f"  accession number not in the census: {a}")
        for line in bad:
            print(f"  refused: {line}")
    return 1 if bad or unknown else 0


@_refusals
def cmd_list(args, ctx) -> int:
    with _conn(ctx) as conn:
        if args.name is None:
            _print(store.projects(conn, Access("cli", admin=True)), args.json)
            return 0
        check_name(args.name)
        rows = store.studies(conn, args.name)
        store.get(conn, args.name)
    record_action(ctx.config, "project list", study_uids=[r["study_instance_uid"] for r in rows],
                  params={"project": args.name}, rows=len(rows))  # fmt: skip
    _print(rows, args.json)
    return 0


@_refusals
def cmd_members(args, ctx) -> int:
    kind = "group" if args.group else "user"
    with _conn(ctx) as conn:
        if args.add:
            store.set_member(conn, args.name, kind, args.add, args.access, _by())
            record_action(ctx.config, "project member add",
                          params={"project": args.name, "kind": kind, "access": args.access})  # fmt: skip
        if args.remove:
            store.remove_member(conn, args.name, kind, args.remove)
            record_action(ctx.config, "project member remove", params={"project": args.name, "kind": kind})
        _print(store.members(conn, args.name), args.json)
    return 0


@_refusals
def cmd_remove(args, ctx) -> int:
    with _conn(ctx) as conn:
        removed = [u for u in args.uid if store.remove_study(conn, args.name, u)]
    record_action(ctx.config, "project remove", study_uids=removed, params={"project": args.name},
                  rows=len(removed))  # fmt: skip
    print(f"project {args.name}: {len(removed)} removed")
    return 0
