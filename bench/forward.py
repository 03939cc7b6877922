"""Forwarding latency and the selective transfer's saving, on a throwaway local stack.

1. `stable_to_forwarded_s`: N studies (>= 50) retrieved into the research PACS (StableAge `--stable-age`); per
   study, the time from the plugin seeing it stable (STABLE_STUDY) to its selection being stored on the dose
   PACS; and `received_to_forwarded_s`, from the study's last instance (Orthanc LastUpdate, 1 s resolution)
   to forwarded — the figure the goal "<= StableAge + 2 s" is about.
2. `selective_bytes_ratio`: for PET-CT studies generated with realistic sizes, bytes the `selective` transfer
   moves to the dose PACS / bytes a `full` transfer moves (the study's size on the source).

Prints key=value lines. TCP_NODELAY=1 on every Orthanc (the stack sets it).
Usage: .venv/bin/python bench/forward.py [--studies 60] [--stable-age 20] [--selective-studies 8]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nmdose.db import connect  # noqa: E402
from nmdose.pacs.orthanc_http import OrthancHttp  # noqa: E402
from nmdose.retrieve import runner  # noqa: E402
from nmdose.retrieve.selective import retrieve_selected  # noqa: E402
from nmdose.simulate import generate  # noqa: E402
from nmdose.simulate.upload import upload  # noqa: E402
from tests.support import RunningStack  # noqa: E402

ALL_DAY = {"weekdays": "00:00-24:00", "weekends": "00:00-24:00"}


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]


def latency(args) -> None:
    running = RunningStack(
        retrieve={"time_window": ALL_DAY, "concurrency": 2},
        nodes={"researchPACS": {"orthanc_settings": {"StableAge": args.stable_age}}},
    )
    try:
        cfg = running.cfg
        with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
            manifest = generate(Path(tmp), studies=args.studies, years=3, seed=5, today=date(2026, 6, 30))
            upload(Path(tmp), cfg.nodes["simulationPACS"], cfg=cfg)
        uids = [s.study_uid for s in manifest.studies]
        with contextlib.closing(connect(cfg)) as conn:
            runner.queue_studies(conn, [runner.Target(u, cfg.source_node.name) for u in uids])
        started = time.monotonic()
        runner.run(cfg)
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            with contextlib.closing(connect(cfg)) as conn, conn.cursor() as cur:
                cur.execute(
                    """SELECT extract(epoch FROM finished_at - stable_at),
                              extract(epoch FROM finished_at - study_last_update)
                         FROM rpacs.forward_study WHERE state = 'done' AND trigger = 'stable'"""
                )
                rows = cur.fetchall()
            if len(rows) >= len(uids):
                break
            time.sleep(1)
        total = time.monotonic() - started
        stable = [float(r[0]) for r in rows]
        received = [float(r[1]) for r in rows if r[1] is not None]
        dose = OrthancHttp(cfg.dose_node.http_url)
        print(f"studies={len(uids)}")
        print(f"forwarded={len(rows)}")
        print(f"stable_age_s={args.stable_age}")
        print(f"stable_to_forwarded_s_median={statistics.median(stable):.2f}")
        print(f"stable_to_forwarded_s_p95={p95(stable):.2f}")
        print(f"received_to_forwarded_s_median={statistics.median(received):.2f}")
        print(f"received_to_forwarded_s_p95={p95(received):.2f}")
        print(f"received_to_forwarded_goal_s={args.stable_age + 2}")
        print(f"dose_pacs_instances={dose.get('/statistics')['CountInstances']}")
        print(f"retrieve_and_forward_total_s={total:.1f}")
    finally:
        running.close()


def selective(args) -> None:
    running = RunningStack(retrieve={"time_window": ALL_DAY})
    try:
        cfg = running.cfg
        source = cfg.source_node
        sim = OrthancHttp(source.http_url, name=source.name, timeout_s=120)
        research = OrthancHttp(cfg.research_node.http_url, name="researchPACS", timeout_s=120)
        with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
            manifest = generate(
                Path(tmp), studies=args.selective_studies, years=1, seed=11, realistic_size=True, today=date(2026, 6, 30)
            )  # fmt: skip
            upload(Path(tmp), cfg.nodes["simulationPACS"], cfg=cfg)
        petct = [s for s in manifest.studies if "PT" in s.modalities and "CT" in s.modalities]
        full = moved = instances = selected = 0
        seconds = 0.0
        for s in petct:
            (sid,) = sim.post("/tools/find", {"Level": "Study", "Query": {"StudyInstanceUID": s.study_uid}})
            full += int(sim.get(f"/studies/{sid}/statistics")["DiskSize"])
            r = retrieve_selected(cfg, research, source, s.study_uid, destination="dosePACS")
            if not r.ok:
                raise SystemExit(f"selective transfer of {s.study_uid} failed: {r.error}")
            moved += r.bytes_moved or 0
            instances += r.announced_instances
            selected += r.selected_instances
            seconds += r.seconds
        print(f"selective_petct_studies={len(petct)}")
        print(f"selective_instances={selected}/{instances}")
        print(f"full_megabytes={full / 1e6:.1f}")
        print(f"selective_megabytes={moved / 1e6:.2f}")
        print(f"selective_bytes_ratio={moved / full:.4f}")
        print(f"selective_seconds={seconds:.1f}")
    finally:
        running.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=60)
    parser.add_argument("--stable-age", type=int, default=20, help="research StableAge (orthanc.json: 20)")
    parser.add_argument("--selective-studies", type=int, default=8, help="realistic-size studies generated")
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument("--skip-selective", action="store_true")
    args = parser.parse_args()
    if not args.skip_latency:
        latency(args)
    if not args.skip_selective:
        selective(args)


if __name__ == "__main__":
    main()
