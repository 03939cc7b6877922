"""Keycloak mode in a real headless Chromium: the pages log in with the OIDC Authorization Code flow + PKCE and
call the API with the access token, against a research Orthanc whose plugin runs in keycloak auth mode.

Keycloak does not run here: ``tests/oidc_provider.py`` serves a realm's endpoints (auth, token, certs) and
signs real RS256 JWTs; the plugin fetches its JWKS and checks every token as it would Keycloak's.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import time
import urllib.error
import urllib.request

import pytest

from nmdose.db import connect
from tests.e2e.chromium import ARTIFACTS, start, wait, webdriver_module
from tests.oidc_provider import OidcProvider

pytestmark = pytest.mark.integration

UID = "1.2.826.0.1.999.77.1"

webdriver_module()


@pytest.fixture(scope="module")
def provider():
    # Access tokens live 25 s and the page refreshes them 20 s before expiry: a call after 5 s must refresh.
    p = OidcProvider(roles=("nmdose-physicist",), access_ttl_s=25).start()
    yield p
    p.stop()


@pytest.fixture(scope="module")
def kc_stack(provider):
    """Research PACS only (the other nodes are not started), plugin in keycloak mode, one dose record."""
    from tests.support import RunningStack

    running = RunningStack(
        env={"NMDOSE_AUTH_MODE": "keycloak"},
        keycloak={"issuer": provider.issuer, "client_id": "nmdose-cli"},
        nodes={"simulationPACS": {"local": False}, "dosePACS": {"local": False}},
    )
    try:
        with contextlib.closing(connect(running.cfg)) as conn, conn.cursor() as cur:
            cur.execute(
                """INSERT INTO dose.study (study_instance_uid, study_date, study_year, study_description,
                   ct_event_count, ct_total_dlp_mgycm) VALUES (%s, %s, 2024, 'KC chest', 1, 321.0)""",
                (UID, dt.date(2024, 5, 6)),
            )
            cur.execute(
                """INSERT INTO dose.ct_event (study_instance_uid, event_key, ordinal, study_date, study_year,
                   acquisition_protocol, ctdivol_mgy, dlp_mgycm)
                   VALUES (%s, '#0', 0, %s, 2024, 'KC protocol', 7.5, 321.0)""",
                (UID, dt.date(2024, 5, 6)),
            )
            conn.commit()
        yield running
    finally:
        running.close()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    driver = start(downloads=tmp_path_factory.mktemp("downloads"))
    yield driver
    driver.quit()


def http_get(url: str, token: str | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_api_needs_a_realm_token_and_the_page_shell_does_not(kc_stack, provider):
    root = kc_stack.cfg.research_node.http_url.rstrip("/") + "/nmdose"
    status, body = http_get(root + "/api/dose/ct-protocols")
    assert status == 401
    status, body = http_get(root + "/api/dose/ct-protocols", provider.access_token())
    assert status == 200 and json.loads(body)["rows"][0]["protocol"] == "KC protocol"
    status, _ = http_get(root + "/api/dose/ct-protocols", provider.access_token(azp="someone-else"))
    assert status == 401
    status, page = http_get(root + "/ui/dose")
    assert status == 200 and b'name="nmdose-oidc"' in page and provider.issuer.encode() in page
    assert b"KC protocol" not in page  # the shell carries no data


def test_dose_page_logs_in_with_pkce_and_shows_the_data(kc_stack, provider, browser):
    url = kc_stack.cfg.research_node.http_url.rstrip("/") + "/nmdose/ui/dose"
    provider.log.clear()
    browser.get(url)
    wait(
        browser, "return document.getElementById('ct-table').getAttribute('data-rows') === '1'", timeout_s=20
    )
    assert ("auth", "ok") in provider.log and ("token:authorization_code", "ok") in provider.log
    assert "code=" not in browser.current_url and browser.current_url.startswith(url)
    cells = [td.text for td in browser.find_elements("css selector", "#ct-table td")]
    assert "KC protocol" in cells
    browser.save_screenshot(str(ARTIFACTS / "keycloak-dose.png"))

    # An export link is fetched with the token and saved (a plain link would get 401).
    browser.find_element("id", "csv-link").click()
    deadline = time.time() + 15
    while time.time() < deadline and not list(browser.downloads.glob("*.csv")):
        time.sleep(0.2)
    saved = list(browser.downloads.glob("*.csv"))
    assert saved and "KC protocol" in saved[0].read_text(encoding="utf-8-sig")

    # Past the refresh margin the next call refreshes the token instead of logging in again.
    time.sleep(6)
    browser.execute_script("document.getElementById('ct-table').removeAttribute('data-rows')")
    browser.find_element("css selector", "#filters button[type=submit]").click()
    wait(
        browser, "return document.getElementById('ct-table').getAttribute('data-rows') === '1'", timeout_s=20
    )
    assert ("token:refresh_token", "ok") in provider.log
    assert [e for e in provider.log if e[0] == "auth"] == [("auth", "ok")]  # one login only
    severe = [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert severe == []
