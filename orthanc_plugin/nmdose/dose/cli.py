"""``nmdose dose parse|ingest|summary|worker``: the dose parser, its ingest into PostgreSQL and the spool worker.

``parse FILE... [--json]`` is the offline contract other tools use. Exit status: 0 when every file parsed
(``ok``) or holds no dose (``not_dose``); 1 when any file is ``error``. Files are processed one by one and
printed as they are parsed; a bad file never stops the run.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable
from typing import Any

from nmdose.dose.parse import parse_file


def register(subparsers: Any, *, warm_views: Callable[[Any, Any], int] | None = None) -> None:
    """Add ``dose`` and its sub-commands to the ``nmdose`` parser. ``warm_views(connection, cfg)`` is what the
    worker runs after new data (the dose page's opening answers into the web cache): the command line's glue
    (nmdose/cli.py) hands it in, so this stage never imports the web layer."""
    dose = subparsers.add_parser(
        "dose", help="radiation-dose extraction (CT RDSR, radiopharmaceutical, PET/NM)"
    )
    dose_sub = dose.add_subparsers(dest="dose_command", metavar="DOSE_COMMAND")
    parse = dose_sub.add_parser(
        "parse",
        help="parse dose objects offline and print what was found",
        description=__doc__.splitlines()[0],
        epilog="Exit status: 0 if every file is ok or not_dose, 1 if any file is error.",
    )
    parse.add_argument("files", nargs="+", metavar="FILE", help="DICOM files")
    parse.add_argument("--json", action="store_true", help="one JSON object per file (JSON Lines)")
    parse.set_defaults(func=parse_handler)
    ingest = dose_sub.add_parser(
        "ingest",
        help="parse dose objects and store them in the dose schema (idempotent)",
        epilog="Exit status: 0 unless a file went to the dead letters (1).",
    )
    ingest.add_argument("files", nargs="+", metavar="FILE|DIR", help="DICOM files or folders (walked)")
    ingest.add_argument("--json", action="store_true", help="one JSON outcome per file (JSON Lines)")
    ingest.add_argument("--source", default="cli", help="recorded as the objects' source (default: cli)")
    ingest.set_defaults(func=ingest_handler)
    summary = dose_sub.add_parser("summary", help="per protocol: N, median CTDIvol, DLP and activity")
    summary.add_argument(
        "--by",
        choices=["description", "acquisition"],
        default="description",
        help="study description (exam type, default) or CT acquisition protocol",
    )
    summary.add_argument("--json", action="store_true")
    summary.set_defaults(func=summary_handler)
    worker = dose_sub.add_parser(
        "worker", help="drain the dose spool (hooks of the dose PACS) into PostgreSQL"
    )
    worker.add_argument("--once", action="store_true", help="drain what is there, then exit")
    worker.add_argument("--spool", default=None, help="spool folder (default: <var>/spool/dose)")
    worker.add_argument(
        "--batch", type=int, default=500, metavar="N", help="entries per batch (default: 500)"
    )
    worker.add_argument(
        "--storage-root",
        action="append",
        default=None,
        metavar="DIR",
        help="a dose-PACS storage folder entries may name, read-only (repeatable; default: NMDOSE_DOSE_STORAGE_ROOT)",
    )
    worker.set_defaults(func=worker_handler, warm_views=warm_views)
    dose.set_defaults(func=lambda args, ctx: (dose.print_help(), 2)[1])


def parse_handler(args: argparse.Namespace, ctx: Any) -> int:
    """Parse each file, stream the results, return 1 if any failed."""
    failed = 0
    out = sys.stdout
    if not args.json:
        out.write(f"{'status':<8} {'kind':<24} {'events':>6} {'DLP mGy.cm':>11} {'activity MBq':>12}  file\n")
    for file in args.files:
        result = parse_file(file)
        if result["status"] == "error":
            failed += 1
        if args.json:
            out.write(json.dumps(result, ensure_ascii=False) + "\n")
        else:
            out.write(_row(result) + "\n")
            if result["error"]:
                out.write(f"         {result['error']}\n")
            for warning in result["warnings"]:
                out.write(f"         warning: {warning}\n")
        out.flush()
    return 1 if failed else 0


def _row(result: dict[str, Any]) -> str:
    ct = result["ct"]
    events = len(ct["events"]) if ct["events"] else ""
    dlp = "" if ct["total_dlp_mgycm"] is None else f"{ct['total_dlp_mgycm']:.1f}"
    activities = [
        a["activity_mbq"] for a in result["radiopharmaceutical"] if a.get("activity_mbq") is not None
    ]
    activity = "/".join(f"{a:.1f}" for a in activities)
    return (
        f"{result['status']:<8} {result['kind']:<24} {events!s:>6} {dlp:>11} {activity:>12}  {result['file']}"
    )


def ingest_handler(args: argparse.Namespace, ctx: Any) -> int:
    """Ingest files/folders; print one outcome per file; 1 when any went to the dead letters."""
    from nmdose.dose.ingest import ingest_files

    outcomes = ingest_files(ctx.config, args.files, source=args.source)
    from nmdose.audit import record_action

    record_action(ctx.config, "dose ingest", study_uids=[o["study_instance_uid"] for o in outcomes if o.get("study_instance_uid")], params={"source": args.source, "files": " ".join(map(str, args.files))}, rows=len(outcomes), detail={"by_status": {s: sum(o["status"] == s for o in outcomes) for s in {o["status"] for o in outcomes}}})  # fmt: skip
    out = sys.stdout
    counts: dict[str, int] = {}
    for o in outcomes:
        counts[o["status"]] = counts.get(o["status"], 0) + 1
        if args.json:
            out.write(json.dumps(o, ensure_ascii=False) + "\n")
        else:
            line = f"{o['status']:<12} {o.get('kind') or '':<24} {o['file']}"
            out.write(line + (f"\n             {o['error']}" if o.get("error") else "") + "\n")
    if not args.json:
        out.write("total: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) + "\n")
    return 1 if counts.get("dead_letter") else 0


def summary_handler(args: argparse.Namespace, ctx: Any) -> int:
    """Print the per-protocol summary from the dose schema."""
    from contextlib import closing

    from nmdose.db import connect
    from nmdose.dose.summary import protocol_summary

    with closing(connect(ctx.config)) as conn:
        rows = protocol_summary(conn, by=args.by)
    if args.json:
        for row in rows:
            sys.stdout.write(json.dumps(row, ensure_ascii=False) + "\n")
        return 0
    sys.stdout.write(_summary_table(rows, args.by))
    return 0


def _fmt(value: Any, spec: str = ".1f") -> str:
    return "-" if value is None else format(value, spec)


def _summary_table(rows: list[dict[str, Any]], by: str) -> str:
    title = "study description" if by == "description" else "CT acquisition protocol"
    lines = [
        f"{title:<36} {'N':>5} {'events':>6} {'CTDIvol mGy':>11} {'DLP mGy.cm':>11} {'activity MBq':>12}",
    ]
    for r in rows:
        lines.append(
            f"{(r['protocol'] or '(none)')[:36]:<36} {r['n']:>5} {r['n_events']:>6} "
            f"{_fmt(r['median_ctdivol_mgy']):>11} {_fmt(r['median_dlp_mgycm']):>11} "
            f"{_fmt(r['median_activity_mbq']):>12}"
        )
    if not rows:
        lines.append("(no dose records yet)")
    lines.append(
        "medians: CTDIvol per CT event, DLP per study (sum of its events)"
        + (", activity per study" if by == "description" else "")
    )
    return "\n".join(lines) + "\n"


def worker_handler(args: argparse.Namespace, ctx: Any) -> int:
    """Run the spool worker in the foreground."""
    from pathlib import Path

    from nmdose.dose.spool import Worker

    roots = [Path(p) for p in args.storage_root] if getattr(args, "storage_root", None) else None
    batch = max(1, getattr(args, "batch", 500) or 500)
    warm = getattr(args, "warm_views", None)
    worker = Worker(ctx.config, Path(args.spool) if args.spool else None, roots=roots, batch=batch, warm=warm)
    # the dose alerts' outbox is sent from here, next to the ingest that fills it (docs/alerts.md)
    sender = None if args.once else _alert_sender(ctx.config)
    try:
        total = worker.run(once=args.once)
    finally:
        if sender is not None:
            sender.stop()
    if args.once:
        sys.stdout.write(
            f"entries={total.entries} ingested={total.ingested} unchanged={total.unchanged} "
            f"not_dose={total.not_dose} dead_letter={total.dead_letter}\n"
        )
    return 0


def _alert_sender(cfg):
    """The alert sender thread (nmdose.alerts.outbox.Sender), or None when config/alerts.yaml is refused (logged:
    the deliveries wait in the outbox; the dose worker runs on)."""
    from nmdose.alerts.outbox import Sender
    from nmdose.errors import ConfigError

    try:
        return Sender(cfg).start()
    except ConfigError as exc:
        logging.getLogger("nmdose.alerts").error("alerts not sent: %s", exc)
        return None
