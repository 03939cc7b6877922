"""The research PACS against the targets of a from-scratch PACS design (image storage 100 MB/s, 100+ concurrent
associations, C-FIND answers under 100 ms, memory under 2 GB), each with a baseline measured in the same run.

The research PACS runs as in production (Orthanc 1.10, the nmdose plugin with its C-STORE and HTTP filters,
the PostgreSQL index, orthanc.json); only PostgreSQL and the research PACS are started. Senders use the AE
titles the security profile admits: the source PACS's for C-STORE (from 127.0.0.1), and a site peer
(`allow:` entry BENCHFIND, find only) for C-FIND.

- storage: synthetic CT images (512 x 512, 16-bit, ~0.5 MB each) C-STOREd over K parallel associations
  (DCMTK storescu, one process per association; --sender pynetdicom for the Python client). Baseline: the same
  bytes written and fsynced (one fsync per file, as Orthanc's SyncStorageArea does) by K threads into the
  filesystem of Orthanc's storage. store_vs_disk = store MB/s / disk MB/s. MB = 10^6 bytes.
- concurrency: N threads each associate, wait until all have their answer, then C-ECHO + C-STORE one small
  instance and release; checked in Orthanc (/statistics). Baseline: the same N operations over N associations
  one after another. concurrent_vs_sequential = sequential seconds / concurrent seconds (> 1: concurrency pays).
- C-FIND: the index filled with >= --studies studies (the stored ones plus one small instance per extra
  study), study-level queries by PatientID, StudyDate range (a month), StudyDescription wildcard, and a day,
  interleaved, over one association; baseline: C-ECHO round trip on the same association.
  find_vs_target = 100 ms / worst p95 (>= 1 meets the target).
- idle (not in the default parts): C-ECHO milliseconds on one association alone, then while --idle other
  associations are held open and silent (Orthanc serves all open associations on DicomThreadsCount workers).
- memory: Orthanc's peak RSS (VmHWM) over the run, PostgreSQL's summed RSS (postmaster + backends) at the end and
  its summed PSS (shared buffers counted once). memory_vs_target = 2048 MB / (Orthanc peak + PostgreSQL RSS).

Prints key=value lines. Usage: .venv/bin/python bench/pacs_targets.py [--quick] [--store-mb MB] [--parallel K]
       [--associations N] [--studies N] [--find-reps R] [--sender storescu|pynetdicom]
       [--orthanc-setting KEY=JSON ...]   (merged into the research PACS's Orthanc configuration)
       [--parts store,concurrency,find,idle] [--idle N] [--settle S]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pydicom import dcmwrite  # noqa: E402
from pydicom.dataset import Dataset  # noqa: E402
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind  # noqa: E402

from bench.lib.cpu import load_average, process_cpu_s, tree_cpu_s  # noqa: E402
from bench.lib.dicom_load import (  # noqa: E402
    associate,
    concurrent_echo_store,
    ct_image,
    sequential_echo_store,
    status_of,
    write_ct_series,
)
from bench.lib.timing import p95  # noqa: E402
from nmdose.pacs.dcmtk import dicom_env  # noqa: E402
from nmdose.pacs.orthanc_http import OrthancHttp  # noqa: E402
from tests.support import RunningStack  # noqa: E402

TARGET_MB_S = 100.0
TARGET_ASSOCIATIONS = 100
TARGET_FIND_MS = 100.0
TARGET_MEMORY_MB = 2048.0
FIND_AET = "BENCHFIND"
DESCRIPTIONS = [
    "CT CHEST", "CT ABDOMEN PELVIS", "CT HEAD", "PET-CT WB FDG", "PET-CT WB PSMA",
    "NM BONE WB", "NM RENAL DMSA", "NM THYROID", "CT CARDIAC", "NM MYOCARDIAL PERFUSION",
]  # fmt: skip


# ----- process memory (/proc)
def _status_kb(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _pss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _children(parent: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if stat.rsplit(")", 1)[1].split()[1] == str(parent):
                out.append(int(entry))
    return out


def postgres_memory_mb(postmaster: int) -> tuple[float, float]:
    """(summed RSS, summed PSS) of the postmaster and its children, MB."""
    pids = [postmaster, *_children(postmaster)]
    return (sum(_status_kb(p, "VmRSS") for p in pids) / 1024, sum(_pss_kb(p) for p in pids) / 1024)


# ----- storage
def disk_write_seconds(files: list[Path], target: Path, parallel: int) -> float:
    """The files' bytes (read first, not timed) written and fsynced, one file each, by `parallel` threads."""
    blobs = [p.read_bytes() for p in files]
    target.mkdir(parents=True, exist_ok=True)

    def write(i: int) -> None:
        fd = os.open(target / f"{i}.dcm", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, blobs[i])
            os.fsync(fd)
        finally:
            os.close(fd)

    started = time.perf_counter()
    with ThreadPoolExecutor(parallel) as pool:
        list(pool.map(write, range(len(blobs))))
    elapsed = time.perf_counter() - started
    shutil.rmtree(target)
    return elapsed


def storescu_parallel(node, calling: str, folders: list[Path]) -> tuple[float, list[str]]:
    """One storescu per folder, all at once: seconds until the last ends, and the failures (storescu goes on
    after a refused store and exits non-zero at the end; Orthanc's count says how many arrived)."""
    argv = ["storescu", "-aet", calling, "-aec", node.aet, "+sd", "+r", "-R", node.host, str(node.port)]
    started = time.perf_counter()
    procs = [
        subprocess.Popen(
            [*argv, str(f)],
            env=dicom_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
        for f in folders
    ]
    errors = [p.communicate(timeout=3600)[1] for p in procs]
    elapsed = time.perf_counter() - started
    failures = [f"storescu exit {p.returncode}: {e.decode()[-300:]}" for p, e in zip(procs, errors, strict=True)
                if p.returncode != 0]  # fmt: skip
    return elapsed, failures


def pynetdicom_parallel(node, calling: str, folders: list[Path]) -> tuple[float, list[str]]:
    """One thread and one association per folder (pynetdicom); seconds until the last ends."""
    failures: list[str] = []

    def send(folder: Path) -> None:
        assoc = associate(node, calling)
        if not assoc.is_established:
            failures.append("association refused")
            return
        try:
            for path in sorted(folder.glob("*.dcm")):
                if status_of(assoc.send_c_store(path)) != 0:
                    failures.append(str(path))
        finally:
            assoc.release()

    started = time.perf_counter()
    with ThreadPoolExecutor(len(folders)) as pool:
        list(pool.map(send, folders))
    return time.perf_counter() - started, failures


# ----- C-FIND
def study_query(**keys) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    for name in ("StudyInstanceUID", "PatientID", "PatientName", "StudyDate", "StudyTime", "StudyDescription",
                 "AccessionNumber", "ModalitiesInStudy"):  # fmt: skip
        setattr(ds, name, "")
    for name, value in keys.items():
        setattr(ds, name, value)
    return ds


def fill_studies(folder: Path, count: int, seed: int = 11) -> list[tuple[str, str, str]]:
    """`count` one-instance studies (2 x 2 CT images) over 2024, 400 patients, 10 descriptions; their
    (PatientID, StudyDate, StudyDescription)."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    facts = []
    for i in range(count):
        day = 1 + rng.randrange(366)
        date = time.strftime("%Y%m%d", time.gmtime(time.mktime((2024, 1, day, 12, 0, 0, 0, 0, 0))))
        patient, description = f"PT-{rng.randrange(400):04d}", rng.choice(DESCRIPTIONS)
        ds = ct_image(patient_id=patient, study_date=date, description=description, number=1)
        dcmwrite(folder / f"{i:05d}.dcm", ds, enforce_file_format=True)
        facts.append((patient, date, description))
    return facts


def find_latencies(node, kinds: dict[str, Dataset], reps: int) -> tuple[dict[str, list[float]], dict[str, int],
                                                                        list[float], list[str]]:  # fmt: skip
    """Per kind: milliseconds of each C-FIND (all answers received) and the answer count; C-ECHO ms; the
    failures (a C-FIND or C-ECHO without a final status: kind, ms, association state; the association is
    opened again). One association, kinds interleaved round by round after two untimed warm-up rounds."""
    times: dict[str, list[float]] = {k: [] for k in kinds}
    counts: dict[str, int] = {}
    echo: list[float] = []
    failures: list[str] = []
    assoc = associate(node, FIND_AET)
    try:
        for r in range(reps + 2):
            for kind, query in [*kinds.items(), ("echo", None)]:
                if not assoc.is_established:
                    assoc = associate(node, FIND_AET)
                    if not assoc.is_established:
                        raise SystemExit(
                            "C-FIND association refused (the allow: entry of the research PACS?)"
                        )
                started = time.perf_counter()
                if query is None:
                    answers = [(assoc.send_c_echo(), None)]
                else:
                    answers = list(assoc.send_c_find(query, StudyRootQueryRetrieveInformationModelFind))
                elapsed = (time.perf_counter() - started) * 1000
                if status_of(answers[-1][0]) != 0:
                    state = "aborted" if assoc.is_aborted else "open" if assoc.is_established else "released"
                    failures.append(f"{kind} after {elapsed:.0f} ms ({state})")
                    continue
                if query is not None:
                    counts[kind] = len(answers) - 1  # the pending answers; the last is the final status
                if r >= 2:
                    (echo if query is None else times[kind]).append(elapsed)
    finally:
        if assoc.is_established:
            assoc.release()
    return times, counts, echo, failures


def echo_ms(node, calling: str, count: int) -> list[float]:
    """Milliseconds of `count` C-ECHOs on one association."""
    assoc = associate(node, calling)
    out = []
    try:
        for _ in range(count):
            started = time.perf_counter()
            if status_of(assoc.send_c_echo()) == 0:
                out.append((time.perf_counter() - started) * 1000)
    finally:
        assoc.release()
    return out


def echo_beside_idle(node, calling: str, idle: int, count: int) -> tuple[int, list[float]]:
    """C-ECHO milliseconds on one association while `idle` other associations are open and silent (Orthanc
    1.10 serves associations on DicomThreadsCount workers, each step waiting up to 1 s for a command)."""
    held = [associate(node, calling) for _ in range(idle)]
    try:
        time.sleep(2)  # the workers are now cycling through the silent associations
        return sum(a.is_established for a in held), echo_ms(node, calling, count)
    finally:
        for assoc in held:
            if assoc.is_established:
                assoc.release()


def parse_settings(items: list[str]) -> dict:
    out = {}
    for item in items:
        key, _, value = item.partition("=")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--quick", action="store_true", help="everything scaled down (30 MB, 30 assoc., 300 studies)"
    )
    ap.add_argument("--store-mb", type=float, default=300)
    ap.add_argument("--parallel", type=int, default=4, help="associations of the storage test")
    ap.add_argument("--associations", type=int, default=120)
    ap.add_argument("--studies", type=int, default=2000, help="studies in the index for the C-FIND test")
    ap.add_argument("--find-reps", type=int, default=50)
    ap.add_argument("--sender", choices=("storescu", "pynetdicom"), default="storescu")
    ap.add_argument("--orthanc-setting", action="append", default=[], metavar="KEY=JSON")
    ap.add_argument(
        "--parts", default="store,concurrency,find", help="store,concurrency,find,idle (memory: always)"
    )
    ap.add_argument("--settle", type=float, default=0, help="seconds to wait after the fill before C-FINDs")
    ap.add_argument("--idle", type=int, default=100, help="silent associations held open by the idle part")
    if "--quick" in sys.argv[1:]:  # scaled-down defaults; options given explicitly still win
        ap.set_defaults(store_mb=30, associations=30, studies=300, find_reps=15)
    args = ap.parse_args()

    settings = parse_settings(args.orthanc_setting)
    parts = set(args.parts.split(","))
    load_at_start = load_average()
    running = RunningStack(
        nodes={
            "simulationPACS": {"local": False},
            "dosePACS": {"local": False},
            "researchPACS": {
                "orthanc_settings": settings,
                "allow": [{"aet": FIND_AET, "host": "127.0.0.1", "services": ["find"]}],
            },
        }
    )
    peak_pg = [0.0]
    stop = threading.Event()
    try:
        cfg, stack = running.cfg, running.stack
        node, sender = cfg.research_node, cfg.source_node.aet
        rest = OrthancHttp(node.http_url, name="researchPACS", timeout_s=600)
        orthanc_pid = int(stack.pid_file("researchPACS").read_text().strip())
        postmaster = int((stack.pg_data / "postmaster.pid").read_text().split()[0])

        def sample() -> None:  # PostgreSQL's summed RSS peaks while the index is written
            while not stop.wait(0.5):
                peak_pg[0] = max(peak_pg[0], postgres_memory_mb(postmaster)[0])

        threading.Thread(target=sample, daemon=True).start()
        data = running.root / "bench-data"
        print(f"cpus={os.cpu_count()}")
        print(f"orthanc_settings={json.dumps(settings) if settings else 'orthanc.json as shipped'}")

        # ----- storage
        if "store" in parts:
            count = max(args.parallel, round(args.store_mb / 0.525))
            folders = [data / f"store-{k}" for k in range(args.parallel)]
            files = []
            for k, folder in enumerate(folders):
                share = count // args.parallel + (k < count % args.parallel)
                files += write_ct_series(folder, share, size=512, patient_id=f"PT-S{k:03d}", study_date="20240615",
                                         description="CT STORE BENCH")  # fmt: skip
            megabytes = sum(p.stat().st_size for p in files) / 1e6
            disk_s = disk_write_seconds(
                files, stack.orthanc_dir("researchPACS") / "disk-baseline", args.parallel
            )
            store = storescu_parallel if args.sender == "storescu" else pynetdicom_parallel
            cpu_before = process_cpu_s(orthanc_pid), tree_cpu_s(postmaster)
            store_s, failures = store(node, sender, folders)
            cpu_orthanc, cpu_pg = (a - b for a, b in zip((process_cpu_s(orthanc_pid), tree_cpu_s(postmaster)),
                                                          cpu_before, strict=True))  # fmt: skip
            held = rest.get("/statistics")["CountInstances"]
            print(f"store_failures={len(failures)}{' ' + failures[0] if failures else ''}")
            print(f"store_instances_in_orthanc={held}")
            store_rate, disk_rate = megabytes / store_s, megabytes / disk_s
            print(f"store_sender={args.sender} parallel_associations={args.parallel}")
            print(f"store_instances={len(files)} store_mb={megabytes:.1f}")
            print(f"store_mb_per_s={store_rate:.1f}")
            print(f"store_instances_per_s={len(files) / store_s:.1f}")
            print(f"store_vs_target={store_rate / TARGET_MB_S:.3f}")
            print(f"disk_write_mb_per_s={disk_rate:.1f}")
            print(f"store_vs_disk={store_rate / disk_rate:.3f}")
            # CPU seconds per wall second (2.0 = both cores of this machine): what bounds the rate here
            print(
                f"store_cpu_orthanc_per_s={cpu_orthanc / store_s:.2f} store_cpu_postgres_per_s={cpu_pg / store_s:.2f}"
            )
            shutil.rmtree(data, ignore_errors=True)

        # ----- concurrency
        if "concurrency" in parts:
            n = args.associations
            before = rest.get("/statistics")["CountInstances"]
            conc_ds = [
                ct_image(patient_id="PT-CONC", description="CONCURRENCY", number=i + 1) for i in range(n)
            ]
            conc = concurrent_echo_store(node, sender, conc_ds, timeout_s=120)
            after_conc = rest.get("/statistics")["CountInstances"]
            seq_ds = [ct_image(patient_id="PT-SEQ", description="SEQUENTIAL", number=i + 1) for i in range(n)]
            seq = sequential_echo_store(node, sender, seq_ds, timeout_s=120)
            after_seq = rest.get("/statistics")["CountInstances"]
            print(f"associations_requested={n}")
            print(f"associations_ok={conc.established}")
            print(f"concurrent_max={conc.concurrent_max}")
            print(f"concurrent_echo_ok={conc.echo_ok} concurrent_store_ok={conc.stored_ok}")
            print(f"concurrent_errors={len(conc.errors)}{' ' + conc.errors[0] if conc.errors else ''}")
            print(f"concurrent_instances_in_orthanc={after_conc - before}")
            print(f"concurrent_s={conc.seconds:.2f}")
            print(f"sequential_s={seq.seconds:.2f} sequential_store_ok={seq.stored_ok} "
                  f"sequential_instances_in_orthanc={after_seq - after_conc}")  # fmt: skip
            print(f"concurrent_vs_sequential={seq.seconds / conc.seconds:.3f}")
            print(f"concurrency_vs_target={conc.concurrent_max / TARGET_ASSOCIATIONS:.2f}")

        # ----- C-FIND
        if "find" in parts:
            studies_now = rest.get("/statistics")["CountStudies"]
            extra = max(0, args.studies - studies_now)
            facts = fill_studies(data / "fill", extra)
            fill_s, failures = storescu_parallel(node, sender, [data / "fill"]) if extra else (0.0, [])
            studies = rest.get("/statistics")["CountStudies"]
            print(f"index_studies={studies}")
            if extra:
                print(f"fill_small_instances_per_s={extra / fill_s:.1f} (one storescu association)")
                print(f"fill_missing={studies_now + extra - studies}{' ' + failures[0] if failures else ''}")
            if args.settle:  # the studies just stored turn stable (StableAge) and the plugin records them
                time.sleep(args.settle)
            patient = facts[0][0] if facts else "PT-CONC"
            day = facts[0][1] if facts else "20240615"
            kinds = {
                "patient": study_query(PatientID=patient),
                "date_range": study_query(StudyDate="20240301-20240331"),
                "description": study_query(StudyDescription="NM BONE*"),
                "day": study_query(StudyDate=day),
            }
            times, counts, echo, find_failures = find_latencies(node, kinds, args.find_reps)
            print(
                f"find_failures={len(find_failures)}{' first: ' + find_failures[0] if find_failures else ''}"
            )
            worst = 0.0
            for kind in kinds:
                kp95 = p95(times[kind])
                worst = max(worst, kp95)
                print(f"find_{kind}_answers={counts[kind]}")
                print(f"find_{kind}_ms_p50={statistics.median(times[kind]):.1f}")
                print(f"find_{kind}_ms_p95={kp95:.1f}")
            print(f"find_reps={args.find_reps}")
            print(f"echo_ms_p50={statistics.median(echo):.2f}")
            print(f"find_vs_target={TARGET_FIND_MS / worst:.2f}")

        # ----- silent associations held open beside an active one
        if "idle" in parts:
            alone = echo_ms(node, sender, 20)
            held, beside = echo_beside_idle(node, sender, args.idle, 20)
            print(f"idle_associations_open={held}")
            print(f"echo_alone_ms_p50={statistics.median(alone):.1f} p95={p95(alone):.1f}")
            if beside:
                print(f"echo_beside_idle_ms_p50={statistics.median(beside):.1f} p95={p95(beside):.1f}")
            print(f"echo_beside_idle_ok={len(beside)}/20")

        # ----- memory
        stop.set()
        orthanc_peak = _status_kb(orthanc_pid, "VmHWM") / 1024
        orthanc_now = _status_kb(orthanc_pid, "VmRSS") / 1024
        pg_rss, pg_pss = postgres_memory_mb(postmaster)
        print(f"orthanc_peak_rss_mb={orthanc_peak:.0f}")
        print(f"orthanc_rss_end_mb={orthanc_now:.0f}")
        print(f"postgres_rss_mb={pg_rss:.0f}")
        print(f"postgres_pss_mb={pg_pss:.0f}")
        print(f"postgres_peak_rss_mb={max(peak_pg[0], pg_rss):.0f} (sampled every 0.5 s)")
        print(f"memory_vs_target={TARGET_MEMORY_MB / (orthanc_peak + pg_rss):.2f}")
        print(f"load_average_start={load_at_start} end={load_average()}")
    finally:
        stop.set()
        running.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
