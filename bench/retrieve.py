"""Retrieval speed: the same studies moved into an emptied research PACS, alternating rounds in one run.

- default: two study sizes in one run, `small` (30 synthetic studies of a few instances: static NM, thyroid,
  bone) and `large` (3 PET-CT studies of realistic size), each moved per round by three contenders, their
  order turning each round:
  `movescu` (the user's current shell loop: one DCMTK `movescu` per study, through a TLS tunnel if the source
  has tls), `nmdose` (`nmdose retrieve run`: queue, adaptive concurrency, verification, records) and `cmove`
  (the simulated source PACS's own C-MOVE rate: one bare synchronous C-MOVE per study through the research
  PACS, nothing queued, verified or recorded; the limit any retrieval through that PACS is bound by).
  retrieve_vs_movescu_<size> = median over rounds of (movescu time / nmdose time in that round), goal >= 1.0;
  overhead_ms_per_study_<size> = (median nmdose time - median cmove time) / studies: what nmdose adds per study
  over the bare C-MOVEs (negative: its concurrency more than pays for its verification and records).
- `--tls`: by `nmdose retrieve` on two stacks, one plaintext and one with DICOM TLS on every node (the small
  set uploaded into both simulation PACSs; which stack goes first alternates per round);
  retrieve_tls_vs_plain = (median plain time) / (median TLS time), > 1 means TLS faster.

Prints key=value lines: per size the studies, instances, megabytes and rounds, per contender and size
<contender>_<size>_instances_per_s and the spread of its round times (min-max, % of the median), then the
ratios; the spread of the per-round ratios says how far one run is from another. TCP_NODELAY=1 on every DCMTK
process and Orthanc in all paths.

Wall-clock times swing with whatever else runs on the machine; the CPU seconds each contender makes the machine
spend do not, or far less: per round the CPU of the bench's own process (nmdose's runner runs in it) and of its
children (the `movescu` processes), of both Orthancs and of the PostgreSQL cluster (bench/lib/cpu.py).
<contender>_<size>_cpu_ms_per_study and cpu_<ratio>_<size> (median over rounds of movescu CPU / nmdose CPU, > 1:
nmdose costs the machine less per study than the loop) say whether a change costs more, on a busy machine too.
Usage: .venv/bin/python bench/retrieve.py [--studies N] [--rounds R] [--large-studies N] [--large-rounds R]
       [--sizes small,large] [--backend orthanc|dcmtk] [--tls]
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.lib.cpu import load_average, process_cpu_s, tree_cpu_s  # noqa: E402
from nmdose.db import connect  # noqa: E402
from nmdose.pacs.dcmtk import run_tool  # noqa: E402
from nmdose.pacs.orthanc_http import OrthancHttp  # noqa: E402
from nmdose.retrieve import runner  # noqa: E402
from nmdose.security.tls import Tunnel  # noqa: E402
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


def movescu_all(cfg, studies) -> float:
    src, dst = cfg.source_node, cfg.research_node
    with contextlib.ExitStack() as stack:
        host, port = src.host, src.port
        if src.tls:  # movescu has no TLS option: a TLS tunnel carries the associations
            host, port = "127.0.0.1", stack.enter_context(Tunnel(cfg, src, timeout_s=src.timeout_s)).port
        started = time.monotonic()
        for s in studies:
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
                    f"StudyInstanceUID={s.study_uid}",
                    host,
                    str(port),
                ],
                timeout_s=3600,
            )
            if not r.ok:
                raise SystemExit(f"movescu failed for {s.study_uid}: {r.stderr[-500:]}")
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


def cmove_all(cfg, studies) -> float:
    """The bare C-MOVE rate: one synchronous C-MOVE per study through the research PACS, nothing else."""
    rest = OrthancHttp(cfg.research_node.http_url, timeout_s=3600)
    started = time.monotonic()
    for s in studies:
        rest.post(
            f"/modalities/{cfg.source_node.name}/move",
            {
                "Level": "Study",
                "Resources": [{"StudyInstanceUID": s.study_uid}],
                "TargetAet": cfg.research_node.aet,
            },
        )
    return time.monotonic() - started


def cpu_s(running: RunningStack) -> float:
    """CPU seconds so far of this process and its reaped children (movescu), both Orthancs and PostgreSQL."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    for node in (running.cfg.research_node.name, running.cfg.source_node.name):
        total += process_cpu_s(int(running.stack.pid_file(node).read_text().strip()))
    return total + tree_cpu_s(int((running.stack.pg_data / "postmaster.pid").read_text().split()[0]))


def timed_round(running: RunningStack, move, studies, instances: int) -> tuple[float, float]:
    """Empty the stack's research PACS, `move(cfg, studies)` the studies into it, check it holds every
    instance; the seconds the move took and the CPU seconds it cost (cpu_s)."""
    cfg = running.cfg
    rest = OrthancHttp(cfg.research_node.http_url, timeout_s=600)
    empty(rest, cfg)
    cpu_before = cpu_s(running)
    seconds = move(cfg, studies)
    cpu = cpu_s(running) - cpu_before
    held = rest.get("/statistics")["CountInstances"]
    if held != instances:
        raise SystemExit(f"research PACS holds {held} instances after the round, expected {instances}")
    return seconds, cpu


def spread(values: list[float]) -> str:
    med = statistics.median(values)
    return f"{min(values):.3f}-{max(values):.3f} ({100 * (max(values) - min(values)) / med:.1f} % of median)"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--studies", type=int, default=30, help="small studies")
    ap.add_argument("--rounds", type=int, default=7, help="rounds of the small set")
    ap.add_argument("--large-studies", type=int, default=3, help="PET-CT studies of realistic size")
    ap.add_argument("--large-rounds", type=int, default=3)
    ap.add_argument("--sizes", default="small,large", help="small, large or both (comma separated)")
    ap.add_argument("--backend", choices=["orthanc", "dcmtk"], default="orthanc")
    ap.add_argument("--tls", action="store_true", help="nmdose retrieve on a plaintext stack vs a TLS stack")
    args = ap.parse_args()
    sizes = [s for s in args.sizes.split(",") if s]
    if args.tls:
        sizes = ["small"]
    window = {"weekdays": "00:00-24:00", "weekends": "00:00-24:00"}
    nmdose = functools.partial(nmdose_all, backend=args.backend)
    with contextlib.ExitStack() as cleanup:

        def start(tls: bool) -> RunningStack:
            # the plugin's own workers would compete for the jobs and blur the timing: no plugin in research PACS
            running = RunningStack(
                research_plugin=False, tls=tls, retrieve={"time_window": window, "concurrency": 2}
            )
            cleanup.callback(running.close)
            return running

        plain = start(tls=False)
        # (name, stack, move) per contender; the ratio is the first one's time / the second one's
        if args.tls:
            contenders = [("plain", plain, nmdose), ("tls", start(tls=True), nmdose)]
            ratio = "retrieve_tls_vs_plain"
        else:
            contenders = [
                ("movescu", plain, movescu_all),
                ("nmdose", plain, nmdose),
                ("cmove", plain, cmove_all),
            ]
            ratio = "retrieve_vs_movescu"
        sets = {}
        for size in sizes:
            data = Path(tempfile.mkdtemp(prefix=f"nmdose-bench-{size}-", dir=plain.root))
            large = size == "large"
            manifest = generate(
                data,
                studies=args.large_studies if large else args.studies,
                years=2,
                seed=5 if large else 3,
                realistic_size=large,
            )
            for running in dict.fromkeys(r for _, r, _ in contenders):  # each stack once
                upload(data, running.cfg.nodes["simulationPACS"], cfg=running.cfg)
            size_mb = sum(p.stat().st_size for p in data.rglob("*.dcm")) / 1e6
            sets[size] = (manifest, size_mb, args.large_rounds if large else args.rounds)
        times = {(name, size): [] for name, _, _ in contenders for size in sizes}
        cpus = {(name, size): [] for name, _, _ in contenders for size in sizes}
        load_at_start = load_average()
        for r in range(max(rounds for _, _, rounds in sets.values())):
            for size in sizes:
                manifest, _, rounds = sets[size]
                if r >= rounds:
                    continue
                order = contenders[r % len(contenders) :] + contenders[: r % len(contenders)]  # fair turns
                for name, running, move in order:
                    seconds, cpu = timed_round(running, move, manifest.studies, manifest.instance_count)
                    times[name, size].append(seconds)
                    cpus[name, size].append(cpu)
        print(f"backend={args.backend}")
        print(f"concurrency={plain.cfg.retrieve.concurrency}")
        print("tcp_nodelay=1 (all DICOM processes)")
        first, second = contenders[0][0], contenders[1][0]
        for size in sizes:
            manifest, size_mb, rounds = sets[size]
            n, instances = len(manifest.studies), manifest.instance_count
            print(f"studies_{size}={n}")
            print(f"instances_{size}={instances}")
            print(f"megabytes_{size}={size_mb:.1f}")
            print(f"rounds_{size}={rounds}")
            for name, _, _ in contenders:
                t = statistics.median(times[name, size])
                print(f"{name}_{size}_instances_per_s={instances / t:.1f}")
                print(f"{name}_{size}_mb_per_s={size_mb / t:.1f}")
                print(f"{name}_{size}_seconds={spread(times[name, size])}")
                print(f"{name}_{size}_cpu_ms_per_study={1000 * statistics.median(cpus[name, size]) / n:.1f}")
            ratios = [a / b for a, b in zip(times[first, size], times[second, size], strict=True)]
            print(f"{ratio}_{size}={statistics.median(ratios):.3f}")
            print(f"{ratio}_{size}_rounds={spread(ratios)}")
            cpu_ratios = [a / b for a, b in zip(cpus[first, size], cpus[second, size], strict=True)]
            print(f"cpu_{ratio}_{size}={statistics.median(cpu_ratios):.3f}")
            print(f"cpu_{ratio}_{size}_rounds={spread(cpu_ratios)}")
            if not args.tls:
                extra = statistics.median(times["nmdose", size]) - statistics.median(times["cmove", size])
                print(f"overhead_ms_per_study_{size}={1000 * extra / n:.1f}")
                cmove = statistics.median(times["movescu", size]) / statistics.median(times["cmove", size])
                print(f"source_cmove_vs_movescu_{size}={cmove:.3f}")
        if not args.tls and "small" in sizes:
            manifest = sets["small"][0]
            extra = statistics.median(times["nmdose", "small"]) - statistics.median(times["cmove", "small"])
            print(f"overhead_ms_per_study={1000 * extra / len(manifest.studies):.1f}")
        print(f"load_average_start={load_at_start} end={load_average()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
