"""The dose spool under hostile entries and crashes (issue 14 items 5, 6 and 10), against a real PostgreSQL (a
scratch database of the test stack) with the worker run as a real `nmdose dose worker` process, SIGKILLed for real.

Item 5: an entry names only a regular file directly in the spool's ``objects/`` or under a configured dose-PACS
storage root (read-only); symbolic links, directories, NULs, ``..``, relative paths, pipes are refused, each one
to ``failed/`` with a reason and a dead letter, and never hold up the good entries; ``worker.lock`` is never
reached through a symbolic link. Item 6: a worker killed at any step of a batch replays to exactly the rows of a
clean run, with no false "no such file" dead letter and no copy left behind. Item 10: the same SOP instance under
another study is a dead letter that leaves the first study's rows alone; a garbage SR says what was wrong.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from contextlib import closing
from pathlib import Path

import pytest
import yaml
from pydicom.uid import generate_uid

from nmdose.db import connect
from nmdose.dose.ingest import ingest_files, sha256_file
from nmdose.dose.spool import KILL_AT_ENV, KILL_STEPS, Worker, enqueue
from nmdose.errors import NmdoseError
from nmdose.simulate import rdsr as R
from tests.support import pet_ct_dose_study as _study_files
from tests.support import query as _query
from tests.support import scratch_database

pytestmark = pytest.mark.integration

NMDOSE = str(Path(sys.executable).with_name("nmdose"))


# ------------------------------------------------------------------------------------------------ helpers
@pytest.fixture(scope="module")
def scratch(stack):
    """One scratch database for the module; each test starts from empty dose tables."""
    with scratch_database(stack.cfg, "dose_spool") as cfg:
        yield cfg


def _reset(cfg) -> None:
    with closing(connect(cfg)) as conn, conn, conn.cursor() as cur:
        cur.execute("DELETE FROM dose.study; DELETE FROM dose.object; DELETE FROM dose.dead_letter")


@pytest.fixture
def db(scratch):
    _reset(scratch)
    return scratch


@pytest.fixture
def tmp() -> Path:
    path = Path(tempfile.mkdtemp(prefix="nmdose-spool-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _spool_copy(spool: Path, original: Path, name: str, *, source: str = "cli") -> Path:
    """What a hook does: its own copy in objects/, then the entry (owned=1)."""
    (spool / "objects").mkdir(parents=True, exist_ok=True)
    copy = spool / "objects" / name
    shutil.copyfile(original, copy)
    enqueue(spool, copy, owned=True, source=source)
    return copy


def _entry(spool: Path, text: str, name: str | None = None) -> Path:
    """A hand-written (forged) entry."""
    (spool / "incoming").mkdir(parents=True, exist_ok=True)
    path = spool / "incoming" / (name or f"{generate_uid()[-20:]}.job")
    path.write_bytes(text.encode("utf-8", "surrogateescape"))
    return path


def _dead_letters(cfg) -> dict[str, str]:
    return dict(_query(cfg, "SELECT file_path, error FROM dose.dead_letter WHERE resolved_at IS NULL"))


def _listing(folder: Path) -> list[str]:
    return sorted(os.listdir(folder)) if folder.exists() else []


# ---------------------------------------------------------------------------------- item 5: hostile entries
def test_entries_outside_the_spool_symlinks_directories_and_nuls_are_refused_one_by_one(db, tmp):
    """Every kind of bad entry goes to failed/ with its reason and a dead letter; nothing outside objects/ is
    read, moved or deleted; the good entries of the same batch are ingested; one run drains everything."""
    spool = tmp / "spool"
    study, files = _study_files(tmp / "study")
    good = [_spool_copy(spool, f, f"good-{f.name}", source="hostile") for f in files]
    victim = tmp / "victim.dcm"  # a file the worker must never delete: someone else's DICOM object
    victim_study, victim_files = _study_files(tmp / "victim")
    shutil.copyfile(victim_files[0], victim)
    victim_bytes = victim.read_bytes()
    objects = spool / "objects"
    os.symlink(victim, objects / "link.dcm")  # a symbolic link planted in objects/
    (objects / "folder.dcm").mkdir()  # a directory named like a copy
    (objects / "folder.dcm" / "inner.dcm").write_bytes(victim_bytes)
    os.mkfifo(objects / "pipe.dcm")  # a named pipe: opening it must not block the worker
    os.link(victim, objects / "hardlink.dcm")  # a hard link to a file outside
    bad = {
        "outside": _entry(spool, f"file={victim}\nsource=hostile\nowned=1\n"),
        "dotdot": _entry(spool, f"file={objects}/../../victim.dcm\nsource=hostile\nowned=1\n"),
        "relative": _entry(spool, "file=victim.dcm\nsource=hostile\nowned=1\n"),
        "nul": _entry(spool, f"file={objects}/good-ct.dcm\x00x\nsource=hostile\nowned=1\n"),
        "symlink": _entry(spool, f"file={objects}/link.dcm\nsource=hostile\nowned=1\n"),
        "directory": _entry(spool, f"file={objects}/folder.dcm\nsource=hostile\nowned=1\n"),
        "pipe": _entry(spool, f"file={objects}/pipe.dcm\nsource=hostile\nowned=1\n"),
        "hardlink": _entry(spool, f"file={objects}/hardlink.dcm\nsource=hostile\nowned=1\n"),
        "no-file": _entry(spool, "source=hostile\n"),
    }
    # an entry that is itself a symbolic link (to an entry naming the victim), and a directory named like one
    elsewhere = tmp / "elsewhere.job"
    elsewhere.write_text(f"file={victim}\nsource=hostile\nowned=1\n")
    os.symlink(elsewhere, spool / "incoming" / "linked.job")
    (spool / "incoming" / "dir.job").mkdir()
    # an entry whose own name is not UTF-8 and that names no file (its dead letter names the entry)
    undecodable = os.fsencode(spool / "incoming") + b"/\xff\xfe.job"
    with open(undecodable, "wb") as fh:
        fh.write(b"source=hostile\n")
    total = Worker(db, spool).run(once=True)
    assert (total.ingested, total.dead_letter) == (3, len(bad) + 3), total
    assert os.path.exists(os.fsencode(spool / "failed") + b"/\xff\xfe.job")
    assert _listing(spool / "incoming") == []
    failed = _listing(spool / "failed")
    for entry in [*bad.values(), spool / "incoming" / "linked.job", spool / "incoming" / "dir.job"]:
        assert entry.name in failed and f"{entry.name}.reason" in failed, entry.name
    reason = {k: (spool / "failed" / f"{p.name}.reason").read_text() for k, p in bad.items()}
    assert "outside the spool" in reason["outside"] and "'..'" in reason["dotdot"]
    assert "not an absolute path" in reason["relative"] and "NUL or control character" in reason["nul"]
    assert "\\x00" in reason["nul"]  # shown, not cut
    assert "symbolic link; not followed" in reason["symlink"]
    assert "a directory, not a regular file" in reason["directory"]
    assert "a named pipe, not a regular file" in reason["pipe"]
    assert "2 hard links" in reason["hardlink"] and "without a file= line" in reason["no-file"]
    assert "symbolic link; not followed" in (spool / "failed" / "linked.job.reason").read_text()
    assert "a directory, not a regular file" in (spool / "failed" / "dir.job.reason").read_text()
    # the victim was neither read into dose.* nor moved nor deleted; the planted link still points to it
    assert victim.read_bytes() == victim_bytes and elsewhere.exists()
    assert _query(db, "SELECT count(*) FROM dose.object WHERE study_instance_uid = %s",
                  (victim_study.study_instance_uid,)) == [(0,)]  # fmt: skip
    assert (spool / "failed" / "link.dcm").is_symlink()  # the link itself moved, never what it points to
    assert (spool / "failed" / "folder.dcm" / "inner.dcm").read_bytes() == victim_bytes
    # the good entries: ingested, their copies removed
    assert _query(db, "SELECT count(*), sum(ct_event_count) FROM dose.study WHERE study_instance_uid = %s",
                  (study.study_instance_uid,)) == [(1, 2)]  # fmt: skip
    assert not any(p.exists() for p in good) and _listing(objects) == []
    dead = _dead_letters(db)
    assert len(dead) == len(bad) + 3 and all(dead.values())
    assert any(path.endswith("incoming/\\udcff\\udcfe.job") for path in dead), sorted(dead)
    assert any("\\x00" in path for path in dead)  # a NUL in a path is recorded, escaped


def test_a_dose_pacs_storage_root_is_read_only_and_links_inside_it_are_not_followed(stack, db, tmp):
    """Files under NMDOSE_DOSE_STORAGE_ROOT (Conquest's own storage, owned=0) are ingested and never moved or
    deleted; owned=1 there, or a symbolic link at any level below the root, is refused."""
    spool = tmp / "spool"
    root = tmp / "conquest" / "data"
    study, files = _study_files(root / "PAT1")
    other_study, other = _study_files(tmp / "outside")
    os.symlink(tmp / "outside", root / "LINKDIR")  # a linked folder inside the storage
    for f in files:
        enqueue(spool, f, source="conquest", owned=False)
    owned = enqueue(spool, files[0], source="conquest", owned=True)
    linked = enqueue(spool, root / "LINKDIR" / other[0].name, source="conquest", owned=False)
    total = Worker(db, spool, roots=[root]).run(once=True)
    assert (total.ingested, total.unchanged, total.dead_letter) == (3, 0, 2), total
    assert all(f.exists() for f in files)  # read-only: nothing moved or deleted there
    assert _query(db, "SELECT count(*) FROM dose.object WHERE study_instance_uid = %s",
                  (study.study_instance_uid,)) == [(3,)]  # fmt: skip
    assert _query(db, "SELECT count(*) FROM dose.object WHERE study_instance_uid = %s",
                  (other_study.study_instance_uid,)) == [(0,)]  # fmt: skip
    assert "never deletes there" in (spool / "failed" / f"{owned.name}.reason").read_text()
    assert "'LINKDIR' is a symbolic link" in (spool / "failed" / f"{linked.name}.reason").read_text()
    # without the root configured, the same files are outside the spool
    spool2 = tmp / "spool2"
    enqueue(spool2, files[1], source="conquest")
    assert Worker(db, spool2, roots=[]).run(once=True).dead_letter == 1
    assert "outside the spool" in next((spool2 / "failed").glob("*.reason")).read_text()
    # `nmdose dose worker --storage-root DIR` sets the root on the command line
    spool3 = tmp / "spool3"
    enqueue(spool3, files[2], source="conquest")
    proc = _worker_process(stack, db, tmp, spool3, None, "--storage-root", str(root))
    assert proc.returncode == 0 and "unchanged=1 " in proc.stdout, (proc.stdout, proc.stderr)
    assert len(list((spool3 / "done").glob("*.job"))) == 1 and files[2].exists()


def test_the_worker_lock_is_never_reached_through_a_symbolic_link(db, tmp):
    """A worker.lock planted as a symbolic link: the worker refuses to start and the file it points to keeps its
    content (before, `open(..., "w")` truncated it)."""
    spool = tmp / "spool"
    (spool / "incoming").mkdir(parents=True)
    victim = tmp / "precious.txt"
    victim.write_text("do not truncate\n")
    os.symlink(victim, spool / "worker.lock")
    with pytest.raises(NmdoseError, match="worker.lock: a symbolic link; refused"):
        Worker(db, spool).run(once=True)
    assert victim.read_text() == "do not truncate\n"
    (spool / "worker.lock").unlink()
    (spool / "worker.lock").mkdir()
    with pytest.raises(NmdoseError, match="worker.lock"):
        Worker(db, spool).run(once=True)


def test_a_spool_folder_replaced_by_a_link_stops_the_worker_and_nothing_behind_it_is_touched(db, tmp):
    """objects/ swapped for a link to another folder: an owned=1 entry naming a file "in objects/" would make the
    worker delete that folder's file. The worker refuses the spool; the entry and the file stay."""
    spool = tmp / "spool"
    (spool / "incoming").mkdir(parents=True)
    elsewhere = tmp / "home"
    _, files = _study_files(elsewhere)
    os.symlink(elsewhere, spool / "objects")
    entry = enqueue(spool, spool / "objects" / files[0].name, owned=True)
    with pytest.raises(NmdoseError, match="objects: a symbolic link, not a directory of the spool; refused"):
        Worker(db, spool).run(once=True)
    assert files[0].exists() and entry.exists()
    assert _query(db, "SELECT count(*) FROM dose.object") == [(0,)]


# ------------------------------------------------------------------------ item 6: killed at every step
@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict:
    """The same objects for every run: a PET-CT study, a garbage file, a re-send of the CT RDSR's bytes."""
    folder = Path(tempfile.mkdtemp(prefix="nmdose-spool-corpus-", dir="/tmp"))
    study, files = _study_files(folder / "study", events=3)
    garbage = folder / "garbage.dcm"
    garbage.write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00\x10\x00UI\xff\x00" + os.urandom(300))
    yield {
        "study": study,
        "files": [*files, garbage, files[0]],
        "names": ["a-ct", "b-rr", "c-pet", "d-bad", "e-ct"],
    }
    shutil.rmtree(folder, ignore_errors=True)


def _fill(spool: Path, corpus: dict) -> None:
    for name, source in zip(corpus["names"], corpus["files"], strict=True):
        _spool_copy(spool, source, f"{name}.dcm", source="faults")


def _worker_process(
    stack, cfg, tmp: Path, spool: Path, kill_at: str | None, *extra: str
) -> subprocess.CompletedProcess:
    """`nmdose dose worker --once` as its own process, on the scratch database."""
    config = tmp / "config"
    if not config.exists():
        shutil.copytree(stack.config_dir, config)
        pg = yaml.safe_load((config / "postgresql.yaml").read_text())
        pg["database"] = cfg.postgresql.database
        (config / "postgresql.yaml").write_text(yaml.safe_dump(pg, sort_keys=False))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NMDOSE_", "VAULT_"))}
    if kill_at:
        env[KILL_AT_ENV] = kill_at
    argv = [NMDOSE, "--config-dir", str(config), "--var-dir", str(stack.cfg.var_dir), "dose", "worker",
            "--once", "--spool", str(spool), *extra]  # fmt: skip
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)


def _snapshot(cfg, spool: Path) -> dict:
    """The dose rows a run leaves (paths of the spool replaced, counters of sightings left out)."""

    def rows(sql):
        return sorted(tuple(str(v).replace(str(spool), "<spool>") for v in r) for r in _query(cfg, sql))

    return {
        "object": rows("SELECT sop_instance_uid, study_instance_uid, kind, status, file_sha256, revisions, "
                       "file_path, warnings FROM dose.object"),
        "study": rows("SELECT study_instance_uid, ct_event_count, ct_total_dlp_mgycm, nm_total_activity_mbq, "
                      "total_effective_dose_msv, object_count, sources FROM dose.study"),
        "ct_event": rows("SELECT study_instance_uid, event_key, ordinal, dlp_mgycm, ctdivol_mgy FROM dose.ct_event"),
        "radiopharmaceutical": rows("SELECT study_instance_uid, administration_key, activity_mbq "
                                    "FROM dose.radiopharmaceutical"),
        "series_protocol": rows("SELECT study_instance_uid, series_instance_uid FROM dose.series_protocol"),
        "dead_letter": rows("SELECT key, file_path, file_sha256, source, error, resolved_at IS NULL "
                            "FROM dose.dead_letter"),
    }  # fmt: skip


def _files_left(spool: Path) -> dict[str, list[str]]:
    """What each spool folder holds, entries' own names (time-based) left out."""

    def shown(name: str) -> str:
        for suffix in (".job.reason", ".job"):
            if name.endswith(suffix):
                return f"<entry>{suffix}"
        return name

    return {
        sub: sorted(map(shown, _listing(spool / sub))) for sub in ("incoming", "objects", "done", "failed")
    }


@pytest.fixture(scope="module")
def clean_run(stack, scratch, corpus) -> dict:
    """What one uninterrupted worker run leaves: the reference of every killed run."""
    _reset(scratch)
    tmp = Path(tempfile.mkdtemp(prefix="nmdose-spool-clean-", dir="/tmp"))
    spool = tmp / "spool"
    _fill(spool, corpus)
    proc = _worker_process(stack, scratch, tmp, spool, None)
    assert proc.returncode == 0, proc.stderr
    snapshot = _snapshot(scratch, spool)
    files = _files_left(spool)
    shutil.rmtree(tmp, ignore_errors=True)
    return {"snapshot": snapshot, "files": files}


def test_the_clean_run_reference(clean_run, corpus):
    snap, files = clean_run["snapshot"], clean_run["files"]
    assert len(snap["object"]) == 3 and len(snap["ct_event"]) == 3 and len(snap["radiopharmaceutical"]) == 1
    (dead,) = snap["dead_letter"]
    assert "<spool>/objects/d-bad.dcm" in dead[4] and "no such file" not in dead[4]
    assert files["incoming"] == [] and files["objects"] == []
    assert files["done"] == ["<entry>.job"] * 4
    assert files["failed"] == ["<entry>.job", "<entry>.job.reason", "d-bad.dcm"]


@pytest.mark.parametrize("step", KILL_STEPS)
def test_a_worker_killed_at_any_step_replays_to_the_rows_of_a_clean_run(
    stack, db, tmp, corpus, clean_run, step
):
    """SIGKILL at each step of a batch (after the commits, after the first entry's move, after all moves, after
    the fsync, after the first copy's removal, at the end), then a normal run: exactly the clean run's rows, no
    false "no such file" dead letter, no copy left in objects/, each entry in done/ or failed/ once."""
    spool = tmp / "spool"
    _fill(spool, corpus)
    killed = _worker_process(stack, db, tmp, spool, step)
    assert killed.returncode == -signal.SIGKILL, (killed.returncode, killed.stderr)
    replay = _worker_process(stack, db, tmp, spool, None)
    assert replay.returncode == 0, replay.stderr
    snapshot = _snapshot(db, spool)
    assert snapshot == clean_run["snapshot"]
    assert not any("no such file" in error for error in _dead_letters(db).values())
    assert _files_left(spool) == clean_run["files"]


def test_a_worker_killed_at_random_moments_loses_and_doubles_nothing(stack, db, tmp, corpus):
    """kill -9 at random moments of real runs (no test hook) over 80 entries (the corpus and 15 re-sends of each
    object) in batches of 7, then a normal run: the rows and files of an uninterrupted run of the same spool."""
    import random
    import time

    def fill(spool: Path) -> None:
        _fill(spool, corpus)
        for i in range(15):
            for name, source in zip(corpus["names"], corpus["files"], strict=True):
                _spool_copy(spool, source, f"{name}-{i:02d}.dcm", source="faults")

    reference = tmp / "reference"
    fill(reference)
    assert _worker_process(stack, db, tmp, reference, None).returncode == 0
    expected = (_snapshot(db, reference), _files_left(reference))
    assert len(expected[1]["done"]) == 64 and len(expected[1]["failed"]) == 48  # 16 x (entry, reason, copy)
    _reset(db)
    rng = random.Random(146)
    spool = tmp / "spool"
    fill(spool)
    argv = [NMDOSE, "--config-dir", str(tmp / "config"), "--var-dir", str(stack.cfg.var_dir), "dose", "worker",
            "--once", "--spool", str(spool), "--batch", "7"]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NMDOSE_", "VAULT_"))}
    interrupted = 0
    for _ in range(20):
        if not os.listdir(spool / "incoming"):
            break
        proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        lock = spool / "worker.lock"
        deadline = time.monotonic() + 30
        while (
            time.monotonic() < deadline and proc.poll() is None
        ):  # the worker holds its lock: it is draining
            with contextlib.suppress(OSError):
                if lock.read_text().strip() == str(proc.pid):
                    break
            time.sleep(0.005)
        time.sleep(rng.uniform(0.0, 0.06))  # within the first batches: a quiet machine drains 80 in ~0.3 s
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGKILL)
        interrupted += proc.wait(timeout=30) == -signal.SIGKILL
    assert interrupted >= 2  # the kills did land while the worker ran
    replay = _worker_process(stack, db, tmp, spool, None)
    assert replay.returncode == 0, replay.stderr
    assert _snapshot(db, spool) == expected[0]
    assert _files_left(spool) == expected[1]
    assert not any("no such file" in error for error in _dead_letters(db).values())


# --------------------------------------------------------------- item 10: another study, and what was wrong
def test_a_sop_instance_arriving_under_another_study_is_a_dead_letter_and_the_first_study_keeps_its_rows(
    db, tmp
):
    study, files = _study_files(tmp / "a", events=2)
    assert [o["status"] for o in ingest_files(db, files)] == ["ingested"] * 3
    from pydicom import dcmread

    sop = dcmread(files[0], stop_before_pixels=True).SOPInstanceUID

    def rows(uid):
        return {t: _query(db, f"SELECT count(*) FROM dose.{t} WHERE study_instance_uid = %s", (uid,))[0][0]
                for t in ("object", "study", "ct_event", "radiopharmaceutical", "series_protocol")}  # fmt: skip

    before = rows(study.study_instance_uid)
    other = R.DoseStudyInfo(study_instance_uid=generate_uid(), study_description="another study")
    moved = R.save(
        R.ct_radiation_dose_sr(other, [R.CtAcquisition(acquisition_protocol=f"X {i}") for i in range(4)],
                               series_uid=generate_uid(), sop_uid=sop),
        tmp / "a" / "moved.dcm",
    )  # fmt: skip
    spool = tmp / "spool"
    copy = _spool_copy(spool, moved, "moved.dcm", source="conflict")
    total = Worker(db, spool).run(once=True)
    assert (total.entries, total.dead_letter) == (1, 1)
    assert rows(study.study_instance_uid) == before and rows(other.study_instance_uid)["object"] == 0
    assert _query(db, "SELECT study_instance_uid, file_sha256, revisions FROM dose.object WHERE sop_instance_uid = %s",
                  (sop,)) == [(study.study_instance_uid, sha256_file(files[0]), 1)]  # fmt: skip
    (error,) = [e for p, e in _dead_letters(db).items() if p == str(copy)]
    assert f"SOP Instance UID {sop} is stored under Study Instance UID {study.study_instance_uid}" in error
    assert f"names Study Instance UID {other.study_instance_uid}: not moved" in error, error
    assert (spool / "failed" / "moved.dcm").exists()  # the copy is kept for a person to look at


def test_a_garbage_resend_of_a_dose_report_says_what_was_wrong(db, tmp):
    """The worse-resend dead letter quotes why the copy holds no dose (its content tree), not "projection
    X-ray"."""
    study, files = _study_files(tmp / "g", events=2)
    ingest_files(db, files)
    from pydicom import dcmread

    ds = dcmread(files[0])
    ds.ContentSequence = []  # the dose template root's content lost
    garbage = tmp / "g" / "empty-tree.dcm"
    ds.save_as(garbage)
    (outcome,) = ingest_files(db, [garbage])
    assert outcome["status"] == "dead_letter"
    assert "ContentSequence (0040,A730) missing or empty" in outcome["error"], outcome["error"]
    assert "projection" not in outcome["error"] and "kept" in outcome["error"]
    assert _query(db, "SELECT ct_event_count FROM dose.study WHERE study_instance_uid = %s",
                  (study.study_instance_uid,)) == [(2,)]  # fmt: skip
