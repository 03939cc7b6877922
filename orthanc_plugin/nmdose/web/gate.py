"""The gate in front of Orthanc's own REST API and Orthanc Explorer (the research PACS's HTTP server).

Orthanc 1.10 has no token support, and its built-in HTTP authentication would refuse the pages' bearer tokens,
so in keycloak auth mode the plugin's incoming-HTTP filter decides every request the server receives:

- ``/nmdose/...`` passes to the router, which checks each route's own permission;
- any other path (``/patients``, ``/instances/*/file``, ``/app/explorer.html``, ``/tools/*``, ``/modalities/*``)
  needs either nmdose's internal credential (the plugin's own loopback calls and the ``nmdose`` command line, a
  random secret from the secret store sent as the ``X-Nmdose-Internal`` header), or a user (bearer token, or the
  ``nmdose_session`` cookie the pages set after login) holding the ``orthanc:admin`` permission.

Everything else is refused (Orthanc answers 403). In dev auth mode the gate lets everything through: dev is for
a research PACS on localhost (``RemoteAccessAllowed: false``); prod refuses dev auth.
"""

from __future__ import annotations

import hmac
import logging
from typing import TYPE_CHECKING, Any

from nmdose.security.internal import INTERNAL_HEADER, internal_secret
from nmdose.web.router import HttpError

if TYPE_CHECKING:
    from nmdose.config import Config

log = logging.getLogger("nmdose.web.gate")

ADMIN_PERMISSION = "orthanc:admin"


class OrthancGate:
    def __init__(self, cfg: Config, auth: Any):
        self.enabled = cfg.auth_mode == "keycloak"
        self.auth = auth
        self._secret = internal_secret(cfg).encode() if self.enabled else b""
        self._header = INTERNAL_HEADER.lower()

    def allowed(self, method: str, uri: str, ip: str, headers: dict[str, str]) -> bool:
        """True lets Orthanc serve the request; False makes it answer 403."""
        if not self.enabled or uri == "/nmdose" or uri.startswith("/nmdose/"):
            return True
        supplied = headers.get(self._header) or headers.get(INTERNAL_HEADER) or ""
        if supplied and hmac.compare_digest(supplied.encode(), self._secret):
            return True
        try:
            user = self.auth.user_from_headers(headers)
        except HttpError as exc:
            log.warning("refused %s %s from %s: %s", method, uri, ip, exc.message)
            return False
        if user is not None and ADMIN_PERMISSION in user.permissions:
            return True
        who = f"user {user.username} lacks {ADMIN_PERMISSION}" if user is not None else "no credential"
        log.warning("refused %s %s from %s: %s", method, uri, ip, who)
        return False
