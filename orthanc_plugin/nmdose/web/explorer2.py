"""Orthanc Explorer 2 (Orthanc >= 1.11, the production image's UI): the nmdose buttons as OE2 configuration.

Orthanc 1.10's legacy explorer gets its buttons from ``orthanc.ExtendOrthancExplorer`` (``entry.py``); OE2 takes
them from ``OrthancExplorer2.UiOptions.CustomButtons`` in the Orthanc configuration (see OE2's
``Plugin/DefaultConfiguration.json``). ``nmdose stack run researchPACS`` (the compose service and the native
stack alike) writes this block into the generated configuration; Orthanc 1.10 ignores the section. OE2 replaces
``{StudyInstanceUID}`` (a main DICOM tag) in the URL template, and resolves relative URLs from ``/ui/app/``.
"""

from __future__ import annotations

from typing import Any

OE2_APP_ROOT = "/ui/app/"


def explorer2_settings() -> dict[str, Any]:
    """The ``OrthancExplorer2`` block merged into the research PACS's Orthanc configuration."""
    return {
        "UiOptions": {
            "CustomButtons": {
                "study": [
                    {
                        "HttpMethod": "GET",
                        "Id": "nmdose-study-dose",
                        "Tooltip": "nmdose: dose for this study / 이 검사의 선량",
                        "Target": "_blank",
                        "Icon": "bi bi-activity",
                        "Url": "../../nmdose/ui/study/{StudyInstanceUID}",
                    },
                    {
                        "HttpMethod": "GET",
                        "Id": "nmdose-dose-page",
                        "Tooltip": "nmdose: dose analysis / 선량 분석",
                        "Target": "_blank",
                        "Icon": "bi bi-bar-chart-line",
                        "Url": "../../nmdose/ui/dose",
                    },
                    {
                        "HttpMethod": "GET",
                        "Id": "nmdose-research-page",
                        "Tooltip": "nmdose: research PACS statistics / 연구 PACS 통계",
                        "Target": "_blank",
                        "Icon": "bi bi-table",
                        "Url": "../../nmdose/ui/research",
                    },
                ],
                "series": [],
                "instance": [],
            }
        }
    }
