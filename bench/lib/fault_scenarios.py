"""The targeted fault scenarios of `bench/faults.py`, on one throwaway local stack each run:

- `outage_*`: the dose PACS killed while studies are retrieved and become stable, back after 60 s: every study
  forwarded afterwards, none twice.
- `pg_restart_*`: PostgreSQL killed and restarted during a long C-MOVE: the job ends `done` with no plugin restart.
- `concurrent_*`: 100 associations at once into the research PACS with the plugin active: all stored.
- `malformed_*`: malformed dose objects (truncated, junk, SRs broken in the ways real archives break them) into the
  dose spool among good ones: each malformed file a dead letter or a recorded non-dose object with its reason, no
  file unaccounted for; every good file ingested.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pydicom
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import generate_uid

from nmdose.db import connect
from nmdose.dose import spool as dose_spool
from nmdose.pacs.dcmtk import dicom_env
from nmdose.pacs.orthanc_http import OrthancHttp
from nmdose.retrieve import runner
from nmdose.simulate import generate
from nmdose.simulate.upload import upload
from tests.support import RunningStack

RDSR = "1.2.840.10008.5.1.4.1.1.88.67"


def _log(message: str) -> None:
    print(f"# {time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


def _wait(predicate, timeout_s: float, step_s: float = 1.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if predicate():
                return True
        time.sleep(step_s)
    return False


def _kill(running: RunningStack, victim: str) -> None:
    for row in running.stack.status():
        if row.node == victim and row.pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(row.pid, signal.SIGKILL)


def _up(running: RunningStack) -> None:
    for attempt in range(10):
        try:
            running.stack.up()
            return
        except Exception as exc:  # noqa: BLE001 (a port lingering after a kill: try again)
            _log(f"stack up failed ({exc!s:.160}); retrying")
            time.sleep(2 + attempt)
    raise RuntimeError("stack up failed 10 times")


def _query(cfg, sql: str, params: tuple = ()) -> list[tuple]:
    with contextlib.closing(connect(cfg)) as conn, conn.cursor() as cur:
        cur.execute(sql, params)
        return cur.fetchall()


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix in ("", ".dcm"))


# ----- 1. dose PACS outage while studies become stable
def dose_pacs_outage(running: RunningStack, work: Path, *, studies: int, outage_s: float) -> dict[str, Any]:
    cfg = running.cfg
    generate(work / "outage", studies=studies, years=2, seed=41, today=_today())
    upload(work / "outage", cfg.nodes["simulationPACS"], cfg=cfg)
    _kill(running, "dosePACS")
    killed = time.monotonic()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.closing(connect(cfg)) as conn:
        from nmdose.cli import main as cli_main

        cli_main([*running.cli_args(), "census", "run", "--to", _today().isoformat(), "--json"])
        queued = runner.queue_census_targets(conn, cfg.source_node.name)
    _wait(lambda: not _query(cfg, "SELECT 1 FROM rpacs.retrieval WHERE state NOT IN ('done', 'failed')"), 600)
    time.sleep(max(0.0, outage_s - (time.monotonic() - killed)))
    _up(running)
    back = time.monotonic()

    def all_forwarded() -> bool:
        from nmdose.forward import runner as forward_runner

        if hasattr(forward_runner, "pending"):  # also counts a `done` forward with instances missing
            with contextlib.closing(connect(cfg)) as conn:
                if forward_runner.pending(conn):
                    return False
        rows = _query(
            cfg,
            """SELECT count(*) FILTER (WHERE f.state = 'done'), count(*) FROM rpacs.retrieval r
                 LEFT JOIN rpacs.forward_study f USING (study_instance_uid) WHERE r.state = 'done'""",
        )
        done, total = rows[0]
        return total > 0 and done == total

    recovered = _wait(all_forwarded, 900)
    recovery_s = time.monotonic() - back
    ((done, total),) = _query(
        cfg,
        """SELECT count(*) FILTER (WHERE f.state = 'done'), count(*) FROM rpacs.retrieval r
             LEFT JOIN rpacs.forward_study f USING (study_instance_uid) WHERE r.state = 'done'""",
    )
    sent = _query(cfg, "SELECT count(*), count(DISTINCT sop_instance_uid) FROM rpacs.forwarded_instance")[0]
    dose = OrthancHttp(cfg.dose_node.http_url)
    held = int(dose.get("/statistics")["CountInstances"])
    return {
        "outage_s": round(outage_s),
        "outage_studies_queued": queued,
        "outage_studies_forwarded": done,
        "outage_studies_retrieved": total,
        "outage_recovered": int(recovered),
        "outage_recovery_s": round(recovery_s, 1),
        "outage_duplicates": (sent[0] - sent[1]) + max(0, sent[1] - held),
    }


# ----- 2. PostgreSQL restarted during a long C-MOVE
def pg_restart_during_move(running: RunningStack, work: Path) -> dict[str, Any]:
    cfg = running.cfg
    manifest = generate(work / "big", studies=3, years=1, seed=43, realistic_size=True, today=_today())
    upload(work / "big", cfg.nodes["simulationPACS"], cfg=cfg)
    big = max(manifest.studies, key=lambda s: s.instances)
    with contextlib.closing(connect(cfg)) as conn:
        runner.queue_studies(conn, [runner.Target(big.study_uid, cfg.source_node.name, big.instances)])
    moving = _wait(
        lambda: _query(
            cfg,
            "SELECT 1 FROM rpacs.retrieval WHERE study_instance_uid = %s AND state = 'moving'",
            (big.study_uid,),
        ),
        120,
        0.2,
    )
    _kill(running, "postgresql")
    time.sleep(2)
    _up(running)
    started = time.monotonic()
    ended = _wait(
        lambda: _query(
            cfg,
            """SELECT 1 FROM jobs.queue q JOIN rpacs.retrieval r ON r.study_instance_uid = q.key
                WHERE q.kind = 'retrieve' AND q.key = %s AND q.state = 'done' AND r.state = 'done'""",
            (big.study_uid,),
        ),
        600,
    )
    state = _query(
        cfg,
        """SELECT q.state, r.state, q.attempts FROM jobs.queue q JOIN rpacs.retrieval r
             ON r.study_instance_uid = q.key WHERE q.kind = 'retrieve' AND q.key = %s""",
        (big.study_uid,),
    )
    job_state, retrieval_state, attempts = state[0] if state else ("missing", "missing", None)
    return {
        "pg_restart_instances": big.instances,
        "pg_restart_killed_while_moving": int(moving),
        "pg_restart_job_state": job_state,
        "pg_restart_retrieval_state": retrieval_state,
        "pg_restart_attempts": attempts,
        "pg_restart_done": int(ended),
        "pg_restart_to_done_s": round(time.monotonic() - started, 1) if ended else None,
    }


# ----- 3. 100 concurrent associations into the research PACS
def concurrent_associations(running: RunningStack, work: Path, *, associations: int = 100) -> dict[str, Any]:
    cfg = running.cfg
    generate(work / "conc", studies=30, years=1, seed=47, today=_today())
    files = [p for p in _files(work / "conc" / "studies")][:associations]
    sops = {str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in files}
    research = cfg.research_node
    sender = cfg.nodes["simulationPACS"].aet  # a peer the security profile lets store here
    procs = [
        subprocess.Popen(
            [
                "storescu",
                "-R",
                "-aet",
                sender,
                "-aec",
                research.aet,
                research.host,
                str(research.port),
                str(f),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=dicom_env(),
        )
        for f in files
    ]
    failed = 0
    for p in procs:
        if p.wait(timeout=300) != 0:
            failed += 1
            _log(f"storescu failed: {p.stderr.read().decode(errors='replace')[-300:]}")
        p.stderr.close()
    rest = OrthancHttp(research.http_url)

    def stored() -> int:
        found = 0
        for sop in sops:
            found += bool(rest.post("/tools/find", {"Level": "Instance", "Query": {"SOPInstanceUID": sop}}))
        return found

    _wait(lambda: stored() == len(sops), 60, 2)
    return {
        "concurrent_associations": len(files),
        "concurrent_failed": failed,
        "concurrent_stored": stored(),
    }


# ----- 4. malformed dose objects among good ones
def _malformed(good: list[Path], out: Path) -> list[tuple[str, Path]]:
    """(kind, file): raw breakage of the bytes, and SRs broken in their content."""
    rng = random.Random(53)
    out.mkdir(parents=True, exist_ok=True)
    made: list[tuple[str, Path]] = []

    def put(kind: str, data: bytes) -> None:
        path = out / f"bad-{len(made):03d}.dcm"
        path.write_bytes(data)
        made.append((kind, path))

    base = good[0].read_bytes()
    for i in range(1, 21):  # truncated at 20 points
        put("truncated", base[: int(len(base) * i / 21)])
    put("empty", b"")
    put("preamble only", b"\0" * 128 + b"DICM")
    put("junk", bytes(rng.getrandbits(8) for _ in range(4096)))
    put("text", b"this is not a DICOM file\n" * 40)
    put("junk after preamble", b"\0" * 128 + b"DICM" + bytes(rng.getrandbits(8) for _ in range(2048)))

    def variant(src: Path, kind: str, change) -> None:
        ds = pydicom.dcmread(src)
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        change(ds)
        path = out / f"bad-{len(made):03d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        made.append((kind, path))

    def no_content(ds: Dataset) -> None:
        del ds.ContentSequence

    def empty_content(ds: Dataset) -> None:
        ds.ContentSequence = Sequence([])

    def wrong_root(ds: Dataset) -> None:
        ds.ConceptNameCodeSequence[0].CodeValue = "99999"
        ds.ConceptNameCodeSequence[0].CodingSchemeDesignator = "99BAD"

    def no_study_uid(ds: Dataset) -> None:
        del ds.StudyInstanceUID

    def huge_study_uid(ds: Dataset) -> None:
        ds.StudyInstanceUID = "1.2." + "3" * 21_700

    def deep(ds: Dataset) -> None:
        item = Dataset()
        item.RelationshipType = "CONTAINS"
        item.ValueType = "CONTAINER"
        top = item
        for _ in range(3000):
            child = Dataset()
            child.RelationshipType = "CONTAINS"
            child.ValueType = "CONTAINER"
            item.ContentSequence = Sequence([child])
            item = child
        ds.ContentSequence = Sequence([top])

    def text_numbers(ds: Dataset) -> None:
        def walk(items) -> None:
            for it in items:
                if getattr(it, "ValueType", "") == "NUM" and "MeasuredValueSequence" in it:
                    for mv in it.MeasuredValueSequence:  # a number that is not one (pydicom would refuse DS)
                        del mv[0x0040A30A]
                        mv.add_new(0x0040A30A, "LO", "abc")
                if "ContentSequence" in it:
                    walk(it.ContentSequence)

        walk(ds.ContentSequence)

    def no_sop_class(ds: Dataset) -> None:
        del ds.SOPClassUID

    def container_items_dropped(ds: Dataset) -> None:
        ds.ContentSequence = Sequence([it for it in ds.ContentSequence if it.ValueType != "CONTAINER"])

    def not_sr_modality(ds: Dataset) -> None:
        ds.ValueType = "TEXT"

    changes = [no_content, empty_content, wrong_root, no_study_uid, huge_study_uid, deep, text_numbers,
               no_sop_class, container_items_dropped, not_sr_modality]  # fmt: skip
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 40_000))  # pydicom writes nested sequences recursively
    try:
        for src in good[:4]:
            for change in changes:
                variant(src, change.__name__, change)
    finally:
        sys.setrecursionlimit(limit)
    return made


def malformed_files(running: RunningStack, work: Path) -> dict[str, Any]:
    cfg = running.cfg
    generate(work / "mal", studies=24, years=1, seed=59, today=_today())
    good = []
    for p in _files(work / "mal" / "studies"):
        ds = pydicom.dcmread(p, stop_before_pixels=True)
        if str(ds.SOPClassUID) == RDSR:
            good.append(p)
    bad = _malformed(good, work / "mal-bad")
    spool = cfg.dose_spool
    objects = spool / "objects"
    entries = []
    for i, path in enumerate([*good, *(p for _, p in bad)]):
        copy = objects / f"bench-{i:04d}.dcm"
        shutil.copyfile(path, copy)
        entries.append(dose_spool.enqueue(spool, copy, source="bench", owned=True))
    _wait(lambda: not any((spool / "incoming").glob("*.job")), 600)
    time.sleep(2)
    sha = {p: hashlib.sha256(p.read_bytes()).hexdigest() for _, p in bad}
    dead = dict(_query(cfg, "SELECT file_sha256, error FROM dose.dead_letter WHERE file_sha256 IS NOT NULL"))
    objects_by_sha = dict(_query(cfg, "SELECT file_sha256, status FROM dose.object"))
    warned = {h for (h,) in _query(cfg, "SELECT file_sha256 FROM dose.object WHERE warnings <> '[]'::jsonb")}
    dead_n = recorded = ok_warned = unaccounted = unclear = 0
    kinds: dict[str, str] = {}
    for kind, p in bad:
        h = sha[p]
        if h in dead:
            dead_n += 1
            reason = dead[h] or ""
            kinds.setdefault(kind, reason[:90])
            if len(reason) < 20 or reason.split(":")[0] in ("Exception", "KeyError", "AttributeError"):
                unclear += 1
        elif h in objects_by_sha and objects_by_sha[h] != "ok":
            recorded += 1
            kinds.setdefault(kind, f"dose.object {objects_by_sha[h]}")
        elif (
            h in warned
        ):  # read (what it still holds is used) and recorded with a warning saying what is wrong
            ok_warned += 1
            kinds.setdefault(kind, "ingested with a warning")
        else:
            unaccounted += 1
            kinds.setdefault(
                kind, "NOT RECORDED" if h not in objects_by_sha else "ingested as ok, no warning"
            )
    good_sha = {hashlib.sha256(p.read_bytes()).hexdigest() for p in good}
    good_ok = sum(1 for h in good_sha if objects_by_sha.get(h) == "ok")
    for kind, reason in sorted(kinds.items()):
        _log(f"malformed {kind}: {reason}")
    return {
        "malformed_files": len(bad),
        "malformed_dead_letters": dead_n,
        "malformed_recorded_not_dose": recorded,
        "malformed_ingested_with_warning": ok_warned,
        "malformed_silently_ok": unaccounted,
        "malformed_unclear_reasons": unclear,
        "good_files": len(good_sha),
        "good_ingested": good_ok,
        "spool_left": sum(1 for _ in (spool / "incoming").glob("*.job")),
    }


def _today():
    from datetime import date

    return date(2026, 6, 30)


def run_all(*, outage_s: float = 60, outage_studies: int = 20) -> dict[str, Any]:
    result: dict[str, Any] = {}
    running = RunningStack(
        retrieve={
            "time_window": {"weekdays": "00:00-24:00", "weekends": "00:00-24:00"},
            "retry": {"max_attempts": 5, "backoff_s": 2, "backoff_max_s": 20},
        },
    )
    try:
        with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
            work = Path(tmp)
            for name, step in (
                ("malformed", lambda: malformed_files(running, work)),
                ("concurrent", lambda: concurrent_associations(running, work)),
                (
                    "outage",
                    lambda: dose_pacs_outage(running, work, studies=outage_studies, outage_s=outage_s),
                ),
                ("pg_restart", lambda: pg_restart_during_move(running, work)),
            ):
                _log(f"scenario {name}")
                try:
                    result.update(step())
                except Exception as exc:  # noqa: BLE001 (one scenario's failure is a figure, not an abort)
                    result[f"{name}_error"] = f"{type(exc).__name__}: {exc!s:.200}".replace("\n", " ")
    finally:
        running.close()
    return result
