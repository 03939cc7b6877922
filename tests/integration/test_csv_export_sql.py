"""Issue 19: the CT event CSV export is written by PostgreSQL (`export.sql_csv`, COPY with Python's text of each
value) instead of dicts and csv.writer; the bytes must stay those `to_csv` writes, for awkward values too."""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import math
import random
import struct
from types import SimpleNamespace

import pytest
from psycopg2 import sql

from nmdose.db import connect
from nmdose.web import pages, sql_dose
from nmdose.web.export import sql_csv, to_csv
from nmdose.web.router import Request, Router
from nmdose.web.sql_common import rows

pytestmark = pytest.mark.integration

PREFIX = "1.2.826.0.1.996."
FLOATS = [5.0, -3.0, 0.0, -0.0, 0.1, 1 / 3, 2.5e-4, 0.0001, 1e-05, 1.5e-07, 123456789.125, 12.5, 1e15, -1.5e15,
          1000000000000000.1, 9.999e15, 4503599627370495.5, 1e16, 1.2345e22, -1e-300, 5e-324, 1.7976931348623157e308,
          math.nan, math.inf, -math.inf, None]  # fmt: skip
TEXTS = ["", "plain", '=HYPERLINK("http://x")', "-neg", "+1", "@a", "\tTab", "\rCR", "a,b", 'q"uote', " lead",
         "trail ", "흉부 CT", "x\\y", "'already", None]  # fmt: skip
INTS = [0, -7, 2**31 - 1, None]
DATES = [dt.date(2024, 1, 31), dt.date(999, 12, 1), None]
BOOLS = [True, False, None]


def random_floats(n: int) -> list[float]:
    """Doubles of every magnitude from random bit patterns (finite ones), seeded."""
    rng, out = random.Random(19), []
    while len(out) < n:
        x = struct.unpack("<d", rng.getrandbits(64).to_bytes(8, "little"))[0]
        if math.isfinite(x):
            out.append(x)
        out.append(round(rng.uniform(0, 2000), rng.randint(0, 6)))  # dose-like values
    return out[:n]


def values_query(columns: list[tuple[str, str, list]]) -> tuple[sql.Composable, list]:
    """SELECT over a VALUES list: one row per position of the longest column (shorter ones padded with NULL)."""
    lists = [c[2] for c in columns]
    table = list(itertools.zip_longest(*lists))
    row = "(" + ", ".join(f"%s::{c[1]}" for c in columns) + ")"
    query = sql.SQL("SELECT * FROM (VALUES {}) v ({}) ORDER BY {}").format(
        sql.SQL(", ".join([row] * len(table))),
        sql.SQL(", ").join(sql.Identifier(c[0]) for c in columns),
        sql.SQL("1"),
    )
    return query, [v for r in table for v in r]


def csv_both(conn, query, params) -> tuple[str, str | None]:
    new = sql_csv(conn, query, params)
    return to_csv(rows(conn, query, params)), None if new is None else new.decode("utf-8-sig")


@pytest.fixture(scope="module")
def conn(stack):
    with contextlib.closing(connect(stack.cfg, role="web")) as c:
        yield c


def test_sql_csv_writes_what_to_csv_writes_for_awkward_values(conn):
    query, params = values_query([("n", "int", list(range(len(FLOATS) + 2000))),
                                  ("f", "float8", FLOATS + random_floats(2000)), ("t", "text", TEXTS),
                                  ("i", "int", INTS), ("d", "date", DATES), ("b", "boolean", BOOLS)])  # fmt: skip
    old, new = csv_both(conn, query, params)
    assert new == old
    lines = new.split("\r\n")
    assert lines[0] == "n,f,t,i,d,b" and len(lines) == 2 + len(FLOATS) + 2000
    assert lines[1] == "0,5.0,,0,2024-01-31,True"  # Python's 5.0, not PostgreSQL's 5; an empty text empty
    assert '\'=HYPERLINK(""http://x"")' in new and "1000000000000000.0" in new and ",nan," in new


def test_sql_csv_hands_back_what_it_cannot_match(conn):
    """A line break inside a value, a numeric or an array column: None (the caller writes them with to_csv);
    no rows: what to_csv writes for none (a bare line end)."""
    for columns in ([("t", "text", ["a\nb"])], [("x", "numeric", [1.5])], [("a", "text[]", [["x"]])]):
        query, params = values_query(columns)
        assert sql_csv(conn, query, params) is None, columns
    empty = sql.SQL("SELECT 1.0::float8 AS f WHERE false")
    assert sql_csv(conn, empty).decode("utf-8-sig") == to_csv([]) == "\r\n"


@pytest.fixture(scope="module")
def events(stack):
    """Two CT studies at station CSV-E2E: a spreadsheet formula as description, whole-number doses, a localizer
    with neither CTDIvol nor DLP, a description with a line break at station CSV-NL."""
    studies = [("CSV-E2E", "=SUM(A1)", [(10.0, 200.0, "Chest"), (None, None, "Scout")]),
               ("CSV-E2E", 'CT "chest", low dose', [(2.5, 81.25, "AC")]),
               ("CSV-NL", "two\nlines", [(3.0, 90.0, "AC")])]  # fmt: skip
    with contextlib.closing(connect(stack.cfg)) as c, c.cursor() as cur:
        for i, (station, desc, evs) in enumerate(studies):
            uid = f"{PREFIX}{i}"
            cur.execute(
                """INSERT INTO dose.study (study_instance_uid, study_date, study_year, study_description,
                   station_name, patient_age_years, patient_weight_kg, patient_sex, ct_event_count)
                   VALUES (%s, '2024-03-01', 2024, %s, %s, 61, 70.0, 'F', %s)""",
                (uid, desc, station, len(evs)),
            )
            for k, (ctdi, dlp, protocol) in enumerate(evs):
                cur.execute(
                    """INSERT INTO dose.ct_event (study_instance_uid, event_key, ordinal, study_date, study_year,
                       acquisition_protocol, ctdivol_mgy, dlp_mgycm, kvp)
                       VALUES (%s, %s, %s, '2024-03-01', 2024, %s, %s, %s, 120)""",
                    (uid, f"#{k}", k, protocol, ctdi, dlp),
                )
        c.commit()
    router = Router()
    pages.register_routes(router, SimpleNamespace(cfg=stack.cfg))
    yield SimpleNamespace(router=router, cfg=stack.cfg)
    with contextlib.closing(connect(stack.cfg)) as c, c.cursor() as cur:
        cur.execute("DELETE FROM dose.study WHERE study_instance_uid LIKE %s", (PREFIX + "%",))
        c.commit()


def export(events, **query) -> bytes:
    resp = events.router.dispatch(Request("GET", "/api/dose/ct-events", query={**query, "format": "csv"}))
    assert resp.status == 200, resp.body
    assert resp.content_type == "text/csv; charset=utf-8"
    assert (
        resp.headers["Content-Disposition"]
        == f'attachment; filename="ct-events_{query["station"].lower()}.csv"'
    )
    return resp.body


def test_the_ct_event_export_is_the_rows_as_to_csv_wrote_them(events, conn):
    f = {"station": "CSV-E2E"}
    body = export(events, **f)
    expected = to_csv(sql_dose.ct_events(conn, f, 100_000)).encode("utf-8-sig")
    assert body == expected and body.startswith(b"\xef\xbb\xbfstudy_instance_uid,study_date,")
    assert (
        sql_csv(conn, *sql_dose.ct_events_query(f, 100_000)) == body
    )  # written by PostgreSQL, not by to_csv
    text = body.decode("utf-8-sig")
    assert text.count("\r\n") == 4  # header and three events, the localizer among them
    assert ",'=SUM(A1)," in text and ',"CT ""chest"", low dose",' in text
    assert ",10.0,200.0," in text and ",120.0," in text and ",True," in text  # the localizer
    # a line break inside a value: the same bytes, written by to_csv
    nl = {"station": "CSV-NL"}
    assert sql_csv(conn, *sql_dose.ct_events_query(nl, 100_000)) is None
    assert export(events, **nl) == to_csv(sql_dose.ct_events(conn, nl, 100_000)).encode("utf-8-sig")
