"""The dose-PACS stand-in's hook (Orthanc Python plugin, `orthanc_plugin/dose_standin_entry.py`): every dose
candidate the stand-in stores is handed to the dose spool, as Conquest's Lua script does for a real dose PACS.

It replaced an Orthanc Lua ``OnStoredInstance`` script: Orthanc 1.10 hands a Lua hook the whole instance as a Lua
table, and an SR nested 3,000 levels deep aborted Orthanc (issue 14). Here nothing ever walks an object's tree:

- the C-STORE filter (``incoming_store_status``) refuses, with DIMSE 0x0124, a dose candidate (SR, PET, NM,
  secondary capture: `nmdose.security.profile.is_dose_candidate`) from an AE title the security profile does not
  let store here. The pipeline's senders take the fast path (nothing is read); for the others the SOP class and
  the modality are read from the first elements of the file only (they come before any content tree); a file
  whose first elements cannot be read counts as a candidate.
- the stored-instance callback only queues the instance's id for a worker thread (``stored``). Orthanc calls it
  for every reception, a re-sent object included (the spool then sees it again: ``times_seen``, as with the Lua
  hook). The queue is in memory; what makes the hand-over durable is Orthanc's change log: the thread also
  follows it (``/changes``, ``NewInstance``) from a cursor kept in a file, acknowledged (written atomically)
  only once the instance's spool entry is durable. Whichever of the two paths meets a new instance first spools
  it and the other skips it, so an Orthanc killed at any point replays from the change log what it had not
  acknowledged (at worst a duplicate entry, ingested as "unchanged"), and a spool that cannot be written holds
  the cursor (and the queue) until it can.
- per instance the thread reads Orthanc's metadata (SOP class, origin, calling AE title and IP), and the
  series' modality when the SOP class alone does not make it a candidate; a dose candidate received over DICOM from a sender that is not an
  (AE title, host) pair of the security profile is deleted from the stand-in (the filter sees no IP address),
  any other candidate is copied to ``<spool>/objects/`` and its entry renamed into ``<spool>/incoming/``: the
  same entries as the Lua hook wrote (``file=…``, ``source=orthanc``, ``owned=1``), each file written to a
  temporary name, fsynced, renamed, and its folder fsynced.
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from nmdose.security.profile import header_facts as dose_facts
from nmdose.security.profile import is_dose_candidate

log = logging.getLogger(__name__)

SOURCE = "orthanc"
NOT_AUTHORIZED = 0x0124  # DIMSE "Refused: Not authorized"
UNKNOWN_RESOURCE = 17  # Orthanc's error code for a 404
CHANGES_PAGE = 100
MAX_ATTEMPTS = 5  # passes over an instance Orthanc fails to give before it is given up (logged)
POLL_S = 2.0  # the thread also looks at the change log this often (a missed wake-up costs at most this)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_durable(path: Path, data: bytes) -> None:
    """Write a new private file (0600) and fsync it."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)


def spool_instance(spool: Path, instance_id: str, data: bytes, *, now: float | None = None) -> Path:
    """Copy one stored instance into ``<spool>/objects/`` and rename its entry into ``incoming/`` (the entry
    format of the spool: ``file=``, ``source=orthanc``, ``owned=1``). Returns the entry. When the entry cannot be
    written the copy is removed again (no orphan); the error propagates."""
    objects, incoming = spool / "objects", spool / "incoming"
    name = base = f"{int(time.time() if now is None else now):012d}-{instance_id}"
    for k in range(1, 1000):  # a re-send within the same second gets its own entry
        if not (objects / f"{name}.dcm").exists() and not (incoming / f"{name}.job").exists():
            break
        name = f"{base}-{k}"
    copy = objects / f"{name}.dcm"
    tmp = objects / f".{name}.tmp"
    try:
        _write_durable(tmp, data)
        os.rename(tmp, copy)
        _fsync_dir(objects)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    entry = incoming / f"{name}.job"
    entry_tmp = incoming / f".{name}.tmp"
    try:
        _write_durable(entry_tmp, f"file={copy}\nsource={SOURCE}\nowned=1\n".encode())
        os.rename(entry_tmp, entry)
        _fsync_dir(incoming)
    except BaseException:
        for leftover in (entry_tmp, copy):
            with contextlib.suppress(OSError):
                leftover.unlink()
        raise
    return entry


@dataclass
class Stats:
    """What the thread did since start (tests and the log)."""

    spooled: int = 0
    skipped: int = 0  # not a dose candidate, or gone before it was read
    refused: int = 0  # a dose candidate from a sender outside the profile: deleted
    errors: list[str] = field(default_factory=list)


class NotFound(Exception):
    """Orthanc answered 404 (the resource was deleted meanwhile)."""


class StandinHook:
    """The stand-in's filter and spooling thread. ``get(uri) -> bytes`` and ``delete(uri)`` are Orthanc's REST API
    (``orthanc.RestApiGet``/``RestApiDelete``; ``get`` raises `NotFound` for a missing resource)."""

    def __init__(
        self,
        spool: Path,
        senders: dict[str, set[str]],
        cursor_file: Path,
        get: Callable[[str], bytes],
        delete: Callable[[str], None],
        *,
        poll_s: float = POLL_S,
    ):
        self.spool = Path(spool)
        self.senders = {aet: set(hosts) for aet, hosts in senders.items()}
        self.cursor_file = Path(cursor_file)
        self._get = get
        self._delete = delete
        self.poll_s = poll_s
        self.stats = Stats()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._modality: dict[str, str] = {}  # series id -> modality (a small cache: series come in bursts)
        self._failing_since: float | None = None
        self._received: collections.deque[str] = collections.deque()  # ids from the stored-instance callback
        # Only the thread touches these: a reception spooled from the queue whose NewInstance change is still to
        # come, and a new instance spooled from the change log whose callback is still to come.
        self._by_callback: set[str] = set()
        self._by_log: set[str] = set()
        self._attempts: dict[str, int] = {}

    # ----- the C-STORE filter (Orthanc's DICOM thread: only the AE title, at most the first elements)
    def incoming_store_status(self, remote_aet: str, data: Callable[[], bytes]) -> int:
        """0 accepts; a dose candidate from an AE title outside the security profile gets 0x0124."""
        if remote_aet in self.senders:
            return 0
        facts = dose_facts(data())
        if facts is None or is_dose_candidate(*facts):
            log.warning(
                "nmdose dose stand-in: refused a dose object from %r (not a sender of the security profile)",
                remote_aet,
            )
            return NOT_AUTHORIZED
        return 0

    # ----- the thread
    def wake(self) -> None:
        """Look at the change log now (returns at once)."""
        self._wake.set()

    def stored(self, instance_id: str) -> None:
        """Orthanc's stored-instance callback (also for an object it already had): queue it (returns at once)."""
        self._received.append(instance_id)
        self._wake.set()

    def start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._stopping.clear()
            self._thread = threading.Thread(target=self._run, name="nmdose-dose-standin", daemon=True)
            self._thread.start()

    def stop(self, timeout_s: float = 10) -> None:
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def _run(self) -> None:
        backoff = self.poll_s
        while not self._stopping.is_set():
            self._wake.clear()
            try:
                handled = self.run_once()
                backoff = self.poll_s
                if self._failing_since is not None:
                    log.warning("nmdose dose stand-in: spooling again")
                    self._failing_since = None
            except Exception as exc:  # noqa: BLE001 - never die: log, wait, retry from the same cursor
                if self._failing_since is None:
                    self._failing_since = time.monotonic()
                    log.error("nmdose dose stand-in: cannot spool (will retry, nothing is skipped): %s", exc)
                self.stats.errors.append(str(exc)[:300])
                del self.stats.errors[:-20]
                handled = 0
                backoff = min(backoff * 2, 30.0)
            if not handled:
                self._wake.wait(backoff)

    def read_cursor(self) -> int:
        try:
            return int(self.cursor_file.read_text().strip() or 0)
        except FileNotFoundError:
            return 0  # a new stand-in: its whole change log (a replay is ingested as "unchanged")
        except ValueError:
            log.error("nmdose dose stand-in: %s unreadable: replaying the change log", self.cursor_file)
            return 0

    def write_cursor(self, seq: int) -> None:
        tmp = self.cursor_file.with_name(f".{self.cursor_file.name}.tmp")
        _write_durable(tmp, f"{seq}\n".encode())
        os.replace(tmp, self.cursor_file)
        _fsync_dir(self.cursor_file.parent)

    def run_once(self) -> int:
        """Handle the queued receptions, then the changes after the cursor (up to a page); returns how many
        were handled. An error leaves the failed reception queued and the cursor at the last change handled."""
        return self._drain_received() + self._follow_changes()

    def _drain_received(self) -> int:
        handled = 0
        while self._received:
            instance_id = self._received[0]
            if instance_id in self._by_log:  # its first reception, already spooled from the change log
                self._by_log.discard(instance_id)
            else:
                self._handle(instance_id)
                self._remember(self._by_callback, instance_id)
            self._received.popleft()
            handled += 1
        return handled

    def _follow_changes(self) -> int:
        cursor = self.read_cursor()
        page = json.loads(self._get(f"/changes?since={cursor}&limit={CHANGES_PAGE}"))
        changes = page.get("Changes") or []
        last = cursor
        try:
            for change in changes:
                if change.get("ChangeType") == "NewInstance":
                    instance_id = str(change["ID"])
                    if instance_id in self._by_callback:  # spooled from the queue already
                        self._by_callback.discard(instance_id)
                    else:
                        self._handle(instance_id)
                        self._remember(self._by_log, instance_id)
                last = int(change["Seq"])
        finally:
            if last != cursor:
                self.write_cursor(last)
        return len(changes)

    def _handle(self, instance_id: str) -> None:
        """`handle_instance`; a spool that cannot be written (OSError) stops the pass (retried: nothing is
        skipped); an instance Orthanc keeps failing to give (its file lost from the storage area, say) is given up
        after `MAX_ATTEMPTS` passes with an error in Orthanc's log, so it cannot hold up the others for ever."""
        try:
            self.handle_instance(instance_id)
        except OSError:
            raise
        except Exception as exc:
            attempts = self._attempts.get(instance_id, 0) + 1
            if attempts < MAX_ATTEMPTS:
                self._attempts[instance_id] = attempts
                raise
            self._attempts.pop(instance_id, None)
            log.error("nmdose dose stand-in: instance %s not spooled after %d attempts: %s", instance_id,
                      attempts, exc)  # fmt: skip
            self.stats.errors.append(f"{instance_id}: given up: {exc}"[:300])
            return
        self._attempts.pop(instance_id, None)

    @staticmethod
    def _remember(ids: set[str], instance_id: str) -> None:
        # a bound for callbacks that never came: forgetting costs at most a duplicate entry
        if len(ids) > 100_000:
            ids.clear()
        ids.add(instance_id)

    def _json(self, uri: str):
        return json.loads(self._get(uri))

    def _series_modality(self, series_id: str) -> str:
        if series_id not in self._modality:
            if len(self._modality) > 1000:
                self._modality.clear()
            series = self._json(f"/series/{series_id}")
            self._modality[series_id] = str((series.get("MainDicomTags") or {}).get("Modality", ""))
        return self._modality[series_id]

    def handle_instance(self, instance_id: str) -> str:
        """Spool one stored instance when it is a dose candidate; 'spooled', 'skipped' or 'refused'."""
        try:
            meta = self._json(f"/instances/{instance_id}/metadata?expand")
            sop_class = str(meta.get("SopClassUid", ""))
            if not is_dose_candidate(sop_class):  # then the modality decides (PT, NM, SR in other classes)
                instance = self._json(f"/instances/{instance_id}")
                modality = self._series_modality(str(instance.get("ParentSeries", "")))
                if not is_dose_candidate(sop_class, modality):
                    self.stats.skipped += 1
                    return "skipped"
            if meta.get("Origin") == "DicomProtocol":
                aet, ip = str(meta.get("RemoteAET", "")), str(meta.get("RemoteIP", ""))
                if ip not in self.senders.get(aet, ()):
                    log.warning(
                        "nmdose dose stand-in: deleted a dose object from %s@%s (not a sender of the "
                        "security profile)", aet, ip,
                    )  # fmt: skip
                    with contextlib.suppress(NotFound):
                        self._delete(f"/instances/{instance_id}")
                    self.stats.refused += 1
                    return "refused"
            data = self._get(f"/instances/{instance_id}/file")
        except NotFound:  # deleted before we got to it: nothing to hand over
            self.stats.skipped += 1
            return "skipped"
        spool_instance(self.spool, instance_id, data)
        self.stats.spooled += 1
        return "spooled"


def from_orthanc_configuration(conf: dict, orthanc) -> StandinHook:
    """The hook of the stand-in whose Orthanc configuration is ``conf`` (section ``NmdoseDoseStandin``, written
    by `nmdose.stack`), bound to the ``orthanc`` module's REST API."""
    section = conf["NmdoseDoseStandin"]

    def not_found(exc: Exception) -> bool:  # plugin 4.0: OrthancException((17, 'Unknown resource'))
        code = exc.args[0] if exc.args else None
        code = code[0] if isinstance(code, tuple) and code else code
        return code == UNKNOWN_RESOURCE or "Unknown resource" in str(exc)

    def get(uri: str) -> bytes:
        try:
            return orthanc.RestApiGet(uri)
        except orthanc.OrthancException as exc:
            if not_found(exc):
                raise NotFound(uri) from exc
            raise

    def delete(uri: str) -> None:
        try:
            orthanc.RestApiDelete(uri)
        except orthanc.OrthancException as exc:
            if not_found(exc):
                raise NotFound(uri) from exc
            raise

    senders = {aet: set(hosts) for aet, hosts in (section.get("StoreSenders") or {}).items()}
    return StandinHook(Path(section["Spool"]), senders, Path(section["CursorFile"]), get, delete)
