"""Dose ingest against the real stack: PostgreSQL, the Orthanc dose-PACS stand-in with its Lua hook, the spool
worker the stack runs, DCMTK storescu, and the Conquest Lua import script run by a real Lua 5.1 interpreter."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from contextlib import closing
from pathlib import Path

import pytest
from pydicom.uid import generate_uid

from nmdose.cli import main
from nmdose.db import connect
from nmdose.dose.ingest import ingest_files
from nmdose.dose.spool import enqueue
from nmdose.simulate import rdsr as R
from nmdose.stack import _pid_alive, dicom_env
from tests.support import pet_ct_dose_study as _pet_ct_study
from tests.support import query as _query
from tests.support import wait_for as _wait
from tests.unit.dose.test_bad_input import _broken_corpus

pytestmark = pytest.mark.integration

STORESCU = shutil.which("storescu")


def _counts(cfg, study: str) -> dict[str, int]:
    out = {}
    for table in ("object", "study", "ct_event", "radiopharmaceutical", "series_protocol"):
        (n,) = _query(cfg, f"SELECT count(*) FROM dose.{table} WHERE study_instance_uid = %s", (study,))[0]
        out[table] = n
    return out


def _hand_over(spool: Path, path: Path, *, source: str) -> Path:
    """What a dose-PACS hook does: its own copy directly in ``objects/`` (the worker reads nothing else), then
    the entry (owned=1). A missing file gives an entry naming a copy that does not exist. Returns the copy."""
    (spool / "objects").mkdir(parents=True, exist_ok=True)
    copy = spool / "objects" / f"{generate_uid()[-12:]}-{path.name}"
    if path.exists():
        shutil.copyfile(path, copy)
    enqueue(spool, copy, source=source, owned=True)
    return copy


@pytest.fixture
def tmp(tmp_path_factory) -> Path:
    path = Path(tempfile.mkdtemp(prefix="nmdose-dose-", dir="/tmp"))
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_ingesting_twice_adds_nothing_and_a_continued_rdsr_adds_only_new_events(stack, tmp):
    study, files = _pet_ct_study(tmp / "a", events=2)
    first = ingest_files(stack.cfg, files)
    assert [o["status"] for o in first] == ["ingested"] * 3
    before = _counts(stack.cfg, study.study_instance_uid)
    assert before == {"object": 3, "study": 1, "ct_event": 2, "radiopharmaceutical": 1, "series_protocol": 3}
    again = ingest_files(stack.cfg, files)
    assert [o["status"] for o in again] == ["unchanged"] * 3
    assert _counts(stack.cfg, study.study_instance_uid) == before
    # a cumulative RDSR repeating the two events plus a third, and a continued one with a fourth only
    events = [R.CtAcquisition(acquisition_protocol=f"WB {i}", dlp_mgycm=100.0 + i) for i in range(2)]
    old = R.ct_radiation_dose_sr(study, events, series_uid=generate_uid(), sop_uid=generate_uid())
    old_uids = [
        row[0]
        for row in _query(
            stack.cfg,
            "SELECT irradiation_event_uid FROM dose.ct_event WHERE study_instance_uid = %s ORDER BY ordinal",
            (study.study_instance_uid,),
        )
    ]
    for event, uid in zip(events, old_uids, strict=True):
        event.irradiation_event_uid = uid
    third = R.CtAcquisition(acquisition_protocol="WB 2", dlp_mgycm=50.0)
    cumulative = R.ct_radiation_dose_sr(
        study, [*events, third], series_uid=generate_uid(), sop_uid=generate_uid()
    )
    continued = R.ct_radiation_dose_sr(study, [R.CtAcquisition(acquisition_protocol="WB 3", dlp_mgycm=25.0)],
                                       series_uid=generate_uid(), sop_uid=generate_uid())  # fmt: skip
    del old
    extra = [R.save(cumulative, tmp / "cumulative.dcm"), R.save(continued, tmp / "continued.dcm")]
    assert [o["status"] for o in ingest_files(stack.cfg, extra)] == ["ingested", "ingested"]
    rows = _query(
        stack.cfg,
        "SELECT ct_event_count, ct_total_dlp_mgycm, ct_effective_dose_msv, nm_total_activity_mbq, "
        "nm_effective_dose_msv, total_effective_dose_msv, activity_per_kg_mbq FROM dose.study "
        "WHERE study_instance_uid = %s",
        (study.study_instance_uid,),
    )
    count, dlp, ct_e, activity, nm_e, total, per_kg = rows[0]
    assert count == 4 and dlp == pytest.approx(100 + 101 + 50 + 25)
    assert ct_e == pytest.approx(dlp * 0.0145)  # chest, adult, ICRP 103 (Deak 2010)
    assert activity == pytest.approx(370.0) and nm_e == pytest.approx(370.0 * 0.019)  # FDG, ICRP 128
    assert total == pytest.approx(ct_e + nm_e) and per_kg == pytest.approx(370.0 / 70.0)
    (adm,) = _query(
        stack.cfg,
        "SELECT source, injection_time_difference_s, header_activity_mbq FROM dose.radiopharmaceutical "
        "WHERE study_instance_uid = %s",
        (study.study_instance_uid,),
    )
    assert adm == ("rrdsr", 0.0, 370.0)


def test_a_file_that_fails_goes_to_the_dead_letters_and_the_others_are_ingested(stack, tmp):
    study, files = _pet_ct_study(tmp / "b")
    bad = tmp / "b" / "garbage.dcm"
    bad.write_bytes(b"\0" * 128 + b"DICM" + os.urandom(500))
    outcomes = {Path(o["file"]).name: o for o in ingest_files(stack.cfg, [tmp / "b"])}
    assert outcomes["garbage.dcm"]["status"] == "dead_letter"
    assert all(outcomes[f.name]["status"] == "ingested" for f in files)
    (row,) = _query(
        stack.cfg, "SELECT attempts, error FROM dose.dead_letter WHERE file_path = %s", (str(bad),)
    )
    assert row[0] == 1 and str(bad) in row[1]
    ingest_files(stack.cfg, [bad])
    assert _query(stack.cfg, "SELECT attempts FROM dose.dead_letter WHERE file_path = %s", (str(bad),)) == [
        (2,)
    ]


@pytest.mark.skipif(STORESCU is None, reason="DCMTK storescu not installed")
def test_storescu_into_the_dose_pacs_stand_in_gives_rows_within_seconds(stack, tmp):
    study, files = _pet_ct_study(tmp / "c", events=3)
    node = stack.cfg.dose_node
    argv = [
        STORESCU,
        "-R",
        "-aet",
        stack.cfg.research_node.aet,  # the peer the security profile lets store into the dose PACS
        "-aec",
        node.aet,
        "127.0.0.1",
        str(node.port),
        *map(str, files),
    ]
    started = time.monotonic()
    proc = subprocess.run(argv, env=dicom_env(), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    uid = study.study_instance_uid
    done = _wait(lambda: _counts(stack.cfg, uid)["object"] == 3 and _counts(stack.cfg, uid), timeout_s=15)
    elapsed = time.monotonic() - started
    assert done and done["ct_event"] == 3 and done["radiopharmaceutical"] == 1, done
    assert elapsed < 15
    sources = _query(
        stack.cfg, "SELECT DISTINCT source FROM dose.object WHERE study_instance_uid = %s", (uid,)
    )
    assert sources == [("orthanc",)]
    # re-sending the same files adds nothing
    before = _counts(stack.cfg, uid)
    proc = subprocess.run(argv, env=dicom_env(), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    spool = stack.cfg.dose_spool
    assert _wait(lambda: not any((spool / "incoming").glob("*.job")), timeout_s=15)
    assert _counts(stack.cfg, uid) == before
    (seen,) = _query(
        stack.cfg, "SELECT min(times_seen) FROM dose.object WHERE study_instance_uid = %s", (uid,)
    )
    assert seen[0] == 2
    assert not any((spool / "objects").glob("*.dcm"))  # the hook's copies are removed once ingested


def test_broken_corpus_through_the_running_worker_gives_dead_letters_and_the_worker_stays_alive(stack, tmp):
    (tmp / "broken").mkdir()
    corpus = _broken_corpus(tmp / "broken")
    study, good = _pet_ct_study(tmp / "good")
    spool = stack.cfg.dose_spool
    worker = stack.stack.dose_worker_status()
    assert worker.state == "running"
    copies = {path: _hand_over(spool, path, source="broken-corpus") for path, _what in corpus}
    for path in good:
        _hand_over(spool, path, source="broken-corpus")
    assert _wait(lambda: not any((spool / "incoming").glob("*.job")), timeout_s=60)
    assert _pid_alive(worker.pid) and stack.stack.dose_worker_status().state == "running"
    assert _counts(stack.cfg, study.study_instance_uid)["ct_event"] == 2
    errors = {str(copies[p]) for p, what in corpus if what in ("random", "empty", "missing")}
    dead = {
        r[0]
        for r in _query(stack.cfg, "SELECT file_path FROM dose.dead_letter WHERE source = 'broken-corpus'")
    }
    assert errors <= dead, errors - dead
    assert len(dead) >= 20


# The Conquest hook's tests (conquest/lua/nmdose_import.lua under Lua 5.1) are in test_conquest_hook.py.


def test_ingest_and_summary_commands(stack, tmp, capsys):
    study, files = _pet_ct_study(tmp / "e")
    assert main([*stack.cli_args(), "dose", "ingest", str(tmp / "e"), "--json"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 3
    assert main([*stack.cli_args(), "dose", "summary"]) == 0
    table = capsys.readouterr().out
    assert "PET-CT WB nmdose-test" in table and "CTDIvol" in table
    assert main([*stack.cli_args(), "dose", "summary", "--by", "acquisition", "--json"]) == 0
    assert '"protocol": "WB 0"' in capsys.readouterr().out


def test_worker_keeps_entries_while_the_database_is_away_and_ingests_them_later(stack, tmp):
    import dataclasses

    from nmdose.dose.spool import Worker
    from nmdose.errors import DatabaseError
    from nmdose.stack import free_port

    study, files = _pet_ct_study(tmp / "f")
    spool = tmp / "spool-f"
    for path in files:
        _hand_over(spool, path, source="outage")
    away = dataclasses.replace(
        stack.cfg, postgresql=stack.cfg.postgresql.model_copy(update={"port": free_port()})
    )
    worker = Worker(away, spool)
    assert worker.step().entries == 0  # logged, not raised
    with pytest.raises(DatabaseError, match="entries kept"):
        Worker(away, spool).run(once=True)
    assert len(list((spool / "incoming").glob("*.job"))) == 3
    total = Worker(stack.cfg, spool).run(once=True)
    assert (total.entries, total.ingested) == (3, 3)
    assert _counts(stack.cfg, study.study_instance_uid)["ct_event"] == 2


def test_worker_computes_the_dose_page_opening_answers_after_new_data(stack, tmp):
    from nmdose.dose.spool import Worker
    from nmdose.web.dose_views import DEFAULT_VIEWS, cached_dose_rows, warm_default_views

    study, files = _pet_ct_study(tmp / "w", events=3)
    spool = tmp / "spool-w"
    for path in files:
        _hand_over(spool, path, source="warm")
    total = Worker(stack.cfg, spool, warm=warm_default_views).run(once=True)
    assert total.ingested == 3
    (version,) = _query(stack.cfg, "SELECT dose.data_version()")[0]
    kept = _query(stack.cfg, "SELECT count(*) FROM dose.web_cache WHERE data_version = %s", (version,))[0][0]
    assert kept >= len(DEFAULT_VIEWS)  # every opening answer is ready for this version of the data
    # and it is the answer the page gets: the study's protocols are in the cached statistics
    with closing(connect(stack.cfg)) as conn:
        rows = cached_dose_rows(conn, stack.cfg, "ct_protocols", {"group": "protocol"})
    assert {"WB 0", "WB 1", "WB 2"} <= {r["protocol"] for r in rows}
    # nothing new: no second computation
    assert Worker(stack.cfg, spool, warm=warm_default_views).run(once=True).entries == 0
    assert _query(stack.cfg, "SELECT dose.data_version()")[0][0] == version


# ------------------------------------------------------------------ issue 14 item 10: ingest never stalls
def _digits(n: int, seed: int = 14) -> str:
    """A UID-looking string of n characters that does not compress (an index row it overflows)."""
    import random

    rng = random.Random(seed)
    return "1." + "".join(rng.choice("0123456789") for _ in range(n - 2))


def _dead_letter_error(cfg, path: Path) -> str:
    (row,) = _query(cfg, "SELECT error FROM dose.dead_letter WHERE file_path = %s", (str(path),))
    return row[0]


def test_a_database_error_caused_by_one_entry_dead_letters_it_and_the_batch_goes_on(stack, tmp, monkeypatch):
    """(a) ProgramLimitExceeded (SQLSTATE 54000, an OperationalError to psycopg2) from one entry's data is not a
    database outage: that entry becomes a dead letter, the good files of the batch are ingested, nothing stalls."""
    from nmdose.dose import ingest
    from nmdose.dose.spool import Worker

    study, good = _pet_ct_study(tmp / "a10")
    bad = R.save(R.ct_radiation_dose_sr(R.DoseStudyInfo(), [R.CtAcquisition()], series_uid=generate_uid(),
                                        sop_uid=generate_uid()), tmp / "a10" / "too-long.dcm")  # fmt: skip
    real_parse = ingest.parse_file

    def unbounded(
        path, **kw
    ):  # a parse result the database refuses (as the parser gave before UIDs were bounded)
        result = real_parse(path, **kw)
        if Path(path).name.endswith("too-long.dcm"):
            result["study_instance_uid"] = _digits(21709)
        return result

    monkeypatch.setattr(ingest, "parse_file", unbounded)
    spool = tmp / "spool-a10"
    bad = _hand_over(spool, bad, source="item10a")
    for path in good:
        _hand_over(spool, path, source="item10a")
    total = Worker(stack.cfg, spool).run(once=True)
    assert (total.entries, total.ingested, total.dead_letter) == (4, 3, 1)
    assert _counts(stack.cfg, study.study_instance_uid)["ct_event"] == 2
    error = _dead_letter_error(stack.cfg, bad)
    assert str(bad) in error and "SQLSTATE 54000" in error, error
    assert not list((spool / "incoming").glob("*.job")) and len(list((spool / "failed").glob("*.job"))) == 1
    assert (spool / "failed" / bad.name).exists() and not list((spool / "objects").iterdir())


def test_uids_and_text_are_bounded_before_insert(stack, tmp):
    """(b) a UID of 21,709 characters or of the wrong syntax: a dead letter naming the file and the attribute;
    free text of thousands of characters: truncated, the object ingested."""
    study, good = _pet_ct_study(tmp / "b10")
    folder = tmp / "b10"

    def ct(name, study_=None, **event):
        ds = R.ct_radiation_dose_sr(study_ or R.DoseStudyInfo(), [R.CtAcquisition(**event)],
                                    series_uid=generate_uid(), sop_uid=generate_uid())  # fmt: skip
        return ds, folder / name

    ds, long_uid = ct("long-uid.dcm")
    ds.StudyInstanceUID = _digits(21709)
    R.save(ds, long_uid)
    ds, bad_syntax = ct("bad-syntax.dcm")
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = "1.2.840.abc"
    R.save(ds, bad_syntax)
    wordy = R.DoseStudyInfo(study_instance_uid=generate_uid(), study_description=_digits(9000, seed=1))
    ds, long_text = ct("long-text.dcm", wordy, acquisition_protocol=_digits(6000, seed=2))
    R.save(ds, long_text)
    outcomes = {Path(o["file"]).name: o["status"] for o in ingest_files(stack.cfg, [*good, long_uid, bad_syntax,
                                                                                    long_text])}  # fmt: skip
    assert outcomes == {"ct.dcm": "ingested", "rrdsr.dcm": "ingested", "pet.dcm": "ingested",
                        "long-uid.dcm": "dead_letter", "bad-syntax.dcm": "dead_letter", "long-text.dcm": "ingested"}  # fmt: skip
    error = _dead_letter_error(stack.cfg, long_uid)
    assert (
        str(long_uid) in error and "Study Instance UID (0020,000D)" in error and "21709 characters" in error
    )
    error = _dead_letter_error(stack.cfg, bad_syntax)
    assert str(bad_syntax) in error and "SOP Instance UID (0008,0018)" in error and "'1.2.840.abc'" in error
    ((description, warnings),) = _query(stack.cfg, "SELECT study_description, o.warnings FROM dose.study "
                                        "JOIN dose.object o USING (study_instance_uid) WHERE study_instance_uid = %s",
                                        (wordy.study_instance_uid,))  # fmt: skip
    assert len(description) == 512 and any("9000 characters; truncated to 512" in w for w in warnings)
    ((protocol,),) = _query(stack.cfg, "SELECT acquisition_protocol FROM dose.ct_event WHERE study_instance_uid = %s",
                            (wordy.study_instance_uid,))  # fmt: skip
    assert len(protocol) == 512
    assert _query(stack.cfg, "SELECT count(*) FROM dose.object WHERE length(study_instance_uid) > 64") == [
        (0,)
    ]


def test_a_worse_resend_of_a_stored_sop_instance_never_replaces_the_good_one(stack, tmp):
    """(c) a re-sent SOP instance that parses as not_dose, or with fewer events, keeps the stored parse and the
    study's rows and is recorded as a dead letter with the reason; a better copy still revises."""
    from pydicom import dcmread

    from nmdose.dicom_sr import Code
    from nmdose.dose.ingest import sha256_file

    study, files = _pet_ct_study(tmp / "c10", events=2)
    ingest_files(stack.cfg, files)
    before = _counts(stack.cfg, study.study_instance_uid)
    assert before["ct_event"] == 2
    sop = dcmread(files[0], stop_before_pixels=True).SOPInstanceUID

    def copy(name, events, **kw):
        ds = R.ct_radiation_dose_sr(study, events, series_uid=generate_uid(), sop_uid=sop, **kw)
        return R.save(ds, tmp / "c10" / name)

    garbage = copy(
        "garbage.dcm", [R.CtAcquisition()], title=Code("126000", "DCM", "Imaging Measurement Report")
    )
    fewer = copy("fewer.dcm", [R.CtAcquisition(acquisition_protocol="WB 0", dlp_mgycm=100.0)])
    outcomes = ingest_files(stack.cfg, [garbage, fewer])
    assert [o["status"] for o in outcomes] == ["dead_letter", "dead_letter"], outcomes
    assert _counts(stack.cfg, study.study_instance_uid) == before
    assert _query(stack.cfg, "SELECT status, file_sha256, revisions FROM dose.object WHERE sop_instance_uid = %s",
                  (sop,)) == [("ok", sha256_file(files[0]), 1)]  # fmt: skip
    error = _dead_letter_error(stack.cfg, garbage)
    assert str(garbage) in error and sop in error and "not_dose" in error and "kept" in error, error
    error = _dead_letter_error(stack.cfg, fewer)
    assert sop in error and "has 1 events or administrations where the stored copy has 2" in error, error
    # a copy with more events is a real revision and replaces the stored one
    more = copy("more.dcm", [R.CtAcquisition(acquisition_protocol=f"WB {i}") for i in range(3)])
    assert [o["status"] for o in ingest_files(stack.cfg, [more])] == ["revised"]
    assert _counts(stack.cfg, study.study_instance_uid)["ct_event"] == 3


def test_ssde_net_activity_rules_and_plausibility_are_stored_in_their_columns(stack, tmp):
    """Issue 16 item 5: per CT event the SSDE with the size used; per administration the measurement times, the
    net activity, the rule that gave the activity, the injection date's source and the plausibility warning (also
    in the study's warnings)."""
    import datetime as dt

    study = R.DoseStudyInfo()
    folder = tmp / "ssde"
    folder.mkdir()
    events = [R.CtAcquisition(ctdivol_mgy=8.0, ssde_mgy=10.4, ssde_method="from_wed",
                              water_equivalent_diameter_mm=265.0, wed_method="localizer"),
              R.CtAcquisition(ctdivol_mgy=3.0)]  # fmt: skip
    ct = R.save(R.ct_radiation_dose_sr(study, events, series_uid=generate_uid(), sop_uid=generate_uid()),
                folder / "ct.dcm")  # fmt: skip
    adm = R.RadiopharmaceuticalAdministration(
        activity_mbq=1800.0, start_datetime=dt.datetime(2024, 3, 15, 9, 0), pre_measured_activity_mbq=1850.0,
        pre_measured_datetime=dt.datetime(2024, 3, 15, 8, 40), post_measured_activity_mbq=20.0,
        post_measured_datetime=dt.datetime(2024, 3, 15, 9, 10))  # fmt: skip
    rrdsr = R.save(R.radiopharmaceutical_dose_sr(study, adm, series_uid=generate_uid(), sop_uid=generate_uid()),
                   folder / "rrdsr.dcm")  # fmt: skip
    assert [o["status"] for o in ingest_files(stack.cfg, [ct, rrdsr])] == ["ingested", "ingested"]
    uid = study.study_instance_uid
    rows = _query(stack.cfg, """SELECT ctdivol_mgy, ssde_mgy, ssde_method, ssde_method_code, ssde_size_mm,
                                       ssde_size_kind, water_equivalent_diameter_mm, water_equivalent_diameter_method,
                                       effective_diameter_mm, lateral_dimension_mm, ap_dimension_mm
                                  FROM dose.ct_event WHERE study_instance_uid = %s ORDER BY ordinal""", (uid,))  # fmt: skip
    assert rows[0][:6] == (8.0, 10.4, "Estimated from Water Equivalent Diameter", "DCM:113988", 265.0,
                           "water_equivalent_diameter")  # fmt: skip
    assert rows[0][6:] == (265.0, "Water Equivalent Diameter From Localizer", None, None, None)
    assert rows[1] == (3.0,) + (None,) * 10  # no SSDE in the file: NULL
    ((row, warnings),) = _query(stack.cfg, """
        SELECT (activity_mbq, net_activity_mbq, administered_activity_rule, pre_measured_datetime,
                post_measured_datetime, start_datetime_source, plausibility)::text, s.warnings
          FROM dose.radiopharmaceutical JOIN dose.study s USING (study_instance_uid)
         WHERE study_instance_uid = %s""", (uid,))  # fmt: skip
    ((net, rule, plausibility),) = _query(stack.cfg, """SELECT net_activity_mbq, administered_activity_rule,
        plausibility FROM dose.radiopharmaceutical WHERE study_instance_uid = %s""", (uid,))  # fmt: skip
    expected = 1850.0 * 2 ** (-1200 / 6586.2) - 20.0 * 2 ** (600 / 6586.2)
    assert net == pytest.approx(expected) and rule == "rrdsr_administered"
    assert "2024-03-15 08:40:00" in row and "2024-03-15 09:10:00" in row and "rrdsr" in row
    assert "1800 MBq of Fluorodeoxyglucose F^18^ is outside 20-1500 MBq plausible for FDG" in plausibility
    assert any(w == f"plausibility: {plausibility}" for w in warnings)
    # the web role reads the new columns (table grants cover added columns)
    with closing(connect(stack.cfg, role="web")) as conn, conn.cursor() as cur:
        cur.execute("SELECT ssde_mgy FROM dose.ct_event WHERE study_instance_uid = %s AND ssde_mgy IS NOT NULL",
                    (uid,))  # fmt: skip
        assert cur.fetchall() == [(10.4,)]
        cur.execute("SELECT net_activity_mbq, plausibility FROM dose.radiopharmaceutical "
                    "WHERE study_instance_uid = %s", (uid,))  # fmt: skip
        assert len(cur.fetchall()) == 1


def _study_of(folder: Path, patient_id: str) -> tuple[str, list[Path]]:
    """A PET-CT study's dose objects (CT RDSR, RRDSR, PET header) of the patient ``patient_id``."""
    import datetime as dt

    folder.mkdir(parents=True)
    study = R.DoseStudyInfo(patient_id=patient_id, study_description="PET-CT pseudonym-test")
    admin = R.RadiopharmaceuticalAdministration(start_datetime=dt.datetime(2024, 3, 15, 9, 0))
    files = [
        R.save(R.ct_radiation_dose_sr(study, [R.CtAcquisition(dlp_mgycm=300.0)], series_uid=generate_uid(),
                                      sop_uid=generate_uid()), folder / "ct.dcm"),
        R.save(R.radiopharmaceutical_dose_sr(study, admin, series_uid=generate_uid(), sop_uid=generate_uid()),
               folder / "rrdsr.dcm"),
        R.save(R.pet_nm_image_header(study, admin, modality="PT", series_uid=generate_uid(), sop_uid=generate_uid()),
               folder / "pet.dcm"),
    ]  # fmt: skip
    return study.study_instance_uid, files


def test_each_study_gets_a_keyed_pseudonym_and_no_dose_column_holds_the_patient_id(stack, tmp):
    """Issue 16 item 4: the same PatientID gives the same pseudonym, another one another; an empty PatientID
    gives none; the plain PatientID is in no column of any table of schema dose."""
    from psycopg2 import sql

    from nmdose.secrets import patient_pseudonym, pseudonym_key

    tag = generate_uid()[-10:]
    same, other = f"NMDPSEU{tag}A", f"NMDPSEU{tag}B"
    studies = [
        _study_of(tmp / name, pid) for name, pid in (("a", same), ("b", same), ("c", other), ("d", ""))
    ]
    outcomes = ingest_files(stack.cfg, [f for _uid, files in studies for f in files])
    assert {o["status"] for o in outcomes} == {"ingested"}
    uids = [uid for uid, _files in studies]
    pseudonyms = dict(_query(stack.cfg, "SELECT study_instance_uid, patient_pseudonym FROM dose.study "
                                        "WHERE study_instance_uid = ANY(%s)", (uids,)))  # fmt: skip
    a, b, c, d = (pseudonyms[uid] for uid in uids)
    assert a == b and a.startswith("p1:") and len(a) == 35
    assert c.startswith("p1:") and c != a
    assert d is None  # no PatientID: no patient key
    assert a == patient_pseudonym(pseudonym_key(stack.cfg), same)
    with closing(connect(stack.cfg)) as conn, conn.cursor() as cur:
        cur.execute("""SELECT table_name, column_name FROM information_schema.columns
                        WHERE table_schema = 'dose' AND data_type IN ('text', 'character varying', 'jsonb', 'json')
                        ORDER BY table_name, column_name""")  # fmt: skip
        columns = cur.fetchall()
        assert ("study", "patient_pseudonym") in columns and ("object", "parsed") in columns

        def holding(value: str) -> list[tuple[str, str]]:
            found = []
            for table, column in columns:
                cur.execute(
                    sql.SQL("SELECT count(*) FROM dose.{} WHERE strpos({}::text, %s) > 0").format(
                        sql.Identifier(table), sql.Identifier(column)
                    ),
                    (value,),
                )
                if cur.fetchone()[0]:
                    found.append((table, column))
            return found

        assert ("study", "study_description") in holding("pseudonym-test")  # the scan finds what is there
        assert holding(f"NMDPSEU{tag}") == []
