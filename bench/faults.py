"""The pipeline under faults: a simulated run (census -> retrieve -> forward -> dose ingest) with `kill -9` of
its processes at random moments, against a clean run of the same seed.

Two throwaway local stacks, one after the other, with the same simulated archive (same seed, same UIDs):
1. clean: census, the census targets queued, the research PACS plugin's workers retrieve and forward, the
   dose PACS stand-in's hook spools, the dose worker ingests; the run ends when nothing changes any more.
2. faulty: the same, while a fault thread kills (SIGKILL) a random process among the research PACS, PostgreSQL,
   the dose PACS, the simulation PACS and the dose worker at random moments of the clean run's duration, and
   restarts it (what `nmdose stack up` does) after a random pause. Nobody intervenes otherwise: no retry, no
   manual forward. A census that exits non-zero (PostgreSQL was killed under it) is run again, as a user would.

Then the two end states are compared: instances per study in the research PACS and on the dose PACS, and every
row of `dose.study`, `dose.ct_event`, `dose.radiopharmaceutical` by key and content.

Prints key=value lines: studies_expected, studies_retrieved_complete, studies_forwarded, dose_studies,
ct_events, administrations (faulty run, with the clean run's figure as clean_*), duplicates (instances or rows
more than the clean run), lost (fewer), mismatched (same key, other content), stuck_jobs (queue jobs not
`done` at the end, and retrievals not `done`), dead_letters, faults, faulty_s / clean_s.
Goal: everything equal to the clean run, duplicates=0, stuck_jobs=0, lost=0.

The targeted scenarios (the dose PACS down 60 s, PostgreSQL restarted during a long C-MOVE, 100 concurrent
associations, malformed dose objects) are in `bench/lib/fault_scenarios.py` and print their own keys.

Usage: .venv/bin/python bench/faults.py [--studies 200] [--faults 10] [--seed 7]
       .venv/bin/python bench/faults.py --studies 40 --faults 4   (the short variant; `make test` runs it too)
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import random
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "orthanc_plugin"))
sys.path.insert(0, str(Path(__file__).resolve().parent / "lib"))  # fault_scenarios (not a bench of its own)

from nmdose.cli import main as cli_main  # noqa: E402
from nmdose.db import connect  # noqa: E402
from nmdose.pacs.orthanc_http import OrthancHttp  # noqa: E402
from nmdose.retrieve import runner  # noqa: E402
from nmdose.simulate import generate  # noqa: E402
from nmdose.simulate.upload import upload  # noqa: E402
from nmdose.stack import DOSE_WORKER  # noqa: E402
from tests.support import RunningStack  # noqa: E402

ALL_DAY = {"weekdays": "00:00-24:00", "weekends": "00:00-24:00"}
TODAY = date(2026, 6, 30)
VICTIMS = ("researchPACS", "postgresql", "dosePACS", "simulationPACS", DOSE_WORKER)
DOSE_TABLES = {
    "dose.study": ("study_instance_uid",),
    "dose.ct_event": ("study_instance_uid", "event_key"),
    "dose.radiopharmaceutical": ("study_instance_uid", "administration_key"),
}
VOLATILE = {"updated_at", "first_seen", "last_seen"}
PERIODIC_KINDS = ("forward_reconcile", "forward_purge")  # always queued again: not work left


def log(message: str) -> None:
    print(f"# {time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


@dataclass
class Outcome:
    seconds: float = 0.0
    research: dict[str, int] = field(default_factory=dict)  # StudyInstanceUID -> instances held
    dose_pacs: dict[str, set[str]] = field(default_factory=dict)  # StudyInstanceUID -> SOP Instance UIDs
    rows: dict[str, dict[tuple, str]] = field(default_factory=dict)  # table -> key -> canonical content
    row_counts: dict[str, int] = field(default_factory=dict)
    stuck_jobs: list[str] = field(default_factory=list)
    dead_letters: int = 0
    faults: list[str] = field(default_factory=list)
    census_runs: int = 0
    converged: bool = False


class Faults(threading.Thread):
    """Kill -9 a random victim at each scheduled moment, then bring it back after a random pause."""

    def __init__(self, running: RunningStack, moments: list[float], rng: random.Random):
        super().__init__(name="faults", daemon=True)
        self.running = running
        self.moments = sorted(moments)
        self.rng = rng
        self.injected: list[str] = []
        self.t0 = time.monotonic()
        self.done = threading.Event()
        self.errors: list[str] = []

    def pid_of(self, victim: str) -> int | None:
        for row in self.running.stack.status():
            if row.node == victim:
                return row.pid
        return None

    def run(self) -> None:
        try:
            for moment in self.moments:
                delay = self.t0 + moment - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                victim = self.rng.choice(VICTIMS)
                pid = self.pid_of(victim)
                if pid is None:
                    continue
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                pause = self.rng.uniform(0.5, 8.0)
                self.injected.append(f"{time.monotonic() - self.t0:.0f}s:{victim}+{pause:.1f}s")
                log(f"fault: kill -9 {victim} (pid {pid}); back in {pause:.1f} s")
                time.sleep(pause)
                self.restart()
        finally:
            self.done.set()

    def restart(self) -> None:
        """`nmdose stack up`: starts whatever is not running (a few tries: a port may linger after a kill)."""
        for attempt in range(10):
            try:
                self.running.stack.up()
                return
            except Exception as exc:  # noqa: BLE001 (a failed start is retried, then reported)
                log(f"stack up failed ({exc!s:.200}); retrying")
                time.sleep(2 + attempt)
        self.errors.append("stack up failed 10 times")


def _fingerprint(cfg, spool: Path) -> tuple:
    """What changes while the pipeline still works: queue states, rows, spool entries."""
    with contextlib.closing(connect(cfg)) as conn, conn.cursor() as cur:
        cur.execute(
            """SELECT kind, state, count(*), sum(attempts) FROM jobs.queue WHERE NOT kind = ANY(%s)
                GROUP BY kind, state ORDER BY 1, 2""",
            (list(PERIODIC_KINDS),),
        )
        jobs = tuple(cur.fetchall())
        cur.execute(
            """SELECT (SELECT count(*) FROM dose.object), (SELECT count(*) FROM dose.ct_event),
                      (SELECT count(*) FROM dose.radiopharmaceutical), (SELECT count(*) FROM dose.dead_letter),
                      (SELECT count(*) FROM rpacs.forwarded_instance),
                      (SELECT max(updated_at)::text FROM rpacs.retrieval)"""
        )
        rows = cur.fetchone()
    incoming = len(list((spool / "incoming").glob("*"))) if (spool / "incoming").exists() else 0
    return jobs, rows, incoming


def work_left(cfg) -> int:
    """Jobs not finished (pending, also those waiting for a retry or an outage to pass, and running), and
    studies whose forwarded set is incomplete (`nmdose forward pending`)."""
    with contextlib.closing(connect(cfg)) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT count(*) FROM jobs.queue WHERE state IN ('pending', 'running') AND NOT kind = ANY(%s)",
            (list(PERIODIC_KINDS),),
        )
        jobs = cur.fetchone()[0]
    from nmdose.forward import runner as forward_runner

    with contextlib.closing(
        connect(cfg)
    ) as conn:  # what the pipeline itself says is not forwarded completely
        return jobs + len(forward_runner.pending(conn))


def settle(cfg, spool: Path, *, quiet_s: float, deadline_s: float, until=None) -> bool:
    """Wait until nothing has changed for `quiet_s` (and `until()` holds when given); False at the deadline."""
    deadline = time.monotonic() + deadline_s
    last, since = None, time.monotonic()
    while time.monotonic() < deadline:
        try:
            now = _fingerprint(cfg, spool)
        except Exception:  # noqa: BLE001 (PostgreSQL restarting)
            now = None
        if now != last:
            last, since = now, time.monotonic()
        elif now is not None and time.monotonic() - since >= quiet_s and (until is None or until()):
            return True
        time.sleep(1)
    return False


def _without_files(value: Any) -> Any:
    """Spool file names carry their arrival time: not part of a dose record's content."""
    if isinstance(value, dict):
        return {k: _without_files(v) for k, v in value.items() if k not in ("file", "file_path")}
    if isinstance(value, list):  # in arrival order, which faults change: compare as sets
        return sorted((_without_files(v) for v in value), key=lambda v: json.dumps(v, sort_keys=True))
    return value


def canonical(row: dict[str, Any], root: str) -> str:
    clean = {k: _without_files(v) for k, v in row.items() if k not in VOLATILE}
    return json.dumps(clean, sort_keys=True, default=str).replace(root, "<root>")


def collect(running: RunningStack, outcome: Outcome, *, timeout_s: float = 300) -> None:
    """`_collect`, again while a PACS answers 503 (its index database reconnecting after a restart)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return _collect(running, outcome)
        except Exception as exc:  # noqa: BLE001
            if time.monotonic() > deadline:
                raise
            log(f"collect: {exc!s:.200} (again in 5 s)")
            time.sleep(5)


def _collect(running: RunningStack, outcome: Outcome) -> None:
    cfg = running.cfg
    research = OrthancHttp(cfg.research_node.http_url)
    for study in research.get("/studies", params={"expand": ""}):
        uid = study["MainDicomTags"]["StudyInstanceUID"]
        outcome.research[uid] = int(research.get(f"/studies/{study['ID']}/statistics")["CountInstances"])
    dose = OrthancHttp(cfg.dose_node.http_url)
    for study in dose.get("/studies", params={"expand": ""}):
        uid = study["MainDicomTags"]["StudyInstanceUID"]
        sops = {i["MainDicomTags"]["SOPInstanceUID"] for i in dose.get(f"/studies/{study['ID']}/instances")}
        outcome.dose_pacs.setdefault(uid, set()).update(sops)
    root = str(running.root)
    with contextlib.closing(connect(cfg)) as conn, conn.cursor() as cur:
        for table, key in DOSE_TABLES.items():
            # a scanner by what it is, not by its serial number in dose.scanner (given in ingest order, which
            # faults change)
            scanner = (
                " - 'scanner_id' || jsonb_build_object('scanner', (SELECT jsonb_build_array(sc.manufacturer,"
                " sc.model_name, sc.device_serial_number) FROM dose.scanner sc WHERE sc.scanner_id = t.scanner_id))"
                if table == "dose.study"
                else ""
            )
            cur.execute(f"SELECT to_jsonb(t){scanner} FROM {table} t")  # noqa: S608 (constant names)
            rows = [r[0] for r in cur.fetchall()]
            outcome.row_counts[table] = len(rows)
            outcome.rows[table] = {tuple(r[k] for k in key): canonical(r, root) for r in rows}
        cur.execute(
            """SELECT kind, key, state, attempts, not_before - now(), left(coalesce(last_error, ''), 160)
                 FROM jobs.queue WHERE state <> 'done' AND NOT kind = ANY(%s) ORDER BY 1, 2""",
            (list(PERIODIC_KINDS),),
        )
        outcome.stuck_jobs = [
            f"job {k} {key[:48]} {s} attempts={a} due_in={due} error={err!r}"
            for k, key, s, a, due, err in cur.fetchall()
        ]
        cur.execute("SELECT study_instance_uid, state FROM rpacs.retrieval WHERE state <> 'done'")
        outcome.stuck_jobs += [f"retrieval {u[:48]} {s}" for u, s in cur.fetchall()]
        cur.execute("SELECT count(*) FROM dose.dead_letter WHERE resolved_at IS NULL")
        outcome.dead_letters = cur.fetchone()[0]


def pipeline(args, *, faults: int, duration_hint: float | None) -> Outcome:
    running = RunningStack(
        nodes={"simulationPACS": {"find_limit": 100}},
        retrieve={
            "time_window": ALL_DAY,
            "concurrency": 2,
            "retry": {"max_attempts": 5, "backoff_s": 2, "backoff_max_s": 20},
        },
    )
    outcome = Outcome()
    injector = None
    try:
        cfg = running.cfg
        spool = cfg.dose_spool
        with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
            generate(Path(tmp), studies=args.studies, years=3, seed=args.seed, today=TODAY)
            upload(Path(tmp), cfg.nodes["simulationPACS"], cfg=cfg)
        t0 = time.monotonic()
        if faults:
            span = duration_hint or 120.0
            rng = random.Random(args.seed * 1000 + faults)
            moments = [rng.uniform(0.05 * span, 0.9 * span) for _ in range(faults)]
            injector = Faults(running, moments, rng)
            injector.start()
        # census and queueing: a user runs the census again when it exits non-zero
        source = cfg.source_node.name
        while time.monotonic() - t0 < 900:
            outcome.census_runs += 1
            try:
                with contextlib.redirect_stdout(io.StringIO()):
                    rc = cli_main([*running.cli_args(), "census", "run", "--to", TODAY.isoformat(), "--json"])
                if rc == 0:
                    with contextlib.closing(connect(cfg)) as conn:
                        runner.queue_census_targets(conn, source, max_attempts=5)
                    break
            except SystemExit as exc:
                log(f"census exited {exc.code}")
            except Exception as exc:  # noqa: BLE001
                log(f"census failed: {exc!s:.200}")
            time.sleep(3)
        if injector is not None:
            injector.done.wait()
            log(f"faults injected: {len(injector.injected)}")
        quiet = float(cfg.nodes["researchPACS"].orthanc_settings.get("StableAge", 5)) * 2 + 20
        outcome.converged = settle(
            cfg, spool, quiet_s=quiet, deadline_s=args.deadline, until=lambda: not work_left(cfg)
        )
        outcome.seconds = time.monotonic() - t0
        collect(running, outcome)
        if injector is not None:
            outcome.faults = injector.injected + injector.errors
        return outcome
    finally:
        running.close(keep=args.keep)


def compare(clean: Outcome, faulty: Outcome, expected: int) -> dict[str, Any]:
    duplicates = lost = mismatched = 0
    for uid, n in clean.research.items():
        got = faulty.research.get(uid, 0)
        lost += max(0, n - got)
    for uid, sops in clean.dose_pacs.items():
        got = faulty.dose_pacs.get(uid, set())
        lost += len(sops - got)
        duplicates += len(got - sops)
    for uid in set(faulty.dose_pacs) - set(clean.dose_pacs):
        duplicates += len(faulty.dose_pacs[uid])
    for table in DOSE_TABLES:
        a, b = clean.rows.get(table, {}), faulty.rows.get(table, {})
        lost += len(set(a) - set(b))
        duplicates += len(set(b) - set(a))
        differing = [k for k in set(a) & set(b) if a[k] != b[k]]
        mismatched += len(differing)
        for k in differing[:2]:
            x, y = json.loads(a[k]), json.loads(b[k])
            diff = {c: (x.get(c), y.get(c)) for c in set(x) | set(y) if x.get(c) != y.get(c)}
            print(f"# mismatch {table} {k}: {json.dumps(diff, default=str)[:600]}")
    complete = sum(1 for uid, n in clean.research.items() if faulty.research.get(uid, 0) >= n)
    forwarded = sum(1 for uid, sops in clean.dose_pacs.items() if sops <= faulty.dose_pacs.get(uid, set()))
    return {
        "studies_expected": expected,
        "clean_studies_retrieved_complete": len(clean.research),
        "studies_retrieved_complete": complete,
        "clean_studies_forwarded": len(clean.dose_pacs),
        "studies_forwarded": forwarded,
        "clean_dose_studies": clean.row_counts.get("dose.study", 0),
        "dose_studies": faulty.row_counts.get("dose.study", 0),
        "clean_ct_events": clean.row_counts.get("dose.ct_event", 0),
        "ct_events": faulty.row_counts.get("dose.ct_event", 0),
        "clean_administrations": clean.row_counts.get("dose.radiopharmaceutical", 0),
        "administrations": faulty.row_counts.get("dose.radiopharmaceutical", 0),
        "duplicates": duplicates,
        "lost": lost,
        "mismatched": mismatched,
        "stuck_jobs": len(faulty.stuck_jobs),
        "clean_stuck_jobs": len(clean.stuck_jobs),
        "dead_letters": faulty.dead_letters,
        "clean_dead_letters": clean.dead_letters,
        "faults": len([f for f in faulty.faults if "+" in f]),
        "converged": int(faulty.converged and clean.converged),
        "census_runs": faulty.census_runs,
        "clean_s": round(clean.seconds, 1),
        "faulty_s": round(faulty.seconds, 1),
    }


def expected_targets(args) -> int:
    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
        manifest = generate(Path(tmp), studies=args.studies, years=3, seed=args.seed, today=TODAY)
    from tests.support import load, make_config_dir, make_tempdir

    root = make_tempdir("nmdose-faults-")
    try:
        cfg = load(make_config_dir(root))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return len(
        manifest.target_studies(tuple(cfg.retrieve.target_modalities), cfg.retrieve.target_descriptions)
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=200)
    parser.add_argument("--faults", type=int, default=10)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--deadline", type=float, default=1800, help="seconds to wait for a run to settle")
    parser.add_argument("--only-scenarios", action="store_true", help="skip the random-fault campaign")
    parser.add_argument("--no-scenarios", action="store_true", help="only the random-fault campaign")
    parser.add_argument("--outage-s", type=float, default=60, help="the dose PACS outage of the scenarios")
    parser.add_argument("--keep", action="store_true", help="keep the stacks' folders (logs) for a look")
    args = parser.parse_args(argv)
    # The clean and the faulty run are two stacks: each would generate its own pseudonym key (var/secrets.env)
    # and the patients' pseudonyms would differ. One key for both, so the pseudonyms are compared too.
    os.environ.setdefault("NMDOSE_PSEUDONYM_KEY", "faults-bench-" + "k" * 40)
    if args.only_scenarios:
        from fault_scenarios import run_all

        result = run_all(outage_s=args.outage_s)
        for k, v in result.items():
            print(f"{k}={v}")
        return result
    expected = expected_targets(args)
    log(f"clean run: {args.studies} studies, {expected} targets")
    clean = pipeline(args, faults=0, duration_hint=None)
    log(f"clean run settled in {clean.seconds:.0f} s; faulty run with {args.faults} faults")
    faulty = pipeline(args, faults=args.faults, duration_hint=max(60.0, clean.seconds))
    result = compare(clean, faulty, expected)
    if not args.no_scenarios:
        from fault_scenarios import run_all

        result.update(run_all(outage_s=args.outage_s))
    for k, v in result.items():
        print(f"{k}={v}")
    for line in faulty.faults:
        print(f"# fault {line}")
    for line in faulty.stuck_jobs[:20]:
        print(f"# stuck {line}")
    missing = Counter()
    for uid, sops in clean.dose_pacs.items():
        if not sops <= faulty.dose_pacs.get(uid, set()):
            missing[uid] = len(sops - faulty.dose_pacs.get(uid, set()))
    for uid, n in missing.most_common(10):
        print(f"# not forwarded: {uid} ({n} instances)")
    return result


if __name__ == "__main__":
    main()
