"""Audit rows of the DICOMweb reads the plugin's HTTP filter lets through (the OHIF viewer; web/gate.py).

Orthanc's DICOMweb plugin answers these requests itself, so they never reach the router and its observer: the
gate calls :func:`make_gate_observer`'s observer for each. A viewer opening one study sends tens to thousands of
requests (series, metadata, one per frame); the trail keeps one row per user, study and kind of request
(search, metadata, images) per `window_s` seconds, which answers "who saw this patient's images, when" without
a row per frame. Searches (`/dicom-web/studies?...`) have no study UID in their path: one row per user per
window too (their query is not known to the filter)."""

from __future__ import annotations

import datetime as dt
import logging
import re
import threading
import time
from typing import Any

from nmdose.audit.event import AuditEvent, client_addresses, header
from nmdose.web.dicomweb import READ_METHODS, READ_PERMISSION

log = logging.getLogger("nmdose.audit")

_UID = r"[0-9]+(?:\.[0-9]+)*"
_STUDY_RE = re.compile(rf"^/dicom-web/studies/({_UID})(?:/|$)")
_TEMPLATE_RE = re.compile(rf"/{_UID}(?=/|$)")
IMAGE_WORDS = ("frames", "rendered", "thumbnail", "bulk", "pixeldata")


def kind_of(uri: str, method: str = "GET") -> str:
    """search, metadata or images (what a request of the viewer reads); write for anything but GET/HEAD (STOW-RS,
    only orthanc:admin gets through)."""
    if method.upper() not in READ_METHODS:
        return "write"
    path = uri.split("?", 1)[0]
    if path.startswith("/wado") or any(f"/{w}" in path for w in IMAGE_WORDS):
        return "images"
    if not _STUDY_RE.match(path):
        return "search"
    return "metadata"


def action_of(uri: str) -> str:
    """The request's path with its UIDs and frame numbers as {uid}: /dicom-web/studies/{uid}/series."""
    return _TEMPLATE_RE.sub("/{uid}", uri.split("?", 1)[0])[:200]


class Deduper:
    """Whether a (user, study, kind) was already recorded within the last `window_s` seconds."""

    def __init__(self, window_s: float, max_keys: int = 10000):
        self.window_s, self.max_keys = window_s, max_keys
        self._seen: dict[tuple[str, str, str], float] = {}
        self._lock = threading.Lock()

    def first(self, key: tuple[str, str, str], now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        with self._lock:
            last = self._seen.get(key)
            if last is not None and now - last < self.window_s:
                return False
            if len(self._seen) >= self.max_keys:
                self._seen = {k: t for k, t in self._seen.items() if now - t < self.window_s}
            self._seen[key] = now
            return True


def event_of(method: str, uri: str, ip: str, headers: dict[str, str], user: Any) -> AuditEvent:
    m = _STUDY_RE.match(uri.split("?", 1)[0])
    client, forwarded = client_addresses(headers, ip or None)
    detail: dict[str, Any] = {"kind": kind_of(uri, method), "deduplicated_s": None}
    agent = header(headers, "User-Agent")
    if agent:
        detail["user_agent"] = agent[:200]
    return AuditEvent(
        source="web",
        action=action_of(uri),
        at=dt.datetime.now(dt.UTC),
        actor_username=getattr(user, "username", None) or (str(user) if user is not None else None),
        actor_subject=str(getattr(user, "subject", "") or "") or None,
        actor_roles=[str(r) for r in (getattr(user, "roles", None) or ())],
        client_address=client,
        peer_address=ip or None,
        forwarded_for=forwarded,
        method=method.upper(),
        path=uri.split("?", 1)[0][:500],
        permission=READ_PERMISSION if method.upper() in READ_METHODS else "orthanc:admin",
        study_uids=[m.group(1)] if m else [],
        status=200,
        outcome="success",
        detail=detail,
    )


def make_gate_observer(audit_writer, window_s: float = 60.0):
    """observer(method, uri, ip, headers, user) for OrthancGate.observers: queues a row (never raises)."""
    seen = Deduper(window_s)

    def observe(method: str, uri: str, ip: str, headers: dict[str, str], user: Any) -> None:
        try:
            m = _STUDY_RE.match(uri.split("?", 1)[0])
            who = getattr(user, "username", None) or str(user)
            if not seen.first((who, m.group(1) if m else "", kind_of(uri, method))):
                return
            event = event_of(method, uri, ip, headers, user)
            event.detail["deduplicated_s"] = window_s
            audit_writer.submit(event)
        except Exception:
            log.exception("nmdose audit: DICOMweb observer failed for %s %s", method, uri)

    observe.nmdose_audit = True  # type: ignore[attr-defined]
    return observe
