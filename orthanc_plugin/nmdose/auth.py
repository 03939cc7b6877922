"""Authentication of the /nmdose/ routes: `dev` (local, everything allowed) or `keycloak` (OIDC bearer tokens).

In keycloak mode a request carries `Authorization: Bearer <JWT>`, signed with one of the realm's keys (JWKS,
fetched from the issuer and re-fetched every `jwks_refresh_s`, so a key removed from the realm stops being
trusted within that time). Checked: signature, issuer, expiry, `typ` = Bearer (an ID token is not an access
token), `azp` = `client_id` or `web_client_id` (a token the realm issued to another client is refused), and `aud`
(required in prod). The token's realm roles map to nmdose roles (config/nmdose_accounts.yaml), whose permissions
gate each route.

A browser following a plain link sends no Authorization header: the pages store their access token in the
`nmdose_session` cookie (`POST /nmdose/session`, HttpOnly, SameSite=Strict), which authenticates GET and HEAD
requests only, so a state-changing request always needs the header.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import jwt

from nmdose.web.router import AUTHENTICATED, PUBLIC, SAFE_METHODS, HttpError, Request, Response, header

if TYPE_CHECKING:
    from nmdose.config import AccountsFile, Config

COOKIE = "nmdose_session"


@dataclass(frozen=True)
class User:
    username: str
    roles: tuple[str, ...]
    permissions: frozenset[str]
    subject: str | None = None  # the token's `sub` (keycloak mode)
    # The token's realm roles as the realm names them (also those no nmdose role maps: `project:<name>:read`)
    # and its group paths (`groups_claim`): what research project access is read from (nmdose.projects.access).
    realm_roles: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()

    def __str__(self) -> str:
        return self.username


def _check_permission(user: User, permission: str | None) -> User:
    if permission not in (None, AUTHENTICATED) and permission not in user.permissions:
        raise HttpError(403, f"user {user.username} lacks permission {permission}")
    return user


class DevAuth:
    """Development: the research PACS listens on localhost only; every caller may do everything."""

    connect_origins: tuple[str, ...] = ()

    def __init__(self, accounts: AccountsFile):
        self.user = User(
            "dev", tuple(accounts.roles), frozenset(p for r in accounts.roles.values() for p in r.permissions)
        )

    def __call__(self, request: Request, permission: str | None) -> User | None:
        return None if permission == PUBLIC else self.user

    def user_from_headers(self, headers: Mapping[str, str], *, allow_cookie: bool = True) -> User | None:
        return self.user


class KeycloakAuth:
    ALGORITHMS = ["RS256", "RS384", "RS512", "ES256", "ES384", "PS256"]

    def __init__(self, accounts: AccountsFile, running_mode: str = "dev"):
        kc = accounts.keycloak
        if not kc.issuer:
            raise ValueError("keycloak.issuer is required")
        if running_mode == "prod" and not kc.audience:
            raise ValueError("keycloak.audience is required in prod running mode")
        self.accounts = accounts
        self.settings = kc
        self.running_mode = running_mode
        self.issuer = kc.issuer.rstrip("/")
        self.clients = tuple(c for c in (kc.client_id, kc.web_client_id) if c)
        # No per-kid cache (PyJWT's would trust a kid forever): the key set is re-fetched every jwks_refresh_s.
        self.jwks = jwt.PyJWKClient(
            kc.jwks_url or f"{self.issuer}/protocol/openid-connect/certs",
            cache_keys=False,
            lifespan=kc.jwks_refresh_s,
            timeout=5,
        )
        issuer = urlsplit(self.issuer)
        # The pages' login script calls the realm's token endpoint (the pages' Content-Security-Policy).
        self.connect_origins = (f"{issuer.scheme}://{issuer.netloc}",)

    def __call__(self, request: Request, permission: str | None) -> User | None:
        if permission == PUBLIC:
            return None
        user = self.user_from_headers(request.headers, allow_cookie=request.method.upper() in SAFE_METHODS)
        if user is None:
            raise HttpError(401, "missing bearer token (Authorization: Bearer <access token>)")
        return _check_permission(user, permission)

    def user_from_headers(self, headers: Mapping[str, str], *, allow_cookie: bool = True) -> User | None:
        """The user of a request's bearer header, or else (when `allow_cookie`) of its session cookie; None when
        the request carries neither; HttpError 401 for an invalid or expired token (503 when the realm's keys
        cannot be fetched). Also for Orthanc's HTTP filter: pass allow_cookie=False for a state-changing request
        unless it is otherwise protected against cross-site requests."""
        token = bearer_token(headers)
        if token is None and allow_cookie:
            token = session_token(headers)
        if token is None:
            return None
        return self._user(self._verify(token))

    def _verify(self, token: str) -> dict[str, Any]:
        kc = self.settings
        need_aud = kc.audience is not None
        try:
            key = self.jwks.get_signing_key_from_jwt(token)
            claims = jwt.decode(
                token,
                key.key,
                algorithms=self.ALGORITHMS,
                issuer=self.issuer,
                audience=kc.audience,
                leeway=kc.leeway_s,
                options={"require": ["exp", "iss"] + (["aud"] if need_aud else []), "verify_aud": need_aud},
            )
        except jwt.PyJWKClientConnectionError as exc:
            raise HttpError(503, f"cannot fetch the identity provider's keys: {exc}") from None
        except jwt.PyJWTError as exc:
            raise HttpError(401, f"invalid token: {exc}") from None
        if claims.get("typ") != "Bearer":
            raise HttpError(
                401, f"invalid token: typ {claims.get('typ')!r}, expected an access token ('Bearer')"
            )
        if claims.get("azp") not in self.clients:
            expected = " or ".join(repr(c) for c in self.clients)
            raise HttpError(401, f"invalid token: issued to {claims.get('azp')!r}, expected {expected}")
        return claims

    def _user(self, claims: dict[str, Any]) -> User:
        value: Any = claims
        for part in self.settings.roles_claim.split("."):
            value = value.get(part, {}) if isinstance(value, dict) else {}
        realm_roles = value if isinstance(value, list) else []
        roles = tuple(sorted({self.settings.role_map[r] for r in realm_roles if r in self.settings.role_map}))
        perms = frozenset(p for r in roles for p in self.accounts.roles[r].permissions)
        name = claims.get("preferred_username") or claims.get("sub") or "unknown"
        sub = claims.get("sub")
        groups = claims.get(self.settings.groups_claim)
        return User(
            str(name),
            roles,
            perms,
            str(sub) if sub is not None else None,
            realm_roles=tuple(str(r) for r in realm_roles if isinstance(r, str)),
            groups=tuple(str(g) for g in groups if isinstance(g, str)) if isinstance(groups, list) else (),
        )


def bearer_token(headers: Mapping[str, str]) -> str | None:
    """The token of an `Authorization: Bearer <token>` header (None without one)."""
    scheme, _, token = header(headers, "Authorization").partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def session_token(headers: Mapping[str, str]) -> str | None:
    """The token of the `nmdose_session` cookie (None without one). Parsed by hand: other cookies of the
    host (Orthanc Explorer 2's) may hold characters that make `http.cookies` drop the whole header."""
    for part in header(headers, "Cookie").split(";"):
        name, sep, value = part.strip().partition("=")
        if sep and name == COOKIE and value.strip().strip('"'):
            return value.strip().strip('"')
    return None


def optional_user(auth: Any, headers: Mapping[str, str]) -> User | None:
    """The authenticated user of a request to a public route, or None (no credential, an invalid one, or no
    authenticator): a public route answers less, never an error, to a caller it cannot identify."""
    if auth is None or not hasattr(auth, "user_from_headers"):
        return None
    try:
        return auth.user_from_headers(headers)
    except HttpError:
        return None


# ----- the session cookie ----------------------------------------------------------------------------------


def _https(request: Request) -> bool:
    """The browser reached us over https (directly, or through a proxy that says so)."""
    proto = request.header("X-Forwarded-Proto").split(",")[0].strip().lower()
    return proto == "https" or request.header("Origin").lower().startswith("https://")


def _cookie(request: Request, value: str, max_age: int) -> str:
    secure = "; Secure" if _https(request) else ""
    return f"{COOKIE}={value}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Strict{secure}"


def register_session_routes(router) -> None:
    """`POST /session` puts the request's bearer token into the session cookie (for links the browser follows
    without a header: the Orthanc link of an outlier, Orthanc Explorer); `DELETE /session` clears it. The cookie
    lives as long as the token (Max-Age from its `exp`); the pages post each new token after a login or refresh."""

    def open_session(request: Request) -> Response:
        token = bearer_token(request.headers)
        data: dict[str, Any] = {"user": getattr(request.user, "username", None), "cookie": bool(token)}
        resp = Response.json(data)
        if token:  # keycloak mode: a valid token (the router checked it); dev mode: no token, no cookie
            try:
                exp = int(jwt.decode(token, options={"verify_signature": False}).get("exp", 0))
            except (jwt.PyJWTError, TypeError, ValueError):
                exp = 0
            max_age = max(0, exp - int(time.time())) if exp else 300
            resp.headers["Set-Cookie"] = _cookie(request, token, max_age)
        return resp

    def close_session(request: Request) -> Response:
        resp = Response.json({"cookie": False})
        resp.headers["Set-Cookie"] = _cookie(request, "", 0)
        return resp

    router.add(
        "POST",
        "/session",
        open_session,
        permission=AUTHENTICATED,
        query={},
        summary="Put the request's bearer token into the session cookie (for links the browser follows)",
    )
    router.add(
        "DELETE",
        "/session",
        close_session,
        permission=PUBLIC,
        query={},
        summary="Clear the session cookie",
    )


def browser_login(cfg: Any) -> dict[str, str] | None:
    """The OIDC settings the pages' login script needs in keycloak mode (None in dev mode: no login); read by
    every page shell (web/pages.py, the audit page)."""
    if cfg is None or getattr(cfg, "auth_mode", "dev") != "keycloak":
        return None
    kc = cfg.accounts.keycloak
    return {"issuer": kc.issuer or "", "client_id": kc.web_client_id, "scope": kc.scope}


def authenticator(cfg: Config):
    """The authenticate(request, permission) callable for the configured auth mode."""
    if cfg.auth_mode == "keycloak":
        return KeycloakAuth(cfg.accounts, cfg.running_mode)
    return DevAuth(cfg.accounts)
