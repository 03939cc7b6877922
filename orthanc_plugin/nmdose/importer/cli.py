"""`nmdose import folder|watch|list`: the watch-folder importer (docs/import.md)."""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import sys
import threading
from pathlib import Path

from nmdose.errors import ConfigError
from nmdose.importer import store
from nmdose.importer.folder import import_folder, is_locked, paths, pending_folders, short
from nmdose.logfiles import attach_log_file

log = logging.getLogger("nmdose.importer")


def register(sub) -> None:
    p = sub.add_parser(
        "import", help="import outside studies (one folder per patient) into the research PACS"
    )
    isub = p.add_subparsers(dest="import_command", metavar="ACTION", required=True)
    f = isub.add_parser("folder", help="import folders once (default: every folder in the drop folder)")
    f.add_argument("folders", nargs="*", metavar="DIR", help="patient folders (default: the drop folder's)")
    f.add_argument("--json", action="store_true", help="one JSON object per folder")
    f.set_defaults(func=cmd_folder)
    w = isub.add_parser("watch", help="watch the drop folder (inotify) and import each folder once quiet")
    w.add_argument("--debounce", type=float, default=None, help="seconds of quiet (default: import.yaml)")
    w.add_argument("--once", action="store_true", help="import the folders there now, then exit")
    w.set_defaults(func=cmd_watch)
    ls = isub.add_parser("list", help="the recent imports (no patient names: folder hashes, study UIDs)")
    ls.add_argument("--limit", type=int, default=20)
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=cmd_list)


def _config(ctx):
    cfg = ctx.config
    attach_log_file(cfg, "import.log", log)
    p = paths(cfg)
    store.reconcile(cfg, lambda fhash: is_locked(p, fhash))
    return cfg


def cmd_folder(args, ctx) -> int:
    cfg = _config(ctx)
    folders = [Path(f) for f in args.folders] or pending_folders(paths(cfg))
    worst = 0
    for folder in folders:
        result = import_folder(cfg, folder, trigger="folder")
        if args.json:
            print(
                json.dumps({**result.row(), "folder_hash": result.folder_hash, "log_file": result.log_file})
            )
        else:
            print(result.summary())
        worst = max(worst, {"archived": 0, "failed": 1, "retry": 3}.get(result.outcome, 1))
    return worst


def cmd_watch(args, ctx) -> int:
    from nmdose.importer.watch import Watcher

    cfg = _config(ctx)
    if not cfg.imports.enabled:
        raise ConfigError(
            f"{cfg.config_dir / 'import.yaml'}: enabled: expected true to watch the drop folder"
        )
    stop = threading.Event()

    def _stop(signum, frame):  # SIGTERM (stack down): finish the folder being imported, then exit
        stop.set()

    with contextlib.suppress(ValueError):  # not the main thread (tests)
        signal.signal(signal.SIGTERM, _stop)
    attach_log_file(cfg, "import.log", logging.getLogger("nmdose.importer.watch"))
    watcher = Watcher(cfg, debounce_s=args.debounce)
    print(f"nmdose import watch: {watcher.p.drop} (debounce {watcher.debounce_s:g} s)", file=sys.stderr,
          flush=True)  # fmt: skip
    try:
        watcher.run(stop, once=args.once)
    finally:
        watcher.close()
    return 0


def cmd_list(args, ctx) -> int:
    from nmdose.db import connect

    with contextlib.closing(connect(ctx.config)) as conn:
        rows = store.recent(conn, args.limit)
    if args.json:
        print(json.dumps(rows, default=str, indent=1))
        return 0
    for r in rows:
        print(f"{r['started_at']:%Y-%m-%d %H:%M:%S} {short(r['folder_hash'])} {r['outcome']:<11} "
              f"files {r['files']} stored {r['stored_files']} already {r['already_stored']} "
              f"skipped {r['skipped_files']} bad {r['bad_files']} studies {r['studies']} "
              f"{(r['destination'] or '')}")  # fmt: skip
    return 0
