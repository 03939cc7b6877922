"""The research PACS's REST API for the projects: a study's Orthanc ID, its ZIP (`/studies/{id}/archive`) and
storing an uploaded file (`POST /instances`). Over loopback HTTP with the internal credential of the gate
(`OrthancHttp.for_node`), from the plugin's HTTP threads as from the command line."""

from __future__ import annotations

from typing import Any

import requests

from nmdose.errors import PacsError
from nmdose.pacs.orthanc_http import OrthancHttp
from nmdose.projects.names import ProjectError

CHUNK = 1 << 20


def client(cfg: Any) -> OrthancHttp:
    return OrthancHttp.for_node(cfg, cfg.research_node.name)


def study_id(http: OrthancHttp, uid: str) -> str | None:
    """Orthanc's ID of the study with this StudyInstanceUID (None: the research PACS does not hold it)."""
    found = http.request("POST", "/tools/lookup", data=uid.encode()).json()
    return next((r["ID"] for r in found if r.get("Type") == "Study"), None)


def study_size(http: OrthancHttp, orthanc_id: str) -> tuple[int, int]:
    """(instances, bytes on disk) of the study."""
    stats = http.get(f"/studies/{orthanc_id}/statistics")
    return int(stats.get("CountInstances") or 0), int(stats.get("DiskSize") or 0)


def archive(http: OrthancHttp, orthanc_id: str, max_bytes: int) -> bytes:
    """The study as Orthanc's ZIP, read in chunks; ProjectError 413 once it passes `max_bytes`."""
    url = f"{http.base}/studies/{orthanc_id}/archive"
    try:
        with http.session.get(url, stream=True, timeout=http.timeout_s) as resp:
            if resp.status_code >= 400:
                raise PacsError(f"{http.name}: GET /studies/{orthanc_id}/archive -> HTTP {resp.status_code}")
            out = bytearray()
            for chunk in resp.iter_content(CHUNK):
                out += chunk
                if len(out) > max_bytes:
                    raise ProjectError(413, f"the study's ZIP is larger than {max_bytes // (1 << 20)} MB")
            return bytes(out)
    except requests.RequestException as exc:
        raise PacsError(f"{http.name}: study archive failed ({type(exc).__name__})") from None


def store(http: OrthancHttp, data: bytes) -> dict[str, Any]:
    """POST the file to /instances: Orthanc's answer (`Status` `Success` or `AlreadyStored`, `ParentStudy`…);
    PacsError with Orthanc's reason when it refuses the file."""
    resp = http.request("POST", "/instances", data=data)
    return resp.json()
