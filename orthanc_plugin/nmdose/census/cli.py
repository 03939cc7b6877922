"""`nmdose census run|status|descriptions|accept`."""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from contextlib import closing

from nmdose.census import descriptions as D
from nmdose.census import runner
from nmdose.census.modalities import fmt


def register(sub) -> None:
    p = sub.add_parser("census", help="census of the source PACS (C-FIND) into rpacs")
    csub = p.add_subparsers(dest="census_command", metavar="SUBCOMMAND")

    r = csub.add_parser("run", help="query every study since the earliest date (resumes a stopped census)")
    r.add_argument("--from", dest="date_from", help="first StudyDate (YYYY-MM-DD); default: earliest found")
    r.add_argument("--to", dest="date_to", help="last StudyDate (YYYY-MM-DD); default: today")
    r.add_argument("--json", action="store_true", help="print the summary as JSON")
    r.set_defaults(func=cmd_run)

    s = csub.add_parser("status", help="progress of the latest census")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_status)

    d = csub.add_parser("descriptions", help="StudyDescriptions found, with counts, dates and modality sets")
    d.add_argument("--new", action="store_true", help="only those missing from target_descriptions")
    d.add_argument("--json", action="store_true")
    d.set_defaults(func=cmd_descriptions)

    a = csub.add_parser("accept", help="add descriptions to target_descriptions (retrieve_options.yaml)")
    a.add_argument("descriptions", nargs="*", metavar="DESC")
    a.add_argument("--all", action="store_true", help="every new description")
    a.add_argument("--by", default=None, help="who accepts (default: the login name)")
    a.add_argument("--json", action="store_true")
    a.set_defaults(func=cmd_accept)
    p.set_defaults(func=lambda args, ctx: (p.print_help(), 2)[1])


def _user() -> str:
    return os.environ.get("SUDO_USER") or getpass.getuser()


class _Bar:
    """A progress bar on a terminal, one plain line per step otherwise."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.last_pct = -1

    def __call__(self, p: runner.Progress) -> None:
        pct = int(100 * p.days_done / max(1, p.days_total))
        if self.tty:
            bar = "#" * (pct // 4)
            self.stream.write(
                f"\rcensus [{bar:<25}] {pct:3d}% {p.window:<17} studies {p.studies:>7} requests {p.requests:>6}"
            )
            self.stream.flush()
        elif pct // 10 != self.last_pct // 10 or pct == 100:
            print(
                f"census {pct}% range {p.window} studies {p.studies} requests {p.requests}", file=self.stream
            )
        self.last_pct = pct

    def done(self) -> None:
        if self.tty:
            self.stream.write("\n")


def cmd_run(args: argparse.Namespace, ctx) -> int:
    cfg = ctx.config
    bar = _Bar()
    try:
        summary = runner.run_census(
            cfg,
            date_from=args.date_from,
            date_to=args.date_to,
            started_by=_user(),
            progress=None if args.json else bar,
        )
    finally:
        bar.done()
    from nmdose.audit import record_action

    record_action(cfg, "census run", params={"from": args.date_from, "to": args.date_to}, detail={"state": summary.state, "studies_new": summary.studies_new, "studies_changed": summary.studies_changed})  # fmt: skip
    if args.json:
        print(json.dumps(summary.as_dict(), ensure_ascii=False, indent=1, default=str))
        return 0
    print_summary(summary)
    return 0


def print_summary(s: runner.CensusSummary, out=None) -> None:
    """The census summary as the user reads it."""
    out = out or sys.stdout
    p = lambda *a: print(*a, file=out)  # noqa: E731
    p(
        f"census of {s.source_node}: {s.state}{' (resumed)' if s.resumed else ''} in {s.seconds:.1f} s, "
        f"{s.earliest_date or '-'} .. {s.date_to}"
    )
    p(f"  studies: {s.studies_total} in rpacs ({s.studies_new} new, {s.studies_changed} changed on the PACS)")
    p(f"  targets (description in target_descriptions): {s.targets}")
    p("  studies per modality: " + ", ".join(f"{m} {n}" for m, n in s.by_modality.items()))
    p(
        f"  C-FIND requests: {s.requests} (minimum for a cap of {s.find_limit or 'none'}: {s.requests_min}), "
        f"ModalitiesInStudy {s.modality_matching or '-'}"
    )
    p(f"  modality corrections: {s.corrections}")
    if s.capped_days:
        p(f"  STILL CAPPED at the finest split ({len(s.capped_days)}): studies may be missing on")
        for c in s.capped_days:
            p(f"    {c['date']} {c['time']} ({c['answers']} answers kept)")
    p(f"  new descriptions (not in target_descriptions): {len(s.new_descriptions)}")
    for d in s.new_descriptions:
        sets = ", ".join(f"{m} {n}" for m, n in d["modality_sets"].items())
        p(f"    {d['description']!r}: {d['studies']} studies, {d['first_date']}..{d['last_date']} [{sets}]")
    if s.new_descriptions:
        p("  accept with: nmdose census accept DESC... (or --all)")


def cmd_status(args: argparse.Namespace, ctx) -> int:
    from nmdose.db import connect

    with closing(connect(ctx.config)) as conn:
        st = runner.status(conn, ctx.config)
    if args.json:
        print(json.dumps(st, ensure_ascii=False, indent=1, default=str))
        return 0
    if st["state"] == "never_run":
        print(f"census of {st['source_node']}: never run (nmdose census run)")
        return 0
    print(
        f"census run {st['run_id']} of {st['source_node']}: {st['state']}, {st['progress'] * 100:.0f}% "
        f"({st['days_done']} days done, {st['days_left']} left, {st['ranges_done']} ranges), "
        f"{st['studies']} studies, {st['requests']} requests, {st['corrections']} corrections, "
        f"{st['new_descriptions']} new descriptions"
    )
    if st["error"]:
        print(f"  last error: {st['error']}")
    return 0


def cmd_descriptions(args: argparse.Namespace, ctx) -> int:
    from nmdose.db import connect

    with closing(connect(ctx.config)) as conn:
        rows = D.list_descriptions(conn, ctx.config, only_new=args.new)
    if args.json:
        print(json.dumps(rows, ensure_ascii=False, indent=1, default=str))
        return 0
    for d in rows:
        sets = ", ".join(f"{m or fmt([])} {n}" for m, n in d["modality_sets"].items())
        flag = "NEW" if d["new"] else "target"
        print(
            f"{flag:6} {d['studies']:6}  {d['first_date']}..{d['last_date']}  {d['description']!r} [{sets}]"
            + (f" ({d['corrected']} corrected)" if d["corrected"] else "")
        )
    return 0


def cmd_accept(args: argparse.Namespace, ctx) -> int:
    from nmdose.db import connect
    from nmdose.errors import NmdoseError

    if not args.descriptions and not args.all:
        raise NmdoseError("census accept: name descriptions (DESC...) or use --all")
    with closing(connect(ctx.config)) as conn:
        result = D.accept(conn, ctx.config, args.descriptions, by=args.by or _user(), all_new=args.all)
    from nmdose.audit import record_action

    record_action(ctx.config, "census accept", params={"descriptions": args.descriptions, "all": args.all, "by": args.by}, rows=result["studies_marked"], detail={"accepted": result["accepted"]})  # fmt: skip
    if args.json:
        print(json.dumps(result, ensure_ascii=False, indent=1))
        return 0
    print(
        f"accepted {len(result['accepted'])} description(s) by {result['by']}; added to retrieve_options.yaml: "
        f"{', '.join(repr(d) for d in result['added_to_config']) or 'none (already there)'}; "
        f"{result['studies_marked']} studies now targets"
    )
    if result["config_error"]:
        print(f"warning: recorded in the database only; {result['config_error']}", file=sys.stderr)
    return 0
