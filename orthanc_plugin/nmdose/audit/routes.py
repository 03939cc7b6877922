"""The audit stage of the plugin (one of `STAGES` in plugin.py): the router observer that records every call of a
non-public route, `GET /nmdose/api/audit`, the page `/nmdose/ui/audit`, and the daily retention purge."""

from __future__ import annotations

import contextlib
import datetime as dt
import html
import json
import logging
import threading
from typing import Any

from nmdose.audit import context, store
from nmdose.audit import writer as writer_mod
from nmdose.audit.event import WebCall
from nmdose.web.params import TEXT, Choice, Int
from nmdose.web.router import PUBLIC, HttpError, Request, Response

log = logging.getLogger("nmdose.audit")
PERMISSION = "audit:read"


# ----- the observer


def make_observer(audit_writer: writer_mod.AuditWriter, identify=None):
    """observer(request, response, permission): queue one row for a non-public route (never raises).
    `identify(headers)`: the user of a valid credential, for a 403 (the auth layer refused the permission
    before handing the user to the request), so that the row names who was refused."""

    def observe(request: Request, response: Response, permission: str | None) -> None:
        peer = context.take_client()
        if permission == PUBLIC:
            return
        try:
            user = request.user
            if user is None and response.status == 403 and identify is not None:
                user = identify(request.headers or {})
            peer = peer or getattr(request, "client", None) or getattr(request, "remote", None)
            audit_writer.submit(
                WebCall(
                    at=dt.datetime.now(dt.UTC),
                    method=request.method,
                    path=request.path,
                    permission=permission,
                    query=dict(request.query or {}),
                    params=dict(request.params or {}),
                    headers=request.headers or {},
                    request_body=request.body if request.method.upper() != "GET" else b"",
                    user=user,
                    peer=str(peer) if peer else None,
                    status=int(response.status),
                    content_type=response.content_type or "",
                    response_body=response.body or b"",
                    detail=dict(getattr(response, "audit", None) or {}),
                )
            )
        except Exception:
            log.exception("nmdose audit: observer failed for %s %s", request.method, request.path)

    observe.nmdose_audit = True  # type: ignore[attr-defined]
    return observe


def writer_for(plugin) -> writer_mod.AuditWriter:
    """The plugin's audit writer (one per plugin), registered for this database (`record_action` uses it)."""
    w = getattr(plugin, "audit_writer", None)
    if w is None:
        from nmdose.db import connect

        cfg = plugin.cfg
        sinks = []
        if cfg.audit.syslog is not None:
            from nmdose.audit import atna

            sinks.append(atna.SyslogSink(cfg))
        w = writer_mod.AuditWriter(
            lambda: connect(cfg),
            max_study_uids=cfg.audit.max_study_uids,
            queue_max=cfg.audit.queue_max,
            sinks=sinks,
        )
        plugin.audit_writer = w
        writer_mod.register(cfg, w)
    return w


def install(plugin) -> bool:
    """Append the audit observer to `plugin.router.observers` (once). Returns whether it is installed.

    Without `Router.observers` (an older router) the router's `dispatch` is wrapped instead, finding the route's
    permission the way the router does."""
    router = plugin.router
    w = writer_for(plugin)

    def identify(headers):
        from nmdose.auth import optional_user

        return optional_user(getattr(router, "authenticate", None), headers)

    gate_observers = getattr(getattr(plugin, "gate", None), "observers", None)
    if gate_observers is not None and not any(getattr(o, "nmdose_audit", False) for o in gate_observers):
        from nmdose.audit.dicomweb import make_gate_observer

        gate_observers.append(make_gate_observer(w))  # the viewer's DICOMweb reads (docs/viewer.md)
    observers = getattr(router, "observers", None)
    if observers is not None:
        if not any(getattr(o, "nmdose_audit", False) for o in observers):
            observers.append(make_observer(w, identify))
        return True
    if getattr(router, "_nmdose_audit_wrapped", False):
        return True
    observe = make_observer(w, identify)
    dispatch = router.dispatch

    def audited_dispatch(request: Request) -> Response:
        response = dispatch(request)
        permission = _permission_of(router, request)
        if permission is not _NO_ROUTE:
            observe(request, response, permission)
        else:
            context.take_client()
        return response

    router.dispatch = audited_dispatch
    router._nmdose_audit_wrapped = True
    return True


_NO_ROUTE = object()


def _permission_of(router, request: Request):
    for method, regex, _handler, permission in router.routes:
        if method == request.method.upper() and regex.match(request.path):
            return permission
    return _NO_ROUTE


# ----- stage hooks

# The query of GET /api/audit, as the router checks it before the handler (store.parse_filters then reads it).
API_QUERY = {
    "user": TEXT.but(description="username or token subject (exact)"),
    "study": TEXT.but(description="a StudyInstanceUID among the event's studies"),
    "patient": TEXT.but(description="a PatientID, matched through the census to its studies"),
    "route": TEXT.but(description="part of the route or action"),
    "source": Choice("web", "cli", "plugin", description="where the event came from"),
    "outcome": Choice("success", "failure", "denied", description="the event's outcome"),
    "from": TEXT.but(description="from this time (ISO 8601 date or date-time)"),
    "to": TEXT.but(description="until this time (ISO 8601 date or date-time; a date includes its whole day)"),
    "limit": Int(1, store.MAX_LIMIT, "events per page (default 100)"),
    "page": Int(1, 1_000_000, "the page (default 1)"),
    "format": Choice("json", "csv", description="JSON (default) or CSV"),
}


def register_routes(router, plugin) -> None:
    install(plugin)

    def db():
        from nmdose.db import connect

        return contextlib.closing(connect(plugin.cfg, role="web"))  # SELECT on audit.event, no more

    def api(request: Request) -> Response:
        try:
            f = store.parse_filters(request.query)
        except store.FilterError as exc:
            raise HttpError(400, str(exc)) from None
        with db() as conn:
            rows, more = store.query(conn, f)
        if f.get("format") == "csv":
            resp = Response(200, store.to_csv(rows).encode("utf-8-sig"), "text/csv; charset=utf-8")
            resp.headers["Content-Disposition"] = 'attachment; filename="nmdose-audit.csv"'
            resp.headers["Cache-Control"] = "no-store"
            return resp
        resp = Response.json(
            {"rows": rows, "count": len(rows), "page": f["page"], "limit": f["limit"], "more": more}
        )
        resp.headers["Cache-Control"] = "no-store"
        return resp

    def page(request: Request) -> Response:
        resp = Response.html(render_page(plugin.cfg))
        resp.headers["Cache-Control"] = "no-store"
        return resp

    router.add(
        "GET",
        "/api/audit",
        api,
        permission=PERMISSION,
        query=API_QUERY,
        summary="The audit trail: who read or changed which patient's data, newest first, one page",
    )
    # The shell holds no data (like the other pages): it loads without a token so that its script can log in;
    # the API it calls needs audit:read.
    router.add(
        "GET",
        "/ui/audit",
        page,
        permission=PUBLIC,
        summary="The audit trail page (a shell; its data comes from /api/audit)",
        content_type="text/html; charset=utf-8",
    )


def on_started(plugin) -> None:
    """Purge now (past the retention) and then every `purge_interval_h` on a daemon thread."""
    stop = getattr(plugin, "audit_purge_stop", None)
    if stop is not None:
        return
    stop = plugin.audit_purge_stop = threading.Event()
    interval = plugin.cfg.audit.purge_interval_h * 3600

    def loop() -> None:
        while True:
            run_purge(plugin.cfg, source="plugin")
            if stop.wait(interval):
                return

    threading.Thread(target=loop, name="nmdose-audit-purge", daemon=True).start()


def run_purge(cfg, *, source: str, by: str | None = None, retention_days: int | None = None) -> int | None:
    from nmdose.db import connect

    days = retention_days or cfg.audit.retention_days
    try:
        with contextlib.closing(connect(cfg)) as conn:
            removed = store.purge(conn, days, source=source, by=by)
    except Exception as exc:
        log.error("nmdose audit: retention purge failed: %s", exc)
        return None
    if removed:
        log.warning("nmdose audit: %d rows older than %d days removed (retention)", removed, days)
    send_purge(cfg, days, removed, source=source, by=by)
    return removed


def send_purge(cfg, days: int, removed: int, *, source: str, by: str | None = None) -> None:
    """The ATNA copy of the row `audit.purge()` wrote in SQL (when a repository is configured)."""
    if cfg.audit.syslog is None:
        return
    try:
        from nmdose.audit import atna
        from nmdose.audit.actions import build

        event = build(
            "audit purge", source=source, params={"retention_days": days}, detail={"removed": removed}
        )
        if by:
            event.actor_username = by
        atna.send(cfg, [event])
    except Exception as exc:
        log.error("nmdose audit: ATNA message of the purge not sent: %s", exc)


# ----- the page


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def render_page(cfg) -> str:
    """The audit page shell: filters, a table and paging filled by static/audit.js (no inline script)."""
    from nmdose.auth import browser_login

    oidc = browser_login(cfg)
    login = f'\n<meta name="nmdose-oidc" content="{_e(json.dumps(oidc))}">' if oidc else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">{login}
<title>Audit trail · nmdose</title>
<link rel="stylesheet" href="../static/nmdose.css">
</head>
<body data-page="audit" data-root="../">
<header><nav>
  <a href="../ui/index">Home</a>
  <a href="../ui/research">Research PACS</a>
  <a href="../ui/dose">Dose</a>
  <a href="../ui/audit">Audit trail</a>
  <a href="../../app/explorer.html">Orthanc Explorer</a>
</nav></header>
<main>
<h1>Audit trail <span lang="ko">(접속기록)</span></h1>
<p class="hint">Who called which route or ran which action, when, from where, about which studies, and how many
rows the answer held. Newest first. Needs the <code>audit:read</code> permission.</p>
<form id="audit-filters">
  <label>User <input name="user" size="12"></label>
  <label>Study UID <input name="study" size="30"></label>
  <label>Patient ID <input name="patient" size="12"></label>
  <label>Route / action <input name="route" size="16"></label>
  <label>Source <select name="source"><option value=""></option><option>web</option><option>cli</option>
    <option>plugin</option></select></label>
  <label>From <input type="date" name="from"></label>
  <label>To <input type="date" name="to"></label>
  <label>Per page <select name="limit"><option>50</option><option selected>100</option><option>500</option>
    </select></label>
  <button type="submit">Apply</button>
  <a id="audit-csv" href="../api/audit?format=csv" data-download>CSV</a>
  <p id="audit-error" class="error" hidden></p>
</form>
<p><button type="button" id="audit-prev" disabled>&larr; newer</button>
<span id="audit-page">page 1</span>
<button type="button" id="audit-next" disabled>older &rarr;</button></p>
<table id="audit-table" class="data"></table>
</main>
<script src="../static/nmdose-auth.js"></script>
<script src="../static/audit.js"></script>
</body></html>
"""
