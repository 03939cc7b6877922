"""`nmdose retrieve run|status|studies|retry|csv|estimate`."""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path

from nmdose.db import connect
from nmdose.pacs.orthanc_http import OrthancHttp
from nmdose.progress import Progress
from nmdose.retrieve import runner
from nmdose.retrieve.csv_input import read_csv, resolve

DEFAULT_WAIT_S = 300.0
EXIT_UNFINISHED = 3  # `retrieve run` left work unfinished (running elsewhere, ready or waiting)


def register(sub) -> None:
    p = sub.add_parser("retrieve", help="move target studies from the source PACS into the research PACS")
    rsub = p.add_subparsers(dest="retrieve_command", metavar="ACTION", required=True)
    r = rsub.add_parser("run", help="retrieve the queued studies (concurrency and time window from config)")
    r.add_argument("--limit", type=int, help="at most N studies this run")
    r.add_argument("--backend", choices=["orthanc", "dcmtk"], help="default: retrieve_options.yaml backend")
    r.add_argument("--dry-run", action="store_true", help="list what would be retrieved, move nothing")
    r.add_argument(
        "--wait",
        type=float,
        default=DEFAULT_WAIT_S,
        metavar="SECONDS",
        help="wait up to this long for studies running elsewhere (the plugin's workers) and for retries due in "
        f"that time (default {DEFAULT_WAIT_S:.0f})",
    )
    r.add_argument(
        "--drain",
        action="store_true",
        help="run only what is ready now and exit 0 even if work is left (waiting, or running elsewhere)",
    )
    r.add_argument("--json", action="store_true")
    r.set_defaults(func=cmd_run)
    s = rsub.add_parser("status", help="studies per state, instances and bytes received")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_status)
    st = rsub.add_parser("studies", help="studies with their state and last error")
    st.add_argument("--state", choices=["pending", "moving", "verifying", "done", "partial", "failed"])
    st.add_argument("--limit", type=int, default=200)
    st.add_argument("--json", action="store_true")
    st.set_defaults(func=cmd_studies)
    rt = rsub.add_parser("retry", help="queue failed (and with --partial, partial) studies again")
    rt.add_argument("--failed", action="store_true", required=True)
    rt.add_argument("--partial", action="store_true")
    rt.set_defaults(func=cmd_retry)
    e = rsub.add_parser(
        "estimate", help="how long the pending studies will take, at the throughput measured so far"
    )
    e.add_argument("--json", action="store_true")
    e.set_defaults(func=cmd_estimate)
    c = rsub.add_parser(
        "csv", help="queue studies listed in a CSV (AccessionNumber, PatientID or StudyInstanceUID)"
    )
    c.add_argument("file", type=Path)
    c.add_argument("--run", action="store_true", help="retrieve them right away")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_csv)


def cmd_run(args, ctx) -> int:
    cfg = ctx.config
    with contextlib.closing(connect(cfg)) as conn:
        queued = runner.queue_census_targets(
            conn, cfg.source_node.name, max_attempts=cfg.retrieve.retry.max_attempts
        )
        if queued:
            print(f"queued {queued} census target studies from {cfg.source_node.name}")
        before = runner.status(conn)
        if args.dry_run:
            rows = runner.studies(conn, "pending", limit=args.limit or 100000)
            for row in rows:
                print(f"{row['study_instance_uid']}  from {row['source_node']}  ({row['origin']})")
            print(f"{len(rows)} studies would be retrieved")
            return 0
    todo = sum(n for s, n in before["queue"].items() if s in ("pending", "running"))
    if args.limit is not None:
        todo = min(todo, args.limit)
    bar = Progress(todo, "retrieve")
    started = time.monotonic()

    def progress(r: runner.Retriever) -> None:
        elapsed = max(time.monotonic() - started, 1e-6)
        bar.update(
            r.studies_done, f"studies, {r.instances_done} instances, {r.bytes_done / 1e6 / elapsed:.1f} MB/s"
        )

    wait_s = 0.0 if args.drain else max(args.wait, 0.0)
    r = runner.run(cfg, backend=args.backend, limit=args.limit, progress=progress, wait_s=wait_s)
    bar.close()
    from nmdose.audit import record_action

    record_action(cfg, "retrieve run", params={"backend": args.backend, "limit": args.limit}, rows=r.studies_done, detail={"queued": queued, "instances": r.instances_done, "bytes": r.bytes_done})  # fmt: skip
    elapsed = time.monotonic() - started
    from nmdose.retrieve.estimate import describe, estimate

    with contextlib.closing(connect(cfg)) as conn:
        after = runner.status(conn)
        left = runner.unfinished(conn)
        est = estimate(conn, cfg)
    unfinished = left["running"] + left["ready"] + left["waiting"]
    summary = {
        "studies_done_this_run": r.studies_done,
        "instances": r.instances_done,
        "megabytes": round(r.bytes_done / 1e6, 1),
        "seconds": round(elapsed, 1),
        "mb_per_s": round(r.bytes_done / 1e6 / elapsed, 1) if elapsed else None,
        "by_state": after["by_state"],
        "waiting": left["waiting"],
        "unfinished": {**left, "next_at": left["next_at"].isoformat() if left["next_at"] else None},
        "estimate": {k: est[k] for k in ("pending_studies", "retrieval_seconds")}
        | {"ends_at": est["ends_at"].isoformat() if est["ends_at"] else None},
    }
    if args.json:
        print(json.dumps(summary))
    else:
        print(
            f"retrieved {r.studies_done} studies, {r.instances_done} instances, {summary['megabytes']} MB "
            f"in {elapsed:.1f} s ({summary['mb_per_s']} MB/s)"
        )
        print("states: " + ", ".join(f"{k} {v}" for k, v in sorted(after["by_state"].items())))
        for line in left_lines(left):
            print(line)
        if est["pending_studies"]:
            print(estimate_lines(est, describe)[-2 if est["measured_studies"] else -1])
    if after["by_state"].get("failed"):
        return 1
    return EXIT_UNFINISHED if unfinished and not args.drain else 0


def left_lines(left: dict) -> list[str]:
    """What a run leaves unfinished, one line per kind of leftover."""
    lines = []
    if left["running"]:
        lines.append(
            f"{left['running']} studies still running elsewhere (held by {', '.join(left['holders']) or '?'})"
        )
    if left["ready"]:
        lines.append(f"{left['ready']} studies ready but not run (--limit, or the run stopped)")
    if left["waiting"]:
        at = left["next_at"].astimezone().strftime("%Y-%m-%d %H:%M:%S") if left["next_at"] else "?"
        lines.append(
            f"{left['waiting']} studies wait (back-off, a node down, or outside the time window; next at {at})"
        )
    if left["failed"]:
        lines.append(f"{left['failed']} studies failed for good (`retrieve studies --state failed` says why)")
    return lines


def cmd_status(args, ctx) -> int:
    with contextlib.closing(connect(ctx.config)) as conn:
        st = runner.status(conn)
    if args.json:
        print(json.dumps(st))
    else:
        print(f"{st['studies']} studies: " + ", ".join(f"{k} {v}" for k, v in sorted(st["by_state"].items())))
        print(f"{st['instances_received']} instances, {st['bytes_received'] / 1e6:.1f} MB received")
        q = st["queue"]
        print(
            "queue: "
            + (", ".join(f"{k} {v}" for k, v in sorted(q.items())) or "empty")
            + (
                " (failed: attempts used up or a permanent error; `retrieve retry --failed`)"
                if q.get("failed")
                else ""
            )
        )
    return 0


def cmd_estimate(args, ctx) -> int:
    from nmdose.retrieve.estimate import describe, estimate

    with contextlib.closing(connect(ctx.config)) as conn:
        est = estimate(conn, ctx.config)
    if args.json:
        print(json.dumps(est, default=str))
        return 0
    for line in estimate_lines(est, describe):
        print(line)
    return 0


def estimate_lines(est: dict, describe) -> list[str]:
    lines = [
        f"{est['pending_studies']} studies pending from {est['source_node']} ({est['pending_instances']} instances"
        + (f"; {est['failed_studies']} failed, not counted" if est["failed_studies"] else "")
        + ")"
    ]
    for c in est["by_class"]:
        per = (
            f"{c['seconds_per_study']:.2f} s/study" if c["seconds_per_study"] is not None else "not measured"
        )
        lines.append(
            f"  {c['size_class']:8} {c['pending_studies']:7} pending, measured on {c['measured_studies']:5} studies,"
            f" {per}, {describe(c['seconds'])}"
        )
    if est["why_unknown"]:
        lines.append(f"estimate unknown: {est['why_unknown']}")
        return lines
    window = est["time_window"]
    ends = est["ends_at"].astimezone().strftime("%Y-%m-%d %H:%M") if est["ends_at"] else "beyond 3 years"
    lines.append(
        f"retrieval time {describe(est['retrieval_seconds'])} at a parallelism of {est['parallelism'] or 1}"
        + (
            f", inside the time window (weekdays {window['weekdays']}, weekends {window['weekends']})"
            if window
            else ""
        )
        + f": ends {ends}"
    )
    if est["measured_studies"]:
        since = est["measured_since"].astimezone().strftime("%Y-%m-%d %H:%M")
        lines.append(f"(measured on the last {est['measured_studies']} studies moved, since {since})")
    return lines


def cmd_studies(args, ctx) -> int:
    with contextlib.closing(connect(ctx.config)) as conn:
        rows = runner.studies(conn, args.state, args.limit)
    if args.json:
        print(json.dumps(rows, default=str))
        return 0
    for row in rows:
        got = f"{row['received_instances'] or 0}/{row['expected_instances'] or '?'}"
        print(f"{row['state']:9} {row['study_instance_uid']:64} {got:>9}  {row['last_error'] or ''}")
    return 0


def cmd_retry(args, ctx) -> int:
    states = ("failed", "partial") if args.partial else ("failed",)
    with contextlib.closing(connect(ctx.config)) as conn:
        n = runner.retry(conn, states)
    from nmdose.audit import record_action

    record_action(ctx.config, "retrieve retry", params={"partial": args.partial}, rows=n)
    print(f"{n} studies queued again")
    return 0


def cmd_csv(args, ctx) -> int:
    cfg = ctx.config
    rows, problems = read_csv(args.file)
    rest = OrthancHttp.for_node(cfg, cfg.research_node.name)
    resolutions = resolve(rows, rest, cfg.source_node.name)
    targets = []
    with contextlib.closing(connect(cfg)) as conn:
        with conn.cursor() as cur:
            for res in resolutions:
                uids = [s["StudyInstanceUID"] for s in res.studies]
                cur.execute(
                    """INSERT INTO rpacs.csv_request (file, line, key, value, outcome, studies)
                       VALUES (%s, %s, %s, %s, %s, %s)""",
                    (str(args.file), res.row.line, res.row.key, res.row.value, res.outcome, uids),
                )
                for s in res.studies:
                    n = s.get("NumberOfStudyRelatedInstances")
                    targets.append(
                        runner.Target(
                            s["StudyInstanceUID"],
                            cfg.source_node.name,
                            int(n) if n not in (None, "") else None,
                            origin="csv",
                        )
                    )
        conn.commit()
        queued = runner.queue_studies(conn, targets, max_attempts=cfg.retrieve.retry.max_attempts)
    report = {
        "rows": len(rows) + len(problems),
        "problems": [{"line": p.line, "error": p.message} for p in problems],
        "no_match": [
            {"line": r.row.line, "value": r.row.value} for r in resolutions if r.outcome == "no match"
        ],
        "several": [
            {"line": r.row.line, "value": r.row.value, "studies": len(r.studies)}
            for r in resolutions
            if len(r.studies) > 1
        ],
        "errors": [{"line": r.row.line, "error": r.error} for r in resolutions if r.error],
        "studies_found": len(targets),
        "studies_queued": queued,
    }
    if args.json:
        print(json.dumps(report))
    else:
        for p in report["problems"]:
            print(f"line {p['line']}: {p['error']}")
        for r in report["no_match"]:
            print(f"line {r['line']}: {r['value']} matched no study")
        for r in report["several"]:
            print(f"line {r['line']}: {r['value']} matched {r['studies']} studies (all queued)")
        for r in report["errors"]:
            print(f"line {r['line']}: query failed: {r['error']}")
        print(f"{report['studies_found']} studies found, {queued} newly queued")
    if args.run:
        r = runner.run(cfg)
        print(f"retrieved {r.studies_done} studies, {r.instances_done} instances")
    from nmdose.audit import record_action

    record_action(cfg, "retrieve csv" + (" --run" if args.run else ""), study_uids=[t.study_uid for t in targets], params={"file": str(args.file), "run": args.run}, rows=queued, detail={"rows": report["rows"], "studies_found": len(targets)})  # fmt: skip
    # rows that need the user's attention make the exit code non-zero; the good rows ran anyway
    return 1 if problems or report["errors"] or report["no_match"] else 0
