"""Patient cumulative dose (issue 16 item 4) against a real PostgreSQL: the patients over a threshold in a rolling
window, one patient's timeline, and re-identification through the census only with `patient:reidentify`, audited.
Every number is known from the rows the test inserts."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
from types import SimpleNamespace

import pytest

from nmdose.audit import routes as audit_routes
from nmdose.auth import KeycloakAuth
from nmdose.db import connect
from nmdose.secrets import patient_pseudonym, pseudonym_key
from nmdose.web import pages
from nmdose.web.router import Request, Router
from tests.support import scratch_database
from tests.unit.test_auth import accounts, issuer, realm_server, token  # noqa: F401 (fixtures)

pytestmark = pytest.mark.integration

# (patient, uid, date, description, CT E, NM E, stored total, census PatientID or None: not in the census)
STUDIES = [
    ("PA", "1.2.826.0.9.1", dt.date(2023, 1, 10), "PET-CT WB", 10.0, 20.0, 30.0, "PA"),
    ("PA", "1.2.826.0.9.2", dt.date(2023, 6, 1), "CT Chest", 25.0, None, 25.0, "PA"),
    ("PA", "1.2.826.0.9.3", dt.date(2024, 3, 1), "PET-CT WB", 15.0, 25.0, 40.0, "PX"),  # census disagrees
    ("PA", "1.2.826.0.9.4", dt.date(2024, 4, 1), "PET-CT WB", 5.0, None, 5.0, None),  # NM part missing
    ("PB", "1.2.826.0.9.5", dt.date(2022, 1, 1), "CT Abdomen", 45.0, None, 45.0, "PB"),
    ("PB", "1.2.826.0.9.6", dt.date(2024, 6, 1), "CT Abdomen", 45.0, None, 45.0, "PB"),
    ("PC", "1.2.826.0.9.7", dt.date(2024, 1, 1), "CT Chest", 30.0, None, 30.0, "PC"),
    (
        "PC",
        "1.2.826.0.9.9",
        dt.date(2024, 1, 1),
        "CT Abdomen",
        30.0,
        None,
        30.0,
        "PC",
    ),  # same day: counted once
    ("", "1.2.826.0.9.8", dt.date(2024, 1, 2), "CT Chest", 99.0, None, 99.0, None),  # no PatientID
]


@pytest.fixture(scope="module")
def data(stack):
    with scratch_database(stack.cfg, "patients") as cfg:
        key = pseudonym_key(cfg)
        with contextlib.closing(connect(cfg)) as conn, conn, conn.cursor() as cur:
            for pid, uid, date, desc, ct, nm, total, census in STUDIES:
                cur.execute(
                    """INSERT INTO dose.study (study_instance_uid, study_date, study_year, study_description,
                           patient_pseudonym, ct_event_count, ct_effective_dose_msv, nm_effective_dose_msv,
                           total_effective_dose_msv) VALUES (%s, %s, %s, %s, %s, 1, %s, %s, %s)""",
                    (uid, date, date.year, desc, patient_pseudonym(key, pid), ct, nm, total),
                )
                if nm is not None:
                    cur.execute(
                        """INSERT INTO dose.radiopharmaceutical (study_instance_uid, administration_key, ordinal,
                               source, effective_dose_msv) VALUES (%s, '#0', 0, 'rrdsr', %s)""",
                        (uid, nm),
                    )
                if "PET" in desc:
                    cur.execute(
                        """INSERT INTO dose.series_protocol (study_instance_uid, series_instance_uid, modality)
                           VALUES (%s, %s, 'PT')""",
                        (uid, uid + ".1"),
                    )
                if census is not None:
                    cur.execute(
                        """INSERT INTO rpacs.study (study_uid, source_node, study_date, description, patient_id)
                           VALUES (%s, 'simulationPACS', %s, %s, %s)""",
                        (uid, date, desc, census),
                    )
        router = Router()
        pages.register_routes(router, SimpleNamespace(cfg=cfg))
        yield SimpleNamespace(
            cfg=cfg, router=router, p={pid: patient_pseudonym(key, pid) for pid in ["PA", "PB", "PC"]}
        )


def get(router, path, **query):
    resp = router.dispatch(Request("GET", path, query={k: str(v) for k, v in query.items()}))
    return resp.status, (json.loads(resp.body) if resp.content_type.startswith("application/json") else resp)


def test_patients_over_the_threshold_in_a_rolling_year(data):
    status, body = get(data.router, "/api/dose/patients")
    assert status == 200
    assert (body["window_years"], body["threshold_msv"]) == (1, 50.0)
    assert body["studies_without_patient_key"] == 1 and body["total"] == body["count"] == 2
    a, c = body["rows"]
    assert (a["pseudonym"], c["pseudonym"]) == (data.p["PA"], data.p["PC"])
    # PA: windows ending at each study hold 30, 55, 65 (2023-06-01 + 2024-03-01) and 65 + the unknown total
    assert a["cumulative_msv"] == pytest.approx(65.0)
    assert (a["window_start"], a["window_end"]) == (
        dt.date(2023, 6, 1).isoformat(),
        dt.date(2024, 4, 1).isoformat(),
    )
    assert (a["window_studies"], a["window_studies_without_total"], a["incomplete"]) == (3, 1, True)
    assert (a["studies"], a["studies_without_total"], a["all_time_msv"]) == (4, 1, pytest.approx(95.0))
    assert c["cumulative_msv"] == pytest.approx(60.0) and c["incomplete"] is False
    assert (c["window_studies"], c["studies"]) == (2, 2)  # two studies on one day: one window, each once
    # five years: 100 mSv by default (nobody), or a threshold given
    status, body = get(data.router, "/api/dose/patients", window_years=5)
    assert (status, body["threshold_msv"], body["rows"]) == (200, 100.0, [])
    status, body = get(data.router, "/api/dose/patients", window_years=5, threshold_msv=80)
    assert [(r["pseudonym"], r["cumulative_msv"]) for r in body["rows"]] == [
        (data.p["PA"], pytest.approx(95.0)), (data.p["PB"], pytest.approx(90.0))
    ]  # fmt: skip
    status, body = get(data.router, "/api/dose/patients", threshold_msv=0, limit=1)
    assert body["count"] == 1 and body["total"] == 3
    assert get(data.router, "/api/dose/patients", window_years=0)[0] == 400


def test_a_patients_timeline(data):
    status, body = get(data.router, f"/api/dose/patients/{data.p['PA']}")
    assert status == 200 and body["pseudonym"] == data.p["PA"]
    rows = body["rows"]
    assert [r["study_instance_uid"] for r in rows] == [s[1] for s in STUDIES[:4]]
    assert [r["total_msv"] for r in rows] == [30.0, 25.0, 40.0, None]
    assert [r["total_unknown"] for r in rows] == [False, False, False, True]
    assert rows[3]["nm_part_missing"] is True and rows[3]["ct_msv"] == 5.0
    assert [r["running_msv"] for r in rows] == pytest.approx([30.0, 55.0, 95.0, 95.0])
    assert [r["window_msv"] for r in rows] == pytest.approx([30.0, 55.0, 65.0, 65.0])
    assert [r["modality"] for r in rows] == ["CT/PT", "CT", "CT/PT", "CT/PT"]
    csv = get(data.router, f"/api/dose/patients/{data.p['PA']}", format="csv")[1]
    assert csv.status == 200 and b"running_msv" in csv.body
    assert get(data.router, "/api/dose/patients/p1:" + "0" * 32)[0] == 404
    assert get(data.router, "/api/dose/patients/PA")[0] == 400  # a PatientID is not a pseudonym


def test_reidentification_needs_the_permission_and_is_audited(data, issuer):  # noqa: F811
    router = Router(KeycloakAuth(accounts(issuer)))
    pages.register_routes(router, SimpleNamespace(cfg=data.cfg))
    plugin = SimpleNamespace(router=router, cfg=data.cfg)
    assert audit_routes.install(plugin)
    path = f"/api/patients/{data.p['PA']}/identity"

    def call(roles, **query):
        headers = {"authorization": f"Bearer {token(issuer, roles=roles)}"}
        resp = router.dispatch(Request("GET", path, query=query, headers=headers))
        return resp.status, json.loads(resp.body)

    assert call(["nmdose-physicist"], reason="dose review")[0] == 403
    status, body = call(["nmdose-admin"], reason="dose review")
    assert status == 200 and body["patient_ids"] == ["PA"]
    assert [(r["study_instance_uid"], r["patient_id"], r["in_census"], r["matches_pseudonym"]) for r in body["rows"]] == [
        ("1.2.826.0.9.1", "PA", True, True),
        ("1.2.826.0.9.2", "PA", True, True),
        ("1.2.826.0.9.3", "PX", True, False),
        ("1.2.826.0.9.4", None, False, False),
    ]  # fmt: skip
    assert call(["nmdose-admin"])[0] == 400  # a reason is required
    assert plugin.audit_writer.flush(20)
    plugin.audit_writer.stop()
    with contextlib.closing(connect(data.cfg)) as conn, conn.cursor() as cur:
        cur.execute(
            """SELECT status, outcome, actor_username, permission, params, study_uids FROM audit.event
                WHERE action = '/api/patients/{name}/identity' ORDER BY id"""
        )
        got = cur.fetchall()
    assert [(s, o, u, p) for s, o, u, p, _params, _uids in got] == [
        (403, "denied", "kim", "patient:reidentify"),
        (200, "success", "kim", "patient:reidentify"),
        (400, "failure", "kim", "patient:reidentify"),
    ]
    params, uids = got[1][4], got[1][5]
    assert params.get("name") == data.p["PA"] and params.get("reason") == "dose review"
    assert sorted(uids) == [s[1] for s in STUDIES[:4]]


def test_the_patients_page_lists_a_patient_and_shows_the_timeline_in_both_languages(stack, tmp_path):
    """The page through the research Orthanc in headless Chromium: two ingested studies of one patient appear
    under their pseudonym (never the PatientID); a click shows the timeline; the Korean toggle relabels it."""
    from pydicom.uid import generate_uid

    from nmdose.dose.ingest import ingest_files
    from tests.e2e import chromium
    from tests.integration.test_dose_ingest import _study_of

    if not (chromium.CHROMIUM and chromium.CHROMEDRIVER):
        pytest.skip("Debian chromium and chromium-driver are not installed")
    pid = f"NMDPAGE{generate_uid()[-10:]}"
    files = [f for name in ("a", "b") for f in _study_of(tmp_path / name, pid)[1]]
    assert {o["status"] for o in ingest_files(stack.cfg, files)} == {"ingested"}
    pseudonym = patient_pseudonym(pseudonym_key(stack.cfg), pid)
    browser = chromium.start()
    try:
        browser.get(stack.cfg.research_node.http_url.rstrip("/") + "/nmdose/ui/patients")
        threshold = browser.find_element("css selector", "input[name=threshold_msv]")
        threshold.send_keys("0")
        browser.find_element("css selector", "input[name=limit]").clear()
        browser.find_element("css selector", "input[name=limit]").send_keys("10000")
        browser.find_element("css selector", "#patients-filters button[type=submit]").click()
        find = f"""return Array.from(document.querySelectorAll('#patients-table tbody tr'))
                          .find(tr => tr.cells[0].textContent === '{pseudonym}')"""
        row = chromium.wait(browser, find)
        assert pid not in browser.page_source
        row.click()
        chromium.wait(browser, "return document.querySelectorAll('#timeline-table tbody tr').length === 2")
        cells = [td.text for td in row.find_elements("css selector", "td")]
        assert cells[4] == "2"  # studies in the window: the two studies of one day, each once
        title = browser.find_element("id", "timeline-title").text
        assert pseudonym in title
        browser.find_element("id", "lang-toggle").click()
        assert browser.find_element("css selector", "h1").text == "환자 누적 선량"
        assert "이력" in browser.find_element("id", "timeline-title").text
        browser.save_screenshot(str(chromium.ARTIFACTS / "patients-ko.png"))
        browser.find_element("id", "lang-toggle").click()
        assert chromium.errors(browser) == []
    finally:
        browser.execute_script("localStorage.removeItem('nmdose.lang')")
        browser.quit()
