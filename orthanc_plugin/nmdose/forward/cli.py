"""`nmdose forward status|study|pending|purge|protect|unprotect|selective`."""

from __future__ import annotations

import contextlib
import json
import time

from nmdose.db import connect
from nmdose.errors import NmdoseError
from nmdose.forward import purge, runner
from nmdose.pacs.orthanc_http import OrthancHttp
from nmdose.progress import Progress


def register(sub) -> None:
    p = sub.add_parser(
        "forward", help="dose objects + one image per series from the research to the dose PACS"
    )
    fsub = p.add_subparsers(dest="forward_command", metavar="ACTION", required=True)
    s = fsub.add_parser("status", help="studies per state, instances sent, stable-to-forwarded time")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_status)
    w = fsub.add_parser(
        "wait",
        help="wait until every retrieved study has been forwarded completely (plugin workers); exit 1 with "
        "the list of what is not, after --timeout or once nothing can progress",
    )
    w.add_argument("--timeout", type=float, default=300, help="seconds (default: %(default)s)")
    w.set_defaults(func=cmd_wait)
    st = fsub.add_parser("study", help="forward one study now (instances already sent are skipped)")
    st.add_argument("uid", metavar="StudyInstanceUID")
    st.add_argument("--force", action="store_true", help="send the selection again, even what was sent")
    st.add_argument("--json", action="store_true")
    st.set_defaults(func=cmd_study)
    pe = fsub.add_parser(
        "pending",
        help="studies whose forwarded set is incomplete, with the reason (waiting for the retrieval, retrying, "
        "failed, planned before the retrieval changed, without a job, never seen)",
    )
    pe.add_argument("--limit", type=int, default=500)
    pe.add_argument("--json", action="store_true")
    pe.set_defaults(func=cmd_pending)
    pu = fsub.add_parser("purge", help="auto_delete: delete unselected instances after the retention period")
    pu.add_argument(
        "--retention-days", type=int, help="default: retrieve_options.yaml transfer.retention_days"
    )
    pu.add_argument("--dry-run", action="store_true", help="report what would be deleted, delete nothing")
    pu.add_argument("--json", action="store_true")
    pu.set_defaults(func=cmd_purge)
    pr = fsub.add_parser("protect", help="keep a study whole in the research PACS (auto_delete skips it)")
    pr.add_argument("uid", metavar="StudyInstanceUID")
    pr.add_argument("--reason")
    pr.set_defaults(func=cmd_protect)
    up = fsub.add_parser("unprotect", help="let auto_delete clean a protected study again")
    up.add_argument("uid", metavar="StudyInstanceUID")
    up.set_defaults(func=cmd_unprotect)
    se = fsub.add_parser("selective", help="selective transfer of one study from the source PACS")
    se.add_argument("uid", metavar="StudyInstanceUID")
    se.add_argument("--destination", choices=["dosePACS", "researchPACS"])
    se.add_argument("--json", action="store_true")
    se.set_defaults(func=cmd_selective)


def _print(data, as_json: bool) -> None:
    if as_json:
        print(json.dumps(data, indent=1, ensure_ascii=False, default=str))
        return
    if isinstance(data, list):
        for row in data:
            print("  ".join(f"{k}={v}" for k, v in row.items() if v is not None))
        print(f"{len(data)} studies")
        return
    for key, value in data.items():
        print(
            f"{key}: {json.dumps(value, ensure_ascii=False, default=str) if isinstance(value, dict) else value}"
        )


STUCK_CONFIRM_S = 5.0  # every remaining study stuck this long: no progress is possible, stop waiting


def _stuck_report(rows: list[dict], why: str) -> None:
    print(f"nmdose: {len(rows)} studies not forwarded completely ({why}):")
    for row in rows:
        missing = f" missing={row['missing']}" if row.get("missing") else ""
        flag = "stuck" if row["stuck"] else "waiting"
        print(f"  {row['study_instance_uid']}  {flag}  state={row['state']}{missing}  {row['reason']}")


def cmd_wait(args, ctx) -> int:
    """Forwarding happens in the research PACS plugin once a study is stable (StableAge): wait until no study's
    forwarded set is incomplete (0), or stop with the list of what is not forwarded and exit 1: after
    --timeout, or at once when every remaining study is stuck (nothing queued would complete it). What a lost
    event left behind is queued again first, as the plugin's reconciliation does every 30 s."""
    deadline = time.monotonic() + args.timeout
    with contextlib.closing(connect(ctx.config)) as conn:
        requeued = runner.requeue_stale(ctx.config, conn)
    if requeued:
        print(f"nmdose: {requeued} studies with an incomplete forwarded set queued again")
    bar = None
    total = 0
    stuck_since = None
    while True:
        with contextlib.closing(connect(ctx.config)) as conn:
            rows = runner.pending(conn, limit=100_000)
        total = max(total, len(rows))
        bar = bar or Progress(total or None, "forward")
        bar.total = total
        bar.update(total - len(rows), "studies forwarded")
        if not rows:
            bar.close()
            return 0
        now = time.monotonic()
        if all(r["stuck"] for r in rows):
            stuck_since = stuck_since if stuck_since is not None else now
        else:
            stuck_since = None
        if stuck_since is not None and now - stuck_since >= STUCK_CONFIRM_S:
            bar.close()
            _stuck_report(rows, "no progress possible")
            return 1
        if now > deadline:
            bar.close()
            _stuck_report(rows, f"after {args.timeout:.0f} s")
            return 1
        time.sleep(1)


def cmd_status(args, ctx) -> int:
    with contextlib.closing(connect(ctx.config)) as conn:
        _print(runner.status(conn), args.json)
    return 0


def cmd_study(args, ctx) -> int:
    result = runner.forward_now(ctx.config, args.uid, force=args.force)
    from nmdose.audit import record_action

    record_action(ctx.config, "forward study", study_uids=[args.uid], params={"force": args.force}, rows=result.get("sent"), status=0 if result["state"] == "done" else 1, detail={"outcome": str(result.get("outcome")), "state": result["state"]})  # fmt: skip
    _print(result, args.json)
    return 0 if result["state"] == "done" or str(result.get("outcome", "")).startswith("deferred") else 1


def cmd_pending(args, ctx) -> int:
    with contextlib.closing(connect(ctx.config)) as conn:
        _print(runner.pending(conn, args.limit), args.json)
    return 0


def cmd_purge(args, ctx) -> int:
    cfg = ctx.config
    if cfg.retrieve.transfer.strategy != "auto_delete" and not args.dry_run:
        raise NmdoseError(
            f"transfer.strategy is {cfg.retrieve.transfer.strategy!r} in {cfg.config_dir / 'retrieve_options.yaml'}"
            "; purge deletes instances only under 'auto_delete' (use --dry-run to see what it would delete)"
        )
    rest = OrthancHttp.for_node(cfg, cfg.research_node.name, timeout_s=120)
    with contextlib.closing(connect(cfg)) as conn:
        r = purge.purge(cfg, rest, conn, retention_days=args.retention_days, dry_run=args.dry_run)
    from nmdose.audit import record_action

    if not args.dry_run:
        record_action(cfg, "forward purge", study_uids=r.studies, params={"retention_days": args.retention_days}, rows=r.deleted_instances, detail={"deleted_bytes": r.deleted_bytes, "kept_instances": r.kept_instances})  # fmt: skip
    _print(
        {
            "studies": len(r.studies),
            "deleted_instances": r.deleted_instances,
            "deleted_megabytes": round(r.deleted_bytes / 1e6, 1),
            "kept_instances": r.kept_instances,
            "protected_skipped": len(r.skipped_protected),
            "dry_run": r.dry_run,
        },
        args.json,
    )
    return 0


def cmd_protect(args, ctx) -> int:
    with contextlib.closing(connect(ctx.config)) as conn:
        purge.protect(conn, args.uid, args.reason, by="cli")
    from nmdose.audit import record_action

    record_action(ctx.config, "forward protect", study_uids=[args.uid], params={"reason": args.reason})
    print(f"{args.uid} protected")
    return 0


def cmd_unprotect(args, ctx) -> int:
    with contextlib.closing(connect(ctx.config)) as conn:
        found = purge.unprotect(conn, args.uid)
    from nmdose.audit import record_action

    record_action(ctx.config, "forward unprotect", study_uids=[args.uid], detail={"was_protected": found})
    print(f"{args.uid} {'unprotected' if found else 'was not protected'}")
    return 0


def cmd_selective(args, ctx) -> int:
    from nmdose.retrieve.selective import retrieve_selected

    cfg = ctx.config
    rest = OrthancHttp.for_node(cfg, cfg.research_node.name, timeout_s=120)
    r = retrieve_selected(cfg, rest, cfg.source_node, args.uid, destination=args.destination)
    from nmdose.audit import record_action

    record_action(cfg, "forward selective", study_uids=[args.uid], params={"destination": args.destination}, rows=r.selected_instances, status=0 if r.ok else 1, detail={"bytes_moved": r.bytes_moved, "error": r.error})  # fmt: skip
    _print(
        {
            "study": r.study_uid,
            "ok": r.ok,
            "destination": r.destination,
            "announced_instances": r.announced_instances,
            "selected_instances": r.selected_instances,
            "bytes_moved": r.bytes_moved,
            "seconds": round(r.seconds, 2),
            "error": r.error,
        },
        args.json,
    )
    return 0 if r.ok else 1
