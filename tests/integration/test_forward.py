"""Forwarding on the real stack: simulate → retrieve → stable → the dose PACS holds each study's dose objects
plus one image per image series; faults (dose PACS down, research PACS restarted) lose nothing; nothing is sent
twice; selective and auto_delete move / delete only what they should."""

import contextlib
import time
from datetime import date
from pathlib import Path

import pytest

from nmdose.cli import main
from nmdose.db import connect
from nmdose.pacs.orthanc_http import OrthancHttp
from nmdose.retrieve import runner as retrieve_runner
from nmdose.retrieve.mover import received_series
from nmdose.retrieve.selective import retrieve_selected
from nmdose.simulate import generate
from nmdose.simulate.upload import upload
from tests.support import RunningStack

pytestmark = pytest.mark.integration

STABLE_AGE_S = 4
SR_PREFIX = "1.2.840.10008.5.1.4.1.1.88."
RETRIEVE = {
    "retry": {"max_attempts": 4, "backoff_s": 0.5, "backoff_max_s": 2},
    "concurrency": 2,
    "time_window": {"weekdays": "00:00-24:00", "weekends": "00:00-24:00"},
    "transfer": {"strategy": "auto_delete", "retention_days": 0, "selective_destination": "dosePACS"},
}


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    running = RunningStack(
        retrieve=RETRIEVE, nodes={"researchPACS": {"orthanc_settings": {"StableAge": STABLE_AGE_S}}}
    )
    try:
        out = Path(tmp_path_factory.mktemp("sim"))
        manifest = generate(out, studies=20, years=2, seed=33, today=date(2026, 6, 30))
        upload(out, running.cfg.nodes["simulationPACS"], cfg=running.cfg)
        research = OrthancHttp(running.cfg.research_node.http_url, name="researchPACS", timeout_s=60)
        dose = OrthancHttp(running.cfg.dose_node.http_url, name="dosePACS", timeout_s=60)
        yield running, Batches(manifest), research, dose
    finally:
        running.close()


class Batches:
    """Disjoint groups of the manifest's studies, one per test; `first` holds the odd dose reports."""

    def __init__(self, manifest):
        odd = {
            manifest.mess["dose_report_in_enhanced_sr"][0],
            manifest.mess["rdsr_split_over_two_objects"][0],
        }
        rest = [s for s in manifest.studies if s.study_uid not in odd]
        self.first = [manifest.study(uid) for uid in sorted(odd)] + rest[:4]
        self.dose_down = rest[4:7]
        self.restart = rest[7]
        self.selective = next(s for s in rest[8:] if "PT" in s.modalities and len(s.dose_objects) == 2)


def retrieve(cfg, studies, timeout_s: float = 90) -> None:
    with contextlib.closing(connect(cfg)) as conn:
        retrieve_runner.queue_studies(
            conn, [retrieve_runner.Target(s.study_uid, cfg.source_node.name, s.instances) for s in studies]
        )
    uids = [s.study_uid for s in studies]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        retrieve_runner.run(cfg)
        with contextlib.closing(connect(cfg)) as conn, conn.cursor() as cur:
            cur.execute(
                "SELECT count(*) FROM rpacs.retrieval WHERE study_instance_uid = ANY(%s) AND state = 'done'",
                (uids,),
            )
            if cur.fetchone()[0] == len(uids):
                return
        time.sleep(0.3)
    raise AssertionError("retrieval did not finish")


def forward_states(cfg, uids) -> dict[str, str]:
    with contextlib.closing(connect(cfg)) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT study_instance_uid, state FROM rpacs.forward_study WHERE study_instance_uid = ANY(%s)",
            (list(uids),),
        )
        return dict(cur.fetchall())


def wait_forwarded(cfg, uids, timeout_s: float = 90) -> dict[str, str]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        st = forward_states(cfg, uids)
        if len(st) == len(uids) and set(st.values()) == {"done"}:
            return st
        time.sleep(0.3)
    return forward_states(cfg, uids)


def expected(study) -> tuple[set[str], int]:
    """(dose object SOPInstanceUIDs, number of image series) from the manifest."""
    images = sum(not s.sop_class_uid.startswith(SR_PREFIX) for s in study.series)
    return {d.sop_uid for d in study.dose_objects}, images


def held(rest: OrthancHttp, study_uid: str) -> dict[str, dict]:
    """SOPInstanceUID -> {series, sop_class, id} of what a PACS holds for a study."""
    result = {}
    for study_id in rest.post("/tools/find", {"Level": "Study", "Query": {"StudyInstanceUID": study_uid}}):
        for series in rest.get(f"/studies/{study_id}/series"):
            for instance in rest.get(f"/series/{series['ID']}/instances"):
                meta = rest.get(f"/instances/{instance['ID']}/metadata?expand")
                result[instance["MainDicomTags"]["SOPInstanceUID"]] = {
                    "series": series["MainDicomTags"]["SeriesInstanceUID"],
                    "modality": series["MainDicomTags"].get("Modality"),
                    "sop_class": meta.get("SopClassUid"),
                    "id": instance["ID"],
                }
    return result


def assert_dose_pacs_holds_exactly_the_selection(dose: OrthancHttp, study) -> None:
    dose_uids, image_series = expected(study)
    got = held(dose, study.study_uid)
    got_dose = {uid for uid, info in got.items() if info["sop_class"].startswith(SR_PREFIX)}
    samples = [info for info in got.values() if not info["sop_class"].startswith(SR_PREFIX)]
    assert got_dose == dose_uids, study.study_uid
    assert len(samples) == image_series, (study.study_uid, study.description)
    assert len({info["series"] for info in samples}) == image_series  # one per series
    for info in samples:
        if info["modality"] in ("PT", "NM"):  # the sample carries the administered radiopharmaceutical
            dose.get(f"/instances/{info['id']}/content/0054-0016")


def times_sent(cfg, uids) -> list[int]:
    with contextlib.closing(connect(cfg)) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT times_sent FROM rpacs.forwarded_instance WHERE study_instance_uid = ANY(%s)",
            (list(uids),),
        )
        return [r[0] for r in cur.fetchall()]


def test_every_retrieved_study_reaches_the_dose_pacs_as_dose_objects_plus_one_image_per_series(env):
    running, batches, research, dose = env
    batch = batches.first  # the Enhanced SR dose report and the RDSR split over two objects among them
    assert {d.kind for s in batch for d in s.dose_objects} >= {"ct_rdsr", "ct_esr"}
    retrieve(running.cfg, batch)
    assert set(wait_forwarded(running.cfg, [s.study_uid for s in batch]).values()) == {"done"}
    for s in batch:
        assert_dose_pacs_holds_exactly_the_selection(dose, s)
    assert set(times_sent(running.cfg, [s.study_uid for s in batch])) == {1}


def test_rerunning_never_sends_twice_unless_forced(env, capsys):
    running, batches, research, dose = env
    s = batches.first[0]
    before = dose.get("/statistics")["CountInstances"]
    assert main([*running.cli_args(), "forward", "study", s.study_uid, "--json"]) == 0
    assert '"sent": 0' in capsys.readouterr().out
    # the REST route and a second stable event go through the queue: still nothing sent again
    plugin = OrthancHttp(running.cfg.research_node.http_url + "/nmdose")
    assert plugin.post(f"/forward/studies/{s.study_uid}", {})["queued"] == s.study_uid
    time.sleep(2)
    assert wait_forwarded(running.cfg, [s.study_uid])[s.study_uid] == "done"
    assert set(times_sent(running.cfg, [s.study_uid])) == {1}
    assert dose.get("/statistics")["CountInstances"] == before
    assert main([*running.cli_args(), "forward", "study", s.study_uid, "--force", "--json"]) == 0
    assert set(times_sent(running.cfg, [s.study_uid])) == {2}
    status = plugin.get("/forward/status")
    assert status["by_state"].get("done", 0) >= 6
    assert main([*running.cli_args(), "forward", "status", "--json"]) == 0
    assert main([*running.cli_args(), "forward", "pending", "--json"]) == 0
    assert "[]" in capsys.readouterr().out  # nothing waiting


def test_dose_pacs_down_items_retry_and_all_arrive_when_it_returns(env):
    running, batches, research, dose = env
    batch = batches.dose_down
    uids = [s.study_uid for s in batch]
    running.stack.orthanc_down("dosePACS")
    try:
        retrieve(running.cfg, batch)
        deadline = time.monotonic() + 60
        failed_attempts = 0
        while time.monotonic() < deadline and failed_attempts < len(batch):
            with contextlib.closing(connect(running.cfg)) as conn, conn.cursor() as cur:
                cur.execute(
                    "SELECT count(DISTINCT study_instance_uid) FROM rpacs.forwarded_instance"
                    " WHERE study_instance_uid = ANY(%s) AND status = 'failed'",
                    (uids,),
                )
                failed_attempts = cur.fetchone()[0]
            time.sleep(0.5)
        assert failed_attempts == len(batch)
        assert "done" not in forward_states(running.cfg, uids).values()
    finally:
        running.stack.orthanc_up("dosePACS")
    assert set(wait_forwarded(running.cfg, uids).values()) == {"done"}
    for s in batch:
        assert_dose_pacs_holds_exactly_the_selection(dose, s)
    assert set(times_sent(running.cfg, uids)) == {1}


def test_research_pacs_restarted_before_the_study_became_stable_still_forwards(env):
    running, batches, research, dose = env
    s = batches.restart
    retrieve(running.cfg, [s])
    running.stack.orthanc_down("researchPACS")  # within StableAge of the last instance
    assert s.study_uid not in forward_states(running.cfg, [s.study_uid])
    running.stack.orthanc_up("researchPACS")
    assert wait_forwarded(running.cfg, [s.study_uid]) == {s.study_uid: "done"}
    assert_dose_pacs_holds_exactly_the_selection(dose, s)


def test_selective_moves_only_the_selected_instances_straight_to_the_dose_pacs(env):
    running, batches, research, dose = env
    s = batches.selective
    result = retrieve_selected(running.cfg, research, running.cfg.source_node, s.study_uid)
    print(f"selective {s.description}: {result.selected_instances}/{result.announced_instances} instances, "
          f"{result.bytes_moved} bytes moved")  # fmt: skip
    assert result.ok, result.error
    assert result.announced_instances == s.instances
    assert_dose_pacs_holds_exactly_the_selection(dose, s)
    assert held(research, s.study_uid) == {}  # nothing went through the research PACS
    assert result.bytes_moved and result.bytes_moved > 0
    assert forward_states(running.cfg, [s.study_uid]) == {s.study_uid: "done"}


def test_auto_delete_deletes_only_unselected_instances_and_keeps_protected_studies(env, capsys):
    running, batches, research, dose = env
    kept_whole, cleaned = batches.first[0], batches.first[1:]
    cli = running.cli_args()
    assert main([*cli, "forward", "protect", kept_whole.study_uid, "--reason", "teaching file"]) == 0
    assert main([*cli, "forward", "purge", "--json"]) == 0
    assert '"deleted_instances"' in capsys.readouterr().out
    assert sum(received_series(research, kept_whole.study_uid).values()) == kept_whole.instances
    with contextlib.closing(connect(running.cfg)) as conn, conn.cursor() as cur:
        for s in cleaned:
            dose_uids, image_series = expected(s)
            remaining = held(research, s.study_uid)
            assert len(remaining) == len(dose_uids) + image_series, s.study_uid
            assert dose_uids <= set(remaining)
            cur.execute(
                "SELECT count(*) FROM rpacs.deletion_log WHERE study_instance_uid = %s", (s.study_uid,)
            )
            assert cur.fetchone()[0] == s.instances - len(remaining)
        cur.execute(
            "SELECT count(*) FROM rpacs.deletion_log WHERE study_instance_uid = %s", (kept_whole.study_uid,)
        )
        assert cur.fetchone()[0] == 0
