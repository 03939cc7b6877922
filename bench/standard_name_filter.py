"""Benchmark: the `standard_name` dose filter (docs/standard_names.md "Filtering by standard name") on a
hospital-sized dose schema, computed (not cached) as a first visit after new data sees it.

Starts a throw-away PostgreSQL (the local stack's launcher, free port, /tmp), fills it like bench/standard_names.py
(generate_series, the same spellings), names every row with that bench's rules, then times the dose page's
statistics queries (web/sql_dose.py) unfiltered, under a text filter for comparison, and under the standard-name
filter (a study-level name, an event-level name, an administration-level name, typed in another case): the median of
3 runs each, in ms, and the rows' n.

    .venv/bin/python bench/standard_name_filter.py [--studies 300000] [--events-per-study 2]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import time
from contextlib import closing
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from standard_names import AGENTS, DESCRIPTIONS, FILL, PROTOCOLS  # noqa: E402

from nmdose.db import connect  # noqa: E402
from nmdose.db.migrate import migrate  # noqa: E402
from nmdose.dose import standard_names as sn  # noqa: E402
from nmdose.stack import Stack  # noqa: E402
from nmdose.web import sql_dose  # noqa: E402
from tests.support import REPO, load, make_config_dir, make_tempdir  # noqa: E402

FILTERS = {
    "none": {},
    "description~chest (text filter)": {"description": "chest"},
    "standard_name=ct chest (study)": {"standard_name": "ct chest"},
    "standard_name=CHEST HELICAL (event)": {"standard_name": "CHEST HELICAL"},
    "standard_name=fdg (administration)": {"standard_name": "fdg"},
    "standard_name=unknown": {"standard_name": "no such name"},
}
QUERIES = {
    "ct_protocols protocol": lambda c, f: sql_dose.ct_protocols(c, f, "protocol"),
    "ct_protocols description": lambda c, f: sql_dose.ct_protocols(c, f, "description"),
    "box dlp standard_name": lambda c, f: sql_dose.box(c, f, [], "dlp", "standard_name"),
    "activity agent": lambda c, f: sql_dose.activity(c, f, "agent"),
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--studies", type=int, default=300_000)
    ap.add_argument("--events-per-study", type=int, default=2)
    args = ap.parse_args()
    print(f"loadavg_start={os.getloadavg()[0]:.2f}", flush=True)
    root = make_tempdir("nmdose-bench-snfilter-")
    cfg = load(make_config_dir(root))
    stack = Stack(cfg)
    try:
        (cfg.var_dir / "log").mkdir(parents=True, exist_ok=True)
        stack.postgres_up()
        with closing(connect(cfg, role="owner")) as conn:
            migrate(conn, REPO / "sql")
            with conn.cursor() as cur:
                cur.execute(
                    FILL,
                    {
                        "descriptions": [d for d, _ in DESCRIPTIONS],
                        "nd": len(DESCRIPTIONS),
                        "protocols": [p for p, _ in PROTOCOLS],
                        "np": len(PROTOCOLS),
                        "agents": [a for a, _ in AGENTS],
                        "na": len(AGENTS),
                        "n": args.studies,
                        "events": args.events_per_study,
                    },
                )
            conn.commit()
        rules = [sn.Rule("study_description", d, name) for d, name in DESCRIPTIONS if name]
        rules += [sn.Rule("acquisition_protocol", p, name) for p, name in PROTOCOLS if name]
        rules += [sn.Rule("agent", a, name) for a, name in AGENTS if name]
        with closing(connect(cfg)) as conn, conn, conn.cursor() as cur:
            sn.upsert_rules(cur, rules, "bench")
            sn.apply(cur)
        with closing(connect(cfg, role="owner")) as conn:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute("VACUUM (ANALYZE)")
                cur.execute(
                    "SELECT (SELECT count(*) FROM dose.study), (SELECT count(*) FROM dose.ct_event),"
                    " (SELECT count(*) FROM dose.radiopharmaceutical)"
                )
                print("studies={} ct_events={} administrations={}".format(*cur.fetchone()), flush=True)
        with closing(connect(cfg)) as conn:
            for qname, query in QUERIES.items():
                for fname, f in FILTERS.items():
                    times, n = [], 0
                    for _ in range(3):
                        start = time.perf_counter()
                        got = query(conn, f)
                        times.append((time.perf_counter() - start) * 1000)
                        n = sum(r.get("n") or 0 for r in got)
                    print(f"{qname:28} {fname:38} ms={statistics.median(times):8.0f} n={n}", flush=True)
        print(f"loadavg_end={os.getloadavg()[0]:.2f}")
    finally:
        try:
            stack.postgres_down()
        finally:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
