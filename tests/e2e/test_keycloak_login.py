"""Keycloak mode in a real headless Chromium: the pages log in with the OIDC Authorization Code flow + PKCE and
call the API with the access token, against a research Orthanc whose plugin runs in keycloak auth mode.

Keycloak does not run here: ``tests/oidc_provider.py`` serves a realm's endpoints (auth, token, certs) and
signs real RS256 JWTs; the plugin fetches its JWKS and checks every token as it would Keycloak's.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import http.client
import json
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

from nmdose.db import connect
from nmdose.orthanc_ids import orthanc_study_id
from tests.e2e.chromium import ARTIFACTS, start, wait, webdriver_module
from tests.oidc_provider import OidcProvider

pytestmark = pytest.mark.integration

UID = "1.2.826.0.1.999.77.1"
PATIENT = "KC0001"

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
            cur.execute(
                """INSERT INTO rpacs.study (study_uid, source_node, study_date, description, modalities_found,
                   patient_id, is_target) VALUES (%s, 'simulationPACS', %s, 'KC chest', '{CT}', %s, true)""",
                (UID, dt.date(2024, 5, 6), PATIENT),
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
    status, _ = http_get(root + "/api/dose/ct-protocols", provider.access_token(typ="ID"))  # an ID token
    assert status == 401  # (Orthanc sends a 401 without the body; tests/unit/test_auth.py checks the reason)
    status, _ = http_get(root + "/api/dose/ct-events?format=csv", provider.access_token())  # physicist
    assert status == 200
    status, body = http_get(
        root + "/api/dose/ct-events?format=csv",
        provider.access_token(realm_access={"roles": ["nmdose-technologist"]}),
    )
    assert status == 403 and b"dose:export" in body  # dose:read only: no export
    status, body = http_get(root + "/health")
    assert json.loads(body) == {"status": json.loads(body)["status"]}  # public: the status only
    status, body = http_get(root + "/health", provider.access_token())
    assert json.loads(body)["auth_mode"] == "keycloak"  # with a token: the details
    status, page = http_get(root + "/ui/dose")
    assert status == 200 and b'name="nmdose-oidc"' in page and provider.issuer.encode() in page
    with urllib.request.urlopen(root + "/ui/dose", timeout=10) as resp:  # the login script may call the realm
        origin = provider.issuer.split("/realms/")[0]
        assert resp.headers["Content-Security-Policy"].endswith(f"; connect-src 'self' {origin}")
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

    # The login left the token in the session cookie (HttpOnly, SameSite=Strict): a followed link is authenticated.
    cookie = browser.get_cookie("nmdose_session")
    assert cookie and cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/"
    assert not cookie["secure"]  # plain http here; Secure when the request came over https
    link = orthanc_link(kc_stack)
    assert redirect_status(link) == (401, None)  # no token, no cookie
    status, location = redirect_status(link, cookie=f"nmdose_session={cookie['value']}")
    orthanc_id = orthanc_study_id(PATIENT, UID)
    assert status == 302 and location.endswith(f"#study?uuid={orthanc_id}")
    assert redirect_status(link, cookie=f"nmdose_session={provider.access_token(typ='ID')}")[0] == 401
    assert severe_errors(browser) == []
    browser.execute_script(
        "const a = document.createElement('a'); a.href = arguments[0]; a.id = 'kc-link';"
        " document.body.appendChild(a); a.click();",
        f"../ui/orthanc/study/{UID}",
    )
    deadline = (
        time.time() + 15
    )  # (the browser's address: Orthanc's filter may answer Explorer with an error page)
    while time.time() < deadline and not browser.current_url.endswith(f"#study?uuid={orthanc_id}"):
        time.sleep(0.2)
    assert (
        browser.current_url
        == orthanc_link(kc_stack).split("/nmdose/")[0] + f"/app/explorer.html#study?uuid={orthanc_id}"
    )
    browser.get(url)
    wait(
        browser, "return document.getElementById('ct-table').getAttribute('data-rows') === '1'", timeout_s=20
    )
    browser.get_log("browser")  # what Orthanc Explorer logged is not the pages' business

    # Past the refresh margin the next call refreshes the token instead of logging in again.
    time.sleep(6)
    browser.execute_script("document.getElementById('ct-table').removeAttribute('data-rows')")
    browser.find_element("css selector", "#filters button[type=submit]").click()
    wait(
        browser, "return document.getElementById('ct-table').getAttribute('data-rows') === '1'", timeout_s=20
    )
    assert ("token:refresh_token", "ok") in provider.log
    assert [e for e in provider.log if e[0] == "auth"] == [("auth", "ok")]  # one login only
    assert browser.get_cookie("nmdose_session")["value"] != cookie["value"]  # the refreshed token was posted
    assert severe_errors(browser) == []


def severe_errors(browser) -> list[str]:
    """The browser's SEVERE console entries, but Chromium's own favicon.ico request, which Orthanc's HTTP filter
    refuses in keycloak mode without an orthanc:admin token (not something the pages ask for)."""
    logs = browser.get_log("browser")
    return [e["message"] for e in logs if e["level"] == "SEVERE" and "/favicon.ico" not in e["message"]]


def orthanc_link(stack) -> str:
    return stack.cfg.research_node.http_url.rstrip("/") + f"/nmdose/ui/orthanc/study/{UID}"


def redirect_status(url: str, cookie: str | None = None) -> tuple[int, str | None]:
    """Status and Location of a GET, redirects not followed."""
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    conn.request("GET", parts.path, headers={"Cookie": cookie} if cookie else {})
    resp = conn.getresponse()
    resp.read()
    conn.close()
    return resp.status, resp.getheader("Location")
