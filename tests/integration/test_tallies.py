"""The tallies of sql/007_web.sql against a real PostgreSQL: after every kind of write to rpacs.study and
rpacs.retrieval (single or concurrent, committed or rolled back, before and after a fold, truncated), the sums of
rpacs.study_tally and rpacs.retrieval_tally equal a recount of rpacs.study joined to rpacs.retrieval, and
rpacs.study.retrieval_state equals the state of the study's retrieval; the census, retrieval and research answers
read from the tallies equal a direct recount of the same rows."""

from __future__ import annotations

import contextlib
import datetime as dt
import random
import threading
import time
from collections import Counter

import pytest
from psycopg2.extras import execute_values

from nmdose.census import descriptions, store
from nmdose.census import runner as census_runner
from nmdose.db import connect, queue
from nmdose.retrieve import runner as retrieve_runner
from nmdose.web import sql_research
from tests.support import scratch_database

pytestmark = pytest.mark.integration

STATES = ("pending", "moving", "verifying", "done", "partial", "failed")
DESCRIPTIONS = ("CT Chest", "PET-CT WB", "Bone scan", "")
FOUND = (["CT"], ["CT", "PT"], ["NM"], ["PT", "CT"], [], ["CT", "SR"])
INSERT_STUDY = """INSERT INTO rpacs.study (study_uid, source_node, study_date, description, modalities_found,
                                          modalities_corrected, correction_reason, patient_id, is_target)
                  VALUES %s"""


def study(i: int, prefix: str = "1.2.826.0.1.") -> tuple:
    """A census study: sources A/B/C, years 2020-2024 or no StudyDate, descriptions, modality sets, targets."""
    date = None if i % 11 == 0 else dt.date(2020 + i % 5, 1 + i % 12, 1 + i % 28)
    corrected = ["CT", "PT"] if i % 7 == 3 else None
    return (f"{prefix}{i}", "ABC"[i % 3], date, DESCRIPTIONS[i % 4], FOUND[i % len(FOUND)], corrected,
            "majority" if corrected else None, f"P{i}", i % 4 != 1)  # fmt: skip


@pytest.fixture
def cfg(stack):
    """The configuration of a freshly migrated scratch database of the session's PostgreSQL."""
    with scratch_database(stack.cfg, "tally") as scratch_cfg:
        yield scratch_cfg


def _key(row) -> tuple:
    return tuple(tuple(v) if isinstance(v, list) else v for v in row)


def tallies(conn) -> tuple[dict, dict]:
    """What the tallies hold: group -> studies, and state -> (studies, instances, bytes)."""
    with conn.cursor() as cur:
        cur.execute(
            """SELECT source_node, study_year, description, modalities_found, modalities_corrected, is_target,
                      retrieval_state, sum(studies)
                 FROM rpacs.study_tally GROUP BY 1, 2, 3, 4, 5, 6, 7 HAVING sum(studies) <> 0"""
        )
        studies = {_key(r[:7]): int(r[7]) for r in cur.fetchall()}
        cur.execute(
            """SELECT state, sum(studies), sum(instances), sum(bytes) FROM rpacs.retrieval_tally GROUP BY 1
               HAVING sum(studies) <> 0 OR sum(instances) <> 0 OR sum(bytes) <> 0"""
        )
        retrievals = {r[0]: (int(r[1]), int(r[2]), int(r[3])) for r in cur.fetchall()}
    return studies, retrievals


def recount(conn) -> tuple[dict, dict]:
    """The same from the base tables: rpacs.study joined to rpacs.retrieval (not the mirrored state)."""
    with conn.cursor() as cur:
        cur.execute(
            """SELECT s.source_node, extract(year FROM s.study_date)::int, s.description, s.modalities_found,
                      s.modalities_corrected, s.is_target, r.state, count(*)
                 FROM rpacs.study s LEFT JOIN rpacs.retrieval r ON r.study_instance_uid = s.study_uid
                GROUP BY 1, 2, 3, 4, 5, 6, 7"""
        )
        studies = {_key(r[:7]): int(r[7]) for r in cur.fetchall()}
        cur.execute(
            """SELECT state, count(*), coalesce(sum(received_instances), 0), coalesce(sum(bytes_received), 0)
                 FROM rpacs.retrieval GROUP BY state"""
        )
        retrievals = {r[0]: (int(r[1]), int(r[2]), int(r[3])) for r in cur.fetchall()}
    return studies, retrievals


def assert_exact(conn) -> tuple[dict, dict]:
    """The tallies equal a recount in this connection's snapshot; returns them."""
    got = tallies(conn)
    assert got == recount(conn)
    with conn.cursor() as cur:
        cur.execute(
            """SELECT count(*) FROM rpacs.study s LEFT JOIN rpacs.retrieval r ON r.study_instance_uid = s.study_uid
                WHERE s.retrieval_state IS DISTINCT FROM r.state"""
        )
        assert cur.fetchone()[0] == 0, "rpacs.study.retrieval_state differs from rpacs.retrieval.state"
    return got


def total(studies: dict) -> int:
    return sum(studies.values())


def tally_rows(conn, table: str) -> int:
    with conn.cursor() as cur:
        cur.execute(f"SELECT count(*) FROM rpacs.{table}")
        return cur.fetchone()[0]


def writes(conn, sequence: str) -> int:
    with conn.cursor() as cur:
        cur.execute(f"SELECT last_value FROM rpacs.{sequence}")
        return cur.fetchone()[0]


def test_tallies_equal_a_recount_after_every_kind_of_write(cfg):
    with contextlib.closing(connect(cfg)) as conn, conn.cursor() as cur:
        assert assert_exact(conn) == ({}, {})

        # studies as the census inserts them (one multi-row INSERT), a retrieval queued before its study was
        # seen (csv): the study takes the retrieval's state when inserted, one study with a NULL modality
        execute_values(cur, INSERT_STUDY, [study(i) for i in range(60)])
        cur.execute(
            """INSERT INTO rpacs.retrieval (study_instance_uid, source_node, origin, state, received_instances,
                                            bytes_received) VALUES ('9.9.1', 'B', 'csv', 'done', 40, 4000000)"""
        )
        conn.commit()
        cur.execute(
            """INSERT INTO rpacs.study (study_uid, source_node, study_date, description, modalities_found)
               VALUES ('9.9.1', 'B', '2023-05-01', 'CT Chest', '{CT}'), ('9.9.2', 'A', NULL, 'x', ARRAY[NULL]::text[])"""
        )
        conn.commit()
        studies, retrievals = assert_exact(conn)
        assert total(studies) == 62 and retrievals == {"done": (1, 40, 4_000_000)}
        assert studies[("B", 2023, "CT Chest", ("CT",), None, False, "done")] == 1
        assert studies[("A", None, "CT Chest", ("CT",), None, True, None)] == sum(
            1 for i in range(60) if i % 3 == 0 and i % 11 == 0 and i % 4 == 0 and i % 6 == 0 and i % 7 != 3
        )
        assert studies[("A", None, "x", (None,), None, False, None)] == 1

        # retrievals queued in one statement, then moved through their states one committed update at a time
        cur.execute(
            """INSERT INTO rpacs.retrieval (study_instance_uid, source_node)
               SELECT study_uid, source_node FROM rpacs.study WHERE is_target AND study_uid LIKE '1.2.%'"""
        )
        conn.commit()
        queued = sum(1 for i in range(60) if i % 4 != 1)
        assert assert_exact(conn)[1] == {"pending": (queued, 0, 0), "done": (1, 40, 4_000_000)}
        for n, uid in enumerate(f"1.2.826.0.1.{i}" for i in range(60) if i % 4 != 1):
            final = STATES[3:][n % 3]  # done, partial, failed
            for state in ("moving", "verifying", final) if n < 20 else ("moving",):
                cur.execute(
                    """UPDATE rpacs.retrieval SET state = %s, received_instances = %s, bytes_received = %s
                        WHERE study_instance_uid = %s""",
                    (state, n if state != "moving" else None, n * 1000 if state == "done" else None, uid),
                )
                conn.commit()
        cur.execute(  # the same state, other numbers
            "UPDATE rpacs.retrieval SET bytes_received = bytes_received + 7 WHERE state = 'done'"
        )
        conn.commit()
        retrievals = assert_exact(conn)[1]
        done = [n for n in range(20) if n % 3 == 0]
        assert retrievals["done"] == (len(done) + 1, sum(done) + 40, sum(done) * 1000 + 7 * (len(done) + 1)
                                      + 4_000_000)  # fmt: skip
        assert retrievals["moving"][0] == queued - 20

        # changes found by a census: descriptions, corrections set and cleared, targets, dates, sources
        cur.execute(
            "UPDATE rpacs.study SET description = 'CT Chest (new)' WHERE description = 'CT Chest' AND study_date < '2022-01-01'"
        )
        execute_values(
            cur,
            """UPDATE rpacs.study s SET modalities_corrected = v.c::text[], correction_reason = v.r
                 FROM (VALUES %s) AS v(c, r, uid) WHERE s.study_uid = v.uid""",
            [(["NM", "CT"], "rule", f"1.2.826.0.1.{i}") for i in range(0, 60, 5)]
            + [(None, None, f"1.2.826.0.1.{i}") for i in range(3, 60, 7) if i % 5],
        )
        assert store.set_targets(conn, ["PET-CT WB", "Bone scan"]) > 0
        cur.execute("UPDATE rpacs.study SET study_date = NULL WHERE study_uid = '1.2.826.0.1.2'")
        cur.execute("UPDATE rpacs.study SET study_date = '2019-12-31' WHERE study_uid = '1.2.826.0.1.3'")
        cur.execute("UPDATE rpacs.study SET source_node = 'D' WHERE study_uid IN ('1.2.826.0.1.4', '9.9.1')")
        cur.execute("UPDATE rpacs.study SET last_seen = now()")  # no group changes
        conn.commit()
        studies = assert_exact(conn)[0]
        assert total(studies) == 62
        assert sum(n for k, n in studies.items() if k[0] == "D") == 2
        assert sum(n for k, n in studies.items() if k[4] == ("NM", "CT")) == 12

        # deletions: retrievals, studies with and without a retrieval; a deleted study seen again takes the state
        # of the retrieval it left behind
        cur.execute(
            "DELETE FROM rpacs.retrieval WHERE study_instance_uid IN ('1.2.826.0.1.0', '1.2.826.0.1.2')"
        )
        cur.execute(
            "DELETE FROM rpacs.study WHERE study_uid IN ('1.2.826.0.1.5', '1.2.826.0.1.6', '1.2.826.0.1.1', '9.9.2')"
        )
        conn.commit()
        studies, retrievals = assert_exact(conn)
        assert total(studies) == 58
        cur.execute("SELECT state FROM rpacs.retrieval WHERE study_instance_uid = '1.2.826.0.1.6'")
        left = cur.fetchone()[0]
        execute_values(cur, INSERT_STUDY, [study(6)])
        conn.commit()
        studies, retrievals = assert_exact(conn)
        assert total(studies) == 59 and left == "partial"
        by_state = Counter()
        for k, n in studies.items():
            by_state[k[6]] += n
        # every retrieval has its study again (the deleted studies without a retrieval, 0 and 2 the reverse)
        assert {s: n for s, n in by_state.items() if s} == {s: v[0] for s, v in retrievals.items()}
        assert by_state[None] == 59 - sum(v[0] for v in retrievals.values())

        # writes rolled back change nothing, even seen from inside the transaction before the rollback
        before = tallies(conn)
        cur.execute("UPDATE rpacs.retrieval SET state = 'failed', received_instances = 1")
        cur.execute("UPDATE rpacs.study SET description = 'rolled back', is_target = NOT is_target")
        cur.execute("DELETE FROM rpacs.study WHERE study_uid LIKE '1.2.826.0.1.1%'")
        inside = assert_exact(conn)
        n_retrievals = sum(v[0] for v in before[1].values())
        assert n_retrievals == queued + 1 - 2
        assert inside[1] == {"failed": (n_retrievals, n_retrievals, sum(v[2] for v in before[1].values()))}
        assert total(inside[0]) < total(before[0])
        conn.rollback()
        assert assert_exact(conn) == before

        # more than 500 writes: each tally is folded on the way (its rows merged into one per group)
        start = writes(conn, "study_tally_writes"), writes(conn, "retrieval_tally_writes")
        uids = [f"1.2.826.0.1.{i}" for i in range(60) if i % 4 != 1 and i not in (0, 2)]
        for n in range(520):
            cur.execute(
                "UPDATE rpacs.retrieval SET state = %s, received_instances = %s WHERE study_instance_uid = %s",
                (STATES[n % 6], n, uids[n % len(uids)]),
            )
            if n % 50 == 49:
                conn.commit()
        conn.commit()
        end = writes(conn, "study_tally_writes"), writes(conn, "retrieval_tally_writes")
        assert end[0] // 500 > start[0] // 500 and end[1] // 500 > start[1] // 500
        assert tally_rows(conn, "retrieval_tally") < 2 * (end[1] % 500) + 2 * len(STATES)
        studies, retrievals = assert_exact(conn)
        # a fold forced now leaves exactly one row per group
        cur.execute(
            "SELECT setval('rpacs.study_tally_writes', 499), setval('rpacs.retrieval_tally_writes', 499)"
        )
        cur.execute("UPDATE rpacs.retrieval SET state = 'done' WHERE study_instance_uid = %s", (uids[0],))
        conn.commit()
        studies, retrievals = assert_exact(conn)
        assert tally_rows(conn, "study_tally") == len(studies)
        assert tally_rows(conn, "retrieval_tally") == len(retrievals)

        # truncating empties what they count
        cur.execute("TRUNCATE rpacs.retrieval CASCADE")
        conn.commit()
        studies, retrievals = assert_exact(conn)
        assert retrievals == {} and total(studies) == 59 and all(k[6] is None for k in studies)
        cur.execute("TRUNCATE rpacs.study CASCADE")
        conn.commit()
        assert assert_exact(conn) == ({}, {})
        execute_values(cur, INSERT_STUDY, [study(i) for i in range(5)])
        cur.execute(
            "INSERT INTO rpacs.retrieval (study_instance_uid, source_node) VALUES ('1.2.826.0.1.0', 'A')"
        )
        conn.commit()
        studies, retrievals = assert_exact(conn)
        assert total(studies) == 5 and retrievals == {"pending": (1, 0, 0)}


def _wait_blocked(admin, pid: int, thread: threading.Thread, timeout_s: float = 20) -> bool:
    """Wait until backend `pid` waits for a lock (True) or the thread has ended without waiting (False)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with admin.cursor() as cur:
            cur.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", (pid,))
            row = cur.fetchone()
        if row and row[0] == "Lock":
            return True
        if not thread.is_alive():
            return False
        time.sleep(0.02)
    raise AssertionError(f"backend {pid} neither waited nor finished within {timeout_s} s")


def _in_thread(conn, *statements: tuple[str, tuple]) -> tuple[threading.Thread, list[BaseException]]:
    """Run the statements on `conn` and commit, in a thread; exceptions are collected."""
    errors: list[BaseException] = []

    def run():
        try:
            with conn.cursor() as cur:
                for sql, params in statements:
                    cur.execute(sql, params)
            conn.commit()
        except BaseException as exc:  # reported by the test
            errors.append(exc)
            conn.rollback()

    thread = threading.Thread(target=run)
    thread.start()
    return thread, errors


def test_concurrent_writers_keep_the_tallies_exact(cfg):
    with (
        contextlib.closing(connect(cfg)) as one,
        contextlib.closing(connect(cfg)) as two,
        contextlib.closing(connect(cfg, autocommit=True)) as admin,
    ):
        with one.cursor() as cur:
            execute_values(cur, INSERT_STUDY, [study(i) for i in range(80)])
            cur.execute(
                """INSERT INTO rpacs.retrieval (study_instance_uid, source_node)
                   SELECT study_uid, source_node FROM rpacs.study WHERE is_target"""
            )
            # retrievals whose studies the census has not seen yet (queued from a CSV)
            cur.execute(
                """INSERT INTO rpacs.retrieval (study_instance_uid, source_node, origin)
                   SELECT '7.7.' || i, 'B', 'csv' FROM generate_series(0, 9) i"""
            )
        one.commit()
        assert_exact(one)
        pid_one, pid_two = one.get_backend_pid(), two.get_backend_pid()
        set_done = (
            "UPDATE rpacs.retrieval SET state = 'done', received_instances = 9 WHERE study_instance_uid = %s"
        )

        # a study changed while its retrieval's change is not committed: the update waits, then counts the
        # study with the new state
        with one.cursor() as cur:
            cur.execute(set_done, ("1.2.826.0.1.0",))
        thread, errors = _in_thread(
            two, ("UPDATE rpacs.study SET description = 'moved', is_target = false WHERE study_uid = %s",
                  ("1.2.826.0.1.0",)))  # fmt: skip
        assert _wait_blocked(admin, pid_two, thread)
        one.commit()
        thread.join()
        assert not errors
        assert_exact(one)

        # a retrieval changed while its study's change is not committed, which is then rolled back
        with two.cursor() as cur:
            cur.execute(
                "UPDATE rpacs.study SET description = 'never' WHERE study_uid = %s", ("1.2.826.0.1.2",)
            )
        thread, errors = _in_thread(one, (set_done, ("1.2.826.0.1.2",)))
        assert _wait_blocked(admin, pid_one, thread)
        two.rollback()
        thread.join()
        assert not errors
        assert_exact(two)

        # a study inserted while its retrieval's change is not committed takes the committed state ...
        with one.cursor() as cur:
            cur.execute(set_done, ("7.7.0",))
        thread, errors = _in_thread(two, (INSERT_STUDY.replace("%s", "(%s, 'B', NULL, 'csv', '{CT}', NULL, NULL, '', true)"),
                                          ("7.7.0",)))  # fmt: skip
        assert _wait_blocked(admin, pid_two, thread)  # for its retrieval (FOR SHARE in the insert trigger)
        one.commit()
        thread.join()
        assert not errors
        assert_exact(one)
        # ... and a retrieval changed while its study's insert is not committed waits for it
        with two.cursor() as cur:
            cur.execute(INSERT_STUDY.replace("%s", "(%s, 'B', NULL, 'csv', '{CT}', NULL, NULL, '', true)"),
                        ("7.7.1",))  # fmt: skip
        thread, errors = _in_thread(one, (set_done, ("7.7.1",)))
        assert _wait_blocked(admin, pid_one, thread)
        two.commit()
        thread.join()
        assert not errors
        studies, retrievals = assert_exact(one)
        assert sum(n for k, n in studies.items() if k[2] == "csv" and k[6] == "done") == 2

        # then both at once, folding on the way: a retrieval worker (one retrieval per transaction) and a
        # census (new studies, some of the CSV ones, changes and deletions of several studies per transaction)
        with one.cursor() as cur:
            cur.execute(
                "SELECT setval('rpacs.study_tally_writes', 450), setval('rpacs.retrieval_tally_writes', 450)"
            )
            cur.execute("SELECT study_instance_uid FROM rpacs.retrieval ORDER BY 1")
            retrieval_uids = [r[0] for r in cur.fetchall()]
        one.commit()
        errors = []

        def worker():
            rnd = random.Random(1)
            try:
                with one.cursor() as cur:
                    for n in range(300):
                        uid = rnd.choice(retrieval_uids)
                        if n % 31 == 30:  # removed and queued again
                            uid = f"1.2.826.0.1.{rnd.randrange(0, 80, 2)}"  # not a CSV one: its study may be inserted meanwhile
                            cur.execute("DELETE FROM rpacs.retrieval WHERE study_instance_uid = %s", (uid,))
                            cur.execute(
                                "INSERT INTO rpacs.retrieval (study_instance_uid, source_node) VALUES (%s, 'A')",
                                (uid,),
                            )
                        else:
                            cur.execute(
                                """UPDATE rpacs.retrieval SET state = %s, received_instances = %s,
                                          bytes_received = %s WHERE study_instance_uid = %s""",
                                (rnd.choice(STATES), rnd.randrange(100), rnd.randrange(10**9), uid),
                            )
                        if n % 9 == 4:
                            one.rollback()
                        else:
                            one.commit()
            except BaseException as exc:
                errors.append(exc)
                one.rollback()

        def census():
            rnd = random.Random(2)
            try:
                with two.cursor() as cur:
                    for n in range(100):
                        rows = [study(1000 + 3 * n + k) for k in range(1 + n % 3)]
                        if n % 10 == 3 and 2 + n // 10 < 10:
                            rows.append(
                                (f"7.7.{2 + n // 10}", "B", None, "csv", ["CT"], None, None, "", True)
                            )
                        execute_values(cur, INSERT_STUDY, rows)
                        some = [f"1.2.826.0.1.{rnd.randrange(80)}" for _ in range(5)]
                        cur.execute(
                            """UPDATE rpacs.study SET description = %s, is_target = NOT is_target,
                                      modalities_corrected = CASE WHEN modalities_corrected IS NULL THEN '{CT}'::text[] END
                                WHERE study_uid = ANY(%s)""",
                            (rnd.choice(DESCRIPTIONS), some),
                        )
                        if n % 10 == 7:
                            cur.execute("DELETE FROM rpacs.study WHERE study_uid = %s", (rnd.choice(some),))
                        if n % 7 == 6:
                            two.rollback()
                        else:
                            two.commit()
            except BaseException as exc:
                errors.append(exc)
                two.rollback()

        start = writes(admin, "study_tally_writes"), writes(admin, "retrieval_tally_writes")
        threads = [threading.Thread(target=worker), threading.Thread(target=census)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors
        end = writes(admin, "study_tally_writes"), writes(admin, "retrieval_tally_writes")
        assert end[0] // 500 > start[0] // 500 and end[1] // 500 > start[1] // 500  # both folded meanwhile
        with contextlib.closing(connect(cfg)) as three:
            studies, retrievals = assert_exact(three)
        assert total(studies) > 80 + 100 and sum(v[0] for v in retrievals.values()) == len(retrieval_uids)


def test_writers_of_several_studies_wait_for_each_other_instead_of_deadlocking(cfg):
    """The census changing studies and `retrieve` queueing some of them (each new retrieval then writes its study)
    would lock the same rpacs.study rows in different orders: the second waits for the first to commit."""
    with (
        contextlib.closing(connect(cfg)) as census,
        contextlib.closing(connect(cfg)) as retrieval,
        contextlib.closing(connect(cfg, autocommit=True)) as admin,
    ):
        with census.cursor() as cur:
            execute_values(cur, INSERT_STUDY, [study(i) for i in range(12)])
        census.commit()
        assert store.set_targets(census, ["CT Chest"]) > 0  # not committed yet
        queued: list[int] = []
        errors: list[BaseException] = []

        def queue_some():
            try:
                targets = [retrieve_runner.Target(f"1.2.826.0.1.{i}", "A") for i in (8, 4, 0, 11)]
                queued.append(retrieve_runner.queue_studies(retrieval, targets))
            except BaseException as exc:
                errors.append(exc)

        thread = threading.Thread(target=queue_some)
        thread.start()
        assert _wait_blocked(admin, retrieval.get_backend_pid(), thread)
        with admin.cursor() as cur:
            cur.execute(
                "SELECT wait_event FROM pg_stat_activity WHERE pid = %s", (retrieval.get_backend_pid(),)
            )
            assert cur.fetchone()[0] == "advisory"
        census.commit()
        thread.join()
        assert not errors and queued == [4]
        studies, retrievals = assert_exact(census)
        assert retrievals == {"pending": (4, 0, 0)}
        assert sum(n for k, n in studies.items() if k[5]) == sum(1 for i in range(12) if i % 4 == 0)


# ----- answers read from the tallies, against a recount of the rows

OLD_YEARLY = """SELECT extract(year FROM s.study_date)::int AS year, s.description,
                       array_to_string(coalesce(s.modalities_corrected, s.modalities_found), '\\') AS modalities,
                       CASE WHEN NOT s.is_target THEN 'not_target' WHEN r.state = 'done' THEN 'retrieved'
                            WHEN r.state IN ('failed', 'partial') THEN 'failed' ELSE 'pending' END AS state,
                       count(*)::int AS studies
                  FROM rpacs.study s LEFT JOIN rpacs.retrieval r ON r.study_instance_uid = s.study_uid
                  {where} GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4"""


def _fill_for_answers(conn) -> list[dict]:
    with conn.cursor() as cur:
        execute_values(cur, INSERT_STUDY, [study(i) for i in range(90)])
        cur.execute(
            """INSERT INTO rpacs.study (study_uid, source_node, study_date, description, modalities_found)
               VALUES ('9.9.2', 'A', '2021-03-04', 'Bone scan', ARRAY[NULL]::text[])"""
        )
        for i in range(0, 90, 2):
            state = STATES[(i // 2) % 6]
            cur.execute(
                """INSERT INTO rpacs.retrieval (study_instance_uid, source_node, state, received_instances,
                                                bytes_received) VALUES (%s, 'A', %s, %s, %s)""",
                (f"1.2.826.0.1.{i}", state, i if state != "pending" else None, i * 1000 if i % 3 else None),
            )
        for i in range(5):  # jobs of this kind and of another
            queue.enqueue(conn, "retrieve", f"1.2.826.0.1.{i}")
            queue.enqueue(conn, "forward", f"1.2.826.0.1.{i}")
        cur.execute("UPDATE jobs.queue SET state = 'done' WHERE kind = 'retrieve' AND key = '1.2.826.0.1.0'")
        # a few more writes after the first fold, so answers sum several rows per group
        cur.execute(
            "SELECT setval('rpacs.study_tally_writes', 499), setval('rpacs.retrieval_tally_writes', 499)"
        )
        cur.execute("UPDATE rpacs.study SET is_target = true WHERE study_uid = '1.2.826.0.1.1'")
        cur.execute("UPDATE rpacs.retrieval SET state = 'done' WHERE study_instance_uid = '1.2.826.0.1.4'")
        cur.execute("UPDATE rpacs.study SET description = 'CT Chest' WHERE study_uid = '1.2.826.0.1.2'")
        cur.execute(
            "UPDATE rpacs.study SET modalities_corrected = '{CT,PT}' WHERE study_uid IN ('1.2.826.0.1.5', '1.2.826.0.1.9')"
        )
        cur.execute(
            """SELECT s.source_node, s.study_date, s.description, s.modalities_found, s.modalities_corrected,
                      s.is_target, r.state FROM rpacs.study s LEFT JOIN rpacs.retrieval r ON r.study_instance_uid = s.study_uid"""
        )
        names = ("source", "date", "description", "found", "corrected", "target", "state")
        rows = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
    conn.commit()
    return rows


def _dicom(modalities: list) -> str:
    return "\\".join(m for m in modalities if m is not None)  # array_to_string skips NULL elements


def _shown_state(row: dict) -> str:
    if not row["target"]:
        return "not_target"
    return {"done": "retrieved", "failed": "failed", "partial": "failed"}.get(row["state"], "pending")


def test_research_census_and_retrieval_answers_equal_a_recount(cfg):
    with contextlib.closing(connect(cfg)) as conn:
        rows = _fill_for_answers(conn)
        assert tally_rows(conn, "study_tally") > len(tallies(conn)[0])  # groups summed over several rows
        assert_exact(conn)

        # research/yearly: the old query on the base tables, row for row, and a count in Python
        for f, where, params in (
            ({}, "", ()),
            ({"from_year": 2021, "to_year": 2022},
             "WHERE s.study_date >= make_date(%s, 1, 1) AND s.study_date < make_date(%s + 1, 1, 1)", (2021, 2022)),
            ({"from_year": 2024}, "WHERE s.study_date >= make_date(%s, 1, 1)", (2024,)),
        ):  # fmt: skip
            got = sql_research.research_yearly(conn, f)
            with conn.cursor() as cur:
                cur.execute(OLD_YEARLY.format(where=where), params)
                names = [c.name for c in cur.description]
                old = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
            conn.rollback()
            assert got == old
            counted = Counter(
                (r["date"].year if r["date"] else None, r["description"],
                 _dicom(r["corrected"] if r["corrected"] is not None else r["found"]), _shown_state(r))
                for r in rows
                if (r["date"] is None and not f) or (r["date"] and f.get("from_year", 0) <= r["date"].year
                                                     <= f.get("to_year", 9999))
            )  # fmt: skip
            assert {
                (r["year"], r["description"], r["modalities"], r["state"]): r["studies"] for r in got
            } == counted
        # several tally groups (sources, found or corrected set, no or a pending retrieval) make one row
        groups = Counter(
            (k[1], k[2], _dicom(k[4] if k[4] is not None else k[3]),
             _shown_state({"target": k[5], "state": k[6]})) for k in tallies(conn)[0]
        )  # fmt: skip
        assert max(groups.values()) > 1

        # census descriptions
        targets = descriptions.target_descriptions(conn, cfg)
        expected = {}
        for r in rows:
            d = expected.setdefault(r["description"], {
                "description": r["description"], "studies": 0, "first_date": None, "last_date": None,
                "modality_sets": Counter(), "corrected": 0, "target": r["description"] in targets,
                "new": r["description"] not in targets})  # fmt: skip
            d["studies"] += 1
            if r["date"]:
                d["first_date"] = min(filter(None, (d["first_date"], r["date"].isoformat())))
                d["last_date"] = max(filter(None, (d["last_date"], r["date"].isoformat())))
            d["modality_sets"][_dicom(r["found"]) or "(none)"] += 1
            d["corrected"] += r["corrected"] is not None
        for d in expected.values():
            d["modality_sets"] = dict(d["modality_sets"])
        want = sorted(expected.values(), key=lambda d: (-d["studies"], d["description"]))
        assert descriptions.list_descriptions(conn, cfg) == want
        assert descriptions.list_descriptions(conn, cfg, only_new=True) == [d for d in want if d["new"]]
        # found {} and {NULL} print alike: one modality set
        assert (
            expected["Bone scan"]["modality_sets"]["(none)"] == sum(1 for i in range(90) if i % 12 == 10) + 1
        )

        # census summary of each source node
        for node in ("A", "B"):
            with conn.cursor() as cur:
                cur.execute(
                    "INSERT INTO rpacs.census_run (source_node, date_to) VALUES (%s, '2025-01-01') RETURNING id",
                    (node,),
                )
                run_id = cur.fetchone()[0]
            conn.commit()
            summary = census_runner.build_summary(conn, cfg, run_id)
            mine = [r for r in rows if r["source"] == node]
            assert summary.studies_total == len(mine)
            assert summary.targets == sum(r["target"] for r in mine)
            assert summary.corrections == sum(r["corrected"] is not None for r in mine)
            by_modality = Counter(
                m for r in mine for m in (r["corrected"] if r["corrected"] is not None else r["found"])
            )
            assert summary.by_modality == dict(by_modality)
            assert list(summary.by_modality) == sorted(by_modality, key=lambda m: (m is None, m or ""))
        assert (
            None in census_runner.build_summary(conn, cfg, run_id - 1).by_modality
        )  # the NULL element of 9.9.2

        # retrieval status
        with conn.cursor() as cur:
            cur.execute("SELECT state, received_instances, bytes_received FROM rpacs.retrieval")
            retrievals = cur.fetchall()
        status = retrieve_runner.status(conn)
        assert status == {
            "studies": len(retrievals),
            "by_state": dict(Counter(r[0] for r in retrievals)),
            "instances_received": sum(r[1] or 0 for r in retrievals),
            "bytes_received": sum(r[2] or 0 for r in retrievals),
            "queue": {"pending": 4, "done": 1},
        }
        assert status["studies"] == 45 and status["bytes_received"] > 0
        assert status["by_state"]["done"] == sum(1 for i in range(0, 90, 2) if (i // 2) % 6 == 3) + 1
        assert queue.counts(conn) == {"forward": {"pending": 5}, "retrieve": {"done": 1, "pending": 4}}
        assert queue.counts(conn, "forward") == {"forward": {"pending": 5}}
