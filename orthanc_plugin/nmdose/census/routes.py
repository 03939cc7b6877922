"""REST routes of the census on the research PACS (mounted under /nmdose/) and its queue job.

``POST /census`` queues a `census` job that a plugin worker thread runs; a second start while one is queued or
running answers 409. ``GET /census/status`` and ``GET /census/descriptions[?new=1]`` read the database.
"""

from __future__ import annotations

import contextlib
from typing import Any

from nmdose.census import descriptions as D
from nmdose.census import runner
from nmdose.db import connect, queue
from nmdose.web.params import FLAG
from nmdose.web.router import HttpError, Request, Response

JOB_KIND = "census"
JOB_KEY = "source"
DATE_SCHEMA = {"type": "string", "format": "date", "maxLength": 10, "pattern": r"^\d{4}-\d{2}-\d{2}$"}
# The body of POST /census: both dates optional (the census then covers what the configuration says).
START_BODY = {
    "type": "object",
    "properties": {"from": DATE_SCHEMA, "to": DATE_SCHEMA},
    "additionalProperties": False,
}


def register_routes(router, plugin) -> None:
    """Add the census routes to the plugin's router."""

    def start(request: Request) -> Response:
        body = request.data or {}
        payload = {k: body[k] for k in ("from", "to") if body.get(k)}
        payload["by"] = str(getattr(request.user, "username", request.user) or "rest")
        with contextlib.closing(connect(plugin.cfg)) as conn:
            with conn.cursor() as cur:
                cur.execute("SELECT state FROM jobs.queue WHERE kind = %s AND key = %s", (JOB_KIND, JOB_KEY))
                row = cur.fetchone()
            conn.commit()
            if row and row[0] in ("pending", "running"):
                raise HttpError(409, f"a census is already {row[0]} (GET /nmdose/census/status)")
            if runner.status(conn, plugin.cfg).get("state") == "running":
                raise HttpError(409, "a census is already running (GET /nmdose/census/status)")
            queue.enqueue(
                conn,
                JOB_KIND,
                JOB_KEY,
                payload,
                max_attempts=plugin.cfg.retrieve.retry.max_attempts,
                reset=True,
            )
        plugin.workers.wake()
        return Response.json({"queued": True, "job": {"kind": JOB_KIND, "key": JOB_KEY, **payload}}, 202)

    def status(request: Request) -> Response:
        with contextlib.closing(connect(plugin.cfg)) as conn:
            data: dict[str, Any] = runner.status(conn, plugin.cfg)
            with conn.cursor() as cur:
                cur.execute(
                    "SELECT state, attempts, last_error FROM jobs.queue WHERE kind = %s AND key = %s",
                    (JOB_KIND, JOB_KEY),
                )
                row = cur.fetchone()
        data["job"] = {"state": row[0], "attempts": row[1], "last_error": row[2]} if row else None
        return Response.json(data)

    def list_descriptions(request: Request) -> Response:
        only_new = bool(request.args.get("new"))
        with contextlib.closing(connect(plugin.cfg)) as conn:
            return Response.json(D.list_descriptions(conn, plugin.cfg, only_new=only_new))

    router.add(
        "POST",
        "/census",
        start,
        permission="census:run",
        body=START_BODY,
        summary="Queue a census of the clinical PACS (optionally between two study dates)",
        answers={202: "queued (the job)", 409: "a census is already queued or running"},
    )
    router.add(
        "GET",
        "/census/status",
        status,
        permission="research:read",
        query={},
        summary="The census's progress and its queue job",
    )
    router.add(
        "GET",
        "/census/descriptions",
        list_descriptions,
        permission="research:read",
        query={"new": FLAG.but(description="only descriptions waiting for acceptance")},
        summary="Study descriptions the census found, with counts and modality sets",
    )


def job_handlers(plugin) -> dict:
    """The `census` queue job: run (or resume) the census on a worker thread."""

    def handle(job: queue.Job) -> None:
        runner.run_census(
            plugin.cfg,
            date_from=job.payload.get("from"),
            date_to=job.payload.get("to"),
            started_by=job.payload.get("by"),
            finder=runner.make_finder(plugin.cfg, plugin.rest_client()),
        )

    return {JOB_KIND: handle}
