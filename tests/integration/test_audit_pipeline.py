"""The plugin's automatic actions on the real stack write audit rows (source `plugin`, user `nmdose`): a study
retrieved into the research PACS becomes stable and is forwarded by the plugin's worker ("study forwarded"), and
the plugin's daily auto_delete job deletes its unselected instances ("auto_delete purge")."""

from __future__ import annotations

import contextlib
import time
from datetime import date
from pathlib import Path

import pytest

from nmdose.db import connect
from nmdose.retrieve import runner as retrieve_runner
from nmdose.simulate import generate
from nmdose.simulate.upload import upload
from tests.support import RunningStack

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    running = RunningStack(
        retrieve={
            "retry": {"max_attempts": 3, "backoff_s": 0.5, "backoff_max_s": 2},
            "time_window": {"weekdays": "00:00-24:00", "weekends": "00:00-24:00"},
            "transfer": {"strategy": "auto_delete", "retention_days": 0, "selective_destination": "dosePACS"},
        },
        nodes={"researchPACS": {"orthanc_settings": {"StableAge": 2}}},
    )
    try:
        out = Path(tmp_path_factory.mktemp("sim"))
        manifest = generate(out, studies=6, years=1, seed=5, today=date(2026, 6, 30))
        upload(out, running.cfg.nodes["simulationPACS"], cfg=running.cfg)
        yield running, manifest
    finally:
        running.close()


def rows(cfg, action: str, uid: str) -> list[tuple]:
    with contextlib.closing(connect(cfg)) as conn, conn.cursor() as cur:
        cur.execute(
            """SELECT source, actor_username, rows_returned, status, outcome, params FROM audit.event
                WHERE action = %s AND study_uids @> ARRAY[%s]::text[] ORDER BY id""",
            (action, uid),
        )
        return cur.fetchall()


def wait(predicate, timeout_s: float = 90):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    return predicate()


def test_study_forwarded_and_auto_delete_are_recorded_as_plugin_actions(env):
    running, manifest = env
    cfg = running.cfg
    study = max(
        manifest.studies, key=lambda s: s.instances
    )  # images beyond the samples: auto_delete has work
    with contextlib.closing(connect(cfg)) as conn:
        retrieve_runner.queue_studies(conn, [retrieve_runner.Target(study.study_uid, cfg.source_node.name)])
    retrieve_runner.run(cfg)  # the command line's retrieval: the research PACS gets the study
    forwarded = wait(lambda: rows(cfg, "study forwarded", study.study_uid))
    assert len(forwarded) == 1, forwarded
    source, user, sent, status, outcome, params = forwarded[0]
    assert (source, user, status, outcome) == ("plugin", "nmdose", 0, "success")
    assert sent >= 1 and params["destination"] == "dosePACS"
    # the daily auto_delete job: make it due now (it first runs an hour after start) and let the workers take it
    with contextlib.closing(connect(cfg)) as conn, conn.cursor() as cur:
        cur.execute("UPDATE jobs.queue SET not_before = now() WHERE kind = 'forward_purge'")
        assert cur.rowcount == 1
        conn.commit()
    purged = wait(lambda: rows(cfg, "auto_delete purge", study.study_uid))
    assert len(purged) == 1, purged
    source, user, deleted, status, outcome, _params = purged[0]
    assert (source, user, outcome) == ("plugin", "nmdose", "success") and deleted >= 1
    with contextlib.closing(connect(cfg)) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT count(*) FROM rpacs.deletion_log WHERE study_instance_uid = %s", (study.study_uid,)
        )
        assert cur.fetchone()[0] == deleted  # the row counts what was really deleted
