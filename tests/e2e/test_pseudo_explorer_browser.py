"""A researcher's browser opens the pseudoPACS's Orthanc Explorer through the HTTPS proxy (docs/pseudonymise.md
"Researchers"): with the pages' session cookie every request Orthanc Explorer makes under `/pseudo/` (its
scripts, `/tools/find`, the patient and study lists) passes the plugin's check and shows the pseudonymised copy;
without it nothing of the pseudoPACS is shown, and a technologist's cookie is refused."""

from __future__ import annotations

import pytest
import requests

from tests.e2e.chromium import ARTIFACTS, errors, start, wait, webdriver_module
from tests.oidc_provider import OidcProvider
from tests.pseudo_site import pseudo_site

pytestmark = pytest.mark.integration

webdriver_module()


@pytest.fixture(scope="module")
def provider():
    p = OidcProvider(roles=("nmdose-researcher",), username="yoon").start()
    yield p
    p.stop()


@pytest.fixture(scope="module")
def site(provider):
    with pseudo_site(provider) as s:
        yield s


@pytest.fixture
def browser():
    driver = start(extra_args=("--ignore-certificate-errors",))
    yield driver
    driver.quit()


def _cookie(site, provider, *roles: str) -> str:
    claims = {"realm_access": {"roles": list(roles)}} if roles else {}
    s = requests.Session()
    r = s.post(f"{site.https}/nmdose/session", json={},
               headers={"Authorization": f"Bearer {provider.access_token(**claims)}"}, verify=site.ca,
               timeout=10)  # fmt: skip
    assert r.status_code in (200, 204)
    return s.cookies["nmdose_session"]


def _login(browser, site, value: str) -> None:
    browser.get(f"{site.https}/nmdose/health")  # the cookie's site first
    browser.add_cookie({"name": "nmdose_session", "value": value, "path": "/", "secure": True,
                        "httpOnly": True, "sameSite": "Strict"})  # fmt: skip


def test_orthanc_explorer_of_the_pseudopacs_lists_the_copy_for_a_researcher(site, provider, browser):
    _login(browser, site, _cookie(site, provider))
    browser.get(f"{site.https}/pseudo/app/explorer.html#find-patients")
    text = wait(browser, "var t = document.body.innerText; return t.indexOf('P-A1B2C3') >= 0 ? t : null;", 30)
    assert "PSEUDO" in text
    browser.get(f"{site.https}/pseudo/app/explorer.html#study?uuid={site.study_id}")
    wait(browser, "return document.body.innerText.indexOf('pseudo proxy test') >= 0;", 30)
    browser.save_screenshot(str(ARTIFACTS / "pseudo-explorer.png"))
    assert [e for e in errors(browser) if "/pseudo/" in e and (" 401" in e or " 403" in e)] == []


def test_without_the_cookie_or_with_a_technologists_nothing_of_the_pseudopacs_is_shown(
    site, provider, browser
):
    browser.get(f"{site.https}/pseudo/app/explorer.html#find-patients")
    assert "P-A1B2C3" not in browser.page_source and "jquery" not in browser.page_source.lower()
    _login(browser, site, _cookie(site, provider, "nmdose-technologist"))
    browser.get(f"{site.https}/pseudo/app/explorer.html#find-patients")
    assert "P-A1B2C3" not in browser.page_source and "jquery" not in browser.page_source.lower()
    r = requests.get(f"{site.https}/pseudo/patients", cookies={"nmdose_session": _cookie(site, provider,
                     "nmdose-technologist")}, verify=site.ca, timeout=10)  # fmt: skip
    assert r.status_code == 403
