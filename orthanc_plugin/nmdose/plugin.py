"""The nmdose runtime inside the research Orthanc: routes, workers, event handlers.

`orthanc_plugin/entry.py` builds one :class:`Plugin` and binds Orthanc's callbacks to its methods; nothing
here imports the `orthanc` module, so all of it is testable outside Orthanc.
"""

from __future__ import annotations

import contextlib
import logging
import platform
import queue as stdqueue
import threading
import time
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

from nmdose import __version__
from nmdose.audit import routes as audit_stage
from nmdose.audit.context import remember_client
from nmdose.census import routes as census_stage
from nmdose.config import Config
from nmdose.db import connect, queue
from nmdose.db.migrate import migrate, status
from nmdose.forward import routes as forward_stage
from nmdose.projects.viewer_access import ProjectStudyAccess
from nmdose.pseudonymise import routes as pseudonymise_stage
from nmdose.retrieve import routes as retrieve_stage
from nmdose.security import profile, tls
from nmdose.web import pages as web_stage
from nmdose.web.gate import OrthancGate
from nmdose.web.openapi import describe
from nmdose.web.router import AUTHENTICATED, PUBLIC, Request, Response, Router
from nmdose.workers import WorkerPool

log = logging.getLogger("nmdose.plugin")
NOT_AUTHORIZED = 0x0124  # DIMSE status "Refused: Not authorized" (PS3.7 Annex C)

# The stages of the plugin, in the order their routes, job handlers and hooks are registered. Each defines some
# of STAGE_HOOKS: `register_routes(router, plugin)`, `job_handlers(plugin) -> dict[kind, handler(job)]`,
# `on_started(plugin)` (after migrations, on a background thread), `on_stable_study(plugin, orthanc_study_id)`
# (on the plugin's event thread, never on Orthanc's callback thread) and `health_problems(plugin) -> list[str]`
# (called by /nmdose/health: any problem makes it `degraded` and is listed in its `problems`; keep it to a few
# quick queries). The modules are imported, not named: a stage that is missing or misspelt fails the plugin at
# start (Orthanc logs the ImportError), never switching a stage off while /nmdose/health says ok; a stage that
# defines none of the hooks fails too (see `check_stages`).
STAGES: tuple[ModuleType, ...] = (
    census_stage,
    retrieve_stage,
    forward_stage,
    pseudonymise_stage,
    web_stage,
    audit_stage,
)
STAGE_HOOKS = ("register_routes", "job_handlers", "on_started", "on_stable_study", "health_problems")


def check_stages(stages: Sequence[ModuleType]) -> None:
    """Every stage contributes at least one hook (a renamed `register_routes` would otherwise vanish quietly)."""
    for module in stages:
        if not any(callable(getattr(module, hook, None)) for hook in STAGE_HOOKS):
            raise RuntimeError(f"nmdose: stage {module.__name__} defines none of {', '.join(STAGE_HOOKS)}")


class Plugin:
    def __init__(
        self,
        cfg: Config,
        *,
        node: str = "researchPACS",
        worker_threads: int = 2,
        stages: Sequence[ModuleType] = STAGES,
    ):
        check_stages(stages)
        self.cfg = cfg
        self.node = node
        self.orthanc_versions: dict[str, Any] = {}
        from nmdose.auth import authenticator

        self.router = Router(authenticate=authenticator(cfg))
        self.gate = OrthancGate(cfg, self.router.authenticate)
        if self.gate.enabled:  # project members may view their projects' studies (docs/projects.md)
            self.gate.study_access = ProjectStudyAccess(cfg)
        self.stages = list(stages)
        handlers: dict[str, Callable] = {}
        for module in self.stages:
            if hasattr(module, "job_handlers"):
                handlers.update(module.job_handlers(self))
        self.workers = WorkerPool(
            lambda: connect(cfg),
            handlers,
            threads=worker_threads,
            name=f"{node}-worker",
            backoff_s=cfg.retrieve.retry.backoff_s,
            backoff_max_s=cfg.retrieve.retry.backoff_max_s,
        )
        self.migration_error: str | None = None
        self.started = threading.Event()
        self.events: stdqueue.Queue[tuple[str, str]] = stdqueue.Queue()
        self._event_thread: threading.Thread | None = None
        self._store_senders = frozenset(profile.store_senders(cfg, node))
        self._peer_cache: tuple[float, dict[str, Any]] | None = None
        self._register_routes()

    # ----- Orthanc events (bound in entry.py)
    def on_started(self, orthanc_versions: dict[str, Any] | None = None) -> None:
        """Orthanc is up: migrate (in the background, never blocking Orthanc) and start the workers."""
        self.orthanc_versions = orthanc_versions or {}
        threading.Thread(target=self._start_background, name="nmdose-start", daemon=True).start()

    def _start_background(self) -> None:
        try:
            # Jobs a stopped process held (crash, kill -9) are taken back by the workers' lease thread once their
            # lease expired, whoever held them: never by name, which would re-run another instance's live jobs.
            with contextlib.closing(connect(self.cfg)) as conn:
                applied = migrate(conn, self.cfg.migrations_dir)
            if applied:
                log.warning("nmdose: applied migrations %s", ", ".join(applied))
            self.migration_error = None
        except Exception as exc:
            self.migration_error = str(exc)
            log.error("nmdose: database not ready at start: %s", exc)
        self.workers.start()
        self._event_thread = threading.Thread(target=self._dispatch_events, name="nmdose-events", daemon=True)
        self._event_thread.start()
        for module in self.stages:
            if hasattr(module, "on_started"):
                try:
                    module.on_started(self)
                except Exception:
                    log.exception("nmdose: %s.on_started failed", module.__name__)
        self.started.set()

    def on_stopped(self) -> None:
        self.events.put(("stop", ""))
        self.workers.stop()
        audit_writer = getattr(self, "audit_writer", None)  # set by nmdose.audit.routes
        if audit_writer is not None:
            audit_writer.stop()  # the audit rows still queued are written

    def on_stable_study(self, orthanc_study_id: str) -> None:
        """Orthanc's callback thread: record the event in memory and return at once."""
        self.events.put(("stable_study", orthanc_study_id))

    def _dispatch_events(self) -> None:
        while True:
            kind, resource = self.events.get()
            if kind == "stop":
                return
            for module in self.stages:
                handler = getattr(module, f"on_{kind}", None)
                if handler is None:
                    continue
                try:
                    handler(self, resource)
                except Exception:
                    log.exception("nmdose: %s.on_%s(%s) failed", module.__name__, kind, resource)
            self.workers.wake()

    def incoming_store_status(
        self, remote_aet: str, instance_facts: Callable[[], tuple[str, str] | None]
    ) -> int:
        """Orthanc's C-STORE filter: 0 accepts; a dose candidate (SR, PET, NM, secondary capture) from an AE
        title the security profile does not let store here gets DIMSE 0x0124 (Refused: Not authorized).
        Orthanc's own checks refuse unknown peers first; this holds even where an operator opened them.
        The pipeline's senders take the fast path (no tag is read)."""
        if remote_aet in self._store_senders:
            return 0
        facts = instance_facts()  # None: no SOP class could be read, which counts as a candidate
        if facts is None or profile.is_dose_candidate(*facts):
            log.warning(
                "nmdose: refused a dose object from %r (not a sender of the security profile)", remote_aet
            )
            return NOT_AUTHORIZED
        return 0

    # ----- REST
    def handle_rest(
        self, method: str, path: str, query: dict[str, str], headers: dict[str, str], body: bytes
    ) -> Response:
        return self.router.dispatch(Request(method, path, query, headers, body))

    def _register_routes(self) -> None:
        self.router.add(
            "GET",
            "/health",
            self._health,
            permission=PUBLIC,
            summary="Health of the plugin: database, migrations, workers, queue, nodes; `problems` lists what is wrong",
            answers={503: "unhealthy (the body says why)"},
        )
        for module in self.stages:
            if hasattr(module, "register_routes"):
                module.register_routes(self.router, self)
        self.router.add(
            "GET",
            "/api/openapi.json",
            self._openapi,
            permission=AUTHENTICATED,
            query={},
            summary="This description of every /nmdose/ route (OpenAPI 3.0)",
        )

    def _openapi(self, request: Request) -> Response:
        return Response.json(describe(self.router.table, version=__version__))

    def rest_client(self):
        """Orthanc's REST API over loopback HTTP, for worker threads (releases the GIL while waiting), with the
        internal credential the gate admits in keycloak mode."""
        from nmdose.pacs.orthanc_http import OrthancHttp

        return OrthancHttp.for_node(self.cfg, self.node, extra_timeout_s=30)

    def allow_http(
        self, method: str, uri: str, ip: str, headers: dict[str, str], get: dict[str, str] | None = None
    ) -> bool:
        """Orthanc's incoming-HTTP filter (every request its HTTP server receives): see nmdose.web.gate. Orthanc
        gives the client's address only here: the audit trail takes it for the request that follows."""
        remember_client(ip)
        return self.gate.allowed(method, uri, ip, headers, get)

    def health(self) -> dict[str, Any]:
        database: str
        migrations: dict[str, Any]
        stuck: list[dict[str, Any]] | str = []
        try:
            with contextlib.closing(connect(self.cfg)) as conn:
                st = status(conn, self.cfg.migrations_dir)
                try:
                    stuck = queue.overdue(conn)
                except Exception as exc:  # e.g. the lease columns not migrated yet
                    conn.rollback()
                    stuck = f"{type(exc).__name__}: {exc}"
            database = "ok"
            migrations = {"applied": len(st["applied"]), "pending": st["pending"], "ok": not st["pending"]}
        except Exception as exc:
            database = f"error: {exc}"
            migrations = {"applied": None, "pending": None, "ok": False, "error": self.migration_error}
        alive = self.workers.alive()
        problems = self._problems(stuck)
        certificates = tls.identity_report(self.cfg)
        peers = self._peer_certificates()
        tls_problems = [f"{k}: {v.get('warning') or v.get('error')}" for k, v in (certificates | peers).items()
                        if v.get("warning") or v.get("error")]  # fmt: skip
        expired = any(v.get("days_left", 0) < 0 or "error" in v for v in certificates.values())
        ok = (
            database == "ok"
            and migrations["ok"]
            and alive == self.workers.size
            and not expired
            and not problems
        )
        return {
            "status": "ok" if ok else "degraded",
            "node": self.node,
            "versions": {
                "nmdose": __version__,
                "orthanc": self.orthanc_versions.get("orthanc"),
                "python_plugin": self.orthanc_versions.get("python_plugin"),
                "python": platform.python_version(),
            },
            "database": database,
            "migrations": migrations,
            "workers": {
                "alive": alive,
                "expected": self.workers.size,
                "jobs_done": self.workers.jobs_done,
                "last_error": self.workers.last_error,
                "leases": self.workers.lease_alive(),
                "reclaimed": self.workers.reclaimed,
            },
            "problems": problems,  # jobs past their lease, and what each stage's health_problems reports
            "running_mode": self.cfg.running_mode,
            "auth_mode": self.cfg.auth_mode,
            "enable_simulation": self.cfg.enable_simulation,
            "dicom_tls": {name: node.tls for name, node in self.cfg.active_nodes().items()},
            "certificates": certificates,  # subject and expiry of our TLS identities and the CA
            "peer_certificates": peers,  # what each TLS peer presents (a TLS handshake, cached 5 minutes)
            "warnings": tls_problems + self.cfg.warnings,  # a certificate under 30 days; what prod refuses
        }

    def _problems(self, stuck: list[dict[str, Any]] | str) -> list[str]:
        """Why the pipeline is not healthy although its servers are: jobs `running` past their lease (`stuck`:
        their holder is gone and nobody took them back), a lease thread that died, and each stage's
        `health_problems`."""
        problems: list[str] = []
        if self.started.is_set() and self.workers.size and not self.workers.lease_alive():
            problems.append("workers: the lease thread is not running (running jobs are not renewed)")
        if isinstance(stuck, str):
            problems.append(f"queue: overdue jobs not checked: {stuck}"[:300])
        else:
            for job in stuck:
                since = job["lease_until"] or job["locked_at"]
                problems.append(
                    f"queue: {job['kind']} job {job['key']} running past its lease (held by "
                    f"{job['locked_by'] or '?'}, lease ended {since:%Y-%m-%d %H:%M:%S %Z}, attempt "
                    f"{job['attempts']} of {job['max_attempts']})"
                )
        for module in self.stages:
            check = getattr(module, "health_problems", None)
            if check is None:
                continue
            try:
                problems.extend(str(p) for p in check(self) or [])
            except Exception as exc:
                problems.append(f"{module.__name__}: health check failed: {type(exc).__name__}: {exc}"[:300])
        return problems

    def _peer_certificates(self) -> dict[str, Any]:
        """Subject and expiry of the certificate each TLS node presents to our tools (cached 5 minutes)."""
        now = time.monotonic()
        if self._peer_cache and now - self._peer_cache[0] < 300:
            return self._peer_cache[1]
        result: dict[str, Any] = {}
        for name, node in self.cfg.active_nodes().items():
            if not node.tls or name == self.node:
                continue
            try:
                result[name] = tls.probe(self.cfg, node, timeout_s=3).as_dict()
            except Exception as exc:  # a peer down or refusing us is a fact to show, not a failure of health
                result[name] = {"error": f"TLS handshake with {node.address} failed: {exc}"[:300]}
        self._peer_cache = (now, result)
        return result

    def _health(self, request: Request) -> Response:
        """Public: `{"status": "ok"|"degraded"}` (200/503) for monitoring; the details (versions, workers,
        certificates, warnings) only to an authenticated caller (dev mode: every caller)."""
        from nmdose.auth import optional_user

        data = self.health()
        if optional_user(self.router.authenticate, request.headers) is None:
            data = {"status": data["status"]}
        return Response.json(data, 200 if data["status"] == "ok" else 503)


def from_orthanc_configuration(
    conf: dict[str, Any], environ: dict[str, str] | None = None, factory: Callable[..., Plugin] = Plugin
) -> Plugin:
    """Build the plugin from the `Nmdose` section the stack writes into the Orthanc configuration."""
    import os
    from pathlib import Path

    from nmdose.config import load_config

    section = conf.get("Nmdose", {})
    env = dict(os.environ if environ is None else environ)
    if "EnableSimulation" in section:
        env["ENABLE_SIMULATION"] = "1" if section["EnableSimulation"] else "0"
    cfg = load_config(
        Path(section.get("ConfigDir", "config")),
        running_mode=section.get("RunningMode"),
        auth_mode=section.get("AuthMode"),
        var_dir=Path(section["VarDir"]) if section.get("VarDir") else None,
        environ=env,
    )
    return factory(cfg, node=section.get("Node", "researchPACS"))
