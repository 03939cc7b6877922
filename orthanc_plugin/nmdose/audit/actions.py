"""Audit rows for actions that are not web calls: the command line's state-changing commands (source `cli`, the
OS user) and the plugin's automatic actions (source `plugin`, user `nmdose`).

`record_action` never raises: the action it records has happened already; a failure to record it is logged
(and printed on stderr for the command line).
"""

from __future__ import annotations

import contextlib
import getpass
import logging
import socket
import sys
from collections.abc import Iterable
from typing import Any

from nmdose.audit import store, writer
from nmdose.audit.event import AuditEvent, UidCollector, clean_params

log = logging.getLogger("nmdose.audit")
PLUGIN_USER = "nmdose"


def in_plugin() -> bool:
    """True inside the research Orthanc (orthanc_plugin/entry.py imported the `orthanc` module)."""
    return "orthanc" in sys.modules


def os_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no login name (a container without passwd entry)
        return "unknown"


def build(
    action: str,
    *,
    source: str,
    study_uids: Iterable[str] = (),
    params: dict[str, Any] | None = None,
    status: int | None = 0,
    rows: int | None = None,
    detail: dict[str, Any] | None = None,
    max_study_uids: int = 1000,
) -> AuditEvent:
    uids = UidCollector(max_study_uids)
    uids.add([str(u) for u in study_uids])
    failed = status not in (None, 0) and not (200 <= (status or 0) < 400)
    return AuditEvent(
        source=source,
        action=action,
        actor_username=os_user() if source == "cli" else PLUGIN_USER,
        client_address=socket.gethostname() if source == "cli" else None,
        params=clean_params({k: v for k, v in (params or {}).items() if v is not None}, {}),
        study_uids=uids.kept,
        study_uids_total=uids.total,
        rows_returned=rows,
        status=status,
        outcome="failure" if failed else "success",
        detail=dict(detail or {}),
    )


def record_action(
    cfg,
    action: str,
    *,
    study_uids: Iterable[str] = (),
    params: dict[str, Any] | None = None,
    status: int | None = 0,
    rows: int | None = None,
    detail: dict[str, Any] | None = None,
    source: str | None = None,
    plugin_only: bool = False,
) -> bool:
    """Record one action. `source` defaults to `plugin` inside Orthanc (the embedded interpreter has the
    `orthanc` module) and `cli` elsewhere; `plugin_only` records nothing outside Orthanc (code the command line
    shares with the plugin, whose command handler records the action itself). Rows go through the plugin's
    audit writer when it has one for this database, else on a short-lived connection. Returns whether the
    row was written (or queued)."""
    if plugin_only and not in_plugin():
        return False
    source = source or ("plugin" if in_plugin() else "cli")
    w = writer.for_config(cfg)
    try:
        event = build(
            action,
            source=source,
            study_uids=study_uids,
            params=params,
            status=status,
            rows=rows,
            detail=detail,
            max_study_uids=cfg.audit.max_study_uids,
        )
        if w is not None:
            w.submit(event)  # written, and sent to the ATNA repository, by the writer thread
            return True
        from nmdose.db import connect

        with contextlib.closing(connect(cfg)) as conn:
            store.insert(conn, [event])
    except Exception as exc:
        log.error("nmdose audit: could not record %r: %s", action, exc)
        if source == "cli":
            print(f"nmdose: warning: audit row for {action!r} not written: {exc}", file=sys.stderr)
        return False
    if cfg.audit.syslog is not None:  # the ATNA copy (the plugin's writer sends its own after each batch)
        try:
            from nmdose.audit import atna

            atna.send(cfg, [event])
        except Exception as exc:
            log.error("nmdose audit: ATNA message for %r not sent: %s", action, exc)
    return True
