"""Import one dropped folder (one patient, copied from a CD or USB stick) into the research PACS.

Order, each step safe to interrupt (``kill -9``) and to repeat:

1. take the folder's lock (``<var>/run/import/<hash>.lock``, ``flock``: released when the process dies);
2. classify every file (DICOM / DICOMDIR / not DICOM / broken); a broken DICOM file fails the folder before
   anything is stored;
3. PatientID / PatientName from the folder name (``patient_pattern``), written into staged copies in a
   private folder (``<var>/run/import-stage/<hash>.<pid>``, 0700, removed after the upload; the dropped files
   are never written: the archive keeps them as dropped); a folder whose name does not match is sent unchanged
   and reported;
4. ask the research PACS which SOPInstanceUIDs of each study it already holds, C-STORE only the others with
   DCMTK ``storescu`` as the importer's AE title (``import.yaml: aet``), then ask again: every file must be
   there (an answer to the C-STORE is not proof);
5. write the report, then move the folder with one ``rename`` to ``archive/<yyyymmdd_hhmmss>/`` (or
   ``failed/<yyyymmdd_hhmmss>/``, the report naming each bad file and why).

A crash before 5 leaves the folder in the drop folder: the next run stores only what is missing. A crash during 5
leaves it either in the drop folder or in the archive (a rename is atomic), never half-moved. The logs and the
database rows name the folder by a hash of its name (the name holds the patient's name and number) and the
studies by their StudyInstanceUIDs.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import hashlib
import hmac
import logging
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from nmdose.errors import NmdoseError, PacsError
from nmdose.importer import store
from nmdose.importer.dicomfiles import FileInfo, classify, rewritten
from nmdose.orthanc_ids import orthanc_study_id

if TYPE_CHECKING:
    from nmdose.config import Config

log = logging.getLogger("nmdose.importer")
HASH_KEY_SECRET = "NMDOSE_IMPORT_HASH_KEY"
REPORT_SUFFIX = ".import-report.txt"


class ImportBusy(NmdoseError):
    """Another process imports this folder right now."""


class ImportRetry(NmdoseError):
    """The research PACS could not be reached or the folder changed: nothing is lost, the folder stays."""

    exit_code = 3


@dataclass(frozen=True)
class Paths:
    drop: Path
    archive: Path
    failed: Path
    locks: Path
    logs: Path
    stage: Path  # the staged (rewritten) copies of the files being stored, one private folder per run


def paths(cfg: Config) -> Paths:
    imp = cfg.imports
    return Paths(
        drop=imp.folder("drop", cfg.var_dir),
        archive=imp.folder("archive", cfg.var_dir),
        failed=imp.folder("failed", cfg.var_dir),
        locks=cfg.var_dir / "run" / "import",
        logs=cfg.log_dir / "import",
        stage=cfg.var_dir / "run" / "import-stage",
    )


def ensure_folders(p: Paths) -> None:
    """The importer's folders; the private ones (locks, logs) 0700."""
    for folder in (p.drop, p.archive, p.failed):
        folder.mkdir(parents=True, exist_ok=True)
    for folder in (p.locks, p.logs):
        folder.mkdir(parents=True, exist_ok=True)
        os.chmod(folder, 0o700)


def folder_hash(cfg: Config, name: str) -> str:
    """What logs and rows call a folder: HMAC-SHA-256 of its name keyed with the secret NMDOSE_IMPORT_HASH_KEY
    when set (a name cannot be confirmed by hashing a guess), else plain SHA-256."""
    key = None
    with contextlib.suppress(Exception):
        key = cfg.secrets.get(HASH_KEY_SECRET)
    if key:
        return "hmac:" + hmac.new(key.encode(), name.encode(), hashlib.sha256).hexdigest()
    return "sha256:" + hashlib.sha256(name.encode()).hexdigest()


def short(h: str) -> str:
    return h.split(":", 1)[-1][:12]


# ----- scanning


@dataclass
class Entry:
    rel: str
    path: Path
    size: int
    mtime_ns: int


def scan(folder: Path) -> list[Entry]:
    """Every regular file under `folder` (symbolic links are not followed), sorted by relative path."""
    found = []
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in files:
            path = Path(root) / name
            try:
                st = path.lstat()
            except FileNotFoundError:
                continue
            rel = str(path.relative_to(folder))
            found.append(Entry(rel, path, st.st_size, st.st_mtime_ns))
    return sorted(found, key=lambda e: e.rel)


def content_key(entries: list[Entry]) -> str:
    """SHA-256 of the sorted relative paths, sizes and modification times: the folder as dropped."""
    h = hashlib.sha256()
    for e in entries:
        h.update(f"{e.rel}\0{e.size}\0{e.mtime_ns}\n".encode())
    return h.hexdigest()


def last_change(folder: Path) -> float:
    """The newest ctime under `folder` (the folder itself included): a copy still running changes it, and a
    copy that keeps the source's mtimes (``cp -p``) cannot set it back."""
    newest = 0.0
    for root, dirs, files in os.walk(folder):
        for name in [*dirs, *files, "."]:
            with contextlib.suppress(FileNotFoundError):
                newest = max(newest, os.lstat(os.path.join(root, name)).st_ctime)
    return newest


# ----- the result


@dataclass
class ImportResult:
    folder_hash: str
    outcome: str = "running"  # archived | failed | retry
    pattern_matched: bool | None = None
    files: int = 0
    dicom_files: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (relative path, why)
    bad: list[tuple[str, str]] = field(default_factory=list)
    stored: int = 0
    already_stored: int = 0
    study_uids: list[str] = field(default_factory=list)
    bytes: int = 0
    seconds: float = 0.0
    destination: str | None = None  # archive/<ts> or failed/<ts>
    log_file: str = ""
    error: str | None = None
    phases: dict[str, float] = field(
        default_factory=dict
    )  # seconds per step (classify, check, store, confirm)

    def row(self) -> dict:
        return {"outcome": self.outcome, "pattern_matched": self.pattern_matched, "files": self.files,
                "dicom_files": self.dicom_files, "skipped_files": len(self.skipped), "bad_files": len(self.bad),
                "stored_files": self.stored, "already_stored": self.already_stored,
                "studies": len(self.study_uids), "study_uids": self.study_uids, "bytes": self.bytes,
                "seconds": round(self.seconds, 3), "destination": self.destination,
                "error": self.error}  # fmt: skip

    def summary(self) -> str:
        return (
            f"folder {short(self.folder_hash)}: {self.outcome}; {self.files} files, {self.dicom_files} DICOM, "
            f"{self.stored} stored, {self.already_stored} already stored, {len(self.skipped)} skipped, "
            f"{len(self.bad)} bad; {len(self.study_uids)} studies, {self.bytes / 1e6:.1f} MB in "
            f"{self.seconds:.1f} s" + (f"; {self.destination}" if self.destination else "")
            + (f"; {self.error}" if self.error else "")
        )  # fmt: skip


# ----- locks and logs


@contextlib.contextmanager
def folder_lock(p: Paths, fhash: str) -> Iterator[None]:
    p.locks.mkdir(parents=True, exist_ok=True)
    fd = os.open(p.locks / f"{short(fhash)}.lock", os.O_CREAT | os.O_RDWR, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ImportBusy(f"folder {short(fhash)}: another nmdose import is importing it") from None
        yield
    finally:
        os.close(fd)


def is_locked(p: Paths, fhash: str) -> bool:
    """Whether a live process holds the folder's lock."""
    path = p.locks / f"{short(fhash)}.lock"
    if not path.exists():
        return False
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


@contextlib.contextmanager
def run_log(p: Paths, fhash: str) -> Iterator[Path]:
    """One log file per run: <var>/log/import/<yyyymmdd-hhmmss>-<hash>.log (0600)."""
    p.logs.mkdir(parents=True, exist_ok=True)
    path = p.logs / f"{time.strftime('%Y%m%d-%H%M%S')}-{short(fhash)}.log"
    fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_APPEND, 0o600)
    os.close(fd)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    handler.setLevel(logging.INFO)
    log.addHandler(handler)
    if log.level == logging.NOTSET or log.level > logging.INFO:
        log.setLevel(logging.INFO)
    try:
        yield path
    finally:
        log.removeHandler(handler)
        handler.close()


# ----- the research PACS


class Research:
    """The research PACS: C-STORE with DCMTK ``storescu`` calling as the importer's AE title (``import.yaml:
    aet``, which the security profile lets C-STORE into the research PACS when the importer is enabled), over
    TLS when the node has ``tls: true``; and its REST API (nmdose's internal credential in keycloak mode) for
    which SOPInstanceUIDs of a study it holds (an answer to a C-STORE is not proof: every file is confirmed)."""

    def __init__(self, cfg: Config):
        from nmdose.pacs.orthanc_http import OrthancHttp

        self.cfg = cfg
        self.node = cfg.research_node
        self._factory = lambda: OrthancHttp.for_node(cfg, self.node.name, extra_timeout_s=60)
        self._local = threading.local()

    def _client(self):
        """One REST client per thread (the studies are asked a few at once)."""
        client = getattr(self._local, "client", None)
        if client is None:
            client = self._local.client = self._factory()
        return client

    def held(self, patient_id: str, study_uid: str) -> set[str]:
        """SOPInstanceUIDs of the study (under this PatientID) in the research PACS."""
        try:
            instances = self._client().get(f"/studies/{orthanc_study_id(patient_id, study_uid)}/instances")
        except PacsError as exc:
            if "HTTP 404" in str(exc):
                return set()
            raise
        return {str(i.get("MainDicomTags", {}).get("SOPInstanceUID", "")) for i in instances}

    def storescu_argv(self) -> list[str]:
        """storescu up to its input files: -R proposes exactly the files' SOP classes and transfer syntaxes (the
        default list lacks e.g. the Radiopharmaceutical Radiation Dose SR; a compressed file is sent as it is),
        -nh goes on after a refused file (each refusal lands in the report)."""
        from nmdose.security.tls import dcmtk_args

        exe = shutil.which("storescu")
        if not exe:
            raise NmdoseError("DCMTK storescu not found: run `make deps` (Debian package dcmtk)")
        timeout = str(int(max(30, self.node.timeout_s)))
        return [exe, "-v", "-R", "-nh", "-aet", self.cfg.imports.aet, "-aec", self.node.aet, "-to", timeout,
                "-ta", timeout, "-ts", str(int(max(120, self.node.timeout_s))), *dcmtk_args(self.cfg, self.node),
                self.node.host, str(self.node.port)]  # fmt: skip

    def store(self, files: list[Path]) -> tuple[dict[str, str], str | None]:
        """C-STORE `files` on one association. Returns (file -> why it was refused, why storescu stopped
        before answering for every file or None). The storescu dies with this process (``kill -9``)."""
        from nmdose.pacs.dcmtk import dicom_env

        argv = [*self.storescu_argv(), *map(str, files)]
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                stdin=subprocess.DEVNULL, env=dicom_env(), preexec_fn=_die_with_parent)  # fmt: skip
        refused: dict[str, str] = {}
        answered: set[str] = set()
        wanted = {str(f) for f in files}
        current: str | None = None
        tail: list[str] = []
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip("\n")
            if line.startswith(("W:", "E:")) and "ignoring" in line:  # a file storescu cannot send (checked
                # before the association: e.g. an unknown SOP class): refused, never retried
                for token in re.split(r"[\s,]+", line):
                    if token.rstrip(":") in wanted:
                        name = token.rstrip(":")
                        answered.add(name)
                        refused[name] = f"not sent ({line[3:].replace(name, 'file').strip()[:200]})"
                continue
            m = _SENDING_RE.search(line)
            if m:
                current = m.group(1).strip()
                continue
            m = _RESPONSE_RE.search(line)
            if m and current is not None:
                answered.add(current)
                if not m.group(1).startswith(("Success", "Warning")):
                    refused[current] = f"refused by the research PACS (C-STORE status {m.group(1)[:120]})"
                current = None
            elif line.startswith(("E:", "F:")):
                tail.append(line[3:].strip())
                if current is not None and ("Store SCU Failed" in line or "presentation context" in line):
                    answered.add(current)
                    refused[current] = f"not stored ({line[3:].strip()[:200]})"
                    current = None
        rc = proc.wait()
        unanswered = len(files) - len({f for f in map(str, files) if f in answered})
        stopped = None
        if unanswered:
            why = " | ".join(tail[-3:]) or f"exit code {rc}"
            stopped = f"storescu to {self.node.aet}@{self.node.host}:{self.node.port} stopped with {unanswered} " \
                      f"file(s) unanswered: {why[:400]}"  # fmt: skip
        return refused, stopped


_SENDING_RE = re.compile(r"Sending file: (.+)$")
_RESPONSE_RE = re.compile(r"Received Store Response \(([^)]*)\)")
_LIBC = ctypes.CDLL(None, use_errno=True)
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the storescu child before exec: SIGKILL when the thread that started it ends (the import process
    killed with -9 takes its storescu along: nothing keeps storing after the import is gone)."""
    _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def stage_dir(p: Paths, fhash: str) -> Path:
    """A private folder (0700) for this run's staged copies: <var>/run/import-stage/<hash>.<pid>. Those of
    earlier runs of the same folder (killed before they removed theirs) are removed first: the caller holds the
    folder's lock, so nobody uses them."""
    p.stage.mkdir(parents=True, exist_ok=True)
    os.chmod(p.stage, 0o700)
    for old in p.stage.glob(f"{short(fhash)}.*"):
        shutil.rmtree(old, ignore_errors=True)
    path = p.stage / f"{short(fhash)}.{os.getpid()}"
    path.mkdir(mode=0o700)
    return path


def upload(research: Research, items: list[tuple[str, Callable[[Path], None]]], stage: Path,
           workers: int) -> dict[str, str]:  # fmt: skip
    """Stage each (name, writes its staged copy at the given path) into `stage` and C-STORE the copies:
    `workers` storescu at once, each on one association for its share of the files (contiguous, so a series
    stays on one association; SHARES_PER_WORKER shares per worker). A share is sent as soon as it is staged,
    while the next ones are written: only the first share's staging is not overlapped with storing.
    Returns name -> why it was not stored. Raises ImportRetry when a storescu stopped before answering for every
    file (the research PACS unreachable or gone: not a fault of the folder, which stays where it is)."""
    if not items:
        return {}
    shares = max(1, min(SHARES_PER_WORKER * workers, len(items)), -(-len(items) // MAX_FILES_PER_ASSOCIATION))
    size = -(-len(items) // shares)
    failures: dict[str, str] = {}
    stopped: list[str] = []
    futures = []
    with ThreadPoolExecutor(max(1, min(workers, shares))) as pool:
        for k in range(shares):
            share = items[k * size : (k + 1) * size]
            if not share:
                break
            folder = stage / f"{k:03d}"
            folder.mkdir(mode=0o700)
            name_of: dict[str, str] = {}
            for j, (rel, write) in enumerate(share):
                dst = folder / f"{j:06d}.dcm"
                try:
                    write(dst)
                except OSError as exc:  # the disk, not the file (a full var folder): the folder stays
                    raise ImportRetry(
                        f"staging a copy failed: {exc.strerror or type(exc).__name__}"
                    ) from None
                except Exception as exc:  # noqa: BLE001 - the rewrite failed: this file is bad
                    failures[rel] = f"cannot be rewritten ({type(exc).__name__}: {str(exc)[:160]})"
                    continue
                name_of[str(dst)] = rel
            if name_of:
                futures.append((pool.submit(research.store, [Path(f) for f in name_of]), name_of))
        for future, name_of in futures:
            refused, why = future.result()
            failures.update({name_of[f]: reason for f, reason in refused.items() if f in name_of})
            if why:
                stopped.append(why)
    if stopped:
        raise ImportRetry(stopped[0])
    return failures


MAX_FILES_PER_ASSOCIATION = 5000  # keeps storescu's command line short
SHARES_PER_WORKER = 4  # a new association costs ~20 ms; staging a quarter before the first is sent saves more


# ----- one folder


def _now_folder(parent: Path) -> tuple[Path, str]:
    stamp = time.strftime("%Y%m%d_%H%M%S")
    return parent / stamp, stamp


def _unique(dest: Path) -> Path:
    if not dest.exists():
        return dest
    for i in range(1, 1000):
        candidate = dest.with_name(f"{dest.name}_{i}")
        if not candidate.exists():
            return candidate
    raise NmdoseError(f"{dest.parent}: too many folders of that name")


def _write_report(path: Path, result: ImportResult, title: str, missing: dict[str, str]) -> None:
    lines = [title, "", result.summary(), ""]
    if result.bad:
        lines += ["Bad files (the reason the folder failed):"]
        lines += [f"  {rel}: {why}" for rel, why in result.bad] + [""]
    if missing:
        lines += ["Not stored:"] + [f"  {rel}: {why}" for rel, why in missing.items()] + [""]
    if result.skipped:
        lines += ["Skipped (not imported):"] + [f"  {rel}: {why}" for rel, why in result.skipped] + [""]
    if result.study_uids:
        lines += ["Studies (StudyInstanceUID):"] + [f"  {uid}" for uid in result.study_uids] + [""]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    tmp.write_text("\n".join(lines), encoding="utf-8")
    os.replace(tmp, path)


def _move(folder: Path, parent: Path, result: ImportResult, kind: str, title: str,
          missing: dict[str, str]) -> None:  # fmt: skip
    """Report first, then one rename: the folder is either where it was or complete at its destination."""
    dest_dir, stamp = _now_folder(parent)
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = _unique(dest_dir / folder.name)
    result.destination = f"{kind}/{dest.parent.name}"
    _write_report(dest_dir / (dest.name + REPORT_SUFFIX), result, title, missing)
    os.rename(folder, dest)


def check_same_filesystem(folder: Path, p: Paths) -> None:
    """The archive step is a rename: the folder, archive/ and failed/ must be on one filesystem."""
    dev = folder.stat().st_dev
    for target in (p.archive, p.failed):
        target.mkdir(parents=True, exist_ok=True)
        if target.stat().st_dev != dev:
            raise NmdoseError(
                f"{target}: not on the filesystem of the folder to import (the archive step is a rename); "
                f"copy the folder into the drop folder {p.drop} or set import.yaml archive_folder/failed_folder"
            )


def import_folder(cfg: Config, folder: Path, *, trigger: str = "folder", research: Research | None = None,
                  stable_s: float | None = None) -> ImportResult:  # fmt: skip
    """Import one patient folder; returns what happened (outcome archived, failed or retry).

    ``stable_s``: refuse (retry) when something under the folder changed within that many seconds."""
    folder = Path(folder).absolute()
    if not folder.is_dir():
        raise NmdoseError(f"{folder}: not a folder")
    p = paths(cfg)
    ensure_folders(p)
    check_same_filesystem(folder, p)
    fhash = folder_hash(cfg, folder.name)
    if stable_s is not None and time.time() - last_change(folder) < stable_s:
        return ImportResult(fhash, outcome="retry", error="the folder is still changing")  # no row: not begun
    with folder_lock(p, fhash), run_log(p, fhash) as log_path:
        started = time.monotonic()
        result = ImportResult(fhash, log_file=log_path.name)
        entries = scan(folder)
        key = content_key(entries)
        run_id = store.start(cfg, fhash, key, trigger, log_path.name)
        log.info(
            "folder %s: import starts (%s, %d files, run %s)", short(fhash), trigger, len(entries), run_id
        )
        try:
            _import(cfg, folder, entries, key, p, result, research)
        except ImportRetry as exc:
            result.outcome, result.error = "retry", scrub(str(exc), folder, fhash)
            log.warning("folder %s: left in place, imported again later: %s", short(fhash), result.error)
        except Exception as exc:
            result.outcome, result.error = "retry", scrub(f"{type(exc).__name__}: {exc}", folder, fhash)[:500]
            # no traceback: its paths would name the patient
            log.error(
                "folder %s: import stopped, the folder stays where it is: %s", short(fhash), result.error
            )
            result.seconds = time.monotonic() - started
            store.finish(cfg, run_id, **result.row())
            raise ImportRetry(result.error) from None
        result.seconds = time.monotonic() - started
        store.finish(cfg, run_id, **result.row())
        log.info("%s", result.summary())
        if result.phases:
            log.info("folder %s: seconds per step: %s", short(fhash),
                     ", ".join(f"{k} {v:.2f}" for k, v in result.phases.items()))  # fmt: skip
        return result


def scrub(text: str, folder: Path, fhash: str) -> str:
    """`text` without the folder's name (it holds the patient's name and number)."""
    return text.replace(str(folder), f"<folder {short(fhash)}>").replace(
        folder.name, f"<folder {short(fhash)}>"
    )


def _import(cfg: Config, folder: Path, entries: list[Entry], key: str, p: Paths, result: ImportResult,
            research: Research | None) -> None:  # fmt: skip
    fhash = result.folder_hash
    result.files = len(entries)
    pattern = cfg.imports.patient_pattern
    match = re.match(pattern, folder.name) if pattern else None
    result.pattern_matched = None if not pattern else bool(match)
    patient = (match.group(1), match.group(2)) if match else None
    if pattern and not match:
        log.warning("folder %s: name does not match the patient pattern: its files are imported unchanged",
                    short(fhash))  # fmt: skip

    # 1. classify
    tick = time.monotonic()
    infos: list[FileInfo] = []
    send_path: dict[str, Path] = {}  # rel -> the file to send
    seen: dict[str, str] = {}  # SOPInstanceUID -> rel
    for e in entries:
        info = classify(e.path, e.rel)
        if info.kind in ("not_dicom", "dicomdir"):
            result.skipped.append((e.rel, info.reason))
            continue
        if info.kind == "broken":
            result.bad.append((e.rel, info.reason))
            continue
        if info.sop_uid in seen:
            result.skipped.append((e.rel, f"duplicate of {seen[info.sop_uid]} (same SOPInstanceUID)"))
            continue
        seen[info.sop_uid] = e.rel
        infos.append(info)
        result.bytes += e.size
        send_path[e.rel] = e.path
    result.dicom_files = len(infos)
    result.study_uids = sorted({i.study_uid for i in infos})
    if result.skipped:
        log.info("folder %s: %d files skipped (%s)", short(fhash), len(result.skipped),
                 ", ".join(sorted({why.split(' (')[0] for _, why in result.skipped})))  # fmt: skip
    if result.bad:
        log.warning("folder %s: %d broken DICOM files: the folder goes to failed/ (report there)",
                    short(fhash), len(result.bad))  # fmt: skip
        result.outcome = "failed"
        result.error = f"{len(result.bad)} broken DICOM file(s)"
        _move(folder, p.failed, result, "failed", "nmdose import: FAILED (nothing was stored)", {})
        return
    if not infos:
        log.warning("folder %s: no DICOM file: the folder goes to failed/", short(fhash))
        result.outcome, result.error = "failed", "no DICOM file in the folder"
        _move(folder, p.failed, result, "failed", "nmdose import: FAILED (no DICOM file)", {})
        return
    for uid in result.study_uids:
        log.info("folder %s: study %s", short(fhash), uid)

    # 2. what the research PACS holds already
    result.phases["classify"] = time.monotonic() - tick
    tick = time.monotonic()
    research = research or Research(cfg)
    pid_of = {i.rel: (patient[0] if patient else i.patient_id.strip()) for i in infos}
    studies: dict[tuple[str, str], list[FileInfo]] = {}
    for i in infos:
        studies.setdefault((pid_of[i.rel], i.study_uid), []).append(i)

    def held_all() -> set[str]:
        try:
            held: set[str] = set()
            with ThreadPoolExecutor(min(4, max(1, len(studies)))) as pool:  # one REST call per study
                for found in pool.map(lambda key: research.held(*key), list(studies)):
                    held |= found
            return held
        except PacsError as exc:
            raise ImportRetry(f"research PACS REST API: {exc}") from None

    before = held_all()
    todo = [i for i in infos if i.sop_uid not in before]
    result.already_stored = len(infos) - len(todo)
    result.phases["check"] = time.monotonic() - tick
    tick = time.monotonic()

    # 3. store what is missing (a matching folder: rewritten copies, staged in a private folder removed after
    # the upload; else the dropped files themselves, through links in that folder), then confirm every
    # SOPInstanceUID
    def staged(path: Path) -> Callable[[Path], None]:
        if not patient:
            return lambda dst: os.symlink(path, dst)

        def write(dst: Path) -> None:
            data = rewritten(path, patient[0], patient[1])
            fd = os.open(dst, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)

        return write

    stage = stage_dir(p, fhash)
    try:
        failures = upload(research, [(i.rel, staged(send_path[i.rel])) for i in todo], stage,
                          cfg.imports.workers)  # fmt: skip
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    result.phases["store"] = time.monotonic() - tick  # staging and storescu, overlapped
    tick = time.monotonic()
    after = held_all()
    result.phases["confirm"] = time.monotonic() - tick
    missing = {i.rel: failures.get(i.rel, "not in the research PACS after the upload")
               for i in todo if i.sop_uid not in after}  # fmt: skip
    result.stored = sum(1 for i in todo if i.sop_uid in after)
    if missing:
        result.bad += list(missing.items())
        result.outcome = "failed"
        result.error = f"{len(missing)} file(s) not stored"
        log.warning("folder %s: %d files not stored: the folder goes to failed/ (report there)", short(fhash),
                    len(missing))  # fmt: skip
        _move(
            folder, p.failed, result, "failed", "nmdose import: FAILED (some files were not stored)", missing
        )
        return

    # 5. archive, unless files arrived meanwhile (then: again after the debounce; only those are sent)
    if content_key(scan(folder)) != key:
        raise ImportRetry("the folder changed during the import")
    result.outcome = "archived"
    _move(folder, p.archive, result, "archive", "nmdose import: archived (every DICOM file is in the research "
          "PACS)", {})  # fmt: skip


def pending_folders(p: Paths) -> list[Path]:
    """The patient folders in the drop folder now (hidden ones, starting with '.', are left alone)."""
    if not p.drop.is_dir():
        return []
    return sorted(
        d for d in p.drop.iterdir() if d.is_dir() and not d.is_symlink() and not d.name.startswith(".")
    )
