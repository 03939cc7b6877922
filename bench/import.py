"""Throughput of the watch-folder importer against DCMTK `storescu` of the same folder, in one run, and the time
from a dropped folder's last file to its studies being in the research PACS (debounce + import).

One stack (PostgreSQL + the research PACS with its plugin, as in production). The folder: synthetic studies
(`nmdose simulate`: CT, PET, NM, dose reports) in one patient folder named as the seed's technologists do
(`#<number>-<name>`). Rounds alternate in ABBA order, the research PACS emptied before each:
- storescu: `storescu +sd +r -R` of the folder, one association, TCP_NODELAY=1, as the seed's storescu.sh does
  (calling as the source PACS's AE title, which the security profile lets store into the research PACS);
- import: `import_folder` on a copy (the copy not timed): classify every file, rewrite the patient into staged
  copies, C-STORE them with storescu as the importer's AE title (`workers` associations at once), confirm every
  SOPInstanceUID through the REST API, write the report, archive.
import_vs_storescu = median over the pairs of (import files/s / storescu files/s), goal >= 0.9.
Then `nmdose import watch` (in process, real inotify) with --debounce: a folder copied into the drop folder
file by file; latency = last file written -> every instance in the research PACS.

Prints key=value lines. Usage: .venv/bin/python bench/import.py [--studies N] [--rounds R] [--realistic-size]
       [--debounce S] [--workers W] [--no-latency]   (--realistic-size: gigabytes per study)
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pydicom import dcmread  # noqa: E402

from nmdose.importer.folder import import_folder  # noqa: E402
from nmdose.importer.watch import Watcher  # noqa: E402
from nmdose.pacs.dcmtk import run_tool  # noqa: E402
from nmdose.simulate import generate  # noqa: E402
from tests.integration.test_import import ImportStack, make_study  # noqa: E402


def empty(rest) -> None:
    for patient in rest.get("/patients"):
        rest.delete(f"/patients/{patient}")


def storescu_round(imp: ImportStack, folder: Path) -> float:
    node = imp.cfg.research_node
    started = time.monotonic()
    result = run_tool("storescu", ["-aet", imp.cfg.source_node.aet, "-aec", node.aet, "+sd", "+r", "-R",
                                   node.host, str(node.port), str(folder)], timeout_s=3600)  # fmt: skip
    elapsed = time.monotonic() - started
    if not result.ok:
        raise SystemExit(f"storescu failed: {result.stderr[-2000:]}")
    return elapsed


def import_round(imp: ImportStack, folder: Path, n: int) -> float:
    copy = imp.incoming / f"#{9000 + n}-벤치마크"
    shutil.copytree(folder, copy)
    started = time.monotonic()
    result = import_folder(imp.cfg, copy)
    elapsed = time.monotonic() - started
    if result.outcome != "archived" or result.already_stored:
        raise SystemExit(f"import: {result.summary()}")
    return elapsed


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--studies", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=3, help="pairs of rounds (one storescu, one import)")
    ap.add_argument("--realistic-size", action="store_true")
    ap.add_argument("--debounce", type=float, default=2.0, help="the watch's debounce for the latency figure")
    ap.add_argument(
        "--workers", type=int, default=None, help="import.yaml workers (default: the shipped one)"
    )
    ap.add_argument("--no-latency", action="store_true", help="throughput only")
    ap.add_argument("--pixels", type=int, default=0, help="instead of simulated studies: --files NM images of "
                    "PIXELS x PIXELS 16-bit (512: 0.5 MB each, a CT slice's size)")  # fmt: skip
    ap.add_argument("--files", type=int, default=200)
    ap.add_argument("--utf8", action="store_true", help="the files in UTF-8 already (ISO_IR 192, as many Korean "
                    "CDs): the rewrite then touches only the header; default: as simulated (ISO_IR 100, "
                    "accented names: every text value is re-encoded)")  # fmt: skip
    args = ap.parse_args()

    imp = ImportStack(**({"workers": args.workers} if args.workers else {}))
    try:
        work = Path(tempfile.mkdtemp(prefix="bench-", dir=imp.root))
        folder = work / "cd"
        if args.pixels:
            make_study(
                folder, args.files, pixels=args.pixels, charset="ISO_IR 192" if args.utf8 else "ISO_IR 100"
            )
        else:
            generate(work / "sim", studies=args.studies, years=2, seed=11, realistic_size=args.realistic_size)
            folder.mkdir()
        for i, f in enumerate(sorted((work / "sim").rglob("*.dcm"))):
            if args.utf8:
                ds = dcmread(f)
                ds.decode()
                ds.SpecificCharacterSet = "ISO_IR 192"
                ds.save_as(folder / f"IM{i:06d}")
            else:
                shutil.copy(f, folder / f"IM{i:06d}")
        files = sorted(folder.iterdir())
        megabytes = sum(f.stat().st_size for f in files) / 1e6
        rest = imp.rest

        def timed(side: str, n: int) -> float:
            empty(rest)
            elapsed = storescu_round(imp, folder) if side == "storescu" else import_round(imp, folder, n)
            held = rest.get("/statistics")["CountInstances"]
            if held != len(files):
                raise SystemExit(f"{side}: research PACS holds {held} instances, expected {len(files)}")
            return len(files) / elapsed

        timed("storescu", 0), timed("import", 0)  # warm-up, not timed
        rates: dict[str, list[float]] = {"storescu": [], "import": []}
        ratios = []
        for r in range(args.rounds):
            order = ("storescu", "import") if r % 2 == 0 else ("import", "storescu")
            pair = {side: timed(side, r + 1) for side in order}
            for side, rate in pair.items():
                rates[side].append(rate)
            ratios.append(pair["import"] / pair["storescu"])
        mb_per_file = megabytes / len(files)
        print(f"files={len(files)}")
        print(f"megabytes={megabytes:.1f}")
        print(f"rounds={args.rounds} pairs, ABBA order, after one warm-up round per side")
        for side in ("storescu", "import"):
            med = statistics.median(rates[side])
            print(f"{side}_files_per_s={med:.1f} (min {min(rates[side]):.1f}, max {max(rates[side]):.1f})")
            print(f"{side}_mb_per_s={med * mb_per_file:.2f}")
        print(f"import_workers={imp.cfg.imports.workers}")
        print(f"files_character_set={'ISO_IR 192' if args.utf8 else 'as simulated (ISO_IR 100)'}")
        print(f"import_vs_storescu={statistics.median(ratios):.3f} (goal >= 0.9)")
        print(f"import_vs_storescu_spread={min(ratios):.3f}-{max(ratios):.3f}")

        if args.no_latency:
            return 0
        # latency: a folder copied file by file into the drop folder, the watch with a short debounce
        empty(rest)
        watcher = Watcher(imp.cfg, debounce_s=args.debounce)
        stop = threading.Event()
        thread = threading.Thread(target=watcher.run, args=(stop,), daemon=True)
        thread.start()
        try:
            target = imp.p.drop / "#9999-지연측정"
            target.mkdir()
            for f in files:
                shutil.copy(f, target / f.name)
            last = time.monotonic()
            deadline = last + 600
            while rest.get("/statistics")["CountInstances"] < len(files) and time.monotonic() < deadline:
                time.sleep(0.05)
            latency = time.monotonic() - last
        finally:
            stop.set()
            thread.join(60)
            watcher.close()
        print(f"watch_debounce_s={args.debounce:g}")
        print(f"drop_to_research_pacs_s={latency:.2f} (debounce + import of {len(files)} files)")
        print(f"import_after_debounce_s={latency - args.debounce:.2f}")
    finally:
        imp.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
