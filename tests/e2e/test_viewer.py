"""The OHIF viewer (installed from npm by `make deps`, web/viewer_dist.py) in a real headless Chromium against a
research Orthanc with Debian's DICOMweb plugin: a synthetic CT study opens at
/nmdose/viewer/viewer?StudyInstanceUIDs=<uid> and its image is drawn (a viewport canvas with non-blank pixels),
in dev auth mode and in keycloak mode (no cookie: DICOMweb refused; after the pages' login: the image)."""

from __future__ import annotations

import contextlib
import os
import time
import urllib.error
import urllib.request

import pytest

from nmdose.security.internal import INTERNAL_HEADER, internal_secret
from nmdose.web import viewer_dist
from tests.e2e.chromium import ARTIFACTS, start, webdriver_module
from tests.e2e.viewer_study import nm_static, store_ct_study, store_instances
from tests.oidc_provider import OidcProvider
from tests.support import query, wait_for

pytestmark = pytest.mark.integration

UID = "1.2.826.0.1.999.88.1"  # CT, 4 slices
NM_UID = "1.2.826.0.1.999.88.2"  # NM static, one instance of 2 frames
PATIENT = "VIEW0001"
RESEARCH_ONLY = {"simulationPACS": {"local": False}, "dosePACS": {"local": False}}

webdriver_module()
if not viewer_dist.installed():
    # make test installs it (scripts/install-deps.sh): in CI its absence is a failure, elsewhere a skip
    assert not os.environ.get("CI"), "the OHIF viewer is not installed (make deps)"
    pytest.skip("the OHIF viewer is not installed (make deps)", allow_module_level=True)

# Non-blank pixels of the largest canvas of the viewport, read back with getImageData (the viewport draws its
# WebGL result into this 2D canvas); -1 when there is none yet.
CANVAS_PIXELS = """
const canvases = [...document.querySelectorAll('.cornerstone-viewport-element canvas, canvas.cornerstone-canvas')];
let best = -1;
for (const c of canvases) {
  if (!c.width || !c.height) continue;
  const g = c.getContext('2d');
  if (!g) continue;
  const px = g.getImageData(0, 0, c.width, c.height).data;
  let lit = 0;
  for (let i = 0; i < px.length; i += 4) if (px[i] > 8 || px[i + 1] > 8 || px[i + 2] > 8) lit++;
  best = Math.max(best, lit);
}
return best;
"""


def viewer_url(stack, uid: str = UID) -> str:
    return stack.cfg.research_node.http_url.rstrip("/") + f"/nmdose/viewer/viewer?StudyInstanceUIDs={uid}"


def lit_pixels(browser, timeout_s: float = 60) -> int:
    """The most non-blank pixels a viewport canvas showed within `timeout_s` (stops at the first > 1000)."""
    deadline, best = time.time() + timeout_s, -1
    while time.time() < deadline:
        best = max(best, browser.execute_script(CANVAS_PIXELS))
        if best > 1000:
            break
        time.sleep(0.5)
    return best


def status_of(url: str, headers: dict[str, str] | None = None) -> int:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=20) as resp:
            resp.read()
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


def severe(browser) -> list[str]:
    """SEVERE console entries but Chromium's own favicon request (refused by the gate in keycloak mode)."""
    return [
        e["message"]
        for e in browser.get_log("browser")
        if e["level"] == "SEVERE" and "favicon" not in e["message"]
    ]


@pytest.fixture(scope="module")
def browser():
    driver = start()
    yield driver
    driver.quit()


# ----- dev mode


@pytest.fixture(scope="module")
def dev_stack():
    from tests.support import RunningStack

    running = RunningStack(nodes=RESEARCH_ONLY)
    try:
        store_ct_study(running.cfg.research_node.http_url.rstrip("/"), UID, PATIENT)
        store_instances(running.cfg.research_node.http_url.rstrip("/"), [nm_static(NM_UID, PATIENT)])
        yield running
    finally:
        running.close()


@pytest.mark.parametrize(
    ("uid", "series"), [(UID, "Axial synthetic"), (NM_UID, "Bone static")], ids=["CT", "NM"]
)
def test_dev_mode_viewer_opens_the_study_and_draws_its_image(dev_stack, browser, uid, series):
    base = dev_stack.cfg.research_node.http_url.rstrip("/")
    assert status_of(base + f"/dicom-web/studies?StudyInstanceUID={uid}") == 200
    started = time.monotonic()
    browser.get(viewer_url(dev_stack, uid))
    lit = lit_pixels(browser)
    print(f"viewer {series}: first image after {time.monotonic() - started:.1f} s")  # noqa: T201
    browser.save_screenshot(str(ARTIFACTS / f"viewer-dev-{series.split()[0].lower()}.png"))
    assert lit > 1000, f"the viewport stayed blank ({lit} lit pixels)"
    # the series' own description reached the page through QIDO/WADO-RS
    assert series in browser.find_element("css selector", "body").text
    assert (
        browser.execute_script("return document.querySelectorAll('.shepherd-element').length") == 0
    )  # no tour
    assert severe(browser) == []


def test_dev_mode_study_list_at_the_viewer_root(dev_stack, browser):
    browser.get(dev_stack.cfg.research_node.http_url.rstrip("/") + "/nmdose/viewer/")
    deadline = time.time() + 40
    while time.time() < deadline and "VIEWER1" not in browser.find_element("css selector", "body").text:
        time.sleep(0.5)
    assert (
        "VIEWER1" in browser.find_element("css selector", "body").text
    )  # the accession number, from QIDO-RS
    assert severe(browser) == []


# ----- keycloak mode


@pytest.fixture(scope="module")
def provider():
    # Access tokens live 35 s: the viewer page must refresh one, and renew the cookie, while it is open.
    p = OidcProvider(roles=("nmdose-physicist",), access_ttl_s=35).start()
    yield p
    p.stop()


@pytest.fixture(scope="module")
def kc_stack(provider):
    from tests.support import RunningStack

    running = RunningStack(
        env={"NMDOSE_AUTH_MODE": "keycloak"},
        keycloak={"issuer": provider.issuer, "client_id": "nmdose-cli"},
        nodes=RESEARCH_ONLY,
    )
    try:
        internal = {INTERNAL_HEADER: internal_secret(running.cfg)}
        store_ct_study(running.cfg.research_node.http_url.rstrip("/"), UID, PATIENT, headers=internal)
        yield running
    finally:
        running.close()


def test_keycloak_mode_dicomweb_is_gated(kc_stack, provider):
    base = kc_stack.cfg.research_node.http_url.rstrip("/")
    studies = base + f"/dicom-web/studies?StudyInstanceUID={UID}"
    assert status_of(studies) == 403  # no credential: Orthanc's filter refuses
    assert status_of(base + f"/wado?requestType=WADO&studyUID={UID}") == 403
    physicist = provider.access_token()
    assert status_of(studies, {"Authorization": f"Bearer {physicist}"}) == 200  # images:read
    assert status_of(studies, {"Cookie": f"nmdose_session={physicist}"}) == 200  # the pages' cookie
    assert status_of(base + "/patients", {"Authorization": f"Bearer {physicist}"}) == 403  # not Orthanc's API
    technologist = provider.access_token(realm_access={"roles": ["nmdose-technologist"]})
    assert status_of(studies, {"Authorization": f"Bearer {technologist}"}) == 403  # no images:read
    req = urllib.request.Request(base + "/dicom-web/studies", data=b"x", method="POST",
                                 headers={"Authorization": f"Bearer {physicist}",
                                          "Content-Type": "multipart/related; type=application/dicom"})  # fmt: skip
    with pytest.raises(urllib.error.HTTPError) as stow:
        urllib.request.urlopen(req, timeout=20)
    assert stow.value.code == 403  # STOW-RS: writing needs orthanc:admin
    # the viewer's files are public (code, no patient data), with their own CSP
    with urllib.request.urlopen(viewer_url(kc_stack), timeout=20) as resp:
        csp = resp.headers["Content-Security-Policy"]
        page = resp.read().decode()
    assert "'wasm-unsafe-eval'" in csp and provider.issuer.split("/realms")[0] in csp
    assert 'name="nmdose-oidc"' in page and "nmdose-auth.js" in page and "<script>" not in page


def test_keycloak_mode_viewer_logs_in_and_draws_the_image(kc_stack, provider, browser):
    url = viewer_url(kc_stack)
    browser.delete_all_cookies()
    provider.log.clear()
    browser.get(url)
    lit = lit_pixels(browser)
    browser.save_screenshot(str(ARTIFACTS / "viewer-keycloak.png"))
    assert ("auth", "ok") in provider.log and ("token:authorization_code", "ok") in provider.log
    assert lit > 1000, f"the viewport stayed blank ({lit} lit pixels)"
    cookie = browser.get_cookie("nmdose_session")
    assert cookie and cookie["httpOnly"]
    assert browser.current_url == url  # the login's ?code= is gone, the study stays
    assert severe(browser) == []
    # The viewer's reads are in the audit trail: the user, the study, metadata and images (one row per kind
    # per minute, not one per frame).
    sql = """SELECT detail->>'kind', count(*) FROM audit.event WHERE actor_username = %s AND %s = ANY(study_uids)
             AND path LIKE '/dicom-web/%%' GROUP BY 1"""
    rows = wait_for(
        lambda: dict(query(kc_stack.cfg, sql, (provider.username, UID))).keys() >= {"metadata", "images"}
    )
    assert rows, query(kc_stack.cfg, sql, (provider.username, UID))
    counts = dict(query(kc_stack.cfg, sql, (provider.username, UID)))
    assert counts["images"] == 1 and counts["metadata"] == 1
    # The open page refreshes the token before it expires and puts the new one into the cookie.
    deadline = time.time() + 45
    while time.time() < deadline and browser.get_cookie("nmdose_session")["value"] == cookie["value"]:
        time.sleep(0.5)
    assert browser.get_cookie("nmdose_session")["value"] != cookie["value"]
    assert ("token:refresh_token", "ok") in provider.log
    status = browser.execute_script(
        "return fetch(arguments[0], {credentials: 'same-origin'}).then(r => r.status)",
        kc_stack.cfg.research_node.http_url.rstrip("/") + f"/dicom-web/studies/{UID}/series",
    )
    assert status == 200
    assert severe(browser) == []


def test_keycloak_mode_viewer_of_a_user_without_images_read_draws_nothing(kc_stack, provider, browser):
    """A technologist (dose:read only) logs in through the same page: the session cookie is set, but the gate
    refuses DICOMweb to that user, so the viewer gets no study and draws no image."""
    provider.roles = ["nmdose-technologist"]
    try:
        browser.get(kc_stack.cfg.research_node.http_url.rstrip("/") + "/nmdose/ui/index")
        with contextlib.suppress(Exception):
            browser.execute_script("window.sessionStorage.clear()")
        browser.delete_all_cookies()
        provider.log.clear()
        browser.get(viewer_url(kc_stack))
        deadline = time.time() + 20
        while time.time() < deadline and browser.get_cookie("nmdose_session") is None:
            time.sleep(0.2)
        assert ("token:authorization_code", "ok") in provider.log
        assert browser.get_cookie("nmdose_session") is not None  # logged in
        assert lit_pixels(browser, timeout_s=15) <= 0  # but no image
        browser.save_screenshot(str(ARTIFACTS / "viewer-keycloak-refused.png"))
        status = browser.execute_script(
            "return fetch(arguments[0], {credentials: 'same-origin'}).then(r => r.status)",
            kc_stack.cfg.research_node.http_url.rstrip("/") + f"/dicom-web/studies/{UID}/series",
        )
        assert status == 403
        refused = "SELECT count(*) FROM audit.event WHERE %s = ANY(actor_roles) AND path LIKE '/dicom-web/%%'"
        assert query(kc_stack.cfg, refused, ("technologist",)) == [(0,)]  # nothing was read
    finally:
        provider.roles = ["nmdose-physicist"]


def test_behind_nginx_the_viewer_and_dicomweb_answer_over_https_with_https_urls(kc_stack, provider):
    """The production path: `nmdose proxy` (nginx, TLS) in front of the keycloak-mode research PACS. The viewer's
    files come through; DICOMweb answers the session cookie and names its URLs with https and the proxy's host
    (the Forwarded header), so OHIF on an https page never follows an http:// URL."""
    import subprocess

    import requests

    from nmdose.security import certs, tls
    from nmdose.stack import free_port
    from nmdose.web import proxy as P

    cfg = kc_stack.cfg
    certs.init(cfg)
    port, folder, prefix = free_port(), tls.certificates_dir(cfg), kc_stack.root / "proxy"
    conf = P.write(cfg, prefix, listen=f"127.0.0.1:{port}", certificate=folder / "https.crt",
                   private_key=folder / "https.key")  # fmt: skip
    proc = subprocess.Popen(P.nginx_argv(conf, prefix), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        https, ca = f"https://127.0.0.1:{port}", str(tls.ca_file(cfg))
        page = wait_for(lambda: _get(requests, f"{https}/nmdose/viewer/viewer?StudyInstanceUIDs={UID}", ca))
        assert page is not None and page.status_code == 200
        assert "'wasm-unsafe-eval'" in page.headers["Content-Security-Policy"]
        series = f"{https}/dicom-web/studies/{UID}/series"
        assert requests.get(series, verify=ca, timeout=20).status_code == 403
        cookie = {"Cookie": f"nmdose_session={provider.access_token()}"}
        r = requests.get(series, headers=cookie, verify=ca, timeout=20)
        assert r.status_code == 200
        urls = [s["00081190"]["Value"][0] for s in r.json()]
        assert urls and all(u.startswith(f"{https}/dicom-web/studies/{UID}/series/") for u in urls), urls
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def _get(requests, url: str, ca: str):
    try:
        return requests.get(url, verify=ca, timeout=5)
    except requests.RequestException:
        return None
