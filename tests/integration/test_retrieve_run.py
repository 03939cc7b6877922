"""The retrieval run on the real stack: queued studies end complete in the research PACS, faults are survived."""

import contextlib
import signal
import threading
import time
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest

from nmdose.cli import main
from nmdose.db import connect
from nmdose.pacs.orthanc_http import OrthancHttp
from nmdose.retrieve import runner
from nmdose.retrieve.mover import received_series
from nmdose.simulate import generate
from nmdose.simulate.upload import upload
from tests.support import RunningStack

pytestmark = pytest.mark.integration

FAST_RETRY = {
    "retry": {"max_attempts": 4, "backoff_s": 0.5, "backoff_max_s": 2},
    "concurrency": 2,
    "time_window": {"weekdays": "00:00-24:00", "weekends": "00:00-24:00"},
}


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    running = RunningStack(retrieve=FAST_RETRY)
    out = Path(tmp_path_factory.mktemp("sim"))
    manifest = generate(out, studies=16, years=2, seed=21, today=date(2026, 6, 30))
    upload(out, running.cfg.nodes["simulationPACS"], cfg=running.cfg)
    rest = OrthancHttp(running.cfg.research_node.http_url, name="researchPACS", timeout_s=60)
    yield running, manifest, rest
    running.close()


def targets(cfg, studies):
    return [runner.Target(s.study_uid, cfg.source_node.name, s.instances) for s in studies]


def queue(cfg, studies) -> int:
    with contextlib.closing(connect(cfg)) as conn:
        return runner.queue_studies(conn, targets(cfg, studies), max_attempts=4)


def states(cfg, uids) -> dict[str, str]:
    with contextlib.closing(connect(cfg)) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT study_instance_uid, state FROM rpacs.retrieval WHERE study_instance_uid = ANY(%s)",
            (list(uids),),
        )
        return dict(cur.fetchall())


def wait_done(cfg, uids, timeout_s=90):
    """Run the CLI path until every study is done or failed (plugin workers may take some of the jobs)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        runner.run(cfg)
        st = states(cfg, uids)
        if all(v in ("done", "failed") for v in st.values()):
            return st
        time.sleep(0.5)
    return states(cfg, uids)


def test_queued_studies_arrive_complete_and_requeueing_is_a_no_op(env):
    running, manifest, rest = env
    batch = manifest.studies[:5]
    assert queue(running.cfg, batch) == 5
    assert queue(running.cfg, batch) == 0
    st = wait_done(running.cfg, [s.study_uid for s in batch])
    assert set(st.values()) == {"done"}
    for s in batch:
        assert sum(received_series(rest, s.study_uid).values()) == s.instances
    with contextlib.closing(connect(running.cfg)) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT count(*) FROM rpacs.retrieval_event WHERE step IN ('done', 'skipped')"
            " AND study_instance_uid = ANY(%s)",
            ([s.study_uid for s in batch],),
        )
        assert cur.fetchone()[0] == 5


def test_dcmtk_backend_logs_every_study(env):
    running, manifest, rest = env
    batch = manifest.studies[5:7]
    with contextlib.closing(connect(running.cfg)) as conn:
        runner.queue_studies(
            conn,
            [
                runner.Target(s.study_uid, running.cfg.source_node.name, s.instances, backend="dcmtk")
                for s in batch
            ],
        )
    st = wait_done(running.cfg, [s.study_uid for s in batch])
    assert set(st.values()) == {"done"}
    logs = {p.stem: p for p in (running.cfg.log_dir / "retrieve").rglob("*.log")}
    for s in batch:
        assert "Completed Suboperations" in logs[s.study_uid].read_text()
    with contextlib.closing(connect(running.cfg)) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT DISTINCT backend FROM rpacs.retrieval_event WHERE step = 'move'"
            " AND study_instance_uid = ANY(%s)",
            ([s.study_uid for s in batch],),
        )
        assert cur.fetchall() == [("dcmtk",)]


def test_study_deleted_from_source_fails_with_reason_others_unaffected(env):
    running, manifest, rest = env
    gone, fine = manifest.studies[7], manifest.studies[8]
    sim = OrthancHttp(running.cfg.nodes["simulationPACS"].http_url, name="simulationPACS")
    (sid,) = sim.post("/tools/find", {"Level": "Study", "Query": {"StudyInstanceUID": gone.study_uid}})
    sim.delete(f"/studies/{sid}")
    queue(running.cfg, [gone, fine])
    st = wait_done(running.cfg, [gone.study_uid, fine.study_uid])
    assert st == {gone.study_uid: "failed", fine.study_uid: "done"}
    rows = {r["study_instance_uid"]: r for r in runner.studies(connect(running.cfg), "failed")}
    assert "has no study" in rows[gone.study_uid]["last_error"]


def test_source_down_backs_off_then_finishes_when_it_returns(env):
    running, manifest, rest = env
    batch = manifest.studies[9:11]
    running.stack.orthanc_down("simulationPACS")
    try:
        queue(running.cfg, batch)
        runner.run(running.cfg)
        st = states(running.cfg, [s.study_uid for s in batch])
        assert "done" not in st.values()
    finally:
        running.stack.orthanc_up("simulationPACS")
    with contextlib.closing(connect(running.cfg)) as conn:
        runner.retry(conn, ("failed",))  # those that used up their attempts while it was down
    st = wait_done(running.cfg, [s.study_uid for s in batch])
    assert set(st.values()) == {"done"}


def test_research_pacs_killed_during_retrieval_resumes_without_duplicates(env):
    running, manifest, rest = env
    batch = manifest.studies[11:16]
    queue(running.cfg, batch)
    worker = threading.Thread(target=lambda: runner.run(running.cfg))
    worker.start()
    deadline = time.monotonic() + 30
    while (
        time.monotonic() < deadline
        and "moving" not in states(running.cfg, [s.study_uid for s in batch]).values()
    ):
        time.sleep(0.02)
    running.stack.orthanc_down("researchPACS", sig=signal.SIGKILL)
    worker.join(120)
    running.stack.orthanc_up("researchPACS")
    with contextlib.closing(connect(running.cfg)) as conn:
        runner.retry(conn, ("failed", "partial"))
    st = wait_done(running.cfg, [s.study_uid for s in batch])
    assert set(st.values()) == {"done"}
    for s in batch:
        assert sum(received_series(rest, s.study_uid).values()) == s.instances


def test_outside_the_time_window_nothing_moves(tmp_path):
    later = (datetime.now() + timedelta(hours=12)).strftime("%H:%M")
    until = (datetime.now() + timedelta(hours=12, minutes=1)).strftime("%H:%M")
    closed = {**FAST_RETRY, "time_window": {"weekdays": f"{later}-{until}", "weekends": f"{later}-{until}"}}
    running = RunningStack(retrieve=closed, nodes={"simulationPACS": {"use_time_window": True}})
    try:
        out = tmp_path / "sim"
        manifest = generate(out, studies=2, years=1, seed=5, today=date(2026, 6, 30))
        upload(out, running.cfg.nodes["simulationPACS"], cfg=running.cfg)
        queue(running.cfg, manifest.studies)
        runner.run(running.cfg)
        uids = [s.study_uid for s in manifest.studies]
        assert set(states(running.cfg, uids).values()) <= {"pending", "moving"}
        with contextlib.closing(connect(running.cfg)) as conn, conn.cursor() as cur:
            cur.execute(
                "SELECT count(*), min(not_before) FROM jobs.queue WHERE kind = 'retrieve' AND attempts = 0"
            )
            waiting, not_before = cur.fetchone()
            cur.execute("SELECT count(*) FROM rpacs.retrieval_event WHERE step = 'defer'")
            assert cur.fetchone()[0] >= 2
        assert waiting == 2 and not_before > datetime.now().astimezone() + timedelta(hours=11)
        assert OrthancHttp(running.cfg.research_node.http_url).get("/statistics")["CountInstances"] == 0
    finally:
        running.close()


def test_retrieve_csv_cli_queues_and_retrieves(env, tmp_path, capsys):
    running, manifest, rest = env
    s = manifest.studies[0]
    csv = tmp_path / "acc.csv"
    csv.write_text(f"AccessionNumber,note\n{s.accession},a\nNOPE,b\n,empty\n")
    assert main([*running.cli_args(), "retrieve", "csv", str(csv), "--json"]) == 1  # one bad row
    out = capsys.readouterr().out
    assert '"no_match": [{"line": 3, "value": "NOPE"}]' in out and '"line": 4' in out
    assert main([*running.cli_args(), "retrieve", "status", "--json"]) == 0


def test_pipelined_run_keeps_to_the_sources_max_associations_and_records_every_step(env, tmp_path):
    """More workers than associations (the next study is claimed and checked while one moves): never more
    C-MOVEs at once than the node's `max_associations`, every study complete in the research PACS, each with its
    move, verify and done events (written in fewer transactions, none left out)."""
    import dataclasses

    from nmdose.retrieve import mover as mover_module

    running, _, rest = env
    out = tmp_path / "sim"
    extra = generate(out, studies=8, years=1, seed=22, today=date(2026, 6, 30))
    upload(out, running.cfg.nodes["simulationPACS"], cfg=running.cfg)
    source = running.cfg.nodes["simulationPACS"].model_copy(update={"max_associations": 1})
    cfg = dataclasses.replace(running.cfg, nodes={**running.cfg.nodes, "simulationPACS": source})
    assert runner.associations(cfg, "simulationPACS") == 1 and runner.pipeline_threads(cfg) == 4
    active, peak, lock = [0], [0], threading.Lock()
    real_move = mover_module.OrthancMover.move

    def counting_move(self, *a, **kw):
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        try:
            return real_move(self, *a, **kw)
        finally:
            with lock:
                active[0] -= 1

    uids = [s.study_uid for s in extra.studies]
    queue(cfg, extra.studies)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(mover_module.OrthancMover, "move", counting_move)
        st = wait_done(cfg, uids)
    assert set(st.values()) == {"done"} and peak[0] == 1
    for s in extra.studies:
        assert sum(received_series(rest, s.study_uid).values()) == s.instances
    with contextlib.closing(connect(cfg)) as conn, conn.cursor() as cur:
        cur.execute(
            """SELECT study_instance_uid, array_agg(step ORDER BY id) FROM rpacs.retrieval_event
                WHERE study_instance_uid = ANY(%s) GROUP BY 1""",
            (uids,),
        )
        steps = dict(cur.fetchall())
        cur.execute(
            """SELECT count(*) FROM rpacs.retrieval WHERE study_instance_uid = ANY(%s) AND state = 'done'
                  AND received_instances = expected_instances AND bytes_received > 0 AND finished_at > started_at""",
            (uids,),
        )
        assert cur.fetchone()[0] == len(uids)
    assert all(v == ["queued", "move", "verify", "done"] for v in steps.values()), steps
    # running it again moves nothing: every study is found complete and stays done, without a new event
    assert queue(cfg, extra.studies) == 0
    runner.run(cfg)
    assert set(states(cfg, uids).values()) == {"done"}
