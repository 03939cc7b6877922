"""Benchmark: what the audit trail adds to the page API (issue 13: `bench/pages.py` figures within 10 %).

Same throw-away PostgreSQL, fill and API calls as bench/pages.py (its `fill` and `cases`), dispatched through
the real plugin router (`Plugin.handle_rest`), warm (repeated) requests, in three modes, interleaved over
several rounds (each mode first in one of them) so that load from other processes spreads evenly:

- ``off``: the audit observer removed from ``router.observers``;
- ``queue``: what the plugin runs (nmdose.audit.routes.make_observer: a WebCall appended to the writer's queue,
  rows counted and inserted by the writer thread, one INSERT per batch);
- ``sync``: the alternative, one row built and inserted on the request thread over a short-lived connection.

One line per call and mode (p50 over the rounds' requests), then per mode the sum of the calls' p50, the
median of per-call ratios to ``off``, and the rows the audit table got.

    .venv/bin/python bench/audit_overhead.py [--studies 100000] [--events 50000] [--requests 15] [--rounds 3]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import time
from pathlib import Path
from urllib.parse import urlencode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import pages as bench_pages  # noqa: E402
from bench.lib.scratch import scratch_postgres, vacuum_analyze  # noqa: E402
from nmdose.audit import routes, store  # noqa: E402
from nmdose.audit.event import from_web_call  # noqa: E402
from nmdose.db import connect  # noqa: E402
from nmdose.db.migrate import migrate  # noqa: E402
from nmdose.plugin import Plugin  # noqa: E402
from tests.support import REPO  # noqa: E402


def sync_observer(cfg):
    """The alternative measured: build the row and INSERT it on the request thread, new connection per call."""
    calls = routes.make_observer

    class Direct:
        def submit(self, item):
            with contextlib.closing(connect(cfg)) as conn:
                store.insert(conn, [from_web_call(item)])

    observe = calls(Direct())
    observe.nmdose_audit = False  # type: ignore[attr-defined]
    return observe


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--studies", type=int, default=100_000)
    ap.add_argument("--events", type=int, default=50_000)
    ap.add_argument("--requests", type=int, default=15, help="warm requests per call, mode and round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--modes", default="off,queue,sync")
    args = ap.parse_args()
    print(f"loadavg_start={os.getloadavg()[0]:.2f}", flush=True)
    with scratch_postgres("nmdose-bench-audit-") as db:
        cfg = db.cfg
        with contextlib.closing(connect(cfg)) as conn:
            migrate(conn, REPO / "sql")
        with contextlib.closing(connect(cfg, role="owner")) as conn:
            bench_pages.fill(conn, args.studies, args.events, cfg.source_node.name)
            conn.commit()
            vacuum_analyze(conn)
            calls = bench_pages.cases(conn)
        plugin = Plugin(cfg)
        observers = plugin.router.observers
        ours = [o for o in observers if getattr(o, "nmdose_audit", False)]
        assert len(ours) == 1, "the audit stage did not install its observer"
        others = [o for o in observers if not getattr(o, "nmdose_audit", False)]
        modes = {"off": others, "queue": others + ours, "sync": others + [sync_observer(cfg)]}
        modes = {m: modes[m] for m in args.modes.split(",")}
        samples: dict[tuple[str, int], list[float]] = {}

        def count_rows() -> int:
            with contextlib.closing(connect(cfg)) as conn, conn.cursor() as cur:
                cur.execute("SELECT count(*) FROM audit.event WHERE source = 'web'")
                return cur.fetchone()[0]

        rows_by_mode = dict.fromkeys(modes, 0)
        for path, query, _fixed in calls:  # warm every answer cache once
            plugin.handle_rest("GET", path, dict(query), {}, b"")
        order = list(modes)
        for rnd in range(args.rounds):
            for mode in order[rnd % len(order) :] + order[: rnd % len(order)]:  # each mode first in turn
                obs = modes[mode]
                observers[:] = obs
                before = count_rows()
                for i, (path, query, _fixed) in enumerate(calls):
                    for _ in range(args.requests):
                        start = time.perf_counter()
                        resp = plugin.handle_rest("GET", path, dict(query), {}, b"")
                        samples.setdefault((mode, i), []).append((time.perf_counter() - start) * 1000)
                        assert resp.status == 200, (path, resp.status, resp.body[:200])
                plugin.audit_writer.flush(120)
                rows_by_mode[mode] += count_rows() - before
        base = (
            {i: statistics.median(samples[("off", i)]) for i in range(len(calls))} if "off" in modes else {}
        )
        for i, (path, query, fixed) in enumerate(calls):
            filters = urlencode({k: v for k, v in query.items() if k not in ("group", "format", "measure")})
            line = f"route=/nmdose{path.split('/study/')[0]}{'?' + fixed if fixed else ''} filters={filters or 'none'}"
            for mode in modes:
                line += f" {mode}_p50_ms={statistics.median(samples[(mode, i)]):.2f}"
            print(line, flush=True)
        for mode in modes:
            p50s = [statistics.median(samples[(mode, i)]) for i in range(len(calls))]
            out = f"mode={mode} sum_p50_ms={sum(p50s):.1f} audit_rows={rows_by_mode[mode]}"
            if base:
                ratios = [p / base[i] for i, p in enumerate(p50s) if base[i] > 0]
                out += (
                    f" median_ratio={statistics.median(ratios):.3f} sum_ratio={sum(p50s) / sum(base.values()):.3f}"
                    f" worst_ratio={max(ratios):.3f}"
                )
            print(out, flush=True)
        print(f"calls={len(calls)} requests_per_call_and_mode={args.requests * args.rounds}")
        print(f"loadavg_end={os.getloadavg()[0]:.2f}")
        plugin.audit_writer.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
