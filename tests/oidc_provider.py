"""A minimal OpenID Connect provider speaking Keycloak's protocol, for the Keycloak-mode tests.

Keycloak does not run here. This provider serves the endpoints a Keycloak realm serves, under the same paths
(``/realms/<realm>/protocol/openid-connect/{auth,token,certs}``): the authorization endpoint checks the client,
the redirect URI and the PKCE challenge and answers with a code at once (a user already logged in to the realm),
the token endpoint checks the code, the verifier (S256) and the redirect URI and issues real RS256 JWTs signed
with a local key (with ``realm_access.roles`` like Keycloak's), refresh tokens work, and the keys are published
as a JWKS. CORS headers let the browser call the token endpoint from the Orthanc origin, as a Keycloak client's
"Web origins" setting does.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa


class OidcProvider:
    """Start with :meth:`start`, stop with :meth:`stop`; ``issuer`` is the realm URL."""

    def __init__(self, *, realm: str = "nmdose", client_id: str = "nmdose-web", roles=("nmdose-physicist",),
                 username: str = "kim", access_ttl_s: int = 300):  # fmt: skip
        self.realm, self.client_id, self.roles, self.username = realm, client_id, list(roles), username
        self.access_ttl_s = access_ttl_s
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.codes: dict[str, dict] = {}
        self.refresh: dict[str, str] = {}
        self.log: list[tuple[str, str]] = []  # (endpoint, outcome)
        self.server: ThreadingHTTPServer | None = None

    @property
    def issuer(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_port}/realms/{self.realm}"

    def start(self) -> OidcProvider:
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, status: int, body: dict | None = None, headers: dict | None = None):
                raw = json.dumps(body).encode() if body is not None else b""
                self.send_response(status)
                self.send_header("Access-Control-Allow-Origin", self.headers.get("Origin") or "*")
                self.send_header("Access-Control-Allow-Headers", "Content-Type, Authorization")
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                if body is not None:
                    self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def do_OPTIONS(self):  # noqa: N802 - CORS preflight
                self._send(204)

            def do_GET(self):  # noqa: N802
                url = urllib.parse.urlsplit(self.path)
                base = f"/realms/{provider.realm}/protocol/openid-connect"
                if url.path == f"{base}/certs":
                    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(provider.key.public_key()))
                    jwk.update(kid="realm-key", use="sig", alg="RS256")
                    return self._send(200, {"keys": [jwk]})
                if url.path == f"{base}/auth":
                    q = dict(urllib.parse.parse_qsl(url.query))
                    error = provider._check_auth(q)
                    provider.log.append(("auth", error or "ok"))
                    if error:
                        return self._send(400, {"error": error})
                    code = secrets.token_urlsafe(16)
                    provider.codes[code] = q
                    sep = "&" if "?" in q["redirect_uri"] else "?"
                    target = f"{q['redirect_uri']}{sep}" + urllib.parse.urlencode(
                        {"state": q["state"], "session_state": "s1", "code": code}
                    )
                    return self._send(302, None, {"Location": target})
                return self._send(404, {"error": "not found"})

            def do_POST(self):  # noqa: N802
                url = urllib.parse.urlsplit(self.path)
                if url.path != f"/realms/{provider.realm}/protocol/openid-connect/token":
                    return self._send(404, {"error": "not found"})
                length = int(self.headers.get("Content-Length") or 0)
                form = dict(urllib.parse.parse_qsl(self.rfile.read(length).decode()))
                status, body = provider._token(form)
                provider.log.append(("token:" + form.get("grant_type", "?"), body.get("error", "ok")))
                return self._send(status, body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    # ----- protocol checks
    def _check_auth(self, q: dict) -> str | None:
        if q.get("client_id") != self.client_id:
            return "unauthorized_client"
        if q.get("response_type") != "code":
            return "unsupported_response_type"
        if not q.get("redirect_uri", "").startswith("http://127.0.0.1:"):
            return "invalid_redirect_uri"
        if q.get("code_challenge_method") != "S256" or len(q.get("code_challenge", "")) < 43:
            return "invalid_request: PKCE S256 required"
        if not q.get("state"):
            return "invalid_request: state required"
        return None

    def _token(self, form: dict) -> tuple[int, dict]:
        if form.get("client_id") != self.client_id:
            return 401, {"error": "invalid_client"}
        grant = form.get("grant_type")
        if grant == "authorization_code":
            q = self.codes.pop(form.get("code", ""), None)
            if q is None:
                return 400, {"error": "invalid_grant"}
            verifier = form.get("code_verifier", "")
            digest = (
                base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
            )
            if digest != q["code_challenge"]:
                return 400, {"error": "invalid_grant: PKCE verification failed"}
            if form.get("redirect_uri") != q["redirect_uri"]:
                return 400, {"error": "invalid_grant: redirect_uri mismatch"}
        elif grant == "refresh_token":
            if form.get("refresh_token") not in self.refresh:
                return 400, {"error": "invalid_grant"}
        else:
            return 400, {"error": "unsupported_grant_type"}
        refresh = secrets.token_urlsafe(24)
        self.refresh[refresh] = self.username
        return 200, {
            "access_token": self.access_token(),
            "expires_in": self.access_ttl_s,
            "refresh_token": refresh,
            "refresh_expires_in": 1800,
            "token_type": "Bearer",
        }

    def access_token(self, **claims) -> str:
        now = int(time.time())
        payload = {
            "iss": self.issuer,
            "sub": "user-1",
            "typ": "Bearer",  # Keycloak's access tokens; its ID tokens carry "ID"
            "preferred_username": self.username,
            "azp": self.client_id,
            "iat": now,
            "exp": now + self.access_ttl_s,
            "realm_access": {"roles": self.roles},
        } | claims
        return jwt.encode(payload, self.key, algorithm="RS256", headers={"kid": "realm-key"})
