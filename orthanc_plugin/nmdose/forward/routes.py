"""Forwarding inside the research PACS plugin: STABLE_STUDY → `forward` job, the start-up reconciliation and
the periodic one, the auto_delete clean-up job, the REST routes and the stage's health problems."""

from __future__ import annotations

import contextlib
import logging
import threading
import time

from nmdose.db import connect
from nmdose.forward import purge, runner
from nmdose.web.router import Request, Response, check_uid

log = logging.getLogger("nmdose.forward")


def job_handlers(plugin) -> dict:
    forwarder = runner.Forwarder(plugin.cfg, plugin.rest_client())
    handlers = {
        runner.KIND: forwarder,
        runner.RECONCILE_KIND: runner.ReconcileJob(plugin.cfg, plugin.rest_client()),
    }
    if plugin.cfg.retrieve.transfer.strategy == "auto_delete":
        handlers[purge.KIND] = purge.PurgeJob(plugin.cfg, plugin.rest_client())
    return handlers


def on_started(plugin) -> None:
    """Orthanc keeps the stable state in memory only: reconcile every study of the research PACS with its last
    forward plan (runner.reconcile), then keep the periodic reconciliation queued. When the database or the
    research PACS's REST API is not ready yet, a background thread tries again (every 30 s) until it is."""
    try:
        _start_reconciliation(plugin)
    except Exception as exc:
        log.warning("nmdose: forward reconciliation at start failed, retried in the background: %s", exc)
        threading.Thread(
            target=_retry_start, args=(plugin,), name="nmdose-forward-start", daemon=True
        ).start()


def _retry_start(plugin, delay_s: float = 30.0) -> None:
    while True:
        time.sleep(delay_s)
        try:
            _start_reconciliation(plugin)
            return
        except Exception as exc:
            log.warning("nmdose: forward reconciliation at start failed again: %s", exc)


def _start_reconciliation(plugin) -> None:
    with contextlib.closing(connect(plugin.cfg)) as conn:
        runner.schedule_reconcile(conn)
        if plugin.cfg.retrieve.transfer.strategy == "auto_delete":
            purge.schedule(conn)
        result = runner.reconcile(plugin.cfg, plugin.rest_client(), conn)
    log.log(
        logging.WARNING if result.total_queued else logging.INFO,
        "nmdose: forward reconciliation in %.2f s: %d research studies, %d unchanged, %d adopted, %d already "
        "queued, queued again: %s, %d stale",
        result.seconds,
        result.candidates,
        result.unchanged,
        result.adopted,
        result.live,
        result.queued or "none",
        result.stale_queued,
    )
    plugin.workers.wake()


STABLE_RETRY_S = 5  # a stable event that could not be recorded (PostgreSQL restarting) is tried again ...
STABLE_RETRIES = 36  # ... for 3 minutes; after that the periodic reconciliation (NOT_SEEN_GRACE_S) finds it


def on_stable_study(plugin, orthanc_study_id: str, attempt: int = 0) -> None:
    """Queue the forward of a study Orthanc found stable. Orthanc tells this once, from memory: when the database
    is away, the event is kept and tried again (on a timer thread, never blocking the event thread)."""
    try:
        with contextlib.closing(connect(plugin.cfg)) as conn:
            runner.on_stable(plugin.cfg, plugin.rest_client(), conn, orthanc_study_id)
    except Exception as exc:
        if attempt >= STABLE_RETRIES:
            raise
        log.warning(
            "nmdose: stable study %s not recorded (%s); again in %d s", orthanc_study_id, exc, STABLE_RETRY_S
        )
        timer = threading.Timer(STABLE_RETRY_S, on_stable_study, (plugin, orthanc_study_id, attempt + 1))
        timer.daemon = True
        timer.start()
        return
    plugin.workers.wake()


def health_problems(plugin) -> list[str]:
    """What makes /nmdose/health `degraded` for this stage (one aggregate query): studies whose forwarded set is
    incomplete with nothing queued to complete it, and forwards that keep failing."""
    try:
        with contextlib.closing(connect(plugin.cfg)) as conn:
            counts = runner.problem_counts(conn)
    except Exception as exc:  # the database check of health reports the outage itself
        return [f"forwarding not checked: {exc}"[:300]]
    problems = []
    if counts["stuck"]:
        problems.append(
            f"{counts['stuck']} studies with an incomplete forwarded set (nmdose forward pending)"
        )
    if counts["failing"]:
        problems.append(
            f"{counts['failing']} studies whose forward failed {runner.FAILING_ATTEMPTS} times or more"
            " (dose PACS down?)"
        )
    return problems


def register_routes(router, plugin) -> None:
    def status(request: Request) -> Response:
        with contextlib.closing(connect(plugin.cfg)) as conn:
            return Response.json(runner.status(conn))

    def pending(request: Request) -> Response:
        with contextlib.closing(connect(plugin.cfg)) as conn:
            return Response.json(runner.pending(conn))

    def forward_study(request: Request) -> Response:
        uid = check_uid(request.params["uid"])
        force = bool((request.data or {}).get("force", False))
        with contextlib.closing(connect(plugin.cfg)) as conn:
            runner.queue_study(conn, uid, plugin.cfg.dose_node.name, trigger="manual", force=force)
        plugin.workers.wake()
        return Response.json({"queued": uid, "force": force}, 202)

    router.add(
        "GET",
        "/forward/status",
        status,
        permission="research:read",
        query={},
        summary="Forwarding to the dose PACS: counts per state",
    )
    router.add(
        "GET",
        "/forward/pending",
        pending,
        permission="research:read",
        query={},
        summary="Studies not yet completely forwarded, by reason",
    )
    router.add(
        "POST",
        "/forward/studies/{uid}",
        forward_study,
        permission="forward:run",
        body={
            "type": "object",
            "properties": {"force": {"type": "boolean", "description": "send again what was already sent"}},
            "additionalProperties": False,
        },
        summary="Queue the forwarding of one study's dose objects and sample images",
        answers={202: "queued"},
    )
