"""Census benchmark: a simulation PACS of --studies studies over --years years, capped at --find-limit answers.

Prints key=value lines: census_studies_per_s, cfind_requests, cfind_requests_min (fewest requests the cap allows)
and census_vs_findscu = findscu time / census time over the same date ranges in the same run (>= 1: the census is
as fast as raw findscu). The findscu baseline is handed the census's final complete ranges (no probing, no capped
attempts), so it is the best a hand-driven findscu could do. Every DICOM process runs with TCP_NODELAY=1.

    .venv/bin/python bench/census.py --studies 20000 --years 10 --find-limit 100 [--sim-dir DIR]

Generating and uploading is the slow part (about 70 ms + 8 instances per study); --sim-dir keeps/reuses a
generated simulation folder.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from contextlib import closing
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nmdose.census import runner  # noqa: E402
from nmdose.census.finder import FindscuFinder  # noqa: E402
from nmdose.census.ranges import DateRange, TimeRange  # noqa: E402
from nmdose.db import connect  # noqa: E402
from nmdose.db.migrate import migrate  # noqa: E402
from nmdose.security import tls  # noqa: E402
from nmdose.simulate import DEFAULT_TARGET_DESCRIPTIONS, Manifest, generate  # noqa: E402
from nmdose.simulate.upload import upload  # noqa: E402
from tests.support import RunningStack, make_tempdir  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--studies", type=int, default=20000)
    ap.add_argument("--years", type=int, default=10)
    ap.add_argument("--find-limit", type=int, default=100)
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--sim-dir", type=Path, default=None, help="generate here, or reuse what is there")
    args = ap.parse_args()
    today = date(2025, 6, 30)

    t0 = time.monotonic()
    sim_dir = args.sim_dir or make_tempdir("nmdose-bench-census-")
    manifest_path = sim_dir / "manifest.json"
    if manifest_path.exists() and Manifest.load(manifest_path).parameters.get("studies") == args.studies:
        manifest = Manifest.load(manifest_path)
        generate_s = 0.0
    else:
        manifest = generate(sim_dir, studies=args.studies, years=args.years, seed=args.seed, today=today)
        generate_s = time.monotonic() - t0
    stack = RunningStack(
        research_plugin=False,
        nodes={"simulationPACS": {"find_limit": args.find_limit}},
        retrieve={"target_descriptions": list(DEFAULT_TARGET_DESCRIPTIONS)},
    )
    try:
        t1 = time.monotonic()
        upload(sim_dir, stack.cfg.nodes["simulationPACS"], associations=2, cfg=stack.cfg)
        upload_s = time.monotonic() - t1
        cfg = stack.cfg
        with closing(connect(cfg)) as conn:
            migrate(conn, cfg.migrations_dir)

        t2 = time.monotonic()
        summary = runner.run_census(cfg, date_to=today.isoformat())
        census_s = time.monotonic() - t2

        with closing(connect(cfg)) as conn, conn.cursor() as cur:
            cur.execute(
                """SELECT date_from, date_to, time_range FROM rpacs.census_query
                    WHERE run_id = %s AND purpose = 'range' AND status = 'complete' ORDER BY id""",
                (summary.run_id,),
            )
            ranges = cur.fetchall()
        finder = FindscuFinder(cfg.source_node, cfg.local_aet, tls.dcmtk_args(cfg, cfg.source_node))
        t3 = time.monotonic()
        found = set()
        for d_from, d_to, tr in ranges:
            times = None
            if tr:
                a, b = tr.split("-")
                times = TimeRange(
                    int(a[:2]) * 60 + int(a[2:4]),
                    (int(b[:2]) * 3600 + int(b[2:4]) * 60 + int(b[4:]) + 1) // 60,
                )
            result = finder.find_studies(DateRange(d_from, d_to), times)
            found |= {
                a["StudyInstanceUID"]
                for a in result.answers
                if set(a["ModalitiesInStudy"].split("\\")) & set(cfg.retrieve.target_modalities)
            }
        findscu_s = time.monotonic() - t3

        expected = len(manifest.studies)
        print(f"studies={expected}")
        print(f"years={args.years}")
        print(f"find_limit={args.find_limit}")
        print(f"generate_s={generate_s:.1f}")
        print(f"upload_s={upload_s:.1f}")
        print(f"census_studies={summary.studies_total}")
        print(f"census_complete={summary.studies_total == expected}")
        print(f"census_s={census_s:.2f}")
        print(f"census_studies_per_s={summary.studies_total / census_s:.0f}")
        print(f"cfind_requests={summary.requests}")
        print(f"cfind_requests_min={summary.requests_min}")
        print(f"modality_matching={summary.modality_matching}")
        print(f"findscu_ranges={len(ranges)}")
        print(f"findscu_studies={len(found)}")
        print(f"findscu_s={findscu_s:.2f}")
        print(f"census_vs_findscu={findscu_s / census_s:.2f}")
        print("tcp_nodelay=1 (Orthanc SCP, Orthanc SCU, findscu)")
    finally:
        stack.close()
        if args.sim_dir is None:
            shutil.rmtree(sim_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
