"""Standard names (issue 16 item 1) against a real PostgreSQL: rules imported from YAML named every existing
study, CT event and administration at once (scanner-specific over all-scanner, the field priority), again with
no change (idempotent), a new study as it is ingested, a deleted rule taken off; suggestions of the unmapped raw
values grouped by normalised form with counts and scanners; the routes, with config:write in keycloak mode;
grouping the dose statistics by standard name. Every number is known from the rows the test inserts."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import re
from types import SimpleNamespace

import pytest

from nmdose.auth import KeycloakAuth
from nmdose.db import connect
from nmdose.dose import standard_names as sn
from nmdose.web import pages
from nmdose.web.router import Request, Router
from tests.support import scratch_database
from tests.unit.test_auth import accounts, issuer, realm_server, token  # noqa: F401 (fixtures)

pytestmark = pytest.mark.integration

RULES_YAML = """\
standard_names:
  - standard_name: CT Chest
    field: study_description
    raw_values: [CT Chest, CHEST ROUTINE]
  - standard_name: CT Chest (scanner B)
    field: study_description
    scanner_id: {b}
    raw_values: [chest ct]
  - standard_name: CT Abdomen
    field: requested_procedure
    raw_values: [Abdomen CT]
  - standard_name: Chest helical
    field: acquisition_protocol
    raw_values: [Thorax 1.0 B31f]
  - standard_name: FDG PET
    field: agent
    raw_value: Fluorodeoxyglucose
"""

# uid -> (scanner, description, requested procedure, [(protocol, CTDIvol, DLP)], agent)
STUDIES = {
    "1.2.826.0.77.1": (
        "a",
        "CT Chest",
        None,
        [("Thorax 1.0 B31f", 10.0, 400.0), ("Topogram", None, 5.0)],
        None,
    ),
    "1.2.826.0.77.2": ("b", "흉부 CT", None, [("Chest routine", 20.0, 600.0)], None),
    "1.2.826.0.77.3": ("a", "CHEST ROUTINE", None, [("Thorax 1.0 B31f", 30.0, 800.0)], None),
    "1.2.826.0.77.4": ("b", "Abdomen", "CT 복부", [("Abd routine", 12.0, 500.0)], None),
    "1.2.826.0.77.5": ("a", "PET-CT WB", None, [], "Fluorodeoxyglucose"),
    "1.2.826.0.77.6": (None, "unknown thing", None, [], None),
    "1.2.826.0.77.7": ("a", "ct-chest", "Abdomen CT", [], None),  # the description comes first
}
EXPECTED = {
    "1.2.826.0.77.1": "CT Chest",
    "1.2.826.0.77.2": "CT Chest (scanner B)",  # 흉부 CT = chest ct; scanner B's own rule wins
    "1.2.826.0.77.3": "CT Chest",
    "1.2.826.0.77.4": "CT Abdomen",  # requested procedure CT 복부 = abdomen ct
    "1.2.826.0.77.5": "FDG PET",  # no description rule: the agent's
    "1.2.826.0.77.6": None,
    "1.2.826.0.77.7": "CT Chest",
}


def insert_study(cur, uid, scanner, desc, requested, events, agent, date=dt.date(2024, 5, 1)):
    cur.execute(
        """INSERT INTO dose.study (study_instance_uid, study_date, study_year, study_description, scanner_id,
               ct_event_count, ct_total_dlp_mgycm) VALUES (%s, %s, %s, %s, %s, %s, %s)""",
        (uid, date, date.year, desc, scanner, len(events), sum(e[2] for e in events) if events else None),
    )
    for i, (protocol, ctdivol, dlp) in enumerate(events):
        cur.execute(
            """INSERT INTO dose.ct_event (study_instance_uid, event_key, ordinal, study_date, study_year,
                   acquisition_protocol, ctdivol_mgy, dlp_mgycm) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)""",
            (uid, f"#{i}", i, date, date.year, protocol, ctdivol, dlp),
        )
    if requested:
        cur.execute(
            """INSERT INTO dose.series_protocol (study_instance_uid, series_instance_uid, modality,
                   requested_procedure) VALUES (%s, %s, 'CT', %s)""",
            (uid, uid + ".1", requested),
        )
    if agent:
        cur.execute(
            """INSERT INTO dose.radiopharmaceutical (study_instance_uid, administration_key, ordinal, source,
                   agent, activity_mbq, study_date, study_year) VALUES (%s, '#0', 0, 'rrdsr', %s, 300, %s, %s)""",
            (uid, agent, date, date.year),
        )


def scanner_ids(cur) -> dict[str, int]:
    """Two scanners: rows of dose.scanner when helper migration 016 made the table (foreign key), else ids."""
    cur.execute("SELECT to_regclass('dose.scanner') IS NOT NULL")
    if not cur.fetchone()[0]:
        return {"a": 1, "b": 2}
    out = {}
    for name in ("a", "b"):
        cur.execute(
            "INSERT INTO dose.scanner (identity_key, display_name) VALUES (%s, %s) RETURNING scanner_id",
            (f"station:test-{name}", f"Scanner {name.upper()}"),
        )
        out[name] = cur.fetchone()[0]
    return out


@pytest.fixture(scope="module")
def data(stack):
    with scratch_database(stack.cfg, "names") as cfg:
        with contextlib.closing(connect(cfg)) as conn, conn, conn.cursor() as cur:
            ids = scanner_ids(cur)
            for uid, (scanner, desc, requested, events, agent) in STUDIES.items():
                insert_study(cur, uid, ids.get(scanner), desc, requested, events, agent)
        router = Router()
        pages.register_routes(router, SimpleNamespace(cfg=cfg))
        yield SimpleNamespace(cfg=cfg, router=router, ids=ids)


def names(cfg, table="study", key="study_instance_uid"):
    with contextlib.closing(connect(cfg)) as conn, conn.cursor() as cur:
        cur.execute(f"SELECT {key}, standard_name FROM dose.{table} ORDER BY 1")
        return dict(cur.fetchall())


def call(router, method, path, body=None, headers=None, **query):
    h = {"content-type": "application/json", **(headers or {})}
    raw = json.dumps(body).encode() if body is not None else b""
    resp = router.dispatch(
        Request(method, path, query={k: str(v) for k, v in query.items()}, headers=h, body=raw)
    )
    ctype = resp.content_type or ""
    return resp.status, (json.loads(resp.body) if ctype.startswith("application/json") else resp)


def test_import_names_every_existing_row_then_applying_again_changes_nothing(data):
    yaml_text = RULES_YAML.format(b=data.ids["b"])
    status, body = call(data.router, "POST", "/api/names/import", {"format": "yaml", "text": yaml_text})
    assert status == 200, body
    assert (body["rules"], body["inserted"], body["updated"]) == (6, 6, 0)
    assert body["applied"]["studies"] == 6  # all but the unknown one
    assert names(data.cfg) == EXPECTED
    events = names(data.cfg, "ct_event", "study_instance_uid || event_key")
    assert events == {
        "1.2.826.0.77.1#0": "Chest helical",  # its protocol's rule
        "1.2.826.0.77.1#1": "CT Chest",  # Topogram: no rule, its study's name
        "1.2.826.0.77.2#0": "CT Chest (scanner B)",
        "1.2.826.0.77.3#0": "Chest helical",
        "1.2.826.0.77.4#0": "CT Abdomen",
    }
    assert names(data.cfg, "radiopharmaceutical") == {"1.2.826.0.77.5": "FDG PET"}
    # idempotent: the same file again, and apply again, write nothing
    status, body = call(data.router, "POST", "/api/names/import", {"format": "yaml", "text": yaml_text})
    assert (status, body["inserted"], body["updated"], body["unchanged"]) == (200, 0, 0, 6)
    assert body["applied"] == {"studies": 0, "ct_events": 0, "administrations": 0}
    status, body = call(data.router, "POST", "/api/names/apply", {})
    assert (status, body["applied"]) == (200, {"studies": 0, "ct_events": 0, "administrations": 0})
    assert names(data.cfg) == EXPECTED


def test_a_new_study_is_named_as_it_is_written_and_a_deleted_rule_is_taken_off(data):
    uid = "1.2.826.0.77.8"
    with contextlib.closing(connect(data.cfg)) as conn, conn, conn.cursor() as cur:
        insert_study(
            cur, uid, data.ids["b"], "ＣＴ　ＣＨＥＳＴ", None, [("Thorax 1.0 B31f", 9.0, 300.0)], None
        )
        sn.apply_to_study(cur, uid)  # the hook of dose/ingest.py's _recompute_study
    assert names(data.cfg)[uid] == "CT Chest (scanner B)"  # full-width, upper case: chest ct, scanner B
    assert names(data.cfg, "ct_event", "study_instance_uid || event_key")[uid + "#0"] == "Chest helical"
    status, body = call(data.router, "GET", "/api/names/rules")
    rule = next(r for r in body["rows"] if r["standard_name"] == "CT Chest (scanner B)")
    status, body = call(data.router, "DELETE", f"/api/names/rules/{rule['id']}")
    assert status == 200 and body["applied"]["studies"] == 2
    got = names(data.cfg)
    assert got[uid] == got["1.2.826.0.77.2"] == "CT Chest"  # the all-scanner rule now
    assert call(data.router, "DELETE", f"/api/names/rules/{rule['id']}")[0] == 404
    # put it back for the tests below
    status, body = call(
        data.router, "POST", "/api/names/rules",
        {"field": "study_description", "raw_value": "chest ct", "scanner_id": data.ids["b"],
         "standard_name": "CT Chest (scanner B)"},
    )  # fmt: skip
    assert status == 201 and body["applied"]["studies"] == 2
    with contextlib.closing(connect(data.cfg)) as conn, conn, conn.cursor() as cur:
        cur.execute("DELETE FROM dose.study WHERE study_instance_uid = %s", (uid,))


def test_ingest_names_each_study_it_writes(data, tmp_path):
    """Real synthetic dose objects through nmdose.dose.ingest: the study, its events and administration get their
    names in the ingest's transaction; ingesting the same files again leaves them."""
    from nmdose.dose.ingest import ingest_files
    from tests.support import pet_ct_dose_study

    status, _ = call(
        data.router, "POST", "/api/names/map",
        {"standard_name": "PET-CT WB", "items": [{"field": "study_description", "raw_value": "pet ct wb sn-test"}]},
    )  # fmt: skip
    assert status == 200
    study, files = pet_ct_dose_study(tmp_path / "s", events=2, description="PET/CT  WB  SN-Test")
    assert {o["status"] for o in ingest_files(data.cfg, files)} == {"ingested"}
    uid = study.study_instance_uid
    assert names(data.cfg)[uid] == "PET-CT WB"
    events = names(data.cfg, "ct_event", "study_instance_uid || '/' || event_key")
    assert sorted(v for k, v in events.items() if k.startswith(uid + "/")) == ["PET-CT WB", "PET-CT WB"]
    assert names(data.cfg, "radiopharmaceutical")[uid] == "PET-CT WB"
    assert {o["status"] for o in ingest_files(data.cfg, files)} == {"unchanged"}
    assert names(data.cfg)[uid] == "PET-CT WB"
    with contextlib.closing(connect(data.cfg)) as conn, conn, conn.cursor() as cur:
        cur.execute("DELETE FROM dose.object WHERE study_instance_uid = %s", (uid,))
        cur.execute("DELETE FROM dose.study WHERE study_instance_uid = %s", (uid,))
        cur.execute("DELETE FROM dose.standard_name_rule WHERE standard_name = 'PET-CT WB'")


def test_bad_rules_answer_400_409_and_change_nothing(data):
    before = call(data.router, "GET", "/api/names/rules")[1]["rows"]
    csv_text = "field,raw_value,scanner_id,standard_name\nstudy_description,CT Head,,CT Head\nprotocol,x,,y\n" \
               "agent,FDG,two,FDG\nstudy_description,---,,Nothing\n"  # fmt: skip
    status, body = call(data.router, "POST", "/api/names/import", {"format": "csv", "text": csv_text})
    assert status == 400 and body["errors"][0].startswith("line 3: field must be one of")
    assert [e.split(":")[0] for e in body["errors"]] == ["line 3", "line 4", "line 5"]
    assert "nothing imported" in body["error"]
    status, body = call(data.router, "POST", "/api/names/import", {"format": "yaml", "text": "- [1, 2"})
    assert status == 400 and body["errors"][0].startswith("line ")
    dup = {"field": "study_description", "raw_value": "CHEST  ct", "standard_name": "Other"}
    status, body = call(data.router, "POST", "/api/names/rules", dup)
    assert status == 409 and "exists already" in body["error"]  # `CHEST  ct` = `CT Chest`, all scanners
    assert call(data.router, "POST", "/api/names/rules", {"field": "x"})[0] == 400
    assert call(data.router, "POST", "/api/names/rules")[0] == 400  # no body
    assert call(data.router, "PUT", "/api/names/rules/abc", dup)[0] == 400
    assert call(data.router, "PUT", "/api/names/rules/999999", dup)[0] == 404
    assert call(data.router, "GET", "/api/names/rules")[1]["rows"] == before
    assert names(data.cfg) == EXPECTED


def test_suggestions_group_unmapped_values_by_normalised_form_with_counts_and_scanners(data):
    status, body = call(data.router, "GET", "/api/names/suggestions", field="acquisition_protocol")
    assert status == 200
    got = {r["normalised"]: r for r in body["rows"]}
    assert set(got) == {"chest routine", "topogram", "abdomen routine"}
    assert got["chest routine"]["raw_values"] == [{"raw_value": "Chest routine", "studies": 1}]
    assert got["chest routine"]["scanner_ids"] == [data.ids["b"]]
    status, body = call(data.router, "GET", "/api/names/suggestions")
    fields = {(r["field"], r["normalised"]) for r in body["rows"]}
    assert ("study_description", "thing unknown") in fields and ("study_description", "abdomen") in fields
    assert ("study_description", "chest ct") not in fields  # mapped
    # map two suggestions to one name at once: both studies/events are named
    status, body = call(
        data.router, "POST", "/api/names/map",
        {"standard_name": "CT Chest", "items": [{"field": "acquisition_protocol", "raw_value": "Chest routine"},
                                                {"field": "acquisition_protocol", "raw_value": "Abd routine"}]},
    )  # fmt: skip
    assert status == 200 and body["inserted"] == 2 and body["applied"]["ct_events"] == 2
    events = names(data.cfg, "ct_event", "study_instance_uid || event_key")
    assert events["1.2.826.0.77.2#0"] == events["1.2.826.0.77.4#0"] == "CT Chest"
    assert names(data.cfg) == EXPECTED  # a protocol's rule comes after the description's and requested's
    # the suggestions are kept per data and rules version: the mapped ones are gone at once
    status, body = call(data.router, "GET", "/api/names/suggestions", field="acquisition_protocol")
    assert {r["normalised"] for r in body["rows"]} == {"topogram"}
    status, body = call(data.router, "POST", "/api/names/map", {"standard_name": "", "items": [
        {"field": "agent", "raw_value": "x"}]})  # fmt: skip
    assert status == 400 and body["errors"] == ["item 1: standard_name is empty"]


def test_export_gives_back_what_import_reads(data):
    status, resp = call(data.router, "GET", "/api/names/export", format="yaml")
    assert status == 200 and "attachment" in resp.headers["Content-Disposition"]
    rules = sn.parse_yaml(resp.body.decode())
    status, resp = call(data.router, "GET", "/api/names/export")
    from_csv = sn.parse_csv(resp.body.decode())
    listed = call(data.router, "GET", "/api/names/rules")[1]["rows"]
    key = lambda r: (r.field, r.normalised, r.scanner_id or 0, r.standard_name)  # noqa: E731
    want = sorted((r["field"], r["normalised"], r["scanner_id"] or 0, r["standard_name"]) for r in listed)
    assert len(want) == 8
    assert sorted(map(key, rules)) == sorted(map(key, from_csv)) == want


def test_changes_need_config_write_in_keycloak_mode_and_are_audited(data, issuer):  # noqa: F811
    from nmdose.audit import routes as audit_routes

    router = Router(KeycloakAuth(accounts(issuer)))
    pages.register_routes(router, SimpleNamespace(cfg=data.cfg))
    plugin = SimpleNamespace(router=router, cfg=data.cfg)
    assert audit_routes.install(plugin)
    body = {"field": "agent", "raw_value": "Fluciclovine", "standard_name": "Fluciclovine PET"}

    def as_(roles, method, path, b=None):
        return call(router, method, path, b, {"authorization": f"Bearer {token(issuer, roles=roles)}"})

    assert as_(["nmdose-technologist"], "POST", "/api/names/rules", body)[0] == 403
    assert as_(["nmdose-technologist"], "GET", "/api/names/rules")[0] == 200  # dose:read
    assert call(router, "GET", "/api/names/rules")[0] == 401
    status, got = as_(["nmdose-physicist"], "POST", "/api/names/rules", body)
    assert status == 201 and got["rule"]["created_by"] == "kim"
    assert as_(["nmdose-physicist"], "DELETE", f"/api/names/rules/{got['rule']['id']}")[0] == 200
    assert plugin.audit_writer.flush(20)
    plugin.audit_writer.stop()
    with contextlib.closing(connect(data.cfg)) as conn, conn.cursor() as cur:
        cur.execute(
            """SELECT method, status, outcome, permission FROM audit.event
                WHERE action LIKE '/api/names/rules%%' ORDER BY id"""
        )
        got = cur.fetchall()
    assert got == [
        ("POST", 403, "denied", "config:write"),
        ("GET", 200, "success", "dose:read"),
        ("GET", 401, "denied", "dose:read"),
        ("POST", 201, "success", "config:write"),
        ("DELETE", 200, "success", "config:write"),
    ]


def test_statistics_box_plots_levels_and_outliers_group_by_standard_name(data):
    """After the tests above: CT Chest = studies 1 (DLP 405, mean CTDIvol 10) and 3 (800, 30); study 7 has no CT
    event. A level matched by standard name applies to its group only, and flags only its rows."""
    from nmdose.config import ReferenceLevel
    from nmdose.web import sql_dose, sql_levels

    status, body = call(data.router, "GET", "/api/dose/ct-protocols", group="standard_name")
    assert status == 200
    got = {r["standard_name"]: r for r in body["rows"]}
    assert set(got) == {"CT Chest", "CT Chest (scanner B)", "CT Abdomen"}
    assert (got["CT Chest"]["n"], got["CT Chest"]["dlp_median"]) == (2, pytest.approx(602.5))
    assert got["CT Chest"]["ctdivol_median"] == pytest.approx(20.0)
    assert got["CT Abdomen"]["dlp_median"] == pytest.approx(500.0)
    status, body = call(data.router, "GET", "/api/dose/activity", group="standard_name")
    assert [(r["standard_name"], r["n"]) for r in body["rows"]] == [("FDG PET", 1)]
    status, body = call(data.router, "GET", "/api/dose/effective-dose", group="standard_name")
    assert {r["standard_name"]: r["studies"] for r in body["rows"]} == {
        "": 1, "CT Abdomen": 1, "CT Chest": 3, "CT Chest (scanner B)": 1, "FDG PET": 1,
    }  # fmt: skip
    status, body = call(data.router, "GET", "/api/dose/ct-monthly", group="standard_name")
    assert [(r["month"], r["standard_name"], r["n"]) for r in body["rows"]] == [
        ("2024-05", "CT Chest", 2), ("2024-05", "CT Abdomen", 1), ("2024-05", "CT Chest (scanner B)", 1),
    ]  # fmt: skip
    status, resp = call(data.router, "GET", "/api/dose/ct-events", format="csv")
    assert status == 200 and b"standard_name" in resp.body and b"Chest helical" in resp.body
    study_level = ReferenceLevel(
        name="chest DLP", modality="CT", match={"standard_names": ["^CT Chest$"]}, quantity="dlp_mgycm",
        per="study", value=500, source="test level", year=2024, status="official",
    )  # fmt: skip
    event_level = ReferenceLevel(
        name="helical CTDIvol", modality="CT", match={"standard_names": ["^chest helical$"]},
        quantity="ctdivol_mgy", per="event", value=15, source="test level", year=2024, status="official",
    )  # fmt: skip
    levels = [study_level, event_level]
    with contextlib.closing(connect(data.cfg)) as conn:
        box = {r["standard_name"]: r for r in sql_dose.box(conn, {}, levels, "dlp", "standard_name")}
        assert (box["CT Chest"]["n"], box["CT Chest"]["median"]) == (2, pytest.approx(602.5))
        assert [lv["name"] for lv in box["CT Chest"]["levels"]] == ["chest DLP"]
        assert box["CT Chest (scanner B)"]["levels"] == box["CT Abdomen"]["levels"] == []
        out = sql_levels.outliers(conn, {"reason": "reference_level"}, levels, 100, factor=1.0)
    hits = sorted((r["kind"], r["study_instance_uid"], r["level_name"]) for r in out["rows"])
    assert hits == [
        ("ct_event", "1.2.826.0.77.3", "helical CTDIvol"),  # 30 > 15; study 1's helical event has 10
        (
            "ct_study",
            "1.2.826.0.77.3",
            "chest DLP",
        ),  # 800 > 500; 405 is below, scanner B's 600 is not CT Chest
    ]
    status, body = call(data.router, "GET", "/api/dose/box", measure="activity", group="standard_name")
    assert [(r["standard_name"], r["n"]) for r in body["rows"]] == [("FDG PET", 1)]


def test_the_command_line_imports_lists_exports_suggests_and_applies(data, tmp_path, capsys):
    """`nmdose names ...` (parsed by the real parser, run on the scratch database): the shipped example imports,
    a bad file imports nothing and names its lines (exit 1), the actions are in the audit trail."""
    from pathlib import Path

    from nmdose import cli

    def run(*argv):
        args = cli.build_parser().parse_args(["names", *argv])
        code = args.func(args, SimpleNamespace(config=data.cfg))
        out = capsys.readouterr()
        return code, out.out, out.err

    example = Path(__file__).resolve().parents[2] / "config" / "standard_names.example.yaml"
    code, out, _ = run("import", str(example))
    new, renamed = map(int, re.match(r"21 rules: (\d+) new, (\d+) renamed, 0 unchanged", out).groups())
    assert code == 0 and new + renamed == 21  # renamed: CT Chest and the FDG agent, when the tests above ran
    code, out, _ = run("import", str(example))
    assert code == 0 and "0 new, 0 renamed, 21 unchanged; renamed 0 studies" in out
    code, out, _ = run("list", "--json")
    listed = [json.loads(line) for line in out.splitlines()]
    assert {"PET-CT whole body FDG", "CT chest"} <= {r["standard_name"] for r in listed}
    code, out, _ = run("export", "--format", "yaml")
    assert code == 0 and len(sn.parse_yaml(out)) == len(listed)
    bad = tmp_path / "bad.csv"
    bad.write_text("field,raw_value,standard_name\nagent,FDG,\n", encoding="utf-8")
    code, out, err = run("import", str(bad))
    assert code == 1 and "nothing imported" in err and "line 2: standard_name is empty" in err
    code, out, _ = run("suggest", "--field", "study_description", "--json")
    assert code == 0 and all(json.loads(line)["field"] == "study_description" for line in out.splitlines())
    code, out, _ = run("apply")
    assert code == 0 and out.startswith("renamed 0 studies")
    from nmdose.audit import writer

    w = writer.for_config(data.cfg)  # the audit writer of the keycloak test above, if it ran
    assert w is None or w.flush(20)
    with contextlib.closing(connect(data.cfg)) as conn, conn, conn.cursor() as cur:
        cur.execute("SELECT action, rows_returned FROM audit.event WHERE action LIKE 'names %%' ORDER BY id")
        assert cur.fetchall() == [("names import", 21), ("names import", 21), ("names apply", None)]
        cur.execute("DELETE FROM dose.standard_name_rule WHERE created_by = 'cli'")
        sn.apply(cur)
