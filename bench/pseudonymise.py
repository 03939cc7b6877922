"""Throughput of `nmdose pseudonymise` (Orthanc's PS3.15 basic profile + nmdose's keyed pseudonyms, UIDs and date
shift) against a plain copy of the same instances between the same two Orthancs, in one run.

One stack: PostgreSQL, the research PACS (with its plugin) and the pseudoPACS. The studies: synthetic ones from
`nmdose simulate` (CT, PET, NM images and their dose reports), stored into the research PACS and put in a project.
Rounds alternate (ABBA), the pseudoPACS emptied before each:
- copy: for each instance, ``GET /instances/{id}/file`` from the research PACS and ``POST /instances`` to the
  pseudoPACS, unchanged (the least any copy between them costs);
- pseudonymise: `export.export` of the project's studies (per instance: Orthanc's anonymize, the pydicom pass,
  the store; a database row per study, an audit row per run).
pseudonymise_vs_copy = median over the pairs of (pseudonymise instances/s / copy instances/s): what the
de-identification costs over moving the bytes.

Prints key=value lines. Usage: .venv/bin/python bench/pseudonymise.py [--studies N] [--rounds R]
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
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "orthanc_plugin"))

from nmdose.db import connect  # noqa: E402
from nmdose.pseudonymise import deid, export  # noqa: E402
from nmdose.simulate import generate  # noqa: E402
from tests.integration.test_pseudonymise import PseudoStack  # noqa: E402


def empty(rest) -> None:
    for patient in rest.get("/patients"):
        rest.delete(f"/patients/{patient}")


def copy_round(ps: PseudoStack, instances: list[str]) -> float:
    started = time.monotonic()
    for iid in instances:
        data = ps.research.request("GET", f"/instances/{iid}/file").content
        ps.pseudo.request("POST", "/instances", data=data)
    return time.monotonic() - started


def pseudonymise_round(ps: PseudoStack, uids: list[str]) -> tuple[float, int]:
    started = time.monotonic()
    outcomes = export.export(ps.cfg, "bench", uids, options=deid.Options())
    elapsed = time.monotonic() - started
    bad = [o for o in outcomes if o.state != "done"]
    if bad:
        raise SystemExit(f"pseudonymise failed: {bad[0].error}")
    return elapsed, sum(o.stored for o in outcomes)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--studies", type=int, default=12)
    ap.add_argument("--rounds", type=int, default=4, help="pairs of rounds (ABBA order)")
    args = ap.parse_args()
    ps = PseudoStack()
    try:
        with tempfile.TemporaryDirectory(prefix="nmdose-bench-pseudo-") as tmp:
            generate(Path(tmp), studies=args.studies, years=1, seed=11)
            files = sorted(p for p in Path(tmp).rglob("*.dcm"))
            for f in files:
                ps.research.request("POST", "/instances", data=f.read_bytes())
        instances = ps.research.get("/instances")
        uids = sorted({ps.research.get(f"/studies/{s}")["MainDicomTags"]["StudyInstanceUID"]
                       for s in ps.research.get("/studies")})  # fmt: skip
        with contextlib.closing(connect(ps.cfg, role="owner")) as conn, conn, conn.cursor() as cur:
            cur.execute("INSERT INTO rpacs.project (name, created_by) VALUES ('bench', 'bench')")
            for uid in uids:
                cur.execute("INSERT INTO rpacs.project_study (project, study_instance_uid, added_by, how)"
                            " VALUES ('bench', %s, 'bench', 'uid')", (uid,))  # fmt: skip
        n = len(instances)
        ratios, copies, pseudos = [], [], []
        for pair in range(args.rounds):
            order = ("copy", "pseudo") if pair % 2 == 0 else ("pseudo", "copy")
            got = {}
            for kind in order:
                empty(ps.pseudo)
                if kind == "copy":
                    got[kind] = n / copy_round(ps, instances)
                else:
                    seconds, stored = pseudonymise_round(ps, uids)
                    if stored != n:
                        raise SystemExit(f"pseudonymise stored {stored} of {n} instances")
                    got[kind] = n / seconds
            copies.append(got["copy"])
            pseudos.append(got["pseudo"])
            ratios.append(got["pseudo"] / got["copy"])
        size = sum(len(ps.research.request("GET", f"/instances/{i}/file").content) for i in instances[:50])
        print(f"studies={len(uids)}")
        print(f"instances={n}")
        print(f"mean_instance_kb={size / min(n, 50) / 1024:.1f}")
        print(f"copy_instances_per_s={statistics.median(copies):.1f}")
        print(f"pseudonymise_instances_per_s={statistics.median(pseudos):.1f}")
        print(f"pseudonymise_vs_copy={statistics.median(ratios):.3f}")
        print(f"pseudonymise_vs_copy_spread={max(ratios) - min(ratios):.3f}")
    finally:
        ps.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
