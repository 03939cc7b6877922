"""The proxy's check of a request to the pseudoPACS (web/routes_pseudo.py) and the nginx block that asks it."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from nmdose.web import proxy as P
from nmdose.web.router import HttpError, Request
from nmdose.web.routes_pseudo import authorize, decide
from tests.support import load, make_config_dir

READER = frozenset({"pseudo:read"})
ADMIN = frozenset({"pseudo:read", "orthanc:admin"})


@pytest.mark.parametrize(
    ("method", "path", "perms", "allowed"),
    [
        ("GET", "/studies", READER, True),
        ("HEAD", "/instances/x/file", READER, True),
        ("POST", "/tools/find", READER, True),
        ("POST", "/tools/lookup/", READER, True),
        ("POST", "/tools/find/extra", READER, False),
        ("POST", "/instances", READER, False),
        ("DELETE", "/studies/x", READER, False),
        ("PUT", "/tools/default-encoding", READER, False),
        ("POST", "/studies/x/anonymize", READER, False),
        ("POST", "/instances", ADMIN, True),
        ("DELETE", "/studies/x", ADMIN, True),
    ],
)
def test_reads_need_pseudo_read_and_changes_orthanc_admin(method, path, perms, allowed):
    assert decide(method, path, perms)[0] is allowed


def _request(method: str | None, path: str | None, perms=READER, **headers) -> Request:
    h = dict(headers)
    if method is not None:
        h["X-Original-Method"] = method
    if path is not None:
        h["X-Original-Path"] = path
    return Request("GET", "/api/pseudo/authorize", {}, h, b"", user=SimpleNamespace(permissions=perms))


def test_the_check_answers_only_the_proxy_and_only_below_pseudo():
    with pytest.raises(HttpError) as e:
        authorize(_request(None, None), None)
    assert e.value.status == 400 and "auth_request" in e.value.message
    with pytest.raises(HttpError) as e:
        authorize(_request("GET", "/patients"), None)
    assert e.value.status == 400
    assert authorize(_request("GET", "/pseudo/studies"), None).status == 200
    with pytest.raises(HttpError) as e:
        authorize(_request("POST", "/pseudo/instances"), None)
    assert e.value.status == 403 and "orthanc:admin" in e.value.message


def test_a_change_from_another_origin_is_refused_even_to_an_admin():
    ok = _request(
        "POST", "/pseudo/instances", ADMIN, Host="pacs.example:8443", Origin="https://pacs.example:8443"
    )
    assert authorize(ok, None).status == 200
    for headers in ({"Origin": "https://evil.example"}, {"Sec-Fetch-Site": "cross-site"}):
        with pytest.raises(HttpError) as e:
            authorize(_request("POST", "/pseudo/instances", ADMIN, Host="pacs.example:8443", **headers), None)
        assert e.value.status == 403


def _render(cfg, tmp_path):
    for name in ("https.crt", "https.key"):
        (tmp_path / name).write_text("x")
    return P.render(cfg, listen="8443", certificate=tmp_path / "https.crt", private_key=tmp_path / "https.key",
                    prefix=tmp_path)  # fmt: skip


def test_the_proxy_serves_the_pseudopacs_only_when_it_is_configured(tmp_path):
    with_pseudo = load(make_config_dir(tmp_path / "a", nodes={"pseudoPACS": {}}))
    conf = _render(with_pseudo, tmp_path)
    node = with_pseudo.nodes["pseudoPACS"]
    assert f"upstream nmdose_pseudo {{ server {node.host}:{node.http_port}; keepalive 16; }}" in conf
    assert "proxy_pass http://nmdose_pseudo/;" in conf
    assert "auth_request /_nmdose_pseudo_authorize;" in conf
    assert "proxy_set_header X-Original-Path $nmdose_pseudo_path;" in conf
    assert "location = /pseudo/tools/execute-script { return 403; }" in conf
    research = with_pseudo.research_node
    assert (
        f"upstream nmdose_research {{ server {research.host}:{research.http_port}; keepalive 16; }}" in conf
    )
    assert "proxy_pass http://nmdose_research/nmdose/api/pseudo/authorize;" in conf
    without = load(make_config_dir(tmp_path / "b"))
    assert "pseudo" not in _render(without, tmp_path)
