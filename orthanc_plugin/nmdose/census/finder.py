"""Study-level C-FIND against the source PACS: one small interface, two adapters.

:class:`OrthancFinder` asks the research PACS to query (``POST /modalities/{node}/query``), the production path.
:class:`FindscuFinder` runs DCMTK ``findscu`` directly (the benchmark's baseline, and a fallback).

A capped answer is not an error: Orthanc 1.10 as SCU turns the SCP's final status 0xFE00 ("matching terminated")
into HTTP 500 with no answers (measured on Orthanc 1.10.1: docs/architecture.md), and other PACSs cap silently (exactly `find_limit` answers). Both come
back as ``FindResult(capped=True)``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from nmdose.census.ranges import DateRange, TimeRange
from nmdose.config import Node
from nmdose.errors import PacsError, PacsTimeout
from nmdose.pacs.orthanc_http import OrthancHttp

# Study-level keys the census asks for (issue 3). PatientName is deliberately not requested.
RETURN_KEYS: tuple[str, ...] = (
    "StudyDate",
    "StudyTime",
    "StudyDescription",
    "ModalitiesInStudy",
    "StudyInstanceUID",
    "AccessionNumber",
    "PatientID",
    "NumberOfStudyRelatedSeries",
    "NumberOfStudyRelatedInstances",
)
PROBE_KEYS: tuple[str, ...] = ("StudyDate", "StudyInstanceUID")

_CANCEL_RE = re.compile(r"0x\s*fe00|matching\s*terminated", re.IGNORECASE)


def is_capped_error(message: str) -> bool:
    """True when a query error is the SCP's "matching terminated" status 0xFE00 (answers were capped)."""
    return bool(_CANCEL_RE.search(message or ""))


def silently_capped(answers: int, limit: int | None) -> bool:
    """A PACS that caps silently returns exactly `limit` answers with status Success."""
    return limit is not None and answers >= limit


@dataclass
class FindResult:
    """Answers of one C-FIND (keyword -> text) and whether they were capped."""

    answers: list[dict[str, str]]
    capped: bool
    seconds: float
    cap_signalled: bool = False  # the PACS said so (0xFE00); False with a silent cap
    extra: dict = field(default_factory=dict)


class StudyFinder(Protocol):
    """What the census needs from a PACS."""

    name: str
    limit: int | None

    def find_studies(
        self,
        dates: DateRange,
        times: TimeRange | None = None,
        modalities: Sequence[str] = (),
        keys: Sequence[str] = RETURN_KEYS,
    ) -> FindResult:
        """Study-level C-FIND; raises PacsError/PacsTimeout when the PACS fails (not when it caps)."""
        ...

    def series_modalities(self, study_uid: str) -> list[str]:
        """The modalities of a study's series (series-level C-FIND), for PACSs that leave
        ModalitiesInStudy empty."""
        ...


def study_query(
    dates: DateRange, times: TimeRange | None, modalities: Sequence[str], keys: Sequence[str]
) -> dict[str, str]:
    """The identifier of a study-level query: matching keys plus empty return keys."""
    query = {k: "" for k in keys}
    query["StudyDate"] = dates.dicom()
    if times is not None:
        query["StudyTime"] = times.dicom()
    if modalities:
        query["ModalitiesInStudy"] = "\\".join(modalities)
    return query


def _clean(answer: dict, keys: Sequence[str]) -> dict[str, str]:
    out = {}
    for k in keys:
        v = answer.get(k, "")
        out[k] = (v if isinstance(v, str) else "" if v is None else str(v)).strip()
    return out


class OrthancFinder:
    """C-FIND through the research PACS's REST API (Orthanc 1.10: ``Normalize: false`` keeps
    ModalitiesInStudy; answers are read with ``?expand&simplify`` and the query deleted at once, as Orthanc
    keeps only the 100 newest)."""

    def __init__(self, rest: OrthancHttp, node: Node):
        self.rest = rest
        self.node = node
        self.name = node.name
        self.limit = node.find_limit

    def _query(self, level: str, query: dict[str, str]) -> tuple[list[dict], bool]:
        try:
            answers = self.rest.cfind(
                self.node.name,
                level,
                query,
                timeout_s=self.node.timeout_s + 30,
                dicom_timeout_s=self.node.timeout_s,
            )
        except PacsTimeout:
            raise
        except PacsError as exc:
            if is_capped_error(str(exc)):
                return [], True
            raise
        return answers, False

    def find_studies(
        self,
        dates: DateRange,
        times: TimeRange | None = None,
        modalities: Sequence[str] = (),
        keys: Sequence[str] = RETURN_KEYS,
    ) -> FindResult:
        started = time.monotonic()
        raw, signalled = self._query("Study", study_query(dates, times, modalities, keys))
        answers = [_clean(a, keys) for a in raw]
        capped = signalled or silently_capped(len(answers), self.limit)
        return FindResult(answers, capped, time.monotonic() - started, signalled)

    def series_modalities(self, study_uid: str) -> list[str]:
        raw, capped = self._query(
            "Series", {"StudyInstanceUID": study_uid, "Modality": "", "SeriesInstanceUID": ""}
        )
        if capped:
            raise PacsError(f"{self.name}: series-level C-FIND of study {study_uid} was capped")
        return sorted({str(a.get("Modality", "")).strip() for a in raw} - {""})


# --------------------------------------------------------------------------------------------- findscu

_TAGS = {
    "(0008,0020)": "StudyDate",
    "(0008,0030)": "StudyTime",
    "(0008,1030)": "StudyDescription",
    "(0008,0061)": "ModalitiesInStudy",
    "(0008,0060)": "Modality",
    "(0020,000d)": "StudyInstanceUID",
    "(0008,0050)": "AccessionNumber",
    "(0010,0020)": "PatientID",
    "(0020,1206)": "NumberOfStudyRelatedSeries",
    "(0020,1208)": "NumberOfStudyRelatedInstances",
}
_LINE_RE = re.compile(r"^[IWDE]: (\(\w{4},\w{4}\)) \w\w \[(.*)\]")


def parse_findscu_output(text: str) -> list[dict[str, str]]:
    """Answers from ``findscu -v`` output (one dump per "Find Response")."""
    answers: list[dict[str, str]] = []
    current: dict[str, str] | None = None
    for line in text.splitlines():
        if "Find Response:" in line and "(Pending)" in line:
            current = {}
            answers.append(current)
            continue
        m = _LINE_RE.match(line)
        if m and current is not None and m.group(1).lower() in _TAGS:
            current[_TAGS[m.group(1).lower()]] = m.group(2).strip()
    return answers


class FindscuFinder:
    """C-FIND with DCMTK ``findscu`` (TCP_NODELAY=1), straight from this process to the PACS."""

    def __init__(self, node: Node, calling_aet: str, tls_args: list[str] | None = None):
        self.node = node
        self.name = node.name
        self.limit = node.find_limit
        self.calling_aet = calling_aet
        self.tls_args = tls_args or []  # nmdose.security.tls.dcmtk_args for a TLS node

    def _run(self, level: str, query: dict[str, str]) -> tuple[list[dict[str, str]], bool, float]:
        from nmdose.pacs.dcmtk import run_tool

        t = str(max(1, int(self.node.timeout_s)))
        args = ["-v", "-S", "-aet", self.calling_aet, "-aec", self.node.aet, "-to", t, "-ta", t, "-td", t]
        args += ["-k", f"QueryRetrieveLevel={level}"]
        for k, v in query.items():
            args += ["-k", f"{k}={v}" if v else k]
        result = run_tool(
            "findscu",
            [*args, *self.tls_args, self.node.host, str(self.node.port)],
            timeout_s=self.node.timeout_s + 10,
        )
        output = result.stdout + "\n" + result.stderr
        if result.returncode != 0 and not is_capped_error(output):
            tail = " | ".join(line for line in output.splitlines() if line.startswith(("E:", "F:")))[-300:]
            if result.returncode == -1:
                raise PacsTimeout(f"{self.name}: findscu timed out after {self.node.timeout_s} s")
            raise PacsError(f"{self.name}: findscu exit code {result.returncode}: {tail or 'no message'}")
        return parse_findscu_output(output), is_capped_error(output), result.seconds

    def find_studies(
        self,
        dates: DateRange,
        times: TimeRange | None = None,
        modalities: Sequence[str] = (),
        keys: Sequence[str] = RETURN_KEYS,
    ) -> FindResult:
        answers, signalled, seconds = self._run("STUDY", study_query(dates, times, modalities, keys))
        answers = [_clean(a, keys) for a in answers]
        capped = signalled or silently_capped(len(answers), self.limit)
        return FindResult(answers, capped, seconds, signalled)

    def series_modalities(self, study_uid: str) -> list[str]:
        answers, capped, _ = self._run("SERIES", {"StudyInstanceUID": study_uid, "Modality": ""})
        if capped:
            raise PacsError(f"{self.name}: series-level C-FIND of study {study_uid} was capped")
        return sorted({a.get("Modality", "") for a in answers} - {""})
