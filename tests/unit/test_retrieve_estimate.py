"""The backfill estimate against a real PostgreSQL: pending census targets and queued retrievals per size class,
projected at the throughput of the studies moved so far, laid onto the calendar through the time window."""

from __future__ import annotations

import contextlib
import json
import shutil
from datetime import datetime, timedelta
from types import SimpleNamespace

import pytest

from nmdose.db import connect
from nmdose.retrieve import estimate as E
from nmdose.stack import Stack
from tests.support import load, make_config_dir, make_tempdir, scratch_database

pytestmark = pytest.mark.integration

T0 = datetime(2026, 6, 1, 20, 0).astimezone()  # a Monday evening


@pytest.fixture(scope="module")
def pg():
    root = make_tempdir("nmdose-estimate-")
    cfg_dir = make_config_dir(
        root,
        nodes={"simulationPACS": {"use_time_window": True}},  # as a clinical PACS would
        retrieve={"time_window": {"weekdays": "19:00-07:00", "weekends": "00:00-24:00"}},
    )
    stack = Stack(load(cfg_dir))
    stack.secure_var()
    stack.postgres_up()
    try:
        yield stack, cfg_dir
    finally:
        stack.postgres_down()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def db(pg):
    stack, _ = pg
    with scratch_database(stack.cfg, "estimate") as cfg:
        yield cfg


def fill(cfg, *, moved: list[tuple[int, float, float]], census: list[int], queued: list[int | None]) -> None:
    """`moved`: (instances, start offset s, seconds) of done retrievals; `census`: instance counts of target
    studies not queued; `queued`: expected instances of pending retrievals."""
    with contextlib.closing(connect(cfg)) as conn, conn.cursor() as cur:
        for i, (n, start, seconds) in enumerate(moved):
            uid = f"1.2.3.1.{i}"
            began = T0 - timedelta(hours=1) + timedelta(seconds=start)
            cur.execute(
                """INSERT INTO rpacs.retrieval (study_instance_uid, source_node, state, expected_instances,
                          received_instances, started_at, finished_at) VALUES (%s, 'simulationPACS', 'done', %s, %s, %s, %s)""",
                (uid, n, n, began, began + timedelta(seconds=seconds)),
            )
            cur.execute(
                "INSERT INTO rpacs.retrieval_event (study_instance_uid, step) VALUES (%s, 'done')", (uid,)
            )
        # found already complete: moved nothing, never counts as throughput
        cur.execute(
            """INSERT INTO rpacs.retrieval (study_instance_uid, source_node, state, received_instances, started_at,
                      finished_at) VALUES ('1.2.3.9', 'simulationPACS', 'done', 500, %s, %s)""",
            (T0 - timedelta(hours=2), T0 - timedelta(hours=2) + timedelta(seconds=999)),
        )
        cur.execute(
            "INSERT INTO rpacs.retrieval_event (study_instance_uid, step) VALUES ('1.2.3.9', 'skipped')"
        )
        for i, n in enumerate(census):
            cur.execute(
                """INSERT INTO rpacs.study (study_uid, source_node, instance_count, is_target)
                   VALUES (%s, 'simulationPACS', %s, true)""",
                (f"1.2.3.2.{i}", n),
            )
        cur.execute(
            "INSERT INTO rpacs.study (study_uid, source_node, instance_count, is_target) VALUES ('1.2.3.3', 'simulationPACS', 7, false)"
        )
        for i, n in enumerate(queued):
            cur.execute(
                """INSERT INTO rpacs.retrieval (study_instance_uid, source_node, expected_instances)
                   VALUES (%s, 'simulationPACS', %s)""",
                (f"1.2.3.4.{i}", n),
            )
        conn.commit()


def test_pure_parts():
    assert [E.size_class(n) for n in (None, 1, 49, 50, 499, 500, 4000)] == [
        "unknown", "small", "small", "medium", "medium", "large", "large"
    ]  # fmt: skip
    t = T0
    s = timedelta(seconds=1)
    assert E._union_seconds([(t, t + 10 * s), (t + 5 * s, t + 12 * s), (t + 20 * s, t + 21 * s)]) == 13.0


def test_nothing_moved_yet_says_why_the_estimate_is_unknown(db):
    fill(db, moved=[], census=[8, 9], queued=[])
    with contextlib.closing(connect(db)) as conn:
        est = E.estimate(conn, db, now=T0)
    assert est["pending_studies"] == 2 and est["retrieval_seconds"] is None and est["ends_at"] is None
    assert "no study has been moved yet" in est["why_unknown"]


def test_projection_per_size_class_at_the_measured_parallelism_through_the_window(db):
    # 4 small studies of 1 s each, two at a time (2 s of wall time), one large of 10 s alone: parallelism 14/12
    moved = [(10, 0, 1), (10, 0, 1), (10, 1, 1), (10, 1, 1), (800, 100, 10)]
    fill(db, moved=moved, census=[8] * 100 + [900] * 6, queued=[12, None])
    with contextlib.closing(connect(db)) as conn:
        est = E.estimate(conn, db, now=T0)
    by = {c["size_class"]: c for c in est["by_class"]}
    assert est["measured_studies"] == 5 and est["parallelism"] == pytest.approx(14 / 12, abs=0.01)
    assert by["small"]["pending_studies"] == 101 and by["small"]["measured_studies"] == 4
    assert by["small"]["seconds_per_study"] == pytest.approx(1 / (14 / 12), abs=0.001)
    assert by["large"]["pending_studies"] == 6 and by["large"]["seconds_per_study"] == pytest.approx(
        10 / (14 / 12), abs=0.001
    )
    assert by["unknown"]["pending_studies"] == 1  # a CSV row with no count: at the mean study
    assert est["pending_studies"] == 108 and est["failed_studies"] == 0
    total = sum(c["seconds"] for c in est["by_class"])
    assert est["retrieval_seconds"] == pytest.approx(total, abs=0.2)
    # Monday 20:00 is inside the weekday window 19:00-07:00: it ends the same evening
    assert est["ends_at"] == pytest.approx(T0 + timedelta(seconds=total), abs=timedelta(seconds=1))


def test_a_backfill_longer_than_the_night_waits_for_the_next_window(db):
    moved = [(10, i * 60.0, 60.0) for i in range(4)]  # one small study a minute, one at a time
    fill(db, moved=moved, census=[8] * 720, queued=[])  # 12 hours of work
    with contextlib.closing(connect(db)) as conn:
        est = E.estimate(conn, db, now=T0)
    assert est["retrieval_seconds"] == pytest.approx(720 * 60, rel=0.01)
    # 11 h tonight (20:00-07:00), the last hour from Tuesday 19:00
    assert est["ends_at"].astimezone() == pytest.approx(T0 + timedelta(days=1), abs=timedelta(minutes=16))


def test_the_command_line_prints_it(db, capsys):
    from nmdose.retrieve.cli import cmd_estimate

    fill(db, moved=[(10, 0, 1), (10, 1, 1)], census=[8] * 10, queued=[])
    ctx = SimpleNamespace(config=db)
    assert cmd_estimate(SimpleNamespace(json=True), ctx) == 0
    est = json.loads(capsys.readouterr().out)
    assert est["pending_studies"] == 10 and est["retrieval_seconds"] > 0
    assert cmd_estimate(SimpleNamespace(json=False), ctx) == 0
    out = capsys.readouterr().out
    assert "10 studies pending" in out and "small" in out and "ends" in out


def test_the_route_answers_the_same_json(db):
    from nmdose.retrieve import routes
    from nmdose.web.router import Request, Router

    fill(db, moved=[(10, 0, 1), (10, 1, 1)], census=[8] * 3, queued=[20])
    router = Router()
    routes.register_routes(router, SimpleNamespace(cfg=db))
    resp = router.dispatch(Request("GET", "/retrieve/estimate", query={}))
    assert resp.status == 200, resp.body
    est = json.loads(resp.body)
    assert est["pending_studies"] == 4 and est["measured_studies"] == 2
    assert {c["size_class"] for c in est["by_class"]} == {"small"}
    assert router.dispatch(Request("GET", "/retrieve/estimate", query={"x": "1"})).status == 400
