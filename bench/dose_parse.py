"""Benchmark: dose parse+extract time against plain ``pydicom.dcmread`` over the same synthetic files.

Generates >= 500 dose SRs, PET/NM image headers and dose screens in a temporary folder, then times (best of 5 rounds,
the three sides taking turns) ``dcmread`` of every file (the baseline; ``dcmread_sbp`` is the same with ``stop_before_pixels``) and
``parse_file`` of every file. Prints ``key=value`` lines; goal ``parse_vs_dcmread <= 1.5``.
``parse`` reads the same files round after round, so from the second round on the content-tree caches
(``nmdose.dicom_sr.CACHES``) hold every span of them, values included; ``parse_cold`` empties those caches before
each round, so only what repeats between files hits them, as in production where each file is seen once.

Then, unless ``--no-ingest``, it starts a throw-away PostgreSQL (the local stack's launcher, free port, /tmp),
ingests the same files with ``ingest_files`` (parse included, one transaction per study) and prints
``ingest_files_per_s`` and ``ingest_rows_per_s`` (rows written to the dose tables per second), then re-ingests
them (``reingest_files_per_s``: the no-op path).
Run: ``.venv/bin/python bench/dose_parse.py [N] [--no-ingest]``.
"""

from __future__ import annotations

import datetime as dt
import random
import sys
import tempfile
import time
from pathlib import Path

from pydicom import dcmread

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pydicom.uid import generate_uid

from nmdose.dicom_sr import CACHES
from nmdose.dose.parse import parse_file
from nmdose.simulate import rdsr as R


def generate(folder: Path, n: int) -> list[Path]:
    """``n`` files: 40 % CT RDSR (1-8 events), 10 % ESR, 10 % RRDSR, 20 % PET, 15 % NM, 5 % dose screens."""
    files: list[Path] = []
    rng = random.Random(20261123)
    for i in range(n):
        study = R.DoseStudyInfo(patient_id=f"B{i:05d}", accession_number=f"A{i:05d}")
        # Dose, length, time and modulated tube current differ per exam as on a real scanner (two decimals);
        # protocol, kVp, pitch, collimation, phantom... repeat as they do in a department's reports.
        events = [
            R.CtAcquisition(
                acquisition_protocol=f"Protocol {k}",
                ctdivol_mgy=round(rng.uniform(2.0, 60.0), 2),
                dlp_mgycm=round(rng.uniform(50.0, 1500.0), 2),
                scanning_length_mm=round(rng.uniform(100.0, 900.0), 1),
                exposure_time_s=round(rng.uniform(2.0, 20.0), 2),
                sources=[R.XraySource(tube_current_ma=float(rng.randint(80, 400)))]
                if k % 3
                else [R.XraySource("A", tube_current_ma=float(rng.randint(80, 400))),
                      R.XraySource("B", kvp=100, tube_current_ma=float(rng.randint(80, 400)))],
            )
            for k in range(1 + i % 8)
        ]  # fmt: skip
        admin = R.RadiopharmaceuticalAdministration(
            activity_mbq=round(rng.uniform(150.0, 450.0), 1),
            start_datetime=dt.datetime(2024, 1, 1, 9) + dt.timedelta(minutes=rng.randint(0, 60 * 24 * 365)),
        )
        uids = {"series_uid": generate_uid(), "sop_uid": generate_uid()}
        slot = i % 20
        if slot < 8:
            ds = R.ct_radiation_dose_sr(study, events, **uids)
        elif slot < 10:
            ds = R.ct_radiation_dose_sr(study, events, sop_class="enhanced_sr", **uids)
        elif slot < 12:
            ds = R.radiopharmaceutical_dose_sr(study, admin, **uids)
        elif slot < 16:
            ds = R.pet_nm_image_header(study, admin, modality="PT", **uids)
        elif slot < 19:
            ds = R.pet_nm_image_header(study, R.RadiopharmaceuticalAdministration("mdp", "Tc99m", 740.0),
                                       modality="NM", **uids)  # fmt: skip
        else:
            ds = R.philips_dose_info(study, events, **uids)
        files.append(R.save(ds, folder / f"{i:05d}.dcm"))
    return files


def empty_parse_caches() -> None:
    """Forget every content-tree span the parser has seen, so that a round reads each file as new (production sees a
    file once; only what repeats between files, as a department's units, codes and kVp do, hits the caches)."""
    for cache in CACHES:
        cache.data.clear()
        cache.nbytes = 0


def timed_interleaved(
    fns: dict[str, object], files: list[Path], rounds: int = 5, before: dict[str, object] | None = None
) -> dict[str, float]:
    """Best of ``rounds`` per function, the functions taking turns round by round, so that a busy machine
    (other jobs, CPU frequency) weighs on every side alike; the minimum is the least disturbed run.
    ``before[name]()`` runs untimed before each of that function's rounds."""
    runs: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            if before and name in before:
                before[name]()
            start = time.perf_counter()
            for f in files:
                fn(f)
            runs[name].append(time.perf_counter() - start)
    return {name: min(values) for name, values in runs.items()}


def bench_ingest(files: list[Path]) -> dict[str, float]:
    """Ingest into a throw-away PostgreSQL; rows/s over the dose tables."""
    from contextlib import closing

    from bench.lib.scratch import scratch_postgres
    from nmdose.db import connect
    from nmdose.db.migrate import migrate
    from nmdose.dose.ingest import ingest_files

    with scratch_postgres("nmdose-bench-dose-") as db:
        cfg = db.cfg
        with closing(connect(cfg)) as conn:
            migrate(conn, cfg.migrations_dir)
            start = time.perf_counter()
            outcomes = ingest_files(conn, files, source="bench")
            first_s = time.perf_counter() - start
            with conn.cursor() as cur:
                cur.execute(
                    "SELECT (SELECT count(*) FROM dose.object) + (SELECT count(*) FROM dose.study)"
                    " + (SELECT count(*) FROM dose.ct_event) + (SELECT count(*) FROM dose.radiopharmaceutical)"
                    " + (SELECT count(*) FROM dose.series_protocol)"
                )
                rows = cur.fetchone()[0]
            conn.rollback()
            start = time.perf_counter()
            again = ingest_files(conn, files, source="bench")
            second_s = time.perf_counter() - start
        assert all(o["status"] == "ingested" for o in outcomes), outcomes[:3]
        assert all(o["status"] == "unchanged" for o in again)
        return {"ingest_rows": rows, "ingest_s": first_s, "ingest_files_per_s": len(files) / first_s,
                "ingest_rows_per_s": rows / first_s, "reingest_files_per_s": len(files) / second_s}  # fmt: skip


def main(argv: list[str]) -> int:
    ingest = "--no-ingest" not in argv
    argv = [a for a in argv if a != "--no-ingest"]
    n = int(argv[1]) if len(argv) > 1 else 600
    with tempfile.TemporaryDirectory(prefix="nmdose-bench-") as tmp:
        files = generate(Path(tmp), n)
        for f in files:  # warm the page cache once so neither side pays the first read
            f.read_bytes()
        best = timed_interleaved(
            {
                "dcmread": dcmread,
                "dcmread_sbp": lambda f: dcmread(f, stop_before_pixels=True),
                "parse": parse_file,
                "parse_cold": parse_file,
            },
            files,
            before={"parse_cold": empty_parse_caches},
        )
        dcmread_s, dcmread_sbp_s, parse_s = best["dcmread"], best["dcmread_sbp"], best["parse"]
        parse_cold_s = best["parse_cold"]
        errors = sum(1 for f in files if parse_file(f)["status"] != "ok")
        ingest_stats = bench_ingest(files) if ingest else {}
    print(f"files={n}")
    print(f"dcmread_s={dcmread_s:.4f}")
    print(f"dcmread_sbp_s={dcmread_sbp_s:.4f}")
    print(f"parse_s={parse_s:.4f}")
    print(f"parse_vs_dcmread={parse_s / dcmread_s:.3f}")
    print(f"parse_vs_dcmread_sbp={parse_s / dcmread_sbp_s:.3f}")
    print(f"parse_cold_s={parse_cold_s:.4f}")
    print(f"parse_cold_vs_dcmread={parse_cold_s / dcmread_s:.3f}")
    print(f"parse_not_ok={errors}")
    for key, value in ingest_stats.items():
        print(f"{key}={value:.4f}" if isinstance(value, float) else f"{key}={value}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
