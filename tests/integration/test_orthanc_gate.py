"""Keycloak mode: Orthanc's own REST API and Orthanc Explorer behind the plugin's gate, on a real stack whose
tokens come from a local OIDC provider (real RS256 JWTs). Without a credential, or with a token lacking
`orthanc:admin`, Orthanc's routes answer 403; an admin token, the pages' session cookie and nmdose's internal
credential pass; the pipeline (census -> retrieve -> forward -> dose rows -> pages) runs end to end."""

from __future__ import annotations

import contextlib
import shutil
import time
from datetime import date

import pytest
import requests

from nmdose.cli import main
from nmdose.db import connect
from nmdose.security.internal import INTERNAL_HEADER, internal_secret
from nmdose.simulate import generate
from nmdose.simulate.upload import upload
from tests.oidc_provider import OidcProvider
from tests.support import RunningStack, make_tempdir

pytestmark = pytest.mark.integration

TODAY = date(2026, 6, 30)


@pytest.fixture(scope="module")
def provider():
    p = OidcProvider(roles=("nmdose-admin",)).start()
    yield p
    p.stop()


@pytest.fixture(scope="module")
def kc(provider):
    running = RunningStack(
        env={"NMDOSE_AUTH_MODE": "keycloak"},
        keycloak={"issuer": provider.issuer, "client_id": "nmdose-cli"},
        nodes={"researchPACS": {"orthanc_settings": {"StableAge": 3}}},
        retrieve={"time_window": {"weekdays": "00:00-24:00", "weekends": "00:00-24:00"}},
    )
    out = make_tempdir("nmdose-gate-")
    try:
        manifest = generate(out, studies=6, years=1, seed=8, today=TODAY)
        upload(out, running.cfg.nodes["simulationPACS"], cfg=running.cfg)
        yield running, manifest
    finally:
        running.close()
        shutil.rmtree(out, ignore_errors=True)


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_the_pipeline_runs_end_to_end_in_keycloak_mode(kc, provider):
    running, manifest = kc
    cfg = running.cfg
    args = running.cli_args()
    assert main([*args, "census", "run", "--to", TODAY.isoformat()]) == 0
    assert main([*args, "retrieve", "run"]) == 0
    targets = manifest.target_studies(tuple(cfg.retrieve.target_modalities), cfg.retrieve.target_descriptions)
    with_dose = [s.study_uid for s in targets if s.dose_objects]
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        with contextlib.closing(connect(cfg)) as conn, conn.cursor() as cur:
            cur.execute("SELECT count(DISTINCT study_instance_uid) FROM dose.object "
                        "WHERE study_instance_uid = ANY(%s)", (with_dose,))  # fmt: skip
            (n,) = cur.fetchone()
        if n == len(with_dose):
            break
        time.sleep(0.5)
    assert n == len(with_dose) > 0
    base = cfg.research_node.http_url
    r = requests.get(
        f"{base}/nmdose/api/research/yearly", headers=_bearer(provider.access_token()), timeout=10
    )
    assert r.status_code == 200 and r.json()


def test_orthanc_routes_refuse_callers_without_an_admin_credential(kc, provider):
    running, _ = kc
    base = running.cfg.research_node.http_url
    admin = _bearer(provider.access_token())
    instance = requests.get(f"{base}/instances", headers={INTERNAL_HEADER: internal_secret(running.cfg)},
                            timeout=10).json()[0]  # fmt: skip
    calls = [
        ("GET", "/patients", None),
        ("GET", f"/instances/{instance}/file", None),
        ("GET", "/app/explorer.html", None),
        ("GET", "/system", None),
        ("POST", "/tools/find", {"Level": "Study", "Query": {}}),
        (
            "POST",
            "/modalities/simulationPACS/move",
            {"Level": "Study", "Resources": [{"StudyInstanceUID": "1.2.3"}]},
        ),
    ]
    physicist = _bearer(provider.access_token(realm_access={"roles": ["nmdose-physicist"]}))
    forged = _bearer(provider.access_token().rsplit(".", 1)[0] + ".AAAA")
    for method, path, body in calls:
        for headers in ({}, physicist, forged, {INTERNAL_HEADER: "guess"}):
            r = requests.request(method, f"{base}{path}", json=body, headers=headers, timeout=10)
            assert r.status_code in (401, 403), (method, path, headers, r.status_code)
    for method, path, _ in calls[:4]:  # the read routes: an admin token and the internal credential pass
        assert requests.request(method, f"{base}{path}", headers=admin, timeout=10).status_code == 200, path
    r = requests.post(f"{base}/tools/find", json={"Level": "Study", "Query": {}}, headers=admin, timeout=10)
    assert r.status_code == 200 and len(r.json()) >= 1
    assert requests.get(f"{base}/nmdose/health", timeout=10).status_code in (200, 503)  # public, minimal


def test_the_session_cookie_opens_orthanc_explorer_for_an_admin(kc, provider):
    running, _ = kc
    base = running.cfg.research_node.http_url
    session = requests.Session()
    r = session.post(f"{base}/nmdose/session", json={}, headers=_bearer(provider.access_token()), timeout=10)
    assert r.status_code in (200, 204) and "nmdose_session" in session.cookies
    assert session.get(f"{base}/app/explorer.html", timeout=10).status_code == 200
    assert session.get(f"{base}/patients", timeout=10).status_code == 200
    other = requests.Session()
    token = provider.access_token(realm_access={"roles": ["nmdose-physicist"]})
    assert other.post(f"{base}/nmdose/session", json={}, headers=_bearer(token), timeout=10).status_code in (
        200,
        204,
    )
    assert other.get(f"{base}/app/explorer.html", timeout=10).status_code == 403


def test_many_concurrent_gate_checks_leave_orthanc_answering(kc, provider):
    """Every request crosses the gate: 200 concurrent refused calls (Orthanc's API, the pages' study link) must not
    block Orthanc."""
    from concurrent.futures import ThreadPoolExecutor

    running, _ = kc
    base = running.cfg.research_node.http_url
    with ThreadPoolExecutor(50) as pool:
        codes = list(pool.map(lambda _: requests.get(f"{base}/patients", timeout=30).status_code, range(200)))
    assert set(codes) == {403}
    # the study link of the pages: without a user 401, and no loopback call holds Orthanc's HTTP threads
    link = f"{base}/nmdose/ui/orthanc/study/1.2.826.0.1.3680043.10.1234.1"
    with ThreadPoolExecutor(50) as pool:
        codes = list(pool.map(lambda _: requests.get(link, timeout=30, allow_redirects=False).status_code,
                              range(200)))  # fmt: skip
    assert set(codes) == {401}
    started = time.monotonic()
    r = requests.get(f"{base}/system", headers=_bearer(provider.access_token()), timeout=10)
    assert r.status_code == 200 and time.monotonic() - started < 1


# ----- nginx (Debian's package) as the HTTPS front
@pytest.fixture(scope="module")
def proxy(kc):
    """nginx on a free port with a certificate of the local CA, in front of the keycloak-mode research PACS."""
    from tests.pseudo_site import https_proxy

    running, _ = kc
    with https_proxy(running) as (https, ca, prefix):
        yield https, https.replace("https://", "http://"), ca, prefix


def test_nginx_serves_the_pages_over_https_and_the_gate_still_decides(kc, provider, proxy):
    running, _ = kc
    https, http, ca, prefix = proxy
    r = requests.get(f"{https}/nmdose/health", verify=ca, timeout=10)
    assert r.status_code in (200, 503) and r.headers["Strict-Transport-Security"].startswith("max-age=")
    assert requests.get(f"{http}/nmdose/health", timeout=10).status_code == 400  # plaintext on the TLS port
    assert requests.get(f"{https}/patients", verify=ca, timeout=10).status_code == 403
    admin = _bearer(provider.access_token())
    assert requests.get(f"{https}/patients", headers=admin, verify=ca, timeout=10).status_code == 200
    r = requests.get(f"{https}/nmdose/api/research/yearly", headers=admin, verify=ca, timeout=10)
    assert r.status_code == 200
    # the internal credential is stripped at the proxy: it works only on the machine itself
    internal = {INTERNAL_HEADER: internal_secret(running.cfg)}
    assert requests.get(f"{https}/patients", headers=internal, verify=ca, timeout=10).status_code == 403
    assert (
        requests.get(
            f"{running.cfg.research_node.http_url}/patients", headers=internal, timeout=10
        ).status_code
        == 200
    )
    # Lua execution is refused at the proxy whatever the credential
    r = requests.post(f"{https}/tools/execute-script", data="print(1)", headers=admin, verify=ca, timeout=10)
    assert r.status_code == 403
    assert "/patients" in (prefix / "access.log").read_text()


def test_the_proxy_configuration_is_printed_for_the_container(kc, capsys):
    running, _ = kc
    assert main([*running.cli_args(), "proxy", "config"]) == 0
    out = capsys.readouterr().out
    assert "ssl_protocols TLSv1.2 TLSv1.3;" in out and f'proxy_set_header {INTERNAL_HEADER} "";' in out
    port = running.cfg.research_node.http_port
    assert f"upstream nmdose_research {{ server 127.0.0.1:{port}; keepalive 16; }}" in out
    assert "proxy_pass http://nmdose_research;" in out


def test_a_project_member_views_the_projects_studies_through_dicomweb_and_no_other(kc, provider, tmp_path):
    """The OHIF viewer's reads for a member of a research project without images:read (docs/projects.md): the
    study of their project through the path and through QIDO's StudyInstanceUID, never a search over every study
    nor a study of another project."""
    from tests.support import pet_ct_dose_study

    running, _ = kc
    base = running.cfg.research_node.http_url
    internal = {INTERNAL_HEADER: internal_secret(running.cfg)}
    mine, _ = pet_ct_dose_study(tmp_path / "a")
    other, _ = pet_ct_dose_study(tmp_path / "b")
    for folder in (tmp_path / "a", tmp_path / "b"):
        for f in sorted(folder.glob("*.dcm")):
            requests.post(
                f"{base}/instances", data=f.read_bytes(), headers=internal, timeout=30
            ).raise_for_status()
    with contextlib.closing(connect(running.cfg, role="owner")) as conn, conn, conn.cursor() as cur:
        for project, study in (("viewtrial", mine), ("othertrial", other)):
            cur.execute("INSERT INTO rpacs.project (name, created_by) VALUES (%s, 'test')", (project,))
            cur.execute("INSERT INTO rpacs.project_study (project, study_instance_uid, added_by, how)"
                        " VALUES (%s, %s, 'test', 'uid')", (project, study.study_instance_uid))  # fmt: skip
    member = _bearer(provider.access_token(realm_access={"roles": ["project:viewtrial:read"]}))
    outsider = _bearer(provider.access_token(realm_access={"roles": ["project:nosuch:read"]}))
    uid = mine.study_instance_uid

    def status(path, headers, **params):
        return requests.get(f"{base}{path}", headers=headers, params=params, timeout=30).status_code

    assert status(f"/dicom-web/studies/{uid}/series", member) == 200
    assert status("/dicom-web/studies", member, StudyInstanceUID=uid) == 200
    assert status(f"/dicom-web/studies/{uid}/metadata", member) == 200
    assert status("/dicom-web/studies", member) == 403  # every study
    assert status(f"/dicom-web/studies/{other.study_instance_uid}/series", member) == 403
    assert status(f"/dicom-web/studies/{uid}/series", outsider) == 403
    assert status(f"/dicom-web/studies/{uid}/series", {}) == 403
    assert status("/patients", member) == 403  # Orthanc's own API stays admin-only
