"""The pseudoPACS behind the HTTPS proxy for researchers (docs/pseudonymise.md "Researchers"): Debian's nginx in
front of a keycloak-mode stack (tokens of a local OIDC provider, real RS256 JWTs), every request to `/pseudo/`
first checked by the research PACS's plugin (`auth_request` -> `GET /nmdose/api/pseudo/authorize`) and audited.
Reads need pseudo:read; changes need orthanc:admin; no credential 401; a role without pseudo:read 403; the
checks go by nginx's normalised path and method, which a client can neither spoof by headers nor by dot
segments."""

from __future__ import annotations

import http.client
import json
import ssl

import pytest
import requests

from nmdose.security.internal import INTERNAL_HEADER, internal_secret
from tests.oidc_provider import OidcProvider
from tests.pseudo_site import instance, pseudo_site
from tests.support import query, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def provider():
    p = OidcProvider(roles=("nmdose-researcher",), username="choi").start()
    yield p
    p.stop()


@pytest.fixture(scope="module")
def site(provider):
    """(running stack, https base, CA file, the stored study's Orthanc ID), nginx on a free port."""
    with pseudo_site(provider) as s:
        yield s.running, s.https, s.ca, s.study_id


def _bearer(provider, *roles: str) -> dict[str, str]:
    claims = {"realm_access": {"roles": list(roles)}} if roles else {}
    return {"Authorization": f"Bearer {provider.access_token(**claims)}"}


def _studies(running) -> list[str]:
    return requests.get(f"{running.cfg.nodes['pseudoPACS'].http_url.rstrip('/')}/studies", timeout=10).json()


def test_without_a_credential_the_pseudopacs_answers_401_and_its_port_is_loopback_only(site):
    running, https, ca, study_id = site
    for path in ("/pseudo/app/explorer.html", "/pseudo/studies", f"/pseudo/studies/{study_id}"):
        assert requests.get(f"{https}{path}", verify=ca, timeout=10).status_code == 401, path
    node = running.cfg.nodes["pseudoPACS"]
    assert node.host == "127.0.0.1"
    assert (
        json.loads((running.stack.orthanc_dir("pseudoPACS") / "orthanc.json").read_text())[
            "RemoteAccessAllowed"
        ]
        is False
    )


def test_a_researcher_reads_the_copies_and_opens_orthanc_explorer_but_changes_nothing(site, provider):
    running, https, ca, study_id = site
    h = _bearer(provider)  # nmdose-researcher: pseudo:read only
    r = requests.get(f"{https}/pseudo/studies", headers=h, verify=ca, timeout=10)
    assert r.status_code == 200 and study_id in r.json()
    r = requests.get(f"{https}/pseudo/app/explorer.html", headers=h, verify=ca, timeout=10)
    assert r.status_code == 200 and "<html" in r.text.lower()
    r = requests.get(f"{https}/pseudo", headers=h, verify=ca, timeout=10, allow_redirects=False)
    assert r.status_code == 302 and r.headers["Location"].endswith("/pseudo/app/explorer.html")
    # Orthanc Explorer's search is a POST that reads
    r = requests.post(f"{https}/pseudo/tools/find", json={"Level": "Study", "Query": {}}, headers=h, verify=ca,
                      timeout=10)  # fmt: skip
    assert r.status_code == 200 and study_id in r.json()
    before = _studies(running)
    r = requests.delete(f"{https}/pseudo/studies/{study_id}", headers=h, verify=ca, timeout=10)
    assert r.status_code == 403
    r = requests.post(f"{https}/pseudo/instances", data=instance(), headers=h, verify=ca, timeout=10)
    assert r.status_code == 403
    # the proxy sets the headers the check reads: a client's own are replaced
    spoof = {**h, "X-Original-Method": "GET", "X-Original-Path": "/pseudo/studies"}
    r = requests.delete(f"{https}/pseudo/studies/{study_id}", headers=spoof, verify=ca, timeout=10)
    assert r.status_code == 403
    # Lua execution is refused at the proxy, and the internal credential is stripped there
    r = requests.post(
        f"{https}/pseudo/tools/execute-script", data="print(1)", headers=h, verify=ca, timeout=10
    )
    assert r.status_code == 403
    internal = {INTERNAL_HEADER: internal_secret(running.cfg)}
    assert requests.get(f"{https}/pseudo/studies", headers=internal, verify=ca, timeout=10).status_code == 401
    assert _studies(running) == before


def test_dot_segments_cannot_turn_a_write_into_the_search_the_check_allows(site, provider):
    """nginx checks and forwards the normalised path: `/pseudo/tools/find/../../pseudo/instances` is a POST to
    /instances for both, refused to a researcher (a check of the raw request line would have let it through)."""
    running, https, ca, _ = site
    before = _studies(running)
    host, port = https.removeprefix("https://").split(":")
    conn = http.client.HTTPSConnection(
        host, int(port), context=ssl.create_default_context(cafile=ca), timeout=10
    )
    body = instance()
    headers = {**_bearer(provider), "Content-Type": "application/dicom", "Content-Length": str(len(body))}
    conn.request("POST", "/pseudo/tools/find/../../pseudo/instances", body=body, headers=headers)
    assert conn.getresponse().status == 403
    conn.close()
    assert _studies(running) == before


def test_a_role_without_pseudo_read_is_refused_and_an_admin_may_store(site, provider):
    running, https, ca, study_id = site
    tech = _bearer(provider, "nmdose-technologist")  # dose:read only
    assert requests.get(f"{https}/pseudo/studies", headers=tech, verify=ca, timeout=10).status_code == 403
    physicist = _bearer(provider, "nmdose-physicist")  # patient dose, images; not the pseudonymised copies
    assert (
        requests.get(f"{https}/pseudo/studies", headers=physicist, verify=ca, timeout=10).status_code == 403
    )
    admin = _bearer(provider, "nmdose-admin")
    before = len(_studies(running))
    r = requests.post(f"{https}/pseudo/instances", data=instance(), headers=admin, verify=ca, timeout=10)
    assert r.status_code == 200, r.text
    assert len(_studies(running)) == before + 1
    # a change from a page of another origin is refused, even to an admin
    other = {**admin, "Origin": "https://evil.example"}
    r = requests.post(f"{https}/pseudo/instances", data=instance(), headers=other, verify=ca, timeout=10)
    assert r.status_code == 403
    assert len(_studies(running)) == before + 1


def test_the_pages_session_cookie_opens_the_pseudopacs_for_a_researcher(site, provider):
    running, https, ca, study_id = site
    s = requests.Session()
    r = s.post(f"{https}/nmdose/session", json={}, headers=_bearer(provider), verify=ca, timeout=10)
    assert r.status_code in (200, 204) and "nmdose_session" in s.cookies
    assert s.get(f"{https}/pseudo/app/explorer.html", verify=ca, timeout=10).status_code == 200
    r = s.get(f"{https}/pseudo/studies/{study_id}", verify=ca, timeout=10)
    assert r.status_code == 200 and r.json()["ID"] == study_id


def test_every_request_to_the_pseudopacs_is_audited_with_who_and_what(site, provider):
    running, https, ca, study_id = site
    requests.get(
        f"{https}/pseudo/studies/{study_id}/series", headers=_bearer(provider), verify=ca, timeout=10
    )
    tech = _bearer(provider, "nmdose-technologist")
    requests.get(f"{https}/pseudo/studies/{study_id}", headers=tech, verify=ca, timeout=10)

    def rows():
        return query(
            running.cfg,
            "SELECT actor_username, actor_roles, status, outcome, detail->>'authorizes', client_address "
            "FROM audit.event WHERE action = '/api/pseudo/authorize' ORDER BY id",
        )

    def found():
        got = rows()
        return any(r[4] == f"GET /pseudo/studies/{study_id}/series" and r[2] == 200 for r in got) and any(
            r[4] == f"GET /pseudo/studies/{study_id}" and r[3] == "denied" for r in got
        )

    assert wait_for(found, timeout_s=20), rows()
    ok = next(r for r in rows() if r[4] == f"GET /pseudo/studies/{study_id}/series")
    assert ok[0] == "choi" and ok[1] == ["researcher"] and ok[5] == "127.0.0.1"
