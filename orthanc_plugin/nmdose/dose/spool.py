"""The dose spool: what the dose-PACS hooks hand over, drained into PostgreSQL by ``nmdose dose worker``.

A hook (Conquest Lua import script, the Orthanc stand-in's ``OnStoredInstance`` Lua script) does only two cheap
things per object: it makes sure the DICOM file exists on disk (its own copy under ``objects/`` or the PACS's
stored file), then it writes a small entry file and renames it into ``incoming/`` (rename is atomic, so the
worker never sees a half-written entry). No process is started per instance.

Layout under the spool folder (default ``<var>/spool/dose``)::

    incoming/<name>.job   key=value lines: file=<path>, source=<hook>, owned=1 when the file is the hook's copy
    objects/              copies written by the hooks (deleted once ingested)
    done/                 entries ingested (pruned after ``DONE_KEEP_S``)
    failed/               entries (and owned copies) whose file went to dose.dead_letter

The worker handles entries in name order, in batches; an entry leaves ``incoming/`` only after its outcome is
committed, so a crash or a database outage loses nothing (ingest is idempotent, a replay is a no-op).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import signal
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg2

from nmdose.dose.ingest import ingest_files, record_dead_letter
from nmdose.errors import DatabaseError, NmdoseError

log = logging.getLogger(__name__)

SUBDIRS = ("incoming", "objects", "done", "failed")
DONE_KEEP_S = 7 * 24 * 3600


def spool_dir(cfg) -> Path:
    """The spool of this configuration: ``NMDOSE_DOSE_SPOOL`` from .env/environment, else ``<var>/spool/dose``."""
    configured = (getattr(cfg, "env", None) or {}).get("NMDOSE_DOSE_SPOOL")
    return Path(configured) if configured else cfg.var_dir / "spool" / "dose"


def ensure(spool: Path) -> Path:
    """The spool's folders, private to their owner (0700: the dose objects carry patient data)."""
    for sub in SUBDIRS:
        (spool / sub).mkdir(mode=0o700, parents=True, exist_ok=True)
    return spool


def enqueue(spool: Path, file: str | os.PathLike, *, source: str = "cli", owned: bool = False) -> Path:
    """Write one entry atomically (what the Lua hooks do, for Python callers and tests)."""
    ensure(spool)
    name = f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}"
    tmp = spool / "incoming" / f".{name}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(f"file={os.fspath(file)}\nsource={source}\nowned={1 if owned else 0}\n")
    final = spool / "incoming" / f"{name}.job"
    os.rename(tmp, final)
    return final


def read_entry(path: Path) -> dict[str, str]:
    """``key=value`` lines of an entry; raises ValueError when it names no file."""
    fields: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if "=" in line:
            key, value = line.split("=", 1)
            fields[key.strip()] = value.strip()
    if not fields.get("file"):
        raise ValueError(f"{path}: spool entry without a file= line")
    return fields


@dataclass
class DrainStats:
    entries: int = 0
    ingested: int = 0
    unchanged: int = 0
    not_dose: int = 0
    dead_letter: int = 0
    outcomes: list[dict[str, Any]] = field(default_factory=list)


def _move(path: Path, folder: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.replace(path, folder / path.name)


def drain_once(conn, spool: Path, *, batch: int = 500) -> DrainStats:
    """Ingest up to ``batch`` entries of ``incoming/``; raises only when the database is unusable."""
    ensure(spool)
    stats = DrainStats()
    entries = sorted(p for p in (spool / "incoming").iterdir() if p.suffix == ".job")[:batch]
    if not entries:
        return stats
    jobs: list[tuple[Path, dict[str, str]]] = []
    for entry in entries:
        try:
            fields = read_entry(entry)
        except (OSError, ValueError) as exc:
            record_dead_letter(conn, str(entry), f"unreadable spool entry: {exc}", source="spool")
            _move(entry, spool / "failed")
            stats.dead_letter += 1
            continue
        jobs.append((entry, fields))
    by_source: dict[str, list[tuple[Path, dict[str, str]]]] = {}
    for entry, fields in jobs:
        by_source.setdefault(fields.get("source") or "spool", []).append((entry, fields))
    for source, group in by_source.items():
        files = [f["file"] for _e, f in group]
        outcomes = ingest_files(conn, files, source=source)
        by_file: dict[str, list[dict[str, Any]]] = {}
        for outcome in outcomes:
            by_file.setdefault(outcome["file"], []).append(outcome)
        for entry, fields in group:
            results = by_file.get(fields["file"]) or [
                {"file": fields["file"], "status": "dead_letter", "error": "not processed"}
            ]
            outcome = results.pop(0) if len(results) > 1 else results[0]
            stats.entries += 1
            stats.outcomes.append(outcome)
            status = outcome["status"]
            failed = status == "dead_letter"
            if failed:
                stats.dead_letter += 1
            elif status == "unchanged":
                stats.unchanged += 1
            elif status == "not_dose":
                stats.not_dose += 1
            else:
                stats.ingested += 1
            owned = fields.get("owned") == "1"
            if owned:
                file = Path(fields["file"])
                if failed:
                    _move(file, spool / "failed")
                else:
                    with contextlib.suppress(FileNotFoundError):
                        file.unlink()
            _move(entry, spool / ("failed" if failed else "done"))
    return stats


def prune_done(spool: Path, keep_s: float = DONE_KEEP_S) -> int:
    """Delete done entries older than ``keep_s``."""
    cutoff = time.time() - keep_s
    removed = 0
    for p in (spool / "done").iterdir():
        with contextlib.suppress(FileNotFoundError):
            if p.stat().st_mtime < cutoff:
                p.unlink()
                removed += 1
    return removed


class Worker:
    """``nmdose dose worker``: drain the spool forever (or once); never dies on a bad file or a lost database."""

    def __init__(
        self,
        cfg,
        spool: Path | None = None,
        *,
        poll_s: float = 0.25,
        batch: int = 500,
        warm_interval_s: float = 60.0,
    ):
        self.cfg = cfg
        self.spool = ensure(spool or spool_dir(cfg))
        self.poll_s = poll_s
        self.batch = batch
        # After an ingest, once the spool is empty, the dose page's opening answers are computed into the web
        # cache (nmdose/web/cache.py), at most once per warm_interval_s (0: never).
        self.warm_interval_s = warm_interval_s
        self._dirty = False
        self._last_warm = -1e9
        self.stopping = False
        self._conn = None
        self._lock_fh = None

    def _lock(self) -> None:
        """One worker per spool (entries are not claimed individually)."""
        self._lock_fh = open(self.spool / "worker.lock", "w")  # noqa: SIM115 - held for the worker's life
        try:
            fcntl.flock(self._lock_fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise NmdoseError(f"{self.spool}: another dose worker is draining this spool") from None
        self._lock_fh.write(f"{os.getpid()}\n")
        self._lock_fh.flush()

    def _connection(self):
        if self._conn is None or self._conn.closed:
            from nmdose.db import connect

            self._conn = connect(self.cfg)
        return self._conn

    def _drop_connection(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
        self._conn = None

    def step(self) -> DrainStats:
        """One drain pass; database trouble is logged and leaves the entries in place."""
        try:
            stats = drain_once(self._connection(), self.spool, batch=self.batch)
        except (psycopg2.OperationalError, psycopg2.InterfaceError, DatabaseError) as exc:
            log.warning("dose worker: database unavailable, entries kept for later: %s", str(exc).strip())
            self._drop_connection()
            return DrainStats()
        if stats.entries or stats.dead_letter:
            log.info(
                "dose worker: %d entries: %d ingested, %d unchanged, %d not dose, %d dead letters",
                stats.entries, stats.ingested, stats.unchanged, stats.not_dose, stats.dead_letter,
            )  # fmt: skip
        return stats

    def warm(self) -> None:
        """Compute the dose page's opening answers after new data (never fails the worker)."""
        if not self._dirty or not self.warm_interval_s:
            return
        if time.monotonic() - self._last_warm < self.warm_interval_s:
            return
        from nmdose.web.pages import warm_default_views

        start = time.monotonic()
        self._last_warm = start
        try:
            computed = warm_default_views(self._connection(), self.cfg)
        except Exception as exc:  # the pages compute what is missing themselves
            log.warning("dose worker: web cache not warmed: %s", str(exc).strip())
            self._drop_connection()
            return
        self._dirty = False
        log.info("dose worker: %d dose page answers computed in %.1f s", computed, time.monotonic() - start)

    def run(self, *, once: bool = False) -> DrainStats:
        """Drain until stopped (SIGTERM/SIGINT); with ``once``, until ``incoming/`` is empty."""
        self._lock()
        total = DrainStats()
        if not once:
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, lambda *_: setattr(self, "stopping", True))
        backoff = self.poll_s
        last_prune = 0.0
        try:
            while not self.stopping:
                try:
                    stats = self.step()
                except Exception:  # a bug must not kill the worker: log it, wait, go on
                    log.exception("dose worker: unexpected error; retrying")
                    stats = DrainStats()
                    if once:
                        raise
                self._dirty |= stats.ingested > 0
                for name in ("entries", "ingested", "unchanged", "not_dose", "dead_letter"):
                    setattr(total, name, getattr(total, name) + getattr(stats, name))
                total.outcomes.extend(stats.outcomes)
                if once:
                    if not stats.entries and not stats.dead_letter:
                        if self._conn is None:  # the database was unreachable
                            raise DatabaseError("dose worker --once: database unavailable; entries kept")
                        self.warm()
                        break
                    continue
                if time.monotonic() - last_prune > 3600:
                    last_prune = time.monotonic()
                    with contextlib.suppress(OSError):
                        prune_done(self.spool)
                if stats.entries or stats.dead_letter:
                    backoff = self.poll_s
                    continue
                self.warm()
                time.sleep(backoff)
                backoff = min(backoff * 2, 2.0) if self._conn is None else self.poll_s
        finally:
            self._drop_connection()
            if self._lock_fh is not None:
                self._lock_fh.close()
        return total
