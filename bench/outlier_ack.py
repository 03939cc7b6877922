"""Benchmark: acknowledging outliers (issue 19; web/routes_outliers.py) on a hospital-sized dose database.

Starts a throw-away PostgreSQL (as bench/pages.py, whose fill it uses), fills --studies census studies and --events
CT events, then through the real plugin router (``Plugin.handle_rest``, dev mode) times:

- ``outliers_warm``: GET /api/dose/outliers?limit=50 from the cache (with the acknowledgements' version read and the
  alerts' acknowledgements joined after the cache: the part this issue adds to every request),
- ``outliers_cold``: the same right after a dose write (computed by PostgreSQL),
- ``ack``: POST /api/dose/outliers/ack of the worst outlier's study (a reference-level hit: checked on the
  study's own rows), unfiltered and filtered to one year, and of a p95 hit's study with reason p95 (checked
  against the whole filtered set: one outlier computation),
- ``outliers_after_ack``: the GET right after an acknowledgement (``acknowledged=all``; ``_no``: the worklist):
  the cached index of the hits with the acknowledgements read per request (web/dose_views.py), nothing computed
  again; the other dose answers stay cached (``other_cached_after_ack``),
- ``warm_report``: the report page's opening answers computed after a dose write (web/report_views.py; per
  view), and ``warm_dose``: then the dose worker's whole warm step (the dose page's answers; the report's found).

    .venv/bin/python bench/outlier_ack.py [--studies 1000000] [--events 500000] [--n 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from contextlib import closing
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.lib.scratch import dose_counts, scratch_postgres, stop_audit_writer, vacuum_analyze  # noqa: E402
from bench.pages import dose_write, fill  # noqa: E402
from nmdose.db import connect  # noqa: E402
from nmdose.db.migrate import migrate  # noqa: E402
from nmdose.plugin import Plugin  # noqa: E402
from nmdose.web import report_views  # noqa: E402
from nmdose.web.dose_views import warm_default_views  # noqa: E402
from tests.support import REPO  # noqa: E402

OUTLIERS = "/api/dose/outliers"


def timed(plugin, method, path, query, body=None):
    start = time.perf_counter()
    data = json.dumps(body).encode() if body is not None else b""
    headers = {"content-type": "application/json"} if body is not None else {}
    resp = plugin.handle_rest(method, path, dict(query), headers, data)
    ms = (time.perf_counter() - start) * 1000
    if resp.status != 200:
        raise RuntimeError(f"{method} {path} answered {resp.status}: {resp.body[:300]!r}")
    return ms, json.loads(resp.body)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--studies", type=int, default=1_000_000)
    ap.add_argument("--events", type=int, default=500_000)
    ap.add_argument("--n", type=int, default=5, help="repetitions of each timed call (warm GETs: 4 x n)")
    args = ap.parse_args()
    with scratch_postgres("nmdose-bench-ack-") as db:
        cfg = db.cfg
        with closing(connect(cfg, role="owner")) as conn:
            migrate(conn, REPO / "sql")
            fill(conn, args.studies, args.events, cfg.source_node.name)
            vacuum_analyze(conn)
            print(f"ct_events={dose_counts(conn)[1]}", flush=True)
        plugin = Plugin(cfg)
        ms, page = timed(plugin, "GET", OUTLIERS, {"limit": "50"})
        print(f"outliers_total={page['total']} first_ms={ms:.0f}", flush=True)
        with closing(connect(cfg)) as conn, conn.cursor() as cur:
            cur.execute(
                "SELECT split_part(key, ':', 1), length(body) FROM dose.web_cache WHERE key LIKE 'outlier%%'"
            )
            print(" ".join(f"{k}_bytes={n}" for k, n in cur.fetchall()), flush=True)
        uid = page["rows"][0]["study_instance_uid"]
        year = str(page["rows"][0]["study_date"])[:4]
        cold = []
        for _ in range(args.n):
            dose_write(cfg, uid)
            cold.append(timed(plugin, "GET", OUTLIERS, {"limit": "50"})[0])
        warm = [timed(plugin, "GET", OUTLIERS, {"limit": "50"})[0] for _ in range(4 * args.n)]
        timed(plugin, "GET", "/api/dose/ct-protocols", {})  # cached for this data version
        body = {"study_instance_uid": uid, "comment": "bench"}
        acks, acks_year, after, after_no = [], [], [], []
        for i in range(args.n):
            acks.append(timed(plugin, "POST", OUTLIERS + "/ack", {}, {**body, "comment": f"bench {i}"})[0])
            after.append(timed(plugin, "GET", OUTLIERS, {"limit": "50", "acknowledged": "all"})[0])
            after_no.append(timed(plugin, "GET", OUTLIERS, {"limit": "50"})[0])
        for i in range(args.n):
            query = {"from": f"{year}-01-01", "to": f"{year}-12-31"}
            acks_year.append(
                timed(plugin, "POST", OUTLIERS + "/ack", query, {**body, "comment": f"y {i}"})[0]
            )
        p95 = timed(plugin, "GET", OUTLIERS, {"limit": "1", "reason": "p95"})[1]["rows"][0][
            "study_instance_uid"
        ]
        p95_body = {"study_instance_uid": p95, "reason": "p95"}
        acks_p95 = [
            timed(plugin, "POST", OUTLIERS + "/ack", {}, {**p95_body, "comment": f"p {i}"})[0]
            for i in range(args.n)
        ]
        with closing(connect(cfg)) as conn, conn.cursor() as cur:
            cur.execute(
                "SELECT count(*) FROM dose.web_cache WHERE key LIKE 'ct_protocols:%%'"
                " AND data_version = dose.data_version()"
            )
            other = cur.fetchone()[0]
        for name, samples in (
            ("outliers_warm", warm),
            ("outliers_cold", cold),
            ("ack_unfiltered", acks),
            ("ack_one_year", acks_year),
            ("ack_p95", acks_p95),
            ("outliers_after_ack", after),
            ("outliers_after_ack_no", after_no),
        ):
            print(
                f"{name}_p50_ms={statistics.median(samples):.1f} max_ms={max(samples):.1f} n={len(samples)}"
            )
        print(f"other_cached_after_ack={other}")
        dose_write(cfg, uid)
        with closing(connect(cfg)) as conn:
            report_ms = {}
            for route, f in report_views.opening_views():
                start = time.perf_counter()
                report_views.cached(conn, cfg, route, f)
                report_ms[route] = (time.perf_counter() - start) * 1000
            start = time.perf_counter()
            computed = warm_default_views(conn, cfg)
            dose_ms = (time.perf_counter() - start) * 1000
        print(
            f"warm_report_ms={sum(report_ms.values()):.0f} "
            + " ".join(f"{k}={v:.0f}" for k, v in report_ms.items())
        )
        print(f"warm_dose_ms={dose_ms:.0f} computed={computed}", flush=True)
        stop_audit_writer(plugin)  # its rows written before the database stops
    return 0


if __name__ == "__main__":
    sys.exit(main())
