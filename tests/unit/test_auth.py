"""Keycloak auth mode: real RS256 JWTs checked against a JWKS served over HTTP by a local key set (whose keys a
test may change at run time), the session cookie, the public /health, the prod audience rule."""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from nmdose.auth import COOKIE, DevAuth, KeycloakAuth, register_session_routes
from nmdose.config import AccountsFile, KeycloakSettings
from nmdose.errors import ConfigError
from nmdose.web.router import PUBLIC, HttpError, Request, Response, Router
from tests.support import REPO, load, make_config_dir, make_prod_config_dir


def _key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


REALM_KEY = _key()
OTHER_KEY = _key()


class Realm:
    """The realm's published key set: {kid: private key}; the JWKS server publishes their public halves."""

    def __init__(self):
        self.keys = {"realm-key": REALM_KEY}
        self.fetches = 0

    def jwks(self) -> bytes:
        out = []
        for kid, key in self.keys.items():
            jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
            jwk.update(kid=kid, use="sig", alg="RS256")
            out.append(jwk)
        self.fetches += 1
        return json.dumps({"keys": out}).encode()


@pytest.fixture(scope="module")
def realm_server():
    realm = Realm()

    class Jwks(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            raw = realm.jwks()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Jwks)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield realm, f"http://127.0.0.1:{server.server_port}/realms/nmdose"
    server.shutdown()
    server.server_close()


@pytest.fixture
def issuer(realm_server):
    realm, url = realm_server
    realm.keys = {"realm-key": REALM_KEY}
    return url


@pytest.fixture
def realm(realm_server):
    return realm_server[0]


def accounts(issuer, **kw) -> AccountsFile:
    base = load(REPO / "config").accounts
    kc = base.keycloak.model_dump() | {"issuer": issuer} | kw
    return base.model_copy(update={"keycloak": KeycloakSettings(**kc)})


def token(issuer, *, key=REALM_KEY, roles=("nmdose-physicist",), exp_in=300, kid="realm-key", **claims):
    """An access token as Keycloak issues it to the pages' client (typ Bearer, azp nmdose-web)."""
    payload = {
        "iss": issuer,
        "sub": "u1",
        "typ": "Bearer",
        "preferred_username": "kim",
        "azp": "nmdose-web",
        "exp": int(time.time()) + exp_in,
        "realm_access": {"roles": list(roles)},
    } | claims
    payload = {k: v for k, v in payload.items() if v is not None}  # a claim given as None is left out
    return jwt.encode(payload, key, algorithm="RS256", headers={"kid": kid})


def call(auth, tok=None, permission="dose:read", method="GET", cookie=None):
    headers = {"authorization": f"Bearer {tok}"} if tok else {}
    if cookie:
        headers["cookie"] = cookie
    return auth(Request(method, "/x", headers=headers), permission)


def refused(auth, tok, **kw) -> HttpError:
    with pytest.raises(HttpError) as exc:
        call(auth, tok, **kw)
    return exc.value


def test_valid_token_maps_realm_roles_to_permissions(issuer):
    user = call(KeycloakAuth(accounts(issuer)), token(issuer))
    assert user.username == "kim" and user.roles == ("physicist",) and user.subject == "u1"
    assert "dose:export" in user.permissions and "census:run" not in user.permissions


def test_missing_token_is_401(issuer):
    err = refused(KeycloakAuth(accounts(issuer)), None)
    assert err.status == 401 and "missing bearer token" in err.message


@pytest.mark.parametrize(
    "make, reason",
    [
        (lambda iss: token(iss, exp_in=-3600), "expired"),
        (lambda iss: token(iss, key=OTHER_KEY), "Signature verification failed"),
        (lambda iss: token(iss, iss="http://evil/realms/nmdose"), "issuer"),
        (lambda iss: "not.a.jwt", "invalid token"),
        (lambda iss: token(iss, typ="ID"), "typ 'ID'"),  # an ID token is not an access token
        (lambda iss: token(iss, typ=None), "typ None"),
        (lambda iss: token(iss, azp="someone-else"), "issued to 'someone-else'"),
        (lambda iss: token(iss, azp=None), "issued to None"),
    ],
)
def test_bad_tokens_are_401(issuer, make, reason):
    err = refused(KeycloakAuth(accounts(issuer)), make(issuer))
    assert err.status == 401 and reason.lower() in err.message.lower()


@pytest.mark.parametrize(
    "configured", [{}, {"client_id": None}, {"client_id": "nmdose", "web_client_id": None}]
)
def test_azp_must_be_client_id_or_web_client_id_which_have_defaults(issuer, configured):
    auth = KeycloakAuth(accounts(issuer, **configured))
    assert (auth.settings.client_id, auth.settings.web_client_id) == ("nmdose", "nmdose-web")
    assert call(auth, token(issuer, azp="nmdose")).username == "kim"
    assert call(auth, token(issuer, azp="nmdose-web")).username == "kim"
    err = refused(auth, token(issuer, azp="nmdose-admin-console"))
    assert err.status == 401 and "expected 'nmdose' or 'nmdose-web'" in err.message


def test_audience_is_checked_when_configured(issuer):
    auth = KeycloakAuth(accounts(issuer, audience="nmdose-api", client_id="nmdose-cli"))
    assert call(auth, token(issuer, aud="nmdose-api")).username == "kim"
    assert call(auth, token(issuer, aud=["account", "nmdose-api"])).username == "kim"
    assert "Audience" in refused(auth, token(issuer, aud="other")).message
    assert refused(auth, token(issuer)).status == 401  # no aud at all
    assert (
        "expected 'nmdose-cli' or 'nmdose-web'"
        in refused(auth, token(issuer, aud="nmdose-api", azp="x")).message
    )


def test_prod_requires_an_audience_and_tokens_that_carry_it(issuer):
    with pytest.raises(ValueError, match="keycloak.audience is required in prod"):
        KeycloakAuth(accounts(issuer), "prod")
    auth = KeycloakAuth(accounts(issuer, audience="nmdose-api"), "prod")
    err = refused(auth, token(issuer))
    assert err.status == 401 and '"aud"' in err.message
    assert call(auth, token(issuer, aud="nmdose-api")).username == "kim"


def test_load_config_refuses_prod_keycloak_mode_without_audience(tmp_path):
    with pytest.raises(ConfigError) as exc:
        load(make_prod_config_dir(tmp_path, keycloak={"audience": None}))
    line = str(exc.value)
    assert "\n" not in line
    assert "nmdose_accounts.yaml: keycloak.audience: missing (required in prod running mode)" in line


def test_a_key_removed_from_the_realm_is_refused_within_the_refresh_interval(issuer, realm):
    new_key = _key()
    realm.keys = {"old-key": REALM_KEY}
    auth = KeycloakAuth(accounts(issuer, jwks_refresh_s=1))
    old = token(issuer, kid="old-key")
    assert call(auth, old).username == "kim"
    fetches = realm.fetches
    assert call(auth, old).username == "kim" and realm.fetches == fetches  # within the interval: cached
    realm.keys = {"new-key": new_key}  # the realm rotated its key and removed the old one
    time.sleep(1.3)
    err = refused(auth, old)
    assert err.status == 401 and "old-key" in err.message and realm.fetches == fetches + 1
    assert call(auth, token(issuer, key=new_key, kid="new-key")).username == "kim"
    assert refused(auth, old).status == 401  # never trusted again


def test_missing_permission_is_403(issuer):
    err = refused(KeycloakAuth(accounts(issuer)), token(issuer), permission="census:run")
    assert err.status == 403 and "lacks permission census:run" in err.message
    admin = call(
        KeycloakAuth(accounts(issuer)), token(issuer, roles=["nmdose-admin"]), permission="orthanc:admin"
    )
    assert admin.roles == ("admin",)


def test_unreachable_identity_provider_is_503():
    auth = KeycloakAuth(accounts("http://127.0.0.1:9/realms/nmdose"))
    assert refused(auth, token("http://127.0.0.1:9/realms/nmdose")).status == 503


def test_router_with_keycloak_keeps_health_public(issuer):
    router = Router(authenticate=KeycloakAuth(accounts(issuer)))
    router.add("GET", "/health", lambda r: Response.json({"ok": True}), permission=PUBLIC)
    router.add("GET", "/dose", lambda r: Response.json({"user": r.user.username}), permission="dose:read")
    assert router.dispatch(Request("GET", "/health")).status == 200
    assert router.dispatch(Request("GET", "/dose")).status == 401
    ok = router.dispatch(Request("GET", "/dose", headers={"authorization": f"Bearer {token(issuer)}"}))
    assert ok.status == 200 and json.loads(ok.body) == {"user": "kim"}


def test_dev_mode_allows_everything_locally():
    auth = DevAuth(load(REPO / "config").accounts)
    user = auth(Request("GET", "/x"), "census:run")
    assert "census:run" in user.permissions and "orthanc:admin" in user.permissions
    assert auth.user_from_headers({}) is user


# ----- the session cookie and user_from_headers ------------------------------------------------------------


def test_the_session_cookie_authenticates_get_and_head_but_never_a_state_changing_request(issuer):
    auth = KeycloakAuth(accounts(issuer))
    cookie = f'OE2=x{{"a": 1}}; {COOKIE}={token(issuer)}; other=1'
    assert call(auth, cookie=cookie).username == "kim"
    assert call(auth, cookie=cookie, method="HEAD").username == "kim"
    for method in ("POST", "PUT", "DELETE"):
        err = refused(auth, None, cookie=cookie, method=method)
        assert err.status == 401 and "missing bearer token" in err.message
    assert refused(auth, None, cookie=f"{COOKIE}={token(issuer, exp_in=-3600)}").status == 401
    assert refused(auth, None, cookie=f"{COOKIE}={token(issuer)}", permission="census:run").status == 403


def test_user_from_headers_reads_the_header_or_the_cookie_and_refuses_a_bad_token(issuer):
    auth = KeycloakAuth(accounts(issuer, client_id="nmdose-cli"))
    assert auth.user_from_headers({}) is None
    assert auth.user_from_headers({"Cookie": "unrelated=1"}) is None
    admin = token(issuer, roles=["nmdose-admin"], azp="nmdose-cli")
    assert "orthanc:admin" in auth.user_from_headers({"Authorization": f"Bearer {admin}"}).permissions
    assert auth.user_from_headers({"cookie": f"{COOKIE}={admin}"}).username == "kim"
    assert auth.user_from_headers({"cookie": f"{COOKIE}={admin}"}, allow_cookie=False) is None
    for bad in (token(issuer, exp_in=-3600), token(issuer, typ="ID"), "garbage"):
        with pytest.raises(HttpError) as exc:
            auth.user_from_headers({"authorization": f"Bearer {bad}"})
        assert exc.value.status == 401
        with pytest.raises(HttpError):
            auth.user_from_headers({"cookie": f"{COOKIE}={bad}"})


def session_router(auth) -> Router:
    router = Router(authenticate=auth)
    register_session_routes(router)
    return router


JSON = {"content-type": "application/json", "host": "pacs:8042"}


def test_post_session_sets_an_httponly_strict_cookie_with_the_token_and_delete_clears_it(issuer):
    router = session_router(KeycloakAuth(accounts(issuer)))
    tok = token(issuer, exp_in=120)
    resp = router.dispatch(Request("POST", "/session", headers={**JSON, "authorization": f"Bearer {tok}"}))
    assert resp.status == 200 and json.loads(resp.body) == {"user": "kim", "cookie": True}
    cookie = resp.headers["Set-Cookie"]
    attrs = [a.strip() for a in cookie.split(";")]
    assert attrs[0] == f"{COOKIE}={tok}" and {"Path=/", "HttpOnly", "SameSite=Strict"} <= set(attrs)
    assert "Secure" not in attrs and 110 <= int(next(a for a in attrs if a.startswith("Max-Age="))[8:]) <= 120
    https = {**JSON, "authorization": f"Bearer {tok}", "x-forwarded-proto": "https"}
    assert "; Secure" in router.dispatch(Request("POST", "/session", headers=https)).headers["Set-Cookie"]
    origin = {**JSON, "authorization": f"Bearer {tok}", "origin": "https://pacs:8042", "host": "pacs:8042"}
    assert "; Secure" in router.dispatch(Request("POST", "/session", headers=origin)).headers["Set-Cookie"]
    gone = router.dispatch(Request("DELETE", "/session", headers=JSON))
    assert gone.status == 200 and gone.headers["Set-Cookie"].startswith(f"{COOKIE}=; Path=/; Max-Age=0;")


def test_post_session_needs_a_valid_bearer_header(issuer):
    router = session_router(KeycloakAuth(accounts(issuer)))
    no_token = router.dispatch(Request("POST", "/session", headers=JSON))
    assert no_token.status == 401 and "Set-Cookie" not in no_token.headers
    cookie_only = {**JSON, "cookie": f"{COOKIE}={token(issuer)}"}
    assert router.dispatch(Request("POST", "/session", headers=cookie_only)).status == 401
    bad = {**JSON, "authorization": f"Bearer {token(issuer, azp='x')}"}
    assert router.dispatch(Request("POST", "/session", headers=bad)).status == 401


# ----- /health: a status for anyone, the details for a user -----------------------------------------------


def test_health_gives_only_its_status_without_a_user_and_the_details_with_one(issuer, tmp_path):
    from nmdose.plugin import Plugin

    cfg = load(make_config_dir(tmp_path, keycloak={"issuer": issuer}, env={"NMDOSE_AUTH_MODE": "keycloak"}))
    plugin = Plugin(cfg)  # no database behind it: health is "degraded", 503
    anonymous = plugin.handle_rest("GET", "/health", {}, {}, b"")
    assert anonymous.status == 503 and json.loads(anonymous.body) == {"status": "degraded"}
    expired = {"authorization": f"Bearer {token(issuer, exp_in=-3600)}"}
    assert json.loads(plugin.handle_rest("GET", "/health", {}, expired, b"").body) == {"status": "degraded"}
    for headers in ({"authorization": f"Bearer {token(issuer)}"}, {"cookie": f"{COOKIE}={token(issuer)}"}):
        details = json.loads(plugin.handle_rest("GET", "/health", {}, headers, b"").body)
        assert details["status"] == "degraded" and details["auth_mode"] == "keycloak"
        assert details["database"].startswith("error") and "workers" in details


def test_health_in_dev_mode_gives_the_details_to_anyone(tmp_path):
    from nmdose.plugin import Plugin

    plugin = Plugin(load(make_config_dir(tmp_path)))
    details = json.loads(plugin.handle_rest("GET", "/health", {}, {}, b"").body)
    assert details["auth_mode"] == "dev" and "versions" in details
