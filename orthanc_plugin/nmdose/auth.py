"""Authentication of the /nmdose/ routes: `dev` (local, everything allowed) or `keycloak` (OIDC bearer tokens).

In keycloak mode a request carries `Authorization: Bearer <JWT>`, signed with one of the realm's keys (JWKS,
fetched from the issuer and cached); issuer, expiry and, when configured, audience / authorised party are checked.
The token's realm roles map to nmdose roles (config/nmdose_accounts.yaml), whose permissions gate each route.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import jwt

from nmdose.web.router import PUBLIC, HttpError, Request

if TYPE_CHECKING:
    from nmdose.config import AccountsFile, Config


@dataclass(frozen=True)
class User:
    username: str
    roles: tuple[str, ...]
    permissions: frozenset[str]

    def __str__(self) -> str:
        return self.username


class DevAuth:
    """Development: the research PACS listens on localhost only; every caller may do everything."""

    def __init__(self, accounts: AccountsFile):
        self.user = User(
            "dev", tuple(accounts.roles), frozenset(p for r in accounts.roles.values() for p in r.permissions)
        )

    def __call__(self, request: Request, permission: str | None) -> User | None:
        return None if permission == PUBLIC else self.user


class KeycloakAuth:
    ALGORITHMS = ["RS256", "RS384", "RS512", "ES256", "ES384", "PS256"]

    def __init__(self, accounts: AccountsFile):
        kc = accounts.keycloak
        if not kc.issuer:
            raise ValueError("keycloak.issuer is required")
        self.accounts = accounts
        self.settings = kc
        self.issuer = kc.issuer.rstrip("/")
        self.jwks = jwt.PyJWKClient(
            kc.jwks_url or f"{self.issuer}/protocol/openid-connect/certs",
            cache_keys=True,
            lifespan=300,
            timeout=5,
        )

    def __call__(self, request: Request, permission: str | None) -> User | None:
        if permission == PUBLIC:
            return None
        header = request.headers.get("authorization") or request.headers.get("Authorization") or ""
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise HttpError(401, "missing bearer token (Authorization: Bearer <access token>)")
        claims = self._verify(token.strip())
        user = self._user(claims)
        if permission and permission not in user.permissions:
            raise HttpError(403, f"user {user.username} lacks permission {permission}")
        return user

    def _verify(self, token: str) -> dict[str, Any]:
        kc = self.settings
        try:
            key = self.jwks.get_signing_key_from_jwt(token)
            claims = jwt.decode(
                token,
                key.key,
                algorithms=self.ALGORITHMS,
                issuer=self.issuer,
                audience=kc.audience,
                leeway=kc.leeway_s,
                options={"require": ["exp", "iss"], "verify_aud": kc.audience is not None},
            )
        except jwt.PyJWKClientConnectionError as exc:
            raise HttpError(503, f"cannot fetch the identity provider's keys: {exc}") from None
        except jwt.PyJWTError as exc:
            raise HttpError(401, f"invalid token: {exc}") from None
        if kc.client_id and claims.get("azp") not in (kc.client_id, kc.web_client_id):
            raise HttpError(
                401,
                f"invalid token: issued to {claims.get('azp')!r}, expected {kc.client_id!r} or {kc.web_client_id!r}",
            )
        return claims

    def _user(self, claims: dict[str, Any]) -> User:
        value: Any = claims
        for part in self.settings.roles_claim.split("."):
            value = value.get(part, {}) if isinstance(value, dict) else {}
        realm_roles = value if isinstance(value, list) else []
        roles = tuple(sorted({self.settings.role_map[r] for r in realm_roles if r in self.settings.role_map}))
        perms = frozenset(p for r in roles for p in self.accounts.roles[r].permissions)
        name = claims.get("preferred_username") or claims.get("sub") or "unknown"
        return User(str(name), roles, perms)


def authenticator(cfg: Config):
    """The authenticate(request, permission) callable for the configured auth mode."""
    return KeycloakAuth(cfg.accounts) if cfg.auth_mode == "keycloak" else DevAuth(cfg.accounts)
