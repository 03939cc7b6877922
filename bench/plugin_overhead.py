"""Ingest cost of the nmdose plugin: the same synthetic instances C-STOREd (storescu, TCP_NODELAY=1 on both
sides) into the research PACS with the plugin loaded and without it, alternating, in one run.

Prints key=value lines; plugin_ingest_ratio = (instances/s with plugin) / (instances/s without), goal >= 0.95.
Usage: .venv/bin/python bench/plugin_overhead.py [--studies N] [--rounds R] [--realistic-size]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nmdose.pacs.dcmtk import run_tool  # noqa: E402
from nmdose.pacs.orthanc_http import OrthancHttp  # noqa: E402
from nmdose.simulate import generate  # noqa: E402
from nmdose.stack import Stack  # noqa: E402
from tests.support import RunningStack  # noqa: E402


def store_all(cfg, folder: Path) -> float:
    node = cfg.research_node
    started = time.monotonic()
    # the security profile lets only the source PACS C-STORE into the research PACS (from its host, 127.0.0.1
    # here): storescu calls as the source PACS's AE title, as the C-MOVE sub-operations of a retrieval do
    result = run_tool(
        "storescu",
        [
            "-aet",
            cfg.source_node.aet,
            "-aec",
            node.aet,
            "+sd",
            "+r",
            "+sp",
            "*.dcm",
            "-R",
            node.host,
            str(node.port),
            str(folder),
        ],
        timeout_s=3600,
    )
    elapsed = time.monotonic() - started
    if not result.ok:
        raise SystemExit(f"storescu failed: {result.stderr[-2000:]}")
    return elapsed


def empty(rest: OrthancHttp) -> None:
    for patient in rest.get("/patients"):
        rest.delete(f"/patients/{patient}")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--studies", type=int, default=40)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--realistic-size", action="store_true")
    args = ap.parse_args()

    running = RunningStack()
    try:
        cfg = running.cfg
        data = Path(tempfile.mkdtemp(prefix="nmdose-bench-", dir=running.root))
        generate(data, studies=args.studies, years=3, seed=7, realistic_size=args.realistic_size)
        files = [p for p in data.rglob("*.dcm")]
        size_mb = sum(p.stat().st_size for p in files) / 1e6
        rest = OrthancHttp(cfg.research_node.http_url, name="researchPACS", timeout_s=600)
        rates: dict[bool, list[float]] = {True: [], False: []}
        for _ in range(args.rounds):
            for with_plugin in (True, False):
                running.stack.orthanc_down("researchPACS")
                Stack(cfg, research_plugin=with_plugin).orthanc_up("researchPACS")
                empty(rest)
                elapsed = store_all(cfg, data)
                stored = rest.get("/statistics")["CountInstances"]
                if stored != len(files):
                    raise SystemExit(f"research PACS holds {stored} instances, expected {len(files)}")
                rates[with_plugin].append(len(files) / elapsed)
        with_ips = statistics.median(rates[True])
        without_ips = statistics.median(rates[False])
        print(f"instances={len(files)}")
        print(f"megabytes={size_mb:.1f}")
        print(f"rounds={args.rounds}")
        print("tcp_nodelay=1 (storescu and Orthanc)")
        print(f"with_plugin_instances_per_s={with_ips:.1f}")
        print(f"without_plugin_instances_per_s={without_ips:.1f}")
        print(f"plugin_ingest_ratio={with_ips / without_ips:.3f}")
    finally:
        running.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
