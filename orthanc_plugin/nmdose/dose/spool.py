"""The dose spool: what the dose-PACS hooks hand over, drained into PostgreSQL by ``nmdose dose worker``.

A hook (Conquest Lua import script, the Orthanc stand-in's ``OnStoredInstance`` Lua script) does only two cheap
things per object: it makes sure the DICOM file exists on disk (its own copy under ``objects/`` or the PACS's
stored file), then it writes a small entry file and renames it into ``incoming/`` (rename is atomic, so the
worker never sees a half-written entry). No process is started per instance.

Layout under the spool folder (``Config.dose_spool``: default ``<var>/spool/dose``)::

    incoming/<name>.job   key=value lines: file=<path>, source=<hook>, owned=1 when the file is the hook's copy
    objects/              copies written by the hooks (deleted once ingested)
    done/                 entries ingested (pruned after ``DONE_KEEP_S``)
    failed/               entries (and owned copies) whose file went to dose.dead_letter, each with a
                          ``<name>.job.reason`` file saying why

Entries are not trusted (issue 14 item 5): an entry must be a regular file (never followed through a symbolic
link), and the file it names must be a regular file directly under the spool's ``objects/`` or under a configured
dose-PACS storage root (``NMDOSE_DOSE_STORAGE_ROOT``, read-only: never moved, never deleted), reached without
following a symbolic link at any level. ``owned=1`` is honoured only in ``objects/``. Anything else goes to
``failed/`` and ``dose.dead_letter`` with the reason, and never holds up the other entries.

Crash safety (issue 14 item 6): per batch, (1) the outcomes are committed in PostgreSQL, (2) each entry is
renamed to ``done/`` or ``failed/``, (3) the three folders are fsync'ed, (4) only then is an owned copy deleted
(or moved to ``failed/``). A crash before (3) replays the entry (ingest is idempotent: the same bytes are
recognised by their hash); a crash after it leaves at most a copy in ``objects/`` whose entry is already in
``done/``/``failed/``, which :func:`reconcile` (run when the worker starts) deletes or moves. A copy is therefore
never deleted while its entry can still be replayed, so no replay meets a missing file.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import logging
import os
import signal
import stat
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import psycopg2

from nmdose.dose.ingest import ingest_files, record_dead_letter
from nmdose.errors import DatabaseError, NmdoseError

log = logging.getLogger(__name__)

SUBDIRS = ("incoming", "objects", "done", "failed")
DONE_KEEP_S = 7 * 24 * 3600
ENTRY_MAX_BYTES = 64 * 1024  # an entry is three short lines
STORAGE_ROOT_ENV = "NMDOSE_DOSE_STORAGE_ROOT"
# Test hook (tests/integration/test_dose_spool_faults.py): the worker SIGKILLs itself at this step of a batch.
KILL_AT_ENV = "NMDOSE_TEST_DOSE_WORKER_KILL_AT"
KILL_STEPS = ("ingested", "entry-moved", "entries-moved", "synced", "object-handled", "batch-done")

_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_O_DIR = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | _O_CLOEXEC
_O_READ_NOFOLLOW = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | _O_CLOEXEC


def storage_roots(cfg) -> list[Path]:
    """The dose PACS's own storage folders whose files entries may name (read-only): ``NMDOSE_DOSE_STORAGE_ROOT``
    from .env/environment, several separated by ``:``. Empty: only the spool's ``objects/``."""
    configured = (getattr(cfg, "env", None) or {}).get(STORAGE_ROOT_ENV) or ""
    return [Path(p) for p in configured.split(os.pathsep) if p.strip()]


def ensure(spool: Path) -> Path:
    """The spool's folders, private to their owner (0700: the dose objects carry patient data)."""
    for sub in SUBDIRS:
        (spool / sub).mkdir(mode=0o700, parents=True, exist_ok=True)
    return spool


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, _O_DIR)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def enqueue(spool: Path, file: str | os.PathLike, *, source: str = "cli", owned: bool = False) -> Path:
    """Write one entry atomically and durably (what the Lua hooks do, for Python callers and tests)."""
    ensure(spool)
    name = f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}"
    tmp = spool / "incoming" / f".{name}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | _O_CLOEXEC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(f"file={os.fspath(file)}\nsource={source}\nowned={1 if owned else 0}\n")
        fh.flush()
        os.fsync(fh.fileno())
    final = spool / "incoming" / f"{name}.job"
    os.rename(tmp, final)
    _fsync_dir(final.parent)
    return final


class SpoolError(NmdoseError):
    """The spool itself is not usable as it stands (a folder replaced by a link): the worker waits."""


class BadEntry(ValueError):
    """An entry the worker refuses (the reason is the message); it goes to ``failed/`` and the dead letters."""


def read_entry(path: Path) -> dict[str, str]:
    """``key=value`` lines of an entry; raises :class:`BadEntry` (a ValueError) when the entry is not a regular
    file (a symbolic link is not followed), is too large, or names no file."""
    try:
        fd = os.open(path, _O_READ_NOFOLLOW)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise BadEntry(f"{path}: the entry is a symbolic link; not followed") from None
        raise BadEntry(f"{path}: the entry cannot be opened: {exc.strerror or exc}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise BadEntry(f"{path}: the entry is {_kind(st.st_mode)}, not a regular file")
        if st.st_size > ENTRY_MAX_BYTES:
            raise BadEntry(f"{path}: the entry has {st.st_size} bytes, more than {ENTRY_MAX_BYTES}")
        data = os.read(fd, ENTRY_MAX_BYTES + 1)
    finally:
        os.close(fd)
    fields: dict[str, str] = {}
    for line in data.decode("utf-8", errors="replace").splitlines():
        if "=" in line:
            key, value = line.split("=", 1)
            fields[key.strip()] = value.strip()
    if not fields.get("file"):
        raise BadEntry(f"{path}: spool entry without a file= line")
    return fields


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISFIFO(mode):
        return "a named pipe"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a regular file"


def _printable(text: str, limit: int = 300) -> str:
    """A path named by an entry, safe in a log line or a reason (control characters shown escaped)."""
    shown = text if text.isprintable() else repr(text)[1:-1]
    return shown if len(shown) <= limit else shown[:limit] + "..."


@dataclass
class Located:
    """Where the file an entry names is: ``objects/<name>`` of the spool, or a path under a storage root."""

    file: str  # the text of the entry's file= line
    root: Path  # the spool's objects/ or the storage root
    parts: tuple[str, ...]  # components below root (one for objects/)
    in_objects: bool

    def open(self) -> BinaryIO:
        """The file, opened without following a symbolic link at any level below ``root``; raises OSError with a
        reason naming the file when it is not a regular file."""
        # objects/ itself is never reached through a link (the spool's own path may be one, set by the admin)
        dfd = os.open(self.root, _O_DIR | (os.O_NOFOLLOW if self.in_objects else 0))
        try:
            for part in self.parts[:-1]:
                try:
                    nfd = os.open(part, _O_DIR | os.O_NOFOLLOW, dir_fd=dfd)
                except OSError as exc:
                    if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                        raise OSError(
                            exc.errno, f"{part!r} is a symbolic link or not a directory; not followed"
                        ) from None
                    raise
                os.close(dfd)
                dfd = nfd
            try:
                fd = os.open(self.parts[-1], _O_READ_NOFOLLOW, dir_fd=dfd)
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    raise OSError(exc.errno, "a symbolic link; not followed") from None
                raise
        finally:
            os.close(dfd)
        st = os.fstat(fd)
        problem = None
        if not stat.S_ISREG(st.st_mode):
            problem = f"{_kind(st.st_mode)}, not a regular file"
        elif self.in_objects and st.st_nlink != 1:
            problem = f"a file with {st.st_nlink} hard links, not a hook's own copy"
        if problem:
            os.close(fd)
            raise OSError(errno.EINVAL, problem)
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")

    def check(self) -> str | None:
        """Why the file cannot be read (None: it can)."""
        try:
            self.open().close()
        except FileNotFoundError:
            return f"{_printable(self.file)}: no such file"
        except OSError as exc:
            return f"{_printable(self.file)}: {exc.strerror or exc}"
        return None


def locate(spool: Path, fields: dict[str, str], roots: Iterable[Path] = ()) -> Located:
    """Where the entry's file is, or :class:`BadEntry` when the entry may not name it."""
    file = fields["file"]
    shown = _printable(file)
    if "\x00" in file or not file.isprintable():
        raise BadEntry(f"file={shown}: the path contains a NUL or control character; not read")
    path = Path(file)
    if not path.is_absolute():
        raise BadEntry(f"file={shown}: not an absolute path; not read")
    if ".." in path.parts:
        raise BadEntry(f"file={shown}: the path contains '..'; not read")
    owned = fields.get("owned") == "1"
    objects = spool / "objects"
    if path.name and _same_dir(path.parent, objects):
        return Located(file, objects, (path.name,), True)
    for root in roots:
        parts = _below(path, root)
        if parts:
            if owned:
                raise BadEntry(
                    f"file={shown}: owned=1 names a file of the dose PACS's storage ({root}); the worker never "
                    "deletes there: not read"
                )
            return Located(file, root, parts, False)
    allowed = " or under ".join([f"directly in {objects}", *map(str, roots)])
    raise BadEntry(f"file={shown}: outside the spool ({allowed}); not read")


def _same_dir(a: Path, b: Path) -> bool:
    """Whether ``a`` (as the entry spells it) is the directory ``b`` (the spool's own, never through a link)."""
    try:
        sa, sb = os.stat(a), os.lstat(b)
    except (OSError, ValueError):
        return False
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def _below(path: Path, root: Path) -> tuple[str, ...] | None:
    """The components of ``path`` below ``root`` (as configured or resolved), or None."""
    for base in dict.fromkeys([Path(os.path.normpath(root)), Path(os.path.realpath(root))]):
        try:
            parts = path.relative_to(base).parts
        except ValueError:
            continue
        if parts:
            return parts
    return None


@dataclass
class DrainStats:
    entries: int = 0
    ingested: int = 0
    unchanged: int = 0
    not_dose: int = 0
    dead_letter: int = 0
    outcomes: list[dict[str, Any]] = field(default_factory=list)


def _open_located(located_by_file: dict[str, Located], file: str) -> BinaryIO:
    return located_by_file[file].open()


def _kill_point(step: str) -> None:
    """Test hook: a worker whose environment names this step dies here as with ``kill -9``."""
    if os.environ.get(KILL_AT_ENV) == step:
        os.kill(os.getpid(), signal.SIGKILL)


def _move(folder: Path, name: str, src: Path) -> bool:
    """Rename ``src/name`` to ``folder/name`` (the link itself, never what it points to); False when impossible.
    A name already taken in ``folder`` by something that cannot be replaced (a directory) gets a unique suffix."""
    for target in (name, f"{name}.{uuid.uuid4().hex[:8]}"):
        try:
            os.replace(src / name, folder / target)
            return True
        except FileNotFoundError:
            return not os.path.lexists(src / name)
        except OSError as exc:
            error = exc
    log.error("dose worker: cannot move %s to %s: %s", src / name, folder, error)
    return False


def _write_reason(folder: Path, name: str, reason: str) -> None:
    path = folder / f"{name}.reason"
    with contextlib.suppress(FileNotFoundError):
        if not stat.S_ISREG(os.lstat(path).st_mode):
            return  # something planted there: leave it, the reason is in dose.dead_letter anyway
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | _O_CLOEXEC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8", errors="backslashreplace") as fh:
            fh.write(reason.replace("\x00", "\\x00") + "\n")
    except OSError as exc:
        log.warning("dose worker: cannot write %s: %s", path, exc)


@dataclass
class _Finished:
    name: str
    failed: bool
    reason: str | None
    located: Located | None  # set when the entry's file is in objects/ and owned


def drain_once(
    conn,
    spool: Path,
    *,
    batch: int = 500,
    roots: Iterable[Path] = (),
    stuck: set[str] | None = None,
) -> DrainStats:
    """Ingest up to ``batch`` entries of ``incoming/``; raises only when the database is unusable.

    ``roots``: dose-PACS storage folders entries may name (read-only). ``stuck``: entry names that could not be
    moved out of ``incoming/`` before (skipped; names are added to it)."""
    check_layout(spool)
    roots = list(roots)
    stuck = stuck if stuck is not None else set()
    stats = DrainStats()
    incoming = spool / "incoming"
    names = sorted(
        n for n in os.listdir(incoming) if n.endswith(".job") and not n.startswith(".") and n not in stuck
    )
    names = names[:batch]
    if not names:
        return stats
    finished: list[_Finished] = []
    good: list[tuple[str, dict[str, str], Located]] = []
    for name in names:
        fields: dict[str, str] | None = None
        located: Located | None = None
        try:
            fields = read_entry(incoming / name)
            located = locate(spool, fields, roots)
            problem = located.check()
            if problem:
                raise BadEntry(problem)
        except BadEntry as exc:
            reason = str(exc)
            known = fields or {}
            record_dead_letter(
                conn, known.get("file") or str(incoming / name), reason, source=known.get("source") or "spool"
            )
            owned = fields is not None and fields.get("owned") == "1"
            keep = located if located is not None and located.in_objects and owned else None
            finished.append(_Finished(name, True, reason, keep))
            stats.dead_letter += 1
            continue
        good.append((name, fields, located))
    by_source: dict[str, list[tuple[str, dict[str, str], Located]]] = {}
    for item in good:
        by_source.setdefault(item[1].get("source") or "spool", []).append(item)
    for source, group in by_source.items():
        located_by_file = {loc.file: loc for _n, _f, loc in group}
        files = [loc.file for _n, _f, loc in group]
        opener = functools.partial(_open_located, located_by_file)
        outcomes = ingest_files(conn, files, source=source, opener=opener)
        by_file: dict[str, list[dict[str, Any]]] = {}
        for outcome in outcomes:
            by_file.setdefault(outcome["file"], []).append(outcome)
        for name, fields, located in group:
            results = by_file.get(located.file) or [
                {"file": located.file, "status": "dead_letter", "error": "not processed"}
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
            owned = fields.get("owned") == "1" and located.in_objects
            finished.append(_Finished(name, failed, outcome.get("error") if failed else None,
                                      located if owned else None))  # fmt: skip
    _kill_point("ingested")
    _finish(spool, finished, stuck)
    _kill_point("batch-done")
    return stats


def _finish(spool: Path, finished: list[_Finished], stuck: set[str]) -> None:
    """After the outcomes are committed: entries out of ``incoming/`` (durably), then the owned copies."""
    incoming, done, failed = spool / "incoming", spool / "done", spool / "failed"
    moved: list[_Finished] = []
    for item in finished:
        if item.failed:
            _write_reason(failed, item.name, item.reason or "dead letter")
        if _move(failed if item.failed else done, item.name, incoming):
            moved.append(item)
        else:
            stuck.add(item.name)
        if len(moved) == 1:
            _kill_point("entry-moved")
    _kill_point("entries-moved")
    for folder in (incoming, done, failed):
        _fsync_dir(folder)
    _kill_point("synced")
    for item in moved:
        if item.located is not None:
            _handle_copy(spool, item.located, failed=item.failed)
            _kill_point("object-handled")


def _handle_copy(spool: Path, located: Located, *, failed: bool) -> None:
    """An owned copy whose entry is settled: deleted (ingested) or moved to ``failed/`` (dead letter). Through a
    descriptor of ``objects/`` opened without following a link; ``unlink`` and ``rename`` act on a planted link
    itself, never on what it points to."""
    name = located.parts[-1]
    try:
        dfd = os.open(spool / "objects", _O_DIR | os.O_NOFOLLOW)
    except OSError as exc:
        log.warning("dose worker: %s: %s; copy %s left", spool / "objects", exc.strerror or exc, name)
        return
    try:
        if failed:
            target = (
                name if not os.path.lexists(spool / "failed" / name) else f"{name}.{uuid.uuid4().hex[:8]}"
            )
            os.rename(name, spool / "failed" / target, src_dir_fd=dfd)
        else:
            os.unlink(name, dir_fd=dfd)
    except FileNotFoundError:
        pass
    except OSError as exc:  # a directory planted under that name, a permission: left, logged
        log.warning("dose worker: cannot remove %s: %s", spool / "objects" / name, exc)
    finally:
        os.close(dfd)


def check_layout(spool: Path) -> None:
    """The spool's folders exist and are real directories, not links planted to make the worker read or write
    elsewhere; raises :class:`SpoolError` saying which is not."""
    try:
        ensure(spool)
    except OSError as exc:
        raise SpoolError(f"{spool}: the spool's folders cannot be made: {exc}") from None
    for sub in SUBDIRS:
        st = os.lstat(spool / sub)
        if not stat.S_ISDIR(st.st_mode):
            raise SpoolError(f"{spool / sub}: {_kind(st.st_mode)}, not a directory of the spool; refused")


def reconcile(spool: Path) -> int:
    """Owned copies still in ``objects/`` whose entry is already in ``done/`` (deleted) or ``failed/`` (moved
    there): what a crash between an entry's move and its copy's removal leaves. Returns how many were handled.
    A copy an entry still in ``incoming/`` names (a duplicate entry) is left for that entry."""
    check_layout(spool)
    pending = set()
    for name in os.listdir(spool / "incoming"):
        with contextlib.suppress(BadEntry, OSError):
            pending.add(Path(read_entry(spool / "incoming" / name)["file"]).name)
    handled = 0
    for sub, failed in (("done", False), ("failed", True)):
        folder = spool / sub
        for name in sorted(os.listdir(folder)):
            if not name.endswith(".job"):
                continue
            try:
                fields = read_entry(folder / name)
                if fields.get("owned") != "1":
                    continue
                located = locate(spool, fields)
            except (BadEntry, OSError):
                continue
            copy = located.parts[-1]
            if copy not in pending and os.path.lexists(spool / "objects" / copy):
                _handle_copy(spool, located, failed=failed)
                handled += 1
    if handled:
        log.info("dose worker: %d copies left by an interrupted batch removed or moved to failed/", handled)
    return handled


def prune_done(spool: Path, keep_s: float = DONE_KEEP_S) -> int:
    """Delete done entries older than ``keep_s``."""
    cutoff = time.time() - keep_s
    removed = 0
    for p in (spool / "done").iterdir():
        with contextlib.suppress(FileNotFoundError):
            if p.lstat().st_mtime < cutoff and not p.is_dir():
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
        warm: Callable[[Any, Any], int] | None = None,
        warm_interval_s: float = 60.0,
        roots: list[Path] | None = None,
    ):
        self.cfg = cfg
        self.spool = ensure(spool or cfg.dose_spool)
        self.poll_s = poll_s
        self.batch = batch
        # After an ingest, once the spool is empty, `warm(connection, cfg) -> answers computed` runs, at most
        # once per warm_interval_s (0 or no `warm`: never). `nmdose dose worker` hands in the dose page's warm-up
        # (nmdose.web.dose_views.warm_default_views: its opening answers into the web cache) from the command
        # line's glue, so this stage never imports the web layer.
        self.warm_views = warm
        self.warm_interval_s = warm_interval_s
        self._dirty = False
        self._last_warm = -1e9
        self.roots = storage_roots(cfg) if roots is None else list(roots)
        self.stopping = False
        self._conn = None
        self._lock_fd: int | None = None
        self._stuck: set[str] = set()

    def _lock(self) -> None:
        """One worker per spool (entries are not claimed individually). The lock file is never reached through a
        symbolic link (one planted there would make the worker truncate whatever it points to)."""
        path = self.spool / "worker.lock"
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | _O_CLOEXEC, 0o600)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise NmdoseError(
                    f"{path}: a symbolic link; refused (remove it, the worker makes its own)"
                ) from None
            raise NmdoseError(f"{path}: cannot open the worker lock: {exc.strerror or exc}") from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise NmdoseError(f"{path}: {_kind(st.st_mode)}, not a regular file; refused")
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise NmdoseError(f"{self.spool}: another dose worker is draining this spool") from None
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        except BaseException:
            os.close(fd)
            raise
        self._lock_fd = fd

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
            stats = drain_once(
                self._connection(), self.spool, batch=self.batch, roots=self.roots, stuck=self._stuck
            )
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
        """Compute the dose and report pages' opening answers after new data (never fails the worker)."""
        if not self._dirty or not self.warm_interval_s or self.warm_views is None:
            return
        if time.monotonic() - self._last_warm < self.warm_interval_s:
            return
        start = time.monotonic()
        self._last_warm = start
        try:
            computed = self.warm_views(self._connection(), self.cfg)
        except Exception as exc:  # the pages compute what is missing themselves
            log.warning("dose worker: web cache not warmed: %s", str(exc).strip())
            self._drop_connection()
            return
        self._dirty = False
        log.info("dose worker: %d page answers computed in %.1f s", computed, time.monotonic() - start)

    def run(self, *, once: bool = False) -> DrainStats:
        """Drain until stopped (SIGTERM/SIGINT); with ``once``, until ``incoming/`` is empty."""
        self._lock()
        try:  # on failure the copies stay until the next start (the drain says what is wrong)
            reconcile(self.spool)
        except (OSError, SpoolError) as exc:
            log.warning("dose worker: spool not reconciled: %s", exc)
        total = DrainStats()
        if not once:
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, lambda *_: setattr(self, "stopping", True))
        backoff = self.poll_s
        last_prune = 0.0
        last_spool_error = -1e9
        try:
            while not self.stopping:
                try:
                    stats = self.step()
                except SpoolError as exc:  # a tampered spool: nothing is read until a person repairs it
                    if once:
                        raise
                    if time.monotonic() - last_spool_error > 60:
                        last_spool_error = time.monotonic()
                        log.error("dose worker: %s; waiting until it is repaired", exc)
                    time.sleep(5 * self.poll_s)
                    continue
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
            if self._lock_fd is not None:
                os.close(self._lock_fd)
                self._lock_fd = None
        return total
