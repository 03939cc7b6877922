"""C-MOVE of one study (or some of its series/instances) from the source PACS into a destination, two backends:

- :class:`OrthancMover` (default): through the research PACS's REST API, one synchronous
  `POST /modalities/{src}/move` (Orthanc's own C-MOVE SCU; it answers when the move's final response came, so
  nothing is polled). On 1.10 any non-success final status, 0xB000 "completed with failures" included, is an
  HTTP error naming the DIMSE status.
- :class:`MovescuMover`: DCMTK `movescu` with the destination AE; stdout/stderr go to one log file per study and
  run (`var/log/retrieve/<date>/<StudyInstanceUID>.log`), as the user's notes ask.

Both are synchronous to their caller (a worker thread) and return a :class:`MoveResult`; neither raises for a
DICOM failure, only for a configuration error.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Protocol

from nmdose.config import Config, Node
from nmdose.errors import PacsError, PacsTimeout
from nmdose.pacs.dcmtk import run_tool
from nmdose.pacs.orthanc_http import OrthancHttp
from nmdose.security import tls


@dataclass
class MoveResult:
    study_uid: str
    ok: bool
    status: str | None = None  # final DICOM status, e.g. "0x0000", "0xa702", "0xb000"
    completed: int | None = None
    failed: int | None = None
    warning: int | None = None
    seconds: float = 0.0
    error: str | None = None
    log_path: str | None = None
    details: dict = field(default_factory=dict)


class Mover(Protocol):
    name: str

    def move(self, study_uid: str, *, series_uids: list[str] | None = None) -> MoveResult: ...


class OrthancMover:
    """C-MOVE driven by the research PACS (its own AE is the move destination unless `target_aet` is given).

    One synchronous `POST /modalities/{src}/move` per study (all its series in one association when only some
    are moved): Orthanc answers when the C-MOVE's final response arrived, so there is no C-FIND before it, no
    job to follow and no polling. Whether the source holds the study at all is asked (study-level C-FIND) only
    when the move failed, to tell "not found" (permanent) from any other failure."""

    name = "orthanc"

    def __init__(self, rest: OrthancHttp, source: Node, target_aet: str, *, timeout_s: float = 3600):
        self.rest = rest
        self.source = source
        self.target_aet = target_aet
        self.timeout_s = timeout_s

    def move(self, study_uid: str, *, series_uids: list[str] | None = None) -> MoveResult:
        started = time.monotonic()
        if series_uids:
            level = "Series"
            resources = [{"StudyInstanceUID": study_uid, "SeriesInstanceUID": s} for s in series_uids]
        else:
            level, resources = "Study", [{"StudyInstanceUID": study_uid}]
        body = {
            "Level": level,
            "Resources": resources,
            "TargetAet": self.target_aet,
            "Timeout": int(max(1, self.source.timeout_s)),  # DICOM timeout of each message of the association
        }
        try:
            self.rest.post(f"/modalities/{self.source.name}/move", body, timeout_s=self.timeout_s)
        except PacsTimeout:
            return MoveResult(
                study_uid,
                False,
                status="timeout",
                seconds=time.monotonic() - started,
                error=f"C-MOVE of {study_uid} not finished after {self.timeout_s:.0f} s",
            )
        except PacsError as exc:
            status = _hex_in(str(exc))
            if status is not None and not self._source_has(study_uid):
                return MoveResult(
                    study_uid,
                    False,
                    status="not-found",
                    seconds=time.monotonic() - started,
                    error=f"{self.source.name} has no study {study_uid} (C-FIND found nothing)",
                )
            return MoveResult(
                study_uid, False, status=status, error=str(exc), seconds=time.monotonic() - started
            )
        return MoveResult(study_uid, True, status="0x0000", seconds=time.monotonic() - started)

    def _source_has(self, study_uid: str) -> bool:
        """The source answers a study-level C-FIND for it (True when the C-FIND itself fails: not "not found")."""
        try:
            return bool(self.rest.cfind(self.source.name, "Study", {"StudyInstanceUID": study_uid}))
        except PacsError:
            return True


_STATUS_RE = re.compile(r"0x([0-9A-Fa-f]{4})")
_COUNT_RE = re.compile(r"(Completed|Failed|Warning) Suboperations\s*:\s*(\d+)")


def _hex_in(text: str) -> str | None:
    m = _STATUS_RE.search(text or "")
    return f"0x{m[1].lower()}" if m else None


class MovescuMover:
    """DCMTK movescu (study root), with one log file per study and run."""

    name = "dcmtk"

    def __init__(
        self,
        cfg: Config,
        source: Node,
        destination_aet: str,
        *,
        log_root: Path | None = None,
        timeout_s: float = 3600,
    ):
        self.cfg = cfg
        self.source = source
        self.destination_aet = destination_aet
        self.log_root = log_root or cfg.log_dir / "retrieve"
        self.timeout_s = timeout_s

    def move(self, study_uid: str, *, series_uids: list[str] | None = None) -> MoveResult:
        t = str(int(self.source.timeout_s))
        args = [
            "-d",
            "-S",
            "-aet",
            self.cfg.local_aet,
            "-aec",
            self.source.aet,
            "-aem",
            self.destination_aet,
            "-to",
            t,
            "-ta",
            t,
            "-td",
            str(int(self.timeout_s)),
            "-k",
            "QueryRetrieveLevel=" + ("SERIES" if series_uids else "STUDY"),
            "-k",
            f"StudyInstanceUID={study_uid}",
        ]
        if series_uids:
            args += ["-k", "SeriesInstanceUID=" + "\\".join(series_uids)]
        if self.source.tls:  # movescu has no TLS option: a TLS tunnel carries the association
            with tls.Tunnel(self.cfg, self.source, timeout_s=self.source.timeout_s) as tunnel:
                result = run_tool(
                    "movescu", [*args, "127.0.0.1", str(tunnel.port)], timeout_s=self.timeout_s + 30
                )
        else:
            args += [self.source.host, str(self.source.port)]
            result = run_tool("movescu", args, timeout_s=self.timeout_s + 30)
        log_path = self.log_root / date.today().isoformat() / f"{study_uid}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("a", encoding="utf-8") as fh:
            fh.write(f"===== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(result.argv)}\n")
            fh.write(f"exit code {result.returncode}, {result.seconds:.2f} s\n--- stdout\n{result.stdout}\n")
            fh.write(f"--- stderr\n{result.stderr}\n")
        text = result.stdout + "\n" + result.stderr
        counts = {k.lower(): int(v) for k, v in _COUNT_RE.findall(text)}  # the last response wins
        statuses = re.findall(r"DIMSE Status\s*:\s*0x([0-9A-Fa-f]{4})", text)
        final = f"0x{statuses[-1].lower()}" if statuses else None
        ok = result.ok and final == "0x0000" and counts.get("failed", 0) == 0
        error = None
        if not ok:
            lines = [ln.strip() for ln in result.stderr.splitlines() if ln.strip()]
            error = lines[-1] if lines else f"movescu exit code {result.returncode}, status {final}"
        return MoveResult(
            study_uid,
            ok,
            status=final,
            completed=counts.get("completed"),
            failed=counts.get("failed"),
            warning=counts.get("warning"),
            seconds=result.seconds,
            error=error,
            log_path=str(log_path),
        )


@dataclass
class Verification:
    study_uid: str
    expected: int | None
    received: int
    missing_series: list[str]

    @property
    def complete(self) -> bool:
        return self.expected is not None and self.received >= self.expected and not self.missing_series


def announced_series(rest: OrthancHttp, source: Node, study_uid: str) -> dict[str, int | None]:
    """SeriesInstanceUID -> NumberOfSeriesRelatedInstances as the source announces them (series-level C-FIND)."""
    answers = rest.cfind(
        source.name,
        "Series",
        {"StudyInstanceUID": study_uid, "SeriesInstanceUID": "", "NumberOfSeriesRelatedInstances": ""},
    )
    result: dict[str, int | None] = {}
    for a in answers:
        n = a.get("NumberOfSeriesRelatedInstances")
        result[a["SeriesInstanceUID"]] = int(n) if n not in (None, "") else None
    return result


def received_series(rest: OrthancHttp, study_uid: str) -> dict[str, int]:
    """SeriesInstanceUID -> instances held by the research PACS for this study."""
    ids = rest.post("/tools/find", {"Level": "Study", "Query": {"StudyInstanceUID": study_uid}})
    result: dict[str, int] = {}
    for study_id in ids:
        for series in rest.get(f"/studies/{study_id}/series"):
            uid = series["MainDicomTags"]["SeriesInstanceUID"]
            result[uid] = result.get(uid, 0) + len(series.get("Instances", []))
    return result


def verify(
    rest: OrthancHttp, source: Node, study_uid: str, *, expected_instances: int | None = None
) -> Verification:
    """Compare what the research PACS holds with what the source announces, per series."""
    announced = announced_series(rest, source, study_uid)
    received = received_series(rest, study_uid)
    missing = [uid for uid, n in announced.items() if received.get(uid, 0) < (n if n is not None else 1)]
    total_announced = sum(n for n in announced.values() if n is not None)
    if expected_instances is None and all(n is not None for n in announced.values()) and announced:
        expected_instances = total_announced
    return Verification(study_uid, expected_instances, sum(received.values()), missing)
