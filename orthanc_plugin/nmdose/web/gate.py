"""The gate in front of Orthanc's own REST API and Orthanc Explorer (the research PACS's HTTP server).

Orthanc 1.10 has no token support, and its built-in HTTP authentication would refuse the pages' bearer tokens,
so in keycloak auth mode the plugin's incoming-HTTP filter decides every request the server receives:

- ``/nmdose/...`` passes to the router, which checks each route's own permission;
- DICOMweb reads (GET/HEAD of ``/dicom-web/...`` and ``/wado``, the OHIF viewer's requests) also admit a user
  holding ``images:read`` (web/dicomweb.py), and a member of a research project reading studies of that project
  (the study named in the path or the query; ``study_access``, nmdose.projects.viewer_access);
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
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from nmdose.security.internal import INTERNAL_HEADER, internal_secret
from nmdose.web import dicomweb
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
        # Called with (method, uri, ip, headers, user) for each DICOMweb request a user (not nmdose's internal
        # credential) was let through: the audit trail records the viewer's reads (nmdose/audit/dicomweb.py).
        self.observers: list[Callable[[str, str, str, dict[str, str], Any], None]] = []
        # (user, study UIDs) -> whether the user may read every one of them through a research project
        # (nmdose.projects.viewer_access, set by the plugin): the viewer for project members without images:read
        self.study_access: Callable[[Any, list[str]], bool] | None = None

    def allowed(
        self, method: str, uri: str, ip: str, headers: dict[str, str], get: dict[str, str] | None = None
    ) -> bool:
        """True lets Orthanc serve the request; False makes it answer 403."""
        if uri == "/nmdose" or uri.startswith("/nmdose/"):
            return True
        if not self.enabled:
            if self.observers and dicomweb.is_dicomweb(uri):
                self._notify(method, uri, ip, headers, self.auth.user_from_headers(headers))
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
            if dicomweb.is_dicomweb(uri):
                self._notify(method, uri, ip, headers, user)
            return True
        if (
            user is not None
            and dicomweb.READ_PERMISSION in user.permissions
            and method.upper() in dicomweb.READ_METHODS
            and dicomweb.is_dicomweb(uri)
        ):
            self._notify(method, uri, ip, headers, user)
            return True  # the OHIF viewer's reads (docs/viewer.md)
        if (
            user is not None
            and self.study_access is not None
            and method.upper() in dicomweb.READ_METHODS
            and dicomweb.is_dicomweb(uri)
        ):
            uids = dicomweb.study_uids_of(uri, get)
            if uids and self.study_access(user, uids):
                self._notify(method, uri, ip, headers, user)
                return True  # a project member reading a study of the project (docs/projects.md)
        who = f"user {user.username} lacks {ADMIN_PERMISSION}" if user is not None else "no credential"
        log.warning("refused %s %s from %s: %s", method, uri, ip, who)
        return False

    def _notify(self, method: str, uri: str, ip: str, headers: dict[str, str], user: Any) -> None:
        for observer in list(self.observers):
            try:
                observer(method, uri, ip, headers, user)
            except Exception:  # an observer never decides the answer
                log.exception("nmdose gate: observer %r failed on %s %s", observer, method, uri)
