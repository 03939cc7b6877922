"""Ingest cost of the nmdose plugin: the same synthetic instances C-STOREd (storescu, TCP_NODELAY=1 on both
sides) into the research PACS with the plugin loaded and without it, in one run.

With the plugin, its security filters are active (the incoming C-STORE instance filter that admits only the
source PACS and the HTTP request filter of the DICOM/HTTP hardening work), as in production. The rounds are
interleaved in ABBA order (with, without, without, with, ...), so a drift of the machine's load falls on both
sides alike, after one untimed warm-up store per side; each round's ratio is taken against the adjacent round of
the other side. plugin_ingest_ratio = median of those per-pair ratios (instances/s with plugin / without),
goal >= 0.95; its spread (min-max and interquartile range) says how far one run can be from another.

The wall-clock ratio swings with whatever else runs on the machine (on the 2-core machine with tests running
beside it, one pair of rounds gave 0.55 and the next 1.13). The CPU seconds the research PACS spends per
instance do not: Orthanc's process (every thread, the plugin's Python callbacks and workers included) and the
PostgreSQL cluster behind its index (the postmaster, its backends, and those already closed), read from /proc
before and after each round (bench/lib/cpu.py). plugin_cpu_ratio = median over the pairs of CPU without / CPU
with the plugin (>= 0.95: the plugin adds at most 5 % to what an instance costs the server); on a quiet machine
both ratios agree.

Prints key=value lines. Usage: .venv/bin/python bench/plugin_overhead.py [--studies N] [--rounds R]
       [--realistic-size]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.lib.cpu import load_average, process_cpu_s, tree_cpu_s  # noqa: E402
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


def quartiles(values: list[float]) -> tuple[float, float]:
    q = statistics.quantiles(values, n=4, method="inclusive") if len(values) > 1 else [values[0]] * 3
    return q[0], q[2]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--studies", type=int, default=100)
    ap.add_argument(
        "--rounds", type=int, default=8, help="pairs of rounds (one with, one without the plugin)"
    )
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
        plugin_on = None
        load_at_start = load_average()
        cpu: dict[bool, list[tuple[float, float]]] = {
            True: [],
            False: [],
        }  # (Orthanc, PostgreSQL) ms/instance

        def cpu_now() -> tuple[float, float]:
            orthanc_pid = int(running.stack.pid_file("researchPACS").read_text().strip())
            postmaster = int((running.stack.pg_data / "postmaster.pid").read_text().split()[0])
            return process_cpu_s(orthanc_pid), tree_cpu_s(postmaster)

        def store_round(with_plugin: bool) -> float:
            nonlocal plugin_on
            if plugin_on is not with_plugin:
                running.stack.orthanc_down("researchPACS")
                Stack(cfg, research_plugin=with_plugin).orthanc_up("researchPACS")
                plugin_on = with_plugin
            empty(rest)
            before = cpu_now()
            elapsed = store_all(cfg, data)
            after = cpu_now()
            cpu[with_plugin].append(
                tuple((a - b) * 1000 / len(files) for a, b in zip(after, before, strict=True))
            )
            stored = rest.get("/statistics")["CountInstances"]
            if stored != len(files):
                raise SystemExit(f"research PACS holds {stored} instances, expected {len(files)}")
            return len(files) / elapsed

        for with_plugin in (True, False):  # warm-up: caches, the first start of each side; not timed
            store_round(with_plugin)
        rates: dict[bool, list[float]] = {True: [], False: []}
        ratios: list[float] = []
        cpu_ratios: list[float] = []
        for side in cpu:
            cpu[side].clear()  # the warm-up rounds are not counted
        for r in range(args.rounds):
            order = (True, False) if r % 2 else (False, True)  # ABBA: the side that just ran goes first
            pair = {side: store_round(side) for side in order}
            for side, rate in pair.items():
                rates[side].append(rate)
            ratios.append(pair[True] / pair[False])
            cpu_ratios.append(sum(cpu[False][-1]) / sum(cpu[True][-1]))
        with_ips = statistics.median(rates[True])
        without_ips = statistics.median(rates[False])
        q1, q3 = quartiles(ratios)
        print(f"instances={len(files)}")
        print(f"megabytes={size_mb:.1f}")
        print(f"rounds={args.rounds} pairs, ABBA order, after one warm-up round per side")
        print("tcp_nodelay=1 (storescu and Orthanc)")
        print("security_filters=active with the plugin (incoming C-STORE filter, HTTP request filter)")
        print(
            f"with_plugin_instances_per_s={with_ips:.1f} (min {min(rates[True]):.1f}, max {max(rates[True]):.1f})"
        )
        print(
            f"without_plugin_instances_per_s={without_ips:.1f} "
            f"(min {min(rates[False]):.1f}, max {max(rates[False]):.1f})"
        )
        print(f"plugin_ingest_ratio={statistics.median(ratios):.3f}")
        print(
            f"plugin_ingest_ratio_spread={min(ratios):.3f}-{max(ratios):.3f} (interquartile {q1:.3f}-{q3:.3f})"
        )
        print(f"plugin_ingest_ratio_of_medians={with_ips / without_ips:.3f}")
        for side, name in ((True, "with"), (False, "without")):
            orthanc_ms = statistics.median(c[0] for c in cpu[side])
            postgres_ms = statistics.median(c[1] for c in cpu[side])
            print(f"{name}_plugin_cpu_ms_per_instance=orthanc {orthanc_ms:.2f} postgresql {postgres_ms:.2f}")
        c1, c3 = quartiles(cpu_ratios)
        print(f"plugin_cpu_ratio={statistics.median(cpu_ratios):.3f}")
        print(
            f"plugin_cpu_ratio_spread={min(cpu_ratios):.3f}-{max(cpu_ratios):.3f} (interquartile {c1:.3f}-{c3:.3f})"
        )
        print(f"load_average_start={load_at_start} end={load_average()}")
    finally:
        running.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
