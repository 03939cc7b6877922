"""Retrieval speed: the same studies moved into an emptied research PACS by `nmdose retrieve` (queue, verify,
records) and by raw DCMTK `movescu` per study (the user's current shell loop), in one run, alternating rounds.

Prints key=value lines: retrieve_vs_movescu = (instances/s of nmdose) / (instances/s of movescu), goal >= 0.95.
TCP_NODELAY=1 on every DCMTK process and Orthanc in both paths.
Usage: .venv/bin/python bench/retrieve.py [--studies N] [--rounds R] [--realistic-size] [--backend orthanc|dcmtk]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nmdose.db import connect  # noqa: E402
from nmdose.pacs.dcmtk import run_tool  # noqa: E402
from nmdose.pacs.orthanc_http import OrthancHttp  # noqa: E402
from nmdose.retrieve import runner  # noqa: E402
from nmdose.simulate import generate  # noqa: E402
from nmdose.simulate.upload import upload  # noqa: E402
from tests.support import RunningStack  # noqa: E402


def empty(rest: OrthancHttp, cfg) -> None:
    for patient in rest.get("/patients"):
        rest.delete(f"/patients/{patient}")
    with contextlib.closing(connect(cfg)) as conn, conn.cursor() as cur:
        cur.execute("DELETE FROM rpacs.retrieval")
        cur.execute("DELETE FROM jobs.queue WHERE kind = 'retrieve'")
        conn.commit()


def movescu_all(cfg, uids: list[str]) -> float:
    src, dst = cfg.source_node, cfg.research_node
    started = time.monotonic()
    for uid in uids:
        r = run_tool(
            "movescu",
            [
                "-S",
                "-aet",
                cfg.local_aet,
                "-aec",
                src.aet,
                "-aem",
                dst.aet,
                "-k",
                "QueryRetrieveLevel=STUDY",
                "-k",
                f"StudyInstanceUID={uid}",
                src.host,
                str(src.port),
            ],
            timeout_s=3600,
        )
        if not r.ok:
            raise SystemExit(f"movescu failed for {uid}: {r.stderr[-500:]}")
    return time.monotonic() - started


def nmdose_all(cfg, studies, backend: str) -> float:
    started = time.monotonic()
    with contextlib.closing(connect(cfg)) as conn:
        runner.queue_studies(
            conn,
            [runner.Target(s.study_uid, cfg.source_node.name, s.instances, backend=backend) for s in studies],
        )
    while True:
        runner.run(cfg, backend=backend)
        with contextlib.closing(connect(cfg)) as conn:
            st = runner.status(conn)["by_state"]
        if st.get("done", 0) + st.get("failed", 0) >= len(studies):
            break
        time.sleep(0.1)
    if st.get("failed"):
        raise SystemExit(f"nmdose retrieve: {st['failed']} studies failed")
    return time.monotonic() - started


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--studies", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--realistic-size", action="store_true")
    ap.add_argument("--backend", choices=["orthanc", "dcmtk"], default="orthanc")
    args = ap.parse_args()
    window = {"weekdays": "00:00-24:00", "weekends": "00:00-24:00"}
    # the plugin's own workers would compete for the jobs and blur the timing: research PACS without plugin
    running = RunningStack(research_plugin=False, retrieve={"time_window": window, "concurrency": 2})
    try:
        cfg = running.cfg
        data = Path(tempfile.mkdtemp(prefix="nmdose-bench-", dir=running.root))
        manifest = generate(data, studies=args.studies, years=2, seed=3, realistic_size=args.realistic_size)
        upload(data, cfg.nodes["simulationPACS"])
        instances = manifest.instance_count
        size_mb = sum(p.stat().st_size for p in data.rglob("*.dcm")) / 1e6
        rest = OrthancHttp(cfg.research_node.http_url, timeout_s=600)
        uids = [s.study_uid for s in manifest.studies]
        times: dict[str, list[float]] = {"movescu": [], "nmdose": []}
        for _ in range(args.rounds):
            empty(rest, cfg)
            times["movescu"].append(movescu_all(cfg, uids))
            assert rest.get("/statistics")["CountInstances"] == instances
            empty(rest, cfg)
            times["nmdose"].append(nmdose_all(cfg, manifest.studies, args.backend))
            assert rest.get("/statistics")["CountInstances"] == instances
        t_m, t_n = statistics.median(times["movescu"]), statistics.median(times["nmdose"])
        print(f"studies={len(uids)}")
        print(f"instances={instances}")
        print(f"megabytes={size_mb:.1f}")
        print(f"rounds={args.rounds}")
        print(f"backend={args.backend}")
        print(f"concurrency={cfg.retrieve.concurrency}")
        print("tcp_nodelay=1 (all DICOM processes)")
        print(f"movescu_instances_per_s={instances / t_m:.1f}")
        print(f"movescu_mb_per_s={size_mb / t_m:.1f}")
        print(f"nmdose_instances_per_s={instances / t_n:.1f}")
        print(f"nmdose_mb_per_s={size_mb / t_n:.1f}")
        print(f"retrieve_vs_movescu={t_m / t_n:.3f}")
    finally:
        running.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
