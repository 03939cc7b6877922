"""The plugin's routes and queue job for pseudonymised copies (the project page's button; docs/pseudonymise.md).

``POST /nmdose/api/projects/{name}/pseudonymise`` (write access to the project) queues a `pseudonymise` job that a
plugin worker thread runs (the whole project into the pseudoPACS, as `nmdose pseudonymise --project NAME`); a
second request while it runs makes it run once more when it ends. ``GET /nmdose/api/projects/{name}/copies`` (read
access) lists the project's copies and the job's state.
"""

from __future__ import annotations

import contextlib
from typing import Any

from nmdose.db import connect, queue
from nmdose.projects import store
from nmdose.projects.access import READ, WRITE
from nmdose.projects.names import ProjectError, check_name
from nmdose.pseudonymise import deid, export
from nmdose.web.router import AUTHENTICATED, HttpError, Request, Response

JOB_KIND = "pseudonymise"
START_BODY = {
    "type": "object",
    "properties": {
        "dates": {"type": "string", "enum": ["shift", "keep"]},
        "keep_dose": {"type": "boolean"},
    },
    "additionalProperties": False,
}
NAME_ANSWERS = {
    400: "the project name is malformed",
    403: "the user may not do this with the project",
    404: "no such project",
}


def _checked(plugin, request: Request, wanted: str) -> str:
    """The path's project name, when the user may `wanted` it (else the HttpError saying why)."""
    try:
        name = check_name(request.params["name"])
        with contextlib.closing(connect(plugin.cfg, role="worker")) as conn:
            store.user_access(conn, request.user).check(name, wanted)
            store.get(conn, name)  # 404 for a project that does not exist
            conn.commit()
    except ProjectError as exc:
        raise HttpError(exc.status, exc.message) from None
    return name


def register_routes(router, plugin) -> None:
    def start(request: Request) -> Response:
        name = _checked(plugin, request, WRITE)
        if export.NODE not in plugin.cfg.nodes:
            raise HttpError(409, f"no {export.NODE} node configured (config/dicom_network_entities.yaml)")
        body = request.data or {}
        payload: dict[str, Any] = {
            "project": name,
            "dates": body.get("dates", "shift"),
            "keep_dose": bool(body.get("keep_dose", True)),
            "by": str(getattr(request.user, "username", None) or "local"),
        }
        with contextlib.closing(connect(plugin.cfg, role="worker")) as conn:
            queue.enqueue(conn, JOB_KIND, name, payload, max_attempts=3, reset=True)
            conn.commit()
        plugin.workers.wake()
        return Response.json({"queued": True, "job": {"kind": JOB_KIND, "key": name, **payload}}, 202)

    def listing(request: Request) -> Response:
        name = _checked(plugin, request, READ)
        with contextlib.closing(connect(plugin.cfg, role="worker")) as conn, conn.cursor() as cur:
            cur.execute(
                "SELECT state, attempts, last_error FROM jobs.queue WHERE kind = %s AND key = %s",
                (JOB_KIND, name),
            )
            job = cur.fetchone()
            conn.commit()
        rows = export.copies(plugin.cfg, name)  # after the job's state: a job done has its rows written
        for r in rows:
            for k in ("started_at", "finished_at"):
                r[k] = r[k].isoformat() if r[k] else None
        return Response.json(
            {
                "rows": rows,
                "count": len(rows),
                "job": dict(zip(("state", "attempts", "last_error"), job, strict=True)) if job else None,
            }
        )

    router.add(
        "POST",
        "/api/projects/{name}/pseudonymise",
        start,
        permission=AUTHENTICATED,
        query={},
        body=START_BODY,
        summary="Queue a pseudonymised copy of the project's studies into the pseudoPACS (write access)",
        answers={202: "queued", **NAME_ANSWERS, 409: "no pseudoPACS node is configured"},
    )
    router.add(
        "GET",
        "/api/projects/{name}/copies",
        listing,
        permission=AUTHENTICATED,
        query={},
        summary="The project's pseudonymised copies (study, pseudonym, copy UID, state) and the job's state",
        answers=NAME_ANSWERS,
    )


def job_handlers(plugin) -> dict:
    """The `pseudonymise` queue job: the project's studies into the pseudoPACS, on a worker thread."""

    def handle(job: queue.Job) -> None:
        p = job.payload
        options = deid.Options(dates=p.get("dates", "shift"), keep_dose=bool(p.get("keep_dose", True)))
        project = p["project"]
        export.export(plugin.cfg, project, export.project_studies(plugin.cfg, project), options=options,
                      requested_by=p.get("by"))  # fmt: skip

    return {JOB_KIND: handle}
