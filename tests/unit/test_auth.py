"""Keycloak auth mode: real RS256 JWTs checked against a JWKS served over HTTP by a local key set."""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from nmdose.auth import DevAuth, KeycloakAuth
from nmdose.config import AccountsFile, KeycloakSettings
from nmdose.web.router import PUBLIC, HttpError, Request, Response, Router
from tests.support import REPO, load


def _key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


REALM_KEY = _key()
OTHER_KEY = _key()


class _Jwks(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(REALM_KEY.public_key()))
        jwk.update(kid="realm-key", use="sig", alg="RS256")
        raw = json.dumps({"keys": [jwk]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def issuer():
    server = HTTPServer(("127.0.0.1", 0), _Jwks)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/realms/nmdose"
    server.shutdown()


def accounts(issuer, **kw) -> AccountsFile:
    base = load(REPO / "config").accounts
    kc = base.keycloak.model_dump() | {"issuer": issuer} | kw
    return base.model_copy(update={"keycloak": KeycloakSettings(**kc)})


def token(issuer, *, key=REALM_KEY, roles=("nmdose-physicist",), exp_in=300, kid="realm-key", **claims):
    payload = {
        "iss": issuer,
        "sub": "u1",
        "preferred_username": "kim",
        "azp": "nmdose-web",
        "exp": int(time.time()) + exp_in,
        "realm_access": {"roles": list(roles)},
    } | claims
    return jwt.encode(payload, key, algorithm="RS256", headers={"kid": kid})


def call(auth, tok=None, permission="dose:read"):
    headers = {"authorization": f"Bearer {tok}"} if tok else {}
    return auth(Request("GET", "/x", headers=headers), permission)


def test_valid_token_maps_realm_roles_to_permissions(issuer):
    user = call(KeycloakAuth(accounts(issuer)), token(issuer))
    assert user.username == "kim" and user.roles == ("physicist",)
    assert "dose:export" in user.permissions and "census:run" not in user.permissions


def test_missing_token_is_401(issuer):
    with pytest.raises(HttpError) as exc:
        call(KeycloakAuth(accounts(issuer)))
    assert exc.value.status == 401 and "missing bearer token" in exc.value.message


@pytest.mark.parametrize(
    "make, reason",
    [
        (lambda iss: token(iss, exp_in=-3600), "expired"),
        (lambda iss: token(iss, key=OTHER_KEY), "Signature verification failed"),
        (lambda iss: token(iss, iss="http://evil/realms/nmdose"), "issuer"),
        (lambda iss: "not.a.jwt", "invalid token"),
    ],
)
def test_bad_tokens_are_401(issuer, make, reason):
    with pytest.raises(HttpError) as exc:
        call(KeycloakAuth(accounts(issuer)), make(issuer))
    assert exc.value.status == 401 and reason.lower() in exc.value.message.lower()


def test_audience_and_client_are_checked_when_configured(issuer):
    auth = KeycloakAuth(accounts(issuer, audience="nmdose-api", client_id="nmdose-web"))
    assert call(auth, token(issuer, aud="nmdose-api")).username == "kim"
    with pytest.raises(HttpError, match="Audience"):
        call(auth, token(issuer, aud="other"))
    with pytest.raises(HttpError, match="expected 'nmdose-web'"):
        call(auth, token(issuer, aud="nmdose-api", azp="other-client"))


def test_missing_permission_is_403(issuer):
    with pytest.raises(HttpError) as exc:
        call(KeycloakAuth(accounts(issuer)), token(issuer), permission="census:run")
    assert exc.value.status == 403 and "lacks permission census:run" in exc.value.message
    admin = call(
        KeycloakAuth(accounts(issuer)), token(issuer, roles=["nmdose-admin"]), permission="census:run"
    )
    assert admin.roles == ("admin",)


def test_unreachable_identity_provider_is_503():
    auth = KeycloakAuth(accounts("http://127.0.0.1:9/realms/nmdose"))
    with pytest.raises(HttpError) as exc:
        call(auth, token("http://127.0.0.1:9/realms/nmdose"))
    assert exc.value.status == 503


def test_router_with_keycloak_keeps_health_public(issuer):
    router = Router(authenticate=KeycloakAuth(accounts(issuer)))
    router.add("GET", "/health", lambda r: Response.json({"ok": True}), permission=PUBLIC)
    router.add("GET", "/dose", lambda r: Response.json({"user": r.user.username}), permission="dose:read")
    assert router.dispatch(Request("GET", "/health")).status == 200
    assert router.dispatch(Request("GET", "/dose")).status == 401
    ok = router.dispatch(Request("GET", "/dose", headers={"authorization": f"Bearer {token(issuer)}"}))
    assert ok.status == 200 and json.loads(ok.body) == {"user": "kim"}


def test_dev_mode_allows_everything_locally():
    user = DevAuth(load(REPO / "config").accounts)(Request("GET", "/x"), "census:run")
    assert "census:run" in user.permissions
