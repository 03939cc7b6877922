"""Orthanc's DICOMweb plugin (Debian `orthanc-dicomweb`) on the research PACS: what the OHIF viewer reads
(docs/viewer.md). `nmdose stack run researchPACS` loads the plugin with these settings; the plugin's HTTP filter
gates its URIs (web/gate.py): reads for a user with the viewer's permission, anything else for orthanc:admin."""

from __future__ import annotations

from typing import Any

PLUGIN = "libOrthancDicomWeb.so"
ROOT = "/dicom-web/"
WADO_ROOT = "/wado"
# Reading images through DICOMweb (QIDO-RS, WADO-RS, WADO-URI): the viewer's permission (config/nmdose_accounts.yaml).
READ_PERMISSION = "images:read"
READ_METHODS = frozenset({"GET", "HEAD"})


def dicomweb_settings() -> dict[str, Any]:
    """The `DicomWeb` block of the research PACS's Orthanc configuration (keys of the Orthanc Book's DICOMweb
    page). No `Host`/`Ssl`: behind nginx the plugin takes the scheme and host of its answers' URLs from the
    `Forwarded` header the proxy sets; `StudiesMetadata`/`SeriesMetadata` "Full": every instance's tags (the
    viewer needs the image attributes of each)."""
    return {
        "Enable": True,
        "Root": ROOT,
        "EnableWado": True,
        "WadoRoot": WADO_ROOT,
        "QidoCaseSensitive": False,
        "StudiesMetadata": "Full",
        "SeriesMetadata": "Full",
    }


def is_dicomweb(uri: str) -> bool:
    """Whether an URI of Orthanc's HTTP server belongs to the DICOMweb plugin."""
    return (
        uri.startswith(ROOT) or uri == ROOT.rstrip("/") or uri == WADO_ROOT or uri.startswith(WADO_ROOT + "?")
    )


_STUDY_KEYS = ("StudyInstanceUID", "0020000D", "0020,000D", "studyUID")


def study_uids_of(uri: str, get: dict[str, str] | None) -> list[str] | None:
    """The studies a DICOMweb read names, or None when it names none (a search over every study): the path's
    ``/studies/{uid}``, else the query's StudyInstanceUID (QIDO-RS, a list by ``,`` or ``\\``; WADO-URI
    ``studyUID``). A project member without ``images:read`` may read only named studies of their projects."""
    if uri.startswith(ROOT + "studies/"):
        uid = uri[len(ROOT + "studies/") :].split("/", 1)[0]
        return [uid] if uid else None
    for key in _STUDY_KEYS:
        value = (get or {}).get(key)
        if value:
            uids = [u.strip() for u in value.replace("\\", ",").split(",") if u.strip()]
            return uids or None
    return None
