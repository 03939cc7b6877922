"""Selection facts of a study held by an Orthanc (the research PACS), read cheaply.

Per series: the series' MainDicomTags and its instances' MainDicomTags (SOPInstanceUID, InstanceNumber) from the
index, plus the `SopClassUid` / `PixelDataOffset` metadata of the first instance only (all instances of a
series share their SOP class), or of every instance of small and non-image series (≤ `PROBE_ALL_UP_TO`), where
SR, secondary captures and images may mix. Tags are read with `/instances/{id}/content/{tag path}` (one
element, not the whole dataset) and only where a rule asks (:class:`InstanceDetails`).
Checked on Orthanc 1.10.1.
"""

from __future__ import annotations

import contextlib
from typing import Any

import requests

from nmdose.errors import PacsError
from nmdose.forward.select import InstanceDetails, InstanceFacts, SeriesFacts, by_instance_number
from nmdose.pacs.orthanc_http import OrthancHttp
from nmdose.sop_classes import GENERAL_SR_CLASSES, NON_IMAGE_MODALITIES, is_secondary_capture

PROBE_ALL_UP_TO = 20  # series with at most this many instances: SOP class of each instance

# Tag paths for /instances/{id}/content/...
RADIOPHARMACEUTICAL_INFORMATION_SEQUENCE = "0054-0016"
CONCEPT_NAME_CODE_VALUE = "0040-a043/0/0008-0100"
CONCEPT_NAME_CODING_SCHEME = "0040-a043/0/0008-0102"
EXPOSURE_DOSE_SEQUENCE = "0040-030e"
IMAGE_TYPE = "0008-0008"


def _int(value: Any) -> int | None:
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return None


class OrthancFacts:
    """Reads :class:`SeriesFacts` and :class:`InstanceDetails` from an Orthanc over its REST API."""

    def __init__(self, rest: OrthancHttp):
        self.rest = rest
        self._details: dict[str, InstanceDetails] = {}
        self.requests = 0  # REST calls made (for the tests and the benchmark)

    def _get(self, path: str) -> Any:
        self.requests += 1
        return self.rest.get(path)

    def study_ids(self, study_uid: str) -> list[str]:
        """Orthanc ids of a StudyInstanceUID (several when PatientIDs differ)."""
        self.requests += 1
        return list(
            self.rest.post("/tools/find", {"Level": "Study", "Query": {"StudyInstanceUID": study_uid}})
        )

    def study(self, orthanc_id: str) -> dict[str, Any]:
        return self._get(f"/studies/{orthanc_id}")

    def series(self, orthanc_study_id: str) -> list[SeriesFacts]:
        result = []
        for s in self._get(f"/studies/{orthanc_study_id}/series?expand"):
            tags = s.get("MainDicomTags", {})
            modality = (tags.get("Modality") or "").upper()
            rows = self._get(f"/series/{s['ID']}/instances")
            instances = [
                (r["ID"], r["MainDicomTags"].get("SOPInstanceUID", ""), _int(r["MainDicomTags"].get("InstanceNumber")))
                for r in rows
            ]  # fmt: skip
            probe_all = len(instances) <= PROBE_ALL_UP_TO or modality in NON_IMAGE_MODALITIES | {"OT"}
            facts: list[InstanceFacts] = []
            shared: dict[str, Any] | None = None
            if not probe_all and instances:
                first = by_instance_number(InstanceFacts(i, u, None, n) for i, u, n in instances)[0]
                shared = self._get(f"/instances/{first.instance_id}/metadata?expand")
            for orthanc_id, sop_uid, number in instances:
                meta = shared if shared is not None else self._get(f"/instances/{orthanc_id}/metadata?expand")
                facts.append(
                    InstanceFacts(
                        orthanc_id,
                        sop_uid,
                        meta.get("SopClassUid"),
                        number,
                        # PixelDataOffset is written by Orthanc >= 1.9.1; its absence proves nothing
                        True if "PixelDataOffset" in meta else None,
                    )
                )
            result.append(
                SeriesFacts(
                    s["ID"],
                    tags.get("SeriesInstanceUID", ""),
                    modality,
                    tags.get("SeriesDescription", ""),
                    facts,
                    _int(tags.get("SeriesNumber")),
                )
            )
        result.sort(key=lambda s: (s.number is None, s.number or 0, s.series_instance_uid))
        return result

    def _content(self, orthanc_id: str, path: str) -> str | None:
        """One element's value (text), or None when the instance does not have it."""
        self.requests += 1
        url = f"{self.rest.base}/instances/{orthanc_id}/content/{path}"
        try:
            response = self.rest.session.get(url, timeout=self.rest.timeout_s)
        except requests.RequestException as exc:
            raise PacsError(f"{self.rest.name}: GET {url} failed: {exc}") from None
        if response.status_code == 404:
            return None
        if response.status_code >= 400:
            raise PacsError(f"{self.rest.name}: GET {url} -> HTTP {response.status_code}")
        return response.text.strip()

    def details(self, instance: InstanceFacts) -> InstanceDetails:
        """The tags a rule needs for this instance's SOP class (memoised)."""
        cached = self._details.get(instance.instance_id)
        if cached is not None:
            return cached
        sop_class = instance.sop_class_uid
        if sop_class in GENERAL_SR_CLASSES:
            value = self._content(instance.instance_id, CONCEPT_NAME_CODE_VALUE)
            scheme = self._content(instance.instance_id, CONCEPT_NAME_CODING_SCHEME)
            title = (scheme.strip(), value.strip()) if value and scheme else None
            result = InstanceDetails(document_title=title)
        elif is_secondary_capture(sop_class):
            image_type = self._content(instance.instance_id, IMAGE_TYPE) or ""
            result = InstanceDetails(
                has_exposure_dose_sequence=self._content(instance.instance_id, EXPOSURE_DOSE_SEQUENCE)
                is not None,
                image_type=tuple(v.strip() for v in image_type.split("\\") if v.strip()),
            )
        else:
            result = InstanceDetails(
                has_radiopharmaceutical_info=self._content(
                    instance.instance_id, RADIOPHARMACEUTICAL_INFORMATION_SEQUENCE
                )
                is not None
            )
        self._details[instance.instance_id] = result
        return result

    def instance_size(self, orthanc_id: str) -> int | None:
        with contextlib.suppress(PacsError, KeyError, ValueError, TypeError):
            return int(self._get(f"/instances/{orthanc_id}/statistics")["DiskSize"])
        return None
