"""The research page's year x description grid, accepting new descriptions and the corrections' reasons (issue 19)
against a real PostgreSQL: every cell equals a count of rpacs.study in SQL; accepting writes rpacs.description_rule
with who, marks the studies, edits a copy of retrieve_options.yaml, refuses bad lists (400) and callers without
config:write (403), and is audited."""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import datetime as dt
import io
import json
import shutil
from types import SimpleNamespace

import openpyxl
import pytest

from nmdose.audit import routes as audit_routes
from nmdose.auth import KeycloakAuth
from nmdose.census import modalities as M
from nmdose.config import ModalityRule
from nmdose.db import connect
from nmdose.web import pages
from nmdose.web.router import Request, Router
from tests.support import scratch_database
from tests.unit.test_auth import accounts, issuer, realm_server, token  # noqa: F401 (fixtures)

pytestmark = pytest.mark.integration

NEW = ["Renal scan new", "=HYPERLINK(1) new"]  # found by the census, not targets
TARGETS = ["CT Chest", "PET-CT WB"]
# (description, year or None, modalities found, is_target, retrieval state or None) x count
STUDIES = [
    ("CT Chest", 2019, ["CT"], True, "done", 3),
    ("CT Chest", 2019, ["CT"], True, "failed", 1),
    ("CT Chest", 2022, ["CT"], True, None, 2),  # 2020 and 2021: empty years between
    ("PET-CT WB", 2021, ["CT", "PT"], True, "done", 4),
    ("PET-CT WB", 2021, ["CT"], True, "partial", 1),  # corrected to CT\PT by the majority
    ("PET-CT WB", 2022, ["CT", "PT", "SR"], True, "pending", 2),
    ("Renal scan new", 2020, ["NM"], False, None, 5),
    ("Renal scan new", None, ["NM"], False, None, 1),  # no StudyDate
    ("=HYPERLINK(1) new", 2022, ["NM"], False, None, 2),
    ("Bone rule", 2022, ["OT"], True, "done", 1),  # corrected to NM by a modality rule
]


@pytest.fixture(scope="module")
def data(stack, tmp_path_factory):
    config_dir = tmp_path_factory.mktemp("research_cfg")
    shutil.copy(stack.cfg.config_dir / "retrieve_options.yaml", config_dir / "retrieve_options.yaml")
    with scratch_database(stack.cfg, "research_page") as scratch:
        cfg = dataclasses.replace(scratch, config_dir=config_dir)
        found = [(d, m) for d, _y, m, _t, _s, n in STUDIES for _ in range(n)]
        rule = ModalityRule(pattern="^bone", modalities=["NM"])
        exps = M.expectations(found, [rule])
        with contextlib.closing(connect(cfg)) as conn, conn.cursor() as cur:
            i = 0
            for desc, year, mods, target, state, n in STUDIES:
                for _ in range(n):
                    i += 1
                    uid = f"1.2.826.0.1.77.{i}"
                    corrected, reason = M.correction(mods, exps[desc])
                    date = dt.date(year, 1 + i % 12, 1 + i % 28) if year else None
                    cur.execute(
                        """INSERT INTO rpacs.study (study_uid, source_node, study_date, description,
                           modalities_found, modalities_corrected, correction_reason, patient_id, is_target)
                           VALUES (%s, 'simulationPACS', %s, %s, %s, %s, %s, %s, %s)""",
                        (uid, date, desc, mods, corrected, reason, f"P{i}", target),
                    )
                    if state:
                        cur.execute(
                            "INSERT INTO rpacs.retrieval (study_instance_uid, source_node, state)"
                            " VALUES (%s, 'simulationPACS', %s)",
                            (uid, state),
                        )
            for desc in [*TARGETS, "Bone rule"]:
                cur.execute(
                    "INSERT INTO rpacs.description_rule (description, is_target, source) VALUES (%s, true, 'config')",
                    (desc,),
                )
            conn.commit()
        cfg = dataclasses.replace(
            cfg, retrieve=cfg.retrieve.model_copy(update={"target_descriptions": [*TARGETS, "Bone rule"]})
        )
        router = Router()  # dev mode: every permission
        pages.register_routes(router, SimpleNamespace(cfg=cfg))
        yield SimpleNamespace(cfg=cfg, router=router)


def _sql(cfg, query, params=()):
    with contextlib.closing(connect(cfg)) as conn, conn, conn.cursor() as cur:
        cur.execute(query, params)
        return cur.fetchall() if cur.description else None


def call(router, method, path, body=None, headers=None, **query):
    headers = {"content-type": "application/json", **(headers or {})}
    raw = json.dumps(body).encode() if body is not None else b""
    resp = router.dispatch(Request(method, path, query={k: str(v) for k, v in query.items()}, headers=headers,
                                   body=raw))  # fmt: skip
    return resp.status, json.loads(resp.body) if resp.content_type.startswith("application/json") else resp


# One cell straight from the base tables (not the tally the route reads): studies and studies per state.
CELL = """
SELECT count(*)::int,
       count(*) FILTER (WHERE s.is_target AND r.state = 'done')::int,
       count(*) FILTER (WHERE s.is_target AND (r.state IS NULL OR r.state NOT IN ('done', 'failed', 'partial')))::int,
       count(*) FILTER (WHERE s.is_target AND r.state IN ('failed', 'partial'))::int,
       count(*) FILTER (WHERE NOT s.is_target)::int
  FROM rpacs.study s LEFT JOIN rpacs.retrieval r ON r.study_instance_uid = s.study_uid
 WHERE s.description = %s AND array_to_string(coalesce(s.modalities_corrected, s.modalities_found), '\\') = %s
   AND extract(year FROM s.study_date) IS NOT DISTINCT FROM %s"""
KEYS = ("studies", "retrieved", "pending", "failed", "not_target")


def test_the_grid_has_every_year_and_its_cells_equal_the_database(data):
    status, got = call(data.router, "GET", "/api/research/grid")
    assert status == 200
    assert got["years"] == [2019, 2020, 2021, 2022]  # 2020 has studies of one row only; none is dropped
    rows = {(r["description"], r["modalities"]): r for r in got["rows"]}
    # the census corrected the one CT-only PET-CT to CT\PT and the bone scan's OT to NM
    assert set(rows) == {("CT Chest", "CT"), ("PET-CT WB", "CT\\PT"), ("PET-CT WB", "CT\\PT\\SR"),
                         ("Renal scan new", "NM"), (NEW[1], "NM"), ("Bone rule", "NM")}  # fmt: skip
    for (desc, mods), row in rows.items():
        for year in got["years"]:
            expected = dict(zip(KEYS, _sql(data.cfg, CELL, (desc, mods, year))[0], strict=True))
            assert row["cells"][str(year)] == expected, (desc, mods, year)
        assert row["no_date"] == dict(zip(KEYS, _sql(data.cfg, CELL, (desc, mods, None))[0], strict=True))
        total = _sql(data.cfg, "SELECT count(*) FROM rpacs.study WHERE description = %s AND array_to_string("
                     "coalesce(modalities_corrected, modalities_found), '\\') = %s", (desc, mods))[0][0]  # fmt: skip
        assert row["total"]["studies"] == total
    assert rows[("CT Chest", "CT")]["cells"]["2019"] == {
        "studies": 4, "retrieved": 3, "pending": 0, "failed": 1, "not_target": 0
    }  # fmt: skip
    assert rows[("Renal scan new", "NM")]["no_date"]["studies"] == 1
    totals = [r["total"]["studies"] for r in got["rows"]]
    assert totals == sorted(totals, reverse=True)  # by total, descending
    assert got["totals"]["total"]["studies"] == _sql(data.cfg, "SELECT count(*) FROM rpacs.study")[0][0]
    for year in got["years"]:
        n = _sql(
            data.cfg, "SELECT count(*) FROM rpacs.study WHERE extract(year FROM study_date) = %s", (year,)
        )
        assert got["totals"]["cells"][str(year)]["studies"] == n[0][0]
    # a year range: every year of it, even where nothing was found (2018)
    status, only = call(data.router, "GET", "/api/research/grid", from_year=2018, to_year=2020)
    assert only["years"] == [2018, 2019, 2020] and only["totals"]["cells"]["2018"]["studies"] == 0
    assert only["totals"]["total"]["studies"] == 4 + 5
    assert call(data.router, "GET", "/api/research/grid", from_year="20x")[0] == 400


def test_the_grid_exports_as_csv_and_xlsx_with_a_total_row(data):
    _, got = call(data.router, "GET", "/api/research/grid")
    _, resp = call(data.router, "GET", "/api/research/grid", format="csv")
    assert resp.content_type.startswith("text/csv")
    lines = list(csv.DictReader(io.StringIO(resp.body.decode("utf-8-sig"))))
    assert list(lines[0]) == ["description", "modalities", "2019", "2020", "2021", "2022", "no_date", "total",
                              "retrieved"]  # fmt: skip
    assert len(lines) == len(got["rows"]) + 1 and lines[-1]["description"] == "(total)"
    assert int(lines[-1]["total"]) == got["totals"]["total"]["studies"]
    chest = next(r for r in lines if r["description"] == "CT Chest")
    assert (chest["2019"], chest["2020"], chest["2022"], chest["retrieved"]) == ("4", "0", "2", "3")
    assert any(r["description"] == "'" + NEW[1] for r in lines)  # a formula-like description stays text
    _, resp = call(data.router, "GET", "/api/research/grid", format="xlsx")
    book = openpyxl.load_workbook(io.BytesIO(resp.body))
    cells = [[c.value for c in row] for ws in book.worksheets for row in ws.iter_rows()]
    assert ["CT Chest", "CT", 4, 0, 0, 2, 0, 6, 3] in cells


def test_corrections_carry_the_reason_as_a_code_and_the_census_text(data):
    status, got = call(data.router, "GET", "/api/research/corrections")
    assert status == 200
    by = {r["description"]: r for r in got["rows"]}
    pet, bone = by["PET-CT WB"], by["Bone rule"]
    assert pet["reason"] == {"code": "majority", "found": ["CT"], "expected": ["CT", "PT"], "agreeing": 6,
                             "studies": 7, "tie": False}  # fmt: skip
    assert pet["correction_reason"].startswith("ModalitiesInStudy CT lacks or adds")
    assert bone["reason"] == {"code": "rule", "found": ["OT"], "expected": ["NM"], "rule": "^bone"}
    _, resp = call(data.router, "GET", "/api/research/corrections", format="csv")
    lines = list(csv.DictReader(io.StringIO(resp.body.decode("utf-8-sig"))))
    assert "reason" not in lines[0] and lines[0]["correction_reason"].startswith("ModalitiesInStudy")


def test_bad_accept_requests_change_nothing(data):
    before = _sql(data.cfg, "SELECT description, source FROM rpacs.description_rule ORDER BY 1")
    yaml_before = (data.cfg.config_dir / "retrieve_options.yaml").read_text(encoding="utf-8")
    for body in ({"descriptions": []}, {"descriptions": ["No such exam", NEW[0]]}, {"descriptions": "x"},
                 {"descriptions": [1]}, {"other": 1}, None):  # fmt: skip
        status, answer = call(data.router, "POST", "/api/research/descriptions/accept", body)
        assert status == 400, (body, answer)
    status, answer = call(
        data.router, "POST", "/api/research/descriptions/accept", {"descriptions": ["No such exam"]}
    )
    assert "not found by the census" in answer["error"] and "No such exam" in answer["error"]
    assert _sql(data.cfg, "SELECT description, source FROM rpacs.description_rule ORDER BY 1") == before
    assert (data.cfg.config_dir / "retrieve_options.yaml").read_text(encoding="utf-8") == yaml_before
    assert _sql(
        data.cfg, "SELECT count(*) FROM rpacs.study WHERE is_target AND description = %s", (NEW[0],)
    ) == [(0,)]


def test_accept_needs_config_write_marks_the_studies_and_is_audited(data, issuer):  # noqa: F811
    router = Router(KeycloakAuth(accounts(issuer)))
    pages.register_routes(router, SimpleNamespace(cfg=data.cfg))
    plugin = SimpleNamespace(router=router, cfg=data.cfg)
    assert audit_routes.install(plugin)

    def as_(roles, body):
        headers = {"authorization": f"Bearer {token(issuer, roles=roles)}"}
        return call(router, "POST", "/api/research/descriptions/accept", body, headers)

    body = {"descriptions": [NEW[0]]}
    assert as_(["nmdose-technologist"], body)[0] == 403
    assert _sql(
        data.cfg, "SELECT count(*) FROM rpacs.description_rule WHERE description = %s", (NEW[0],)
    ) == [(0,)]
    status, answer = as_(["nmdose-physicist"], body)
    assert status == 200, answer
    n = sum(s[5] for s in STUDIES if s[0] == NEW[0])
    assert answer == {"accepted": [NEW[0]], "added_to_config": [NEW[0]], "config_error": None,
                      "studies_marked": n, "by": "kim"}  # fmt: skip
    assert _sql(data.cfg, "SELECT source, added_by FROM rpacs.description_rule WHERE description = %s",
                (NEW[0],)) == [("accepted", "kim")]  # fmt: skip
    assert _sql(
        data.cfg, "SELECT count(*) FROM rpacs.study WHERE is_target AND description = %s", (NEW[0],)
    ) == [(n,)]
    assert NEW[0] in (data.cfg.config_dir / "retrieve_options.yaml").read_text(encoding="utf-8")
    # no longer new; its studies are targets in the grid now (pending: not retrieved yet)
    _, new = call(data.router, "GET", "/api/research/descriptions/new")
    assert [r["description"] for r in new["rows"]] == [NEW[1]]
    _, grid = call(data.router, "GET", "/api/research/grid")
    renal = next(r for r in grid["rows"] if r["description"] == NEW[0])
    assert renal["total"]["not_target"] == 0 and renal["total"]["pending"] == n
    # again: idempotent (already in the file)
    status, again = as_(["nmdose-physicist"], body)
    assert status == 200 and again["added_to_config"] == [] and again["studies_marked"] == 0
    assert plugin.audit_writer.flush(20)
    plugin.audit_writer.stop()
    got = _sql(
        data.cfg,
        """SELECT status, outcome, actor_username, permission, method FROM audit.event
            WHERE action = '/api/research/descriptions/accept' ORDER BY id""",
    )
    assert got == [(403, "denied", "kim", "config:write", "POST"), (200, "success", "kim", "config:write", "POST"),
                   (200, "success", "kim", "config:write", "POST")]  # fmt: skip
    # the descriptions accepted are in the audit row (the body is never recorded); a refusal names none
    details = _sql(
        data.cfg,
        """SELECT detail->'accepted', detail->'accepted_total' FROM audit.event
            WHERE action = '/api/research/descriptions/accept' ORDER BY id""",
    )
    assert details == [(None, None), ([NEW[0]], 1), ([NEW[0]], 1)]


def test_accept_holds_in_the_database_when_the_config_file_cannot_be_written(data, tmp_path):
    """A read-only config/ (docker-compose.yml mounts it :ro): the acceptance is recorded and the studies
    marked; the answer says the file was not edited. (Tests run as root here, so the unwritable file is a
    folder of its name.)"""
    (tmp_path / "retrieve_options.yaml").mkdir()
    cfg = dataclasses.replace(data.cfg, config_dir=tmp_path)
    router = Router()
    pages.register_routes(router, SimpleNamespace(cfg=cfg))
    status, answer = call(router, "POST", "/api/research/descriptions/accept", {"descriptions": [NEW[1]]})
    assert status == 200, answer
    assert answer["added_to_config"] == [] and "not edited" in answer["config_error"]
    assert answer["studies_marked"] == 2 and answer["by"] == "dev"
    assert _sql(cfg, "SELECT source, added_by FROM rpacs.description_rule WHERE description = %s",
                (NEW[1],)) == [("accepted", "dev")]  # fmt: skip
