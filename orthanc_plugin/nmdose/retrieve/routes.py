"""Retrieval inside the research PACS plugin: `retrieve` jobs for the workers, and its REST routes."""

from __future__ import annotations

import contextlib

from nmdose.db import connect
from nmdose.retrieve import runner
from nmdose.web.params import Choice, Int
from nmdose.web.router import UID_RE, HttpError, Request, Response, check_uid

STATES = ("pending", "moving", "verifying", "done", "partial", "failed")
MAX_STUDIES = 10_000  # one request; the CLI (`nmdose retrieve run`) takes longer lists
UID_SCHEMA = {"type": "string", "pattern": UID_RE.pattern, "maxLength": 64}
START_BODY = {
    "type": "object",
    "properties": {
        "census": {"type": "boolean", "description": "queue every study the census selected (default true)"},
        "studies": {"type": "array", "items": UID_SCHEMA, "minItems": 1, "maxItems": MAX_STUDIES},
    },
    "additionalProperties": False,
}
STUDIES_QUERY = {
    "state": Choice(*STATES, description="only studies in this state"),
    "limit": Int(1, 5000, "at most this many studies (default 500)"),
}


def job_handlers(plugin) -> dict:
    return {runner.KIND: runner.Retriever(plugin.cfg, plugin.rest_client())}


def health_problems(plugin) -> list[str]:
    """The nodes the plugin's retrievals wait for (their circuit breaker is open): studies wait, none fails."""
    retriever = plugin.workers.handlers.get(runner.KIND)
    breakers = getattr(retriever, "breakers", None)
    if breakers is None:
        return []
    return [
        f"retrieve: {node} unreachable for {st['down_for_s']:.0f} s, retrievals wait (next probe in "
        f"{st['next_probe_in_s']:.0f} s): {st['last_error']}"
        for node, st in breakers.status().items()
    ]


def parse_start(body) -> tuple[bool, list[str]]:
    """The body of `POST /retrieve`: `{"census": true|false, "studies": ["<StudyInstanceUID>", ...]}`, both
    optional. `studies` is a list of 1..MAX_STUDIES DICOM UIDs (never "*" or a bare string); HttpError 400 else."""
    if not isinstance(body, dict):
        raise HttpError(400, 'the body must be a JSON object {"census": bool, "studies": [UID, ...]}')
    unknown = sorted(set(body) - {"census", "studies"})
    if unknown:
        raise HttpError(400, f"unknown key {unknown[0]!r} (known: census, studies)")
    census = body.get("census", True)
    if not isinstance(census, bool):
        raise HttpError(400, f"'census' must be true or false, got {census!r}")
    studies = body.get("studies")
    if studies is None:
        return census, []
    if not isinstance(studies, list) or not 1 <= len(studies) <= MAX_STUDIES:
        raise HttpError(
            400, f"'studies' must be a list of 1 to {MAX_STUDIES} StudyInstanceUIDs, got {studies!r:.80}"
        )
    return census, [check_uid(uid, "each of 'studies'") for uid in studies]


def register_routes(router, plugin) -> None:
    def start(request: Request) -> Response:
        census, uids = parse_start({} if request.data is None else request.data)
        queued = 0
        if census:
            with contextlib.closing(connect(plugin.cfg)) as conn:
                queued += runner.queue_census_targets(
                    conn, plugin.cfg.source_node.name, max_attempts=plugin.cfg.retrieve.retry.max_attempts
                )
        if uids:
            targets = [runner.Target(uid, plugin.cfg.source_node.name, origin="manual") for uid in uids]
            with contextlib.closing(connect(plugin.cfg)) as conn:
                queued += runner.queue_studies(
                    conn, targets, max_attempts=plugin.cfg.retrieve.retry.max_attempts
                )
        plugin.workers.wake()
        return Response.json({"queued": queued}, 202)

    def status(request: Request) -> Response:
        with contextlib.closing(connect(plugin.cfg)) as conn:
            return Response.json(runner.status(conn))

    def estimate(request: Request) -> Response:
        from nmdose.retrieve.estimate import estimate as backfill_estimate

        with contextlib.closing(connect(plugin.cfg)) as conn:
            return Response.json(backfill_estimate(conn, plugin.cfg))

    def studies(request: Request) -> Response:
        with contextlib.closing(connect(plugin.cfg)) as conn:
            return Response.json(
                runner.studies(conn, request.args.get("state"), request.args.get("limit", 500))
            )

    router.add(
        "POST",
        "/retrieve",
        start,
        permission="retrieve:run",
        body=START_BODY,
        summary="Queue retrievals: the census's selected studies and/or the listed StudyInstanceUIDs",
        answers={202: "queued (how many)"},
    )
    router.add(
        "GET",
        "/retrieve/status",
        status,
        permission="research:read",
        query={},
        summary="Retrieval counts per state",
    )
    router.add(
        "GET",
        "/retrieve/studies",
        studies,
        permission="research:read",
        query=STUDIES_QUERY,
        summary="Retrievals, newest first, with their state and counts",
    )
    router.add(
        "GET",
        "/retrieve/estimate",
        estimate,
        permission="research:read",
        query={},
        summary="Backfill estimate: the pending studies per size class at the throughput measured so far, "
        "and when they are done through the time window",
    )
