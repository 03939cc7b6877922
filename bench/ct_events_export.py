"""Benchmark: the CT event CSV export (`GET /nmdose/api/dose/ct-events?format=csv`, issue 19: 1.9 s p95 on the
1 M-study data set of bench/pages.py).

Builds the data set exactly as bench/pages.py does (its `fill`, then VACUUM ANALYZE; --studies / --events), then
times, in the same run, the same export two ways, each with a new connection per request as in the plugin:

- ``before``: the rows as dicts (`sql_dose.ct_events`) written by `export.to_csv` (the route's earlier path);
- ``after``: the same rows written by PostgreSQL (`export.sql_csv`, the route's path now);
- ``route``: the route itself through the plugin router (`Plugin.handle_rest`: parameters, agent lookup, audit).

and checks that all three give the same bytes. One line per filter set:

    filters=... rows=... before_p50_ms=... before_p95_ms=... after_p50_ms=... after_p95_ms=... ratio_p95=...
        route_p50_ms=... route_p95_ms=...

    .venv/bin/python bench/ct_events_export.py [--studies 1000000] [--events 500000] [--requests 10] [--keep]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from contextlib import closing
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from pages import YEAR, fill  # noqa: E402

from bench.lib.scratch import relax_checkpoints, scratch_postgres, stop_audit_writer, vacuum_analyze  # noqa: E402
from bench.lib.timing import p95, time_ms  # noqa: E402
from nmdose.db import connect  # noqa: E402
from nmdose.db.migrate import migrate  # noqa: E402
from nmdose.plugin import Plugin  # noqa: E402
from nmdose.web import sql_dose  # noqa: E402
from nmdose.web.export import sql_csv, to_csv  # noqa: E402
from nmdose.web.params import MAX_LIMIT  # noqa: E402
from tests.support import REPO  # noqa: E402

FILTERS = [
    {"from": YEAR[0], "to": YEAR[1], "station": "CT1"},  # bench/pages.py's case
    {"from": YEAR[0], "to": YEAR[1]},
    {"protocol": "Chest routine"},
]


def before(cfg, f: dict) -> bytes:
    """The earlier path: dicts, then csv.writer over them."""
    with closing(connect(cfg, role="web")) as conn:
        events = sql_dose.ct_events(conn, f, MAX_LIMIT)
        return to_csv(events).encode("utf-8-sig")


def after(cfg, f: dict) -> bytes:
    """The route's path now: each line written by PostgreSQL."""
    with closing(connect(cfg, role="web")) as conn:
        body = sql_csv(conn, *sql_dose.ct_events_query(f, MAX_LIMIT))
        assert body is not None
        return body


def route(plugin: Plugin, f: dict) -> bytes:
    resp = plugin.handle_rest("GET", "/api/dose/ct-events", {**f, "format": "csv"}, {}, b"")
    if resp.status != 200:
        raise RuntimeError(f"answered {resp.status}: {resp.body[:300]!r}")
    return resp.body


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--studies", type=int, default=1_000_000)
    ap.add_argument("--events", type=int, default=500_000)
    ap.add_argument("--requests", type=int, default=10)
    ap.add_argument("--keep", action="store_true", help="leave the database running (prints how to stop it)")
    args = ap.parse_args()
    with scratch_postgres("nmdose-bench-ct-events-") as db:
        cfg = db.cfg
        relax_checkpoints(cfg)
        start = time.perf_counter()
        with closing(connect(cfg, role="owner")) as conn:
            migrate(conn, REPO / "sql")
            fill(conn, args.studies, args.events, cfg.source_node.name)
            vacuum_analyze(conn)
        print(
            f"studies={args.studies} events={args.events} build_s={time.perf_counter() - start:.1f}",
            flush=True,
        )
        plugin = Plugin(cfg)
        for f in FILTERS:
            route(plugin, f)  # warm the paths once (plans, caches)
            before(cfg, f)
            b, body_b = time_ms(lambda f=f: before(cfg, f), args.requests)
            a, body_a = time_ms(lambda f=f: after(cfg, f), args.requests)
            r, body_r = time_ms(lambda f=f: route(plugin, f), args.requests)
            same = body_a == body_b == body_r
            lines = body_a.count(b"\r\n") - 1
            print(f"filters={'&'.join(f'{k}={v}' for k, v in f.items())} rows={lines} "
                  f"bytes={len(body_a)} same_bytes={same} "
                  f"before_p50_ms={statistics.median(b):.1f} before_p95_ms={p95(b):.1f} "
                  f"after_p50_ms={statistics.median(a):.1f} after_p95_ms={p95(a):.1f} "
                  f"ratio_p95={p95(a) / p95(b):.2f} route_p50_ms={statistics.median(r):.1f} "
                  f"route_p95_ms={p95(r):.1f}", flush=True)  # fmt: skip
            if not same:
                print("DIFFERENT BYTES", flush=True)
        stop_audit_writer(plugin)  # the route's audit rows, written before the server stops
        db.keep = args.keep
        if db.keep:
            print(db.kept_message(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
