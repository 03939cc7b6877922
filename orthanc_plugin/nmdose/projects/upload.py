"""An upload to a project: DICOM files (one `application/dicom` body) or a ZIP of them (`application/zip`).

Each file is checked (the `DICM` prefix of a Part 10 file, read completely by pydicom, not cut short, with its
Study, Series and SOP Instance UIDs) and stored into the research PACS; the good ones are added to the project,
each bad one is listed with its reason (and never stored). A ZIP is bounded: at most `MAX_FILES` members and
`MAX_UNPACKED_BYTES` unpacked (the sizes its directory declares, and what is read), so a ZIP bomb is refused.
Logs name counts and StudyInstanceUIDs, never a file name (a folder may carry the patient's name).
"""

from __future__ import annotations

import datetime as dt
import io
import logging
import zipfile
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from pydicom import dcmread

from nmdose.dicom_file import truncation
from nmdose.errors import PacsError
from nmdose.projects.names import ProjectError
from nmdose.projects.orthanc import store

log = logging.getLogger("nmdose.projects")

MAX_UPLOAD_BYTES = 1 << 30  # one request's body
MAX_UNPACKED_BYTES = 4 << 30  # a ZIP's members together
MAX_FILES = 20_000
# Files sent to the research PACS at once. One: each store runs the plugin's own OnStoredInstance in Orthanc's
# interpreter, so parallel stores only contend for it (measured: 300 files, 40 MB: 3.6 s with one, 8-11 s with
# four, on two cores); the one thread still overlaps the checking of the next file with the storing.
STORE_THREADS = 1
SKIPPED = ("__MACOSX/", ".DS_Store", "Thumbs.db")


@dataclass
class Checked:
    name: str
    data: bytes
    reason: str = ""  # empty: a good DICOM file
    study_uid: str = ""
    series_uid: str = ""
    study_date: dt.date | None = None
    description: str = ""
    modality: str = ""


@dataclass
class Report:
    """What an upload did: files stored (or already there), the bad ones with their reasons, per study what
    its files said (project_study's fields)."""

    files: int = 0
    stored: int = 0
    already_stored: int = 0
    bad: list[dict[str, str]] = field(default_factory=list)
    studies: dict[str, dict[str, Any]] = field(default_factory=dict)

    def answer(self) -> dict[str, Any]:
        return {
            "files": self.files,
            "stored": self.stored,
            "already_stored": self.already_stored,
            "bad_files": len(self.bad),
            "bad": self.bad,
        }


def _text(ds, keyword: str) -> str:
    try:
        value = ds.get(keyword, "")
    except Exception:  # noqa: BLE001 - a value pydicom cannot convert counts as absent
        return ""
    return str(value or "").strip()


def _truncated(ds) -> str | None:
    cut = truncation(ds)
    return f"cut short: {cut}" if cut else None


def check(name: str, data: bytes) -> Checked:
    """Is `data` a DICOM file nmdose stores? `reason` says why not."""
    if len(data) < 132 or data[128:132] != b"DICM":
        return Checked(name, data, "not a DICOM file (no DICM prefix of a Part 10 file)")
    try:
        ds = dcmread(io.BytesIO(data))
        cut = _truncated(ds)
        for _elem in ds.iterall():  # every element decoded: a broken one raises here
            pass
    except Exception as exc:  # noqa: BLE001 - any reading error makes the file bad, named in the report
        return Checked(name, data, f"unreadable DICOM ({type(exc).__name__}: {str(exc)[:160]})")
    if cut:
        return Checked(name, data, cut)
    uids = {k: _text(ds, k) for k in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")}
    missing = [k for k, v in uids.items() if not v]
    if missing:
        return Checked(name, data, f"DICOM without {missing[0]}")
    try:
        date = dt.datetime.strptime(_text(ds, "StudyDate"), "%Y%m%d").date()
    except ValueError:
        date = None
    return Checked(name, data, "", uids["StudyInstanceUID"], uids["SeriesInstanceUID"], date,
                   _text(ds, "StudyDescription")[:256], _text(ds, "Modality")[:16])  # fmt: skip


def files(body: bytes, content_type: str, name: str = "upload.dcm") -> Iterator[tuple[str, bytes, str]]:
    """(name, bytes, error) of each file of the body (error: a ZIP member that cannot be unpacked): the body itself (application/dicom) or each member of the ZIP
    (application/zip; directories and desktop litter skipped). ProjectError 400/413 for a body that is none."""
    if len(body) > MAX_UPLOAD_BYTES:
        raise ProjectError(
            413, f"an upload is at most {MAX_UPLOAD_BYTES >> 20} MB; send a larger set in parts"
        )
    if not body:
        raise ProjectError(400, "the upload is empty")
    if content_type == "application/dicom":
        yield name, body, ""
        return
    if content_type != "application/zip":
        raise ProjectError(415, "an upload is application/dicom (one file) or application/zip")
    try:
        archive = zipfile.ZipFile(io.BytesIO(body))
    except (zipfile.BadZipFile, ValueError) as exc:
        raise ProjectError(400, f"the upload is not a readable ZIP ({exc})") from None
    members = [i for i in archive.infolist() if not i.is_dir() and not any(s in i.filename for s in SKIPPED)]
    if len(members) > MAX_FILES:
        raise ProjectError(413, f"the ZIP holds {len(members)} files; at most {MAX_FILES} at once")
    if sum(i.file_size for i in members) > MAX_UNPACKED_BYTES:
        raise ProjectError(413, f"the ZIP unpacks to more than {MAX_UNPACKED_BYTES >> 30} GB")
    for info in members:
        if info.filename.rsplit("/", 1)[-1].upper() == "DICOMDIR":
            continue  # the medium's index, not an image
        try:
            with archive.open(info) as fh:
                data = fh.read(info.file_size + 1)
        except Exception as exc:  # noqa: BLE001 - a broken member (bad CRC, unknown compression) is one bad file
            yield info.filename, b"", f"unreadable ZIP member ({type(exc).__name__}: {str(exc)[:160]})"
            continue
        if len(data) > info.file_size:  # more than the directory declared: refused like a bomb
            raise ProjectError(413, "a ZIP member unpacks to more than its declared size")
        yield info.filename, data, ""


def _stored(report: Report, got: Checked, future: Future) -> None:
    """Count one stored file (or list it as refused by the research PACS) and its study's fields."""
    try:
        answer = future.result()
    except PacsError as exc:
        report.bad.append({"file": got.name, "reason": f"refused by the research PACS: {str(exc)[-200:]}"})
        return
    if answer.get("Status") == "AlreadyStored":
        report.already_stored += 1
    else:
        report.stored += 1
    study = report.studies.setdefault(
        got.study_uid,
        {"study_date": got.study_date, "description": got.description, "modalities": [], "series": set(),
         "instance_count": 0},
    )  # fmt: skip
    study["instance_count"] += 1
    study["series"].add(got.series_uid)
    if got.modality and got.modality not in study["modalities"]:
        study["modalities"].append(got.modality)


def run(
    http, body: bytes, content_type: str, name: str = "upload.dcm", refuse: Callable[[str], str] | None = None
) -> Report:
    """Check and store every file of the upload (`http`: the research PACS's REST client). The good files go to
    the research PACS `STORE_THREADS` at a time, at most `2 * STORE_THREADS` of them unpacked in memory at once.
    `refuse(study_uid)`: why files of this study may not be stored (empty: they may), asked once per study."""
    report = Report()
    refusals: dict[str, str] = {}
    pending: deque[tuple[Checked, Future]] = deque()
    with ThreadPoolExecutor(STORE_THREADS, thread_name_prefix="nmdose-upload") as pool:
        for fname, data, error in files(body, content_type, name):
            report.files += 1
            if error:
                report.bad.append({"file": fname, "reason": error})
                continue
            got = check(fname, data)
            if got.reason:
                report.bad.append({"file": fname, "reason": got.reason})
                continue
            if refuse is not None:
                if got.study_uid not in refusals:
                    refusals[got.study_uid] = refuse(got.study_uid)
                if refusals[got.study_uid]:
                    report.bad.append({"file": fname, "reason": refusals[got.study_uid]})
                    continue
            pending.append((got, pool.submit(store, http, data)))
            got.data = b""  # the thread holds the bytes until they are sent
            while len(pending) >= 2 * STORE_THREADS:
                _stored(report, *pending.popleft())
        while pending:
            _stored(report, *pending.popleft())
    for study in report.studies.values():
        study["series_count"] = len(study.pop("series"))
        study["modalities"] = sorted(study["modalities"])
    log.info(
        "project upload: %d files, %d stored, %d already stored, %d bad; studies %s",
        report.files, report.stored, report.already_stored, len(report.bad), ", ".join(report.studies),
    )  # fmt: skip
    return report
