"""Retrieval inside the research PACS plugin: `retrieve` jobs for the workers, and its REST routes."""

from __future__ import annotations

import contextlib

from nmdose.db import connect
from nmdose.retrieve import runner
from nmdose.web.router import HttpError, Request, Response

STATES = ("pending", "moving", "verifying", "done", "partial", "failed")


def job_handlers(plugin) -> dict:
    return {runner.KIND: runner.Retriever(plugin.cfg, plugin.rest_client())}


def register_routes(router, plugin) -> None:
    def start(request: Request) -> Response:
        body = request.json()
        queued = 0
        if body.get("census", True):
            with contextlib.closing(connect(plugin.cfg)) as conn:
                queued += runner.queue_census_targets(
                    conn, plugin.cfg.source_node.name, max_attempts=plugin.cfg.retrieve.retry.max_attempts
                )
        if body.get("studies"):
            targets = [
                runner.Target(uid, plugin.cfg.source_node.name, origin="manual") for uid in body["studies"]
            ]
            with contextlib.closing(connect(plugin.cfg)) as conn:
                queued += runner.queue_studies(
                    conn, targets, max_attempts=plugin.cfg.retrieve.retry.max_attempts
                )
        plugin.workers.wake()
        return Response.json({"queued": queued}, 202)

    def status(request: Request) -> Response:
        with contextlib.closing(connect(plugin.cfg)) as conn:
            return Response.json(runner.status(conn))

    def studies(request: Request) -> Response:
        state = request.query.get("state")
        if state is not None and state not in STATES:
            raise HttpError(400, f"state must be one of {', '.join(STATES)}")
        try:
            limit = int(request.query.get("limit", "500"))
        except ValueError:
            raise HttpError(400, "limit must be a number") from None
        with contextlib.closing(connect(plugin.cfg)) as conn:
            return Response.json(runner.studies(conn, state, min(max(limit, 1), 5000)))

    router.add("POST", "/retrieve", start, permission="retrieve:run")
    router.add("GET", "/retrieve/status", status, permission="research:read")
    router.add("GET", "/retrieve/studies", studies, permission="research:read")
