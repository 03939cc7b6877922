"""C-STORE of selected instances to the dose PACS through the research Orthanc, and a check of what arrived.

`POST /modalities/{dose}/store` with the instance ids and `"Synchronous": false` starts a `DicomModalityStore`
job, followed until it ends (Orthanc 1.10 fails the whole job on the first refused or unreachable store).
`present_on(...)` asks the destination (instance-level C-FIND) which SOPInstanceUIDs it already holds, so a
retry after a half-finished job does not send those again.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass

from nmdose.errors import PacsError
from nmdose.pacs.orthanc_http import OrthancHttp


@dataclass
class StoreResult:
    ok: bool
    job: str | None = None
    seconds: float = 0.0
    error: str | None = None


class ForwardError(PacsError):
    """Forwarding did not succeed (retried with back-off unless permanent)."""

    def __init__(self, message: str, *, permanent: bool = False):
        super().__init__(message)
        self.permanent = permanent


def store(
    rest: OrthancHttp,
    modality: str,
    instance_ids: list[str],
    *,
    timeout_s: float = 3600,
    poll_s: float = 0.1,
) -> StoreResult:
    """C-STORE these Orthanc instances to `modality` (a DicomModalities name) as one Orthanc job."""
    started = time.monotonic()
    try:
        job = rest.post(
            f"/modalities/{modality}/store",
            {"Resources": instance_ids, "Synchronous": False, "Priority": 1},
        )
    except PacsError as exc:
        return StoreResult(False, seconds=time.monotonic() - started, error=str(exc))
    return follow(
        rest, job["ID"], started=started, timeout_s=timeout_s, poll_s=poll_s, what=f"C-STORE to {modality}"
    )


def follow(
    rest: OrthancHttp,
    job_id: str,
    *,
    started: float | None = None,
    timeout_s: float = 3600,
    poll_s: float = 0.1,
    what: str = "job",
) -> StoreResult:
    """Follow an Orthanc job until Success or Failure (cancelled after `timeout_s`)."""
    started = time.monotonic() if started is None else started
    deadline = started + timeout_s
    while True:
        try:
            info = rest.get(f"/jobs/{job_id}")
        except PacsError as exc:
            return StoreResult(False, job_id, time.monotonic() - started, f"job {job_id} lost: {exc}")
        state = info.get("State")
        if state == "Success":
            return StoreResult(True, job_id, time.monotonic() - started)
        if state == "Failure":
            detail = info.get("ErrorDetails") or info.get("ErrorDescription") or "failed"
            return StoreResult(
                False,
                job_id,
                time.monotonic() - started,
                f"{what} failed: {info.get('ErrorDescription', 'failure')}: {detail}",
            )
        if time.monotonic() > deadline:
            with contextlib.suppress(PacsError):
                rest.post(f"/jobs/{job_id}/cancel", {})
            return StoreResult(
                False, job_id, time.monotonic() - started, f"{what}: job {job_id} still {state}; cancelled"
            )
        time.sleep(poll_s)


def present_on(rest: OrthancHttp, modality: str, study_uid: str) -> set[str]:
    """SOPInstanceUIDs of this study the destination holds (instance-level C-FIND through Orthanc)."""
    q = rest.post(
        f"/modalities/{modality}/query",
        {
            "Level": "Instance",
            "Normalize": False,
            "Query": {"StudyInstanceUID": study_uid, "SeriesInstanceUID": "", "SOPInstanceUID": ""},
        },
    )
    try:
        answers = rest.get(f"/queries/{q['ID']}/answers", params={"expand": "", "simplify": ""})
    finally:
        with contextlib.suppress(PacsError):
            rest.delete(f"/queries/{q['ID']}")
    return {a["SOPInstanceUID"] for a in answers if a.get("SOPInstanceUID")}
