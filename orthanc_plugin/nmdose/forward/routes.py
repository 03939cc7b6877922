"""Forwarding inside the research PACS plugin: STABLE_STUDY → `forward` job, start-up re-queueing, the
auto_delete clean-up job, and the REST routes."""

from __future__ import annotations

import contextlib
import logging

from nmdose.db import connect
from nmdose.forward import purge, runner
from nmdose.web.router import Request, Response, check_uid

log = logging.getLogger("nmdose.forward")


def job_handlers(plugin) -> dict:
    forwarder = runner.Forwarder(plugin.cfg, plugin.rest_client())
    handlers = {runner.KIND: forwarder}
    if plugin.cfg.retrieve.transfer.strategy == "auto_delete":
        handlers[purge.KIND] = purge.PurgeJob(plugin.cfg, plugin.rest_client())
    return handlers


def on_started(plugin) -> None:
    """Orthanc keeps the stable state in memory only: queue the studies that were never forwarded."""
    with contextlib.closing(connect(plugin.cfg)) as conn:
        n = runner.requeue_unforwarded(plugin.cfg, plugin.rest_client(), conn)
        if plugin.cfg.retrieve.transfer.strategy == "auto_delete":
            purge.schedule(conn)
    if n:
        log.warning("nmdose: %d studies never forwarded were queued again", n)
    plugin.workers.wake()


def on_stable_study(plugin, orthanc_study_id: str) -> None:
    with contextlib.closing(connect(plugin.cfg)) as conn:
        runner.on_stable(plugin.cfg, plugin.rest_client(), conn, orthanc_study_id)


def register_routes(router, plugin) -> None:
    def status(request: Request) -> Response:
        with contextlib.closing(connect(plugin.cfg)) as conn:
            return Response.json(runner.status(conn))

    def pending(request: Request) -> Response:
        with contextlib.closing(connect(plugin.cfg)) as conn:
            return Response.json(runner.pending(conn))

    def forward_study(request: Request) -> Response:
        uid = check_uid(request.params["uid"])
        body = request.json()
        force = bool(body.get("force")) if isinstance(body, dict) else False
        with contextlib.closing(connect(plugin.cfg)) as conn:
            runner.queue_study(conn, uid, plugin.cfg.dose_node.name, trigger="manual", force=force)
        plugin.workers.wake()
        return Response.json({"queued": uid, "force": force}, 202)

    router.add("GET", "/forward/status", status, permission="research:read")
    router.add("GET", "/forward/pending", pending, permission="research:read")
    router.add("POST", "/forward/studies/{uid}", forward_study, permission="forward:run")
