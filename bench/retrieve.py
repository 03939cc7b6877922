"""Retrieval speed, the same studies moved into an emptied research PACS, alternating rounds in one run:

- default: by `nmdose retrieve` (queue, verify, records) and by raw DCMTK `movescu` per study (the user's
  current shell loop; through a TLS tunnel if the source node has tls) on one stack;
  retrieve_vs_movescu = (instances/s of nmdose) / (instances/s of movescu), goal >= 0.95.
- `--tls`: by `nmdose retrieve` on two stacks, one plaintext and one with DICOM TLS on every node (the same
  studies uploaded into both simulation PACSs; which stack goes first alternates per round);
  retrieve_tls_vs_plain = (median plain time) / (median TLS time), > 1 means TLS faster.

Prints key=value lines: studies, instances, megabytes, rounds, backend, concurrency, tcp_nodelay,
<contender>_instances_per_s and <contender>_mb_per_s (movescu and nmdose, or plain and tls), then the ratio.
TCP_NODELAY=1 on every DCMTK process and Orthanc in both paths.
Usage: .venv/bin/python bench/retrieve.py [--studies N] [--rounds R] [--realistic-size] [--backend orthanc|dcmtk]
       [--tls]
"""

from __future__ import annotations

import argparse
import contextlib
import functools
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


def timed_round(running: RunningStack, move, manifest) -> float:
    """Empty the stack's research PACS, `move(cfg, studies)` the studies into it, check it holds every
    instance; the seconds the move took."""
    cfg = running.cfg
    rest = OrthancHttp(cfg.research_node.http_url, timeout_s=600)
    empty(rest, cfg)
    seconds = move(cfg, manifest.studies)
    assert rest.get("/statistics")["CountInstances"] == manifest.instance_count
    return seconds


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--studies", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--realistic-size", action="store_true")
    ap.add_argument("--backend", choices=["orthanc", "dcmtk"], default="orthanc")
    ap.add_argument("--tls", action="store_true", help="nmdose retrieve on a plaintext stack vs a TLS stack")
    args = ap.parse_args()
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
        # (name, stack, move) per contender; the ratio is the first one's median time / the second one's
        if args.tls:
            contenders = [("plain", plain, nmdose), ("tls", start(tls=True), nmdose)]
            ratio = "retrieve_tls_vs_plain"
        else:
            contenders = [("movescu", plain, movescu_all), ("nmdose", plain, nmdose)]
            ratio = "retrieve_vs_movescu"
        data = Path(tempfile.mkdtemp(prefix="nmdose-bench-", dir=plain.root))
        manifest = generate(data, studies=args.studies, years=2, seed=3, realistic_size=args.realistic_size)
        for running in dict.fromkeys(r for _, r, _ in contenders):  # each stack once
            upload(data, running.cfg.nodes["simulationPACS"], cfg=running.cfg)
        size_mb = sum(p.stat().st_size for p in data.rglob("*.dcm")) / 1e6
        times: dict[str, list[float]] = {name: [] for name, _, _ in contenders}
        for r in range(args.rounds):
            order = contenders[::-1] if args.tls and r % 2 else contenders  # TLS mode: fair turns
            for name, running, move in order:
                times[name].append(timed_round(running, move, manifest))
        instances = manifest.instance_count
        print(f"studies={len(manifest.studies)}")
        print(f"instances={instances}")
        print(f"megabytes={size_mb:.1f}")
        print(f"rounds={args.rounds}")
        print(f"backend={args.backend}")
        print(f"concurrency={plain.cfg.retrieve.concurrency}")
        print("tcp_nodelay=1 (all DICOM processes)")
        medians = [statistics.median(times[name]) for name, _, _ in contenders]
        for (name, _, _), t in zip(contenders, medians, strict=True):
            print(f"{name}_instances_per_s={instances / t:.1f}")
            print(f"{name}_mb_per_s={size_mb / t:.1f}")
        print(f"{ratio}={medians[0] / medians[1]:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
