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
import statistics
import sys
from contextlib import closing
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from standard_names import fill, own_rules  # noqa: E402

from bench.lib.scratch import dose_counts, scratch_postgres, vacuum_analyze  # noqa: E402
from bench.lib.timing import time_ms  # noqa: E402
from nmdose.db import connect  # noqa: E402
from nmdose.db.migrate import migrate  # noqa: E402
from nmdose.dose import standard_names as sn  # noqa: E402
from nmdose.web import sql_dose  # noqa: E402
from tests.support import REPO  # noqa: E402

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
    with scratch_postgres("nmdose-bench-snfilter-") as db:
        cfg = db.cfg
        with closing(connect(cfg, role="owner")) as conn:
            migrate(conn, REPO / "sql")
            fill(conn, args.studies, args.events_per_study)
        with closing(connect(cfg)) as conn, conn, conn.cursor() as cur:
            sn.upsert_rules(cur, own_rules(), "bench")
            sn.apply(cur)
        with closing(connect(cfg, role="owner")) as conn:
            vacuum_analyze(conn)
            print("studies={} ct_events={} administrations={}".format(*dose_counts(conn)), flush=True)
        with closing(connect(cfg)) as conn:
            for qname, query in QUERIES.items():
                for fname, f in FILTERS.items():
                    times, got = time_ms(lambda query=query, f=f: query(conn, f), 3)
                    n = sum(r.get("n") or 0 for r in got)
                    print(f"{qname:28} {fname:38} ms={statistics.median(times):8.0f} n={n}", flush=True)
        print(f"loadavg_end={os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
