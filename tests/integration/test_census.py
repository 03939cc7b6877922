"""The census against a real Orthanc simulation PACS (capped at 25 answers) filled by `nmdose simulate`."""

from __future__ import annotations

import json
import threading
import time
from contextlib import closing
from datetime import date

import pytest
import requests

from nmdose.census import runner, store
from nmdose.census.runner import CensusError
from nmdose.cli import main
from nmdose.db import connect
from nmdose.db.migrate import migrate
from nmdose.simulate import DEFAULT_TARGET_DESCRIPTIONS, LEFT_OUT_DESCRIPTIONS, generate
from nmdose.simulate.upload import upload
from tests.support import RunningStack, make_tempdir

pytestmark = pytest.mark.integration

CAP = 25
TODAY = date(2024, 6, 30)


@pytest.fixture(scope="module")
def sim():
    """A stack whose simulation PACS caps C-FIND at 25 answers, holding 150 simulated studies."""
    running = RunningStack(
        nodes={"simulationPACS": {"find_limit": CAP}},
        retrieve={
            "target_descriptions": list(DEFAULT_TARGET_DESCRIPTIONS),
            "retry": {"max_attempts": 3, "backoff_s": 0.1, "backoff_max_s": 0.5},
        },
    )
    out = make_tempdir("nmdose-census-sim-")
    manifest = generate(out, studies=150, years=3, seed=11, today=TODAY)
    upload(out, running.cfg.nodes["simulationPACS"], cfg=running.cfg)
    with closing(connect(running.cfg)) as conn:
        migrate(conn, running.cfg.migrations_dir)
    running.manifest = manifest
    yield running
    running.close()
    import shutil

    shutil.rmtree(out, ignore_errors=True)


def _reset(cfg) -> None:
    with closing(connect(cfg)) as conn, conn.cursor() as cur:
        cur.execute("TRUNCATE rpacs.study_change, rpacs.study, rpacs.census_query, rpacs.census_run CASCADE")
        conn.commit()


def _snapshot(cfg) -> dict:
    with closing(connect(cfg)) as conn:
        return store.snapshot(conn)


@pytest.fixture(scope="module")
def first_run(sim):
    summary = runner.run_census(sim.cfg, date_to=TODAY.isoformat())
    return summary, _snapshot(sim.cfg)


def test_census_finds_exactly_the_manifests_target_studies_despite_the_cap(sim, first_run):
    summary, rows = first_run
    m = sim.manifest
    targets = set(sim.cfg.retrieve.target_modalities)
    expected = {s.study_uid for s in m.studies if set(s.modalities) & targets}
    assert set(rows) == expected and summary.studies_total == len(expected)
    assert summary.targets == sum(s.in_default_targets for s in m.studies)
    assert {uid for uid, r in rows.items() if r[-1]} == {
        s.study_uid for s in m.studies if s.in_default_targets
    }
    assert summary.state == "done" and summary.find_limit == CAP
    assert summary.requests >= summary.requests_min == -(-len(expected) // (CAP - 1))
    assert summary.capped_days == []
    by_uid = {s.study_uid: s for s in m.studies}
    for uid, r in rows.items():
        s = by_uid[uid]
        assert r[1] == date(int(s.date[:4]), int(s.date[4:6]), int(s.date[6:]))  # study_date
        assert r[3] == s.description and r[4] == sorted(s.modalities) and r[5] == s.accession
        assert r[6] == s.patient_id and r[8] == s.instances


def test_the_planted_earliest_study_sets_the_earliest_date(sim, first_run):
    summary, _ = first_run
    (earliest_uid,) = sim.manifest.mess["earliest_study"]
    assert (
        summary.earliest_date
        == sim.manifest.study(earliest_uid).date[:4]
        + "-"
        + sim.manifest.study(earliest_uid).date[4:6]
        + "-"
        + sim.manifest.study(earliest_uid).date[6:]
    )
    assert summary.earliest_date == min(
        f"{s.date[:4]}-{s.date[4:6]}-{s.date[6:]}" for s in sim.manifest.studies
    )


def test_every_mislabelled_study_is_corrected_with_a_reason_and_no_other(sim, first_run):
    summary, rows = first_run
    mislabelled = set(sim.manifest.mess["modalities_wrong_for_description"])
    assert mislabelled
    corrected = {uid for uid, r in rows.items() if r[9] is not None}
    assert corrected == mislabelled and summary.corrections == len(mislabelled)
    for uid in mislabelled:
        r = rows[uid]
        assert r[9] == sorted(sim.manifest.study(uid).expected_modalities)
        assert r[10] and sim.manifest.study(uid).description in r[10]


def test_every_planted_missing_description_is_listed(sim, first_run, capsys):
    summary, _ = first_run
    assert {d["description"] for d in summary.new_descriptions} == set(LEFT_OUT_DESCRIPTIONS)
    assert main([*sim.cli_args(), "census", "descriptions", "--new", "--json"]) == 0
    listed = {d["description"]: d for d in json.loads(capsys.readouterr().out)}
    assert set(listed) == set(LEFT_OUT_DESCRIPTIONS)
    for desc, d in listed.items():
        studies = [s for s in sim.manifest.studies if s.description == desc]
        assert d["studies"] == len(studies)
        assert d["first_date"].replace("-", "") == min(s.date for s in studies)
        assert d["last_date"].replace("-", "") == max(s.date for s in studies)
        assert sum(d["modality_sets"].values()) == len(studies)


def test_rerunning_changes_nothing(sim, first_run):
    _, before = first_run
    summary = runner.run_census(sim.cfg, date_to=TODAY.isoformat())
    assert summary.studies_new == 0 and summary.studies_changed == 0
    assert _snapshot(sim.cfg) == before
    with closing(connect(sim.cfg)) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM rpacs.study_change")
        assert cur.fetchone()[0] == 0


def test_a_change_on_the_pacs_is_recorded(sim, first_run):
    # Simulate a PACS-side edit by altering our copy; the next census must restore it and record the change.
    uid = next(iter(first_run[1]))
    with closing(connect(sim.cfg)) as conn, conn.cursor() as cur:
        cur.execute("UPDATE rpacs.study SET accession_number = 'OLD1' WHERE study_uid = %s", (uid,))
        conn.commit()
    runner.run_census(sim.cfg, date_to=TODAY.isoformat())
    assert _snapshot(sim.cfg) == first_run[1]
    with closing(connect(sim.cfg)) as conn, conn.cursor() as cur:
        cur.execute("SELECT changes FROM rpacs.study_change WHERE study_uid = %s", (uid,))
        (changes,) = cur.fetchone()
    assert changes["accession_number"][0] == "OLD1"


def test_cli_run_prints_summary_with_request_count(sim, first_run, capsys):
    assert main([*sim.cli_args(), "census", "run", "--to", TODAY.isoformat()]) == 0
    out = capsys.readouterr().out
    assert f"studies: {len(first_run[1])} in rpacs" in out
    assert "C-FIND requests: " in out and f"minimum for a cap of {CAP}" in out
    assert main([*sim.cli_args(), "census", "status", "--json"]) == 0
    st = json.loads(capsys.readouterr().out)
    assert st["state"] == "done" and st["days_left"] == 0 and st["studies"] == len(first_run[1])
    assert (sim.cfg.log_dir / "census.log").read_text(encoding="utf-8").count("new study ") >= len(
        first_run[1]
    )


def test_pacs_stopped_mid_census_gives_a_clear_error_and_the_rerun_resumes(sim, first_run):
    _reset(sim.cfg)
    stopped = threading.Event()

    def stop_after_some(n, result):
        if n >= 8 and not stopped.is_set():
            stopped.set()
            sim.stack.orthanc_down("simulationPACS")

    try:
        with pytest.raises(CensusError) as exc:
            runner.run_census(sim.cfg, date_to=TODAY.isoformat(), on_query=stop_after_some)
        msg = str(exc.value)
        assert "simulationPACS" in msg and "failed 3 times" in msg and "to resume" in msg
        with closing(connect(sim.cfg)) as conn:
            st = runner.status(conn, sim.cfg)
            partial = len(store.snapshot(conn))
        assert st["state"] == "failed" and 0 < st["days_done"] < st["days_done"] + st["days_left"]
        resume_from = st["resume_from"]
    finally:
        sim.stack.orthanc_up("simulationPACS")
    assert partial < len(first_run[1])
    queried = []
    summary = runner.run_census(sim.cfg, date_to=TODAY.isoformat(), on_query=lambda n, r: queried.append(n))
    assert summary.resumed and summary.state == "done"
    with closing(connect(sim.cfg)) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT min(date_from) FROM rpacs.census_query WHERE run_id = %s AND status <> 'failed' AND id > "
            "(SELECT max(id) FROM rpacs.census_query WHERE status = 'failed')",
            (summary.run_id,),
        )
        assert cur.fetchone()[0].isoformat() >= resume_from
    assert _snapshot(sim.cfg) == first_run[1]


def test_rest_starts_the_census_on_a_worker_and_refuses_a_second_start(sim, first_run):
    base = f"{sim.cfg.research_node.http_url}/nmdose"
    for _ in range(50):
        if requests.get(f"{base}/health", timeout=5).json().get("status") == "ok":
            break
        time.sleep(0.2)
    r1 = requests.post(f"{base}/census", json={"to": TODAY.isoformat()}, timeout=10)
    r2 = requests.post(f"{base}/census", json={"to": TODAY.isoformat()}, timeout=10)
    assert r1.status_code == 202, r1.text
    assert r2.status_code == 409 and "already" in r2.json()["error"]
    st = None
    deadline = (
        time.monotonic() + 120
    )  # a loaded CI machine once needed more than 30 s; the outcome is the test
    while time.monotonic() < deadline:
        st = requests.get(f"{base}/census/status", timeout=5).json()
        if st["job"] and st["job"]["state"] in ("done", "failed"):
            break
        time.sleep(0.2)
    assert st["job"]["state"] == "done", st
    assert st["state"] == "done" and st["studies"] == len(first_run[1])
    descs = requests.get(f"{base}/census/descriptions", params={"new": "1"}, timeout=5).json()
    assert {d["description"] for d in descs} == set(LEFT_OUT_DESCRIPTIONS)


def test_accept_makes_new_descriptions_targets_and_edits_the_config(sim, first_run, capsys):
    desc = LEFT_OUT_DESCRIPTIONS[0]
    assert main([*sim.cli_args(), "census", "accept", desc, "--by", "pacsadmin", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    n = sum(s.description == desc for s in sim.manifest.studies)
    assert result["accepted"] == [desc] and result["studies_marked"] == n and result["by"] == "pacsadmin"
    assert desc in (sim.config_dir / "retrieve_options.yaml").read_text(encoding="utf-8")
    with closing(connect(sim.cfg)) as conn, conn.cursor() as cur:
        cur.execute("SELECT added_by, source FROM rpacs.description_rule WHERE description = %s", (desc,))
        assert cur.fetchone() == ("pacsadmin", "accepted")
        cur.execute("SELECT count(*) FROM rpacs.study WHERE is_target AND description = %s", (desc,))
        assert cur.fetchone()[0] == n
    assert main([*sim.cli_args(), "census", "accept", "No Such Exam"]) == 2
    assert "not found by the census" in capsys.readouterr().err
