"""What goes to the dose PACS: every dose object of a study, and one image per image series.

Pure rules over :class:`InstanceFacts` (no PACS access here). Facts that are costly to read (the
Radiopharmaceutical Information Sequence, an SR's document title, a secondary capture's dose sequence) come
through a ``details(instance)`` callable that the adapter (:mod:`nmdose.forward.facts`) answers lazily, so a
2,000-slice CT costs one look, not 2,000.

Rules (the specification's forwarding rules, docs/forward.md):
- Dose objects, every instance: X-Ray Radiation Dose SR, Radiopharmaceutical Radiation Dose SR, Enhanced and
  Comprehensive SR whose document title is DCM 113701 / 113500, and vendor dose screens (secondary captures
  carrying ExposureDoseSequence or marked as dose screens by ImageType / SeriesDescription).
- One image per image series: PT/NM the first by InstanceNumber carrying RadiopharmaceuticalInformationSequence
  (else the first by InstanceNumber); any other modality the first by InstanceNumber.
- Series without images (other SRs, presentation states, key object selections, raw data, registrations,
  waveforms, encapsulated documents) are skipped.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import NamedTuple


class Code(NamedTuple):
    """A coded concept (code value, coding scheme designator, meaning)."""

    value: str
    scheme: str
    meaning: str


# ----- SOP classes (PS3.4 Annex B.5)
XRAY_RADIATION_DOSE_SR = "1.2.840.10008.5.1.4.1.1.88.67"
RADIOPHARMACEUTICAL_RADIATION_DOSE_SR = "1.2.840.10008.5.1.4.1.1.88.68"
ENHANCED_SR = "1.2.840.10008.5.1.4.1.1.88.22"
COMPREHENSIVE_SR = "1.2.840.10008.5.1.4.1.1.88.33"
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
MULTIFRAME_SECONDARY_CAPTURE_PREFIX = "1.2.840.10008.5.1.4.1.1.7."  # .1 – .4 (single bit … true colour)

# Dose SR classes: every instance is a dose object.
DOSE_SR_CLASSES = frozenset({XRAY_RADIATION_DOSE_SR, RADIOPHARMACEUTICAL_RADIATION_DOSE_SR})
# General SR classes that older scanners use for dose reports: a dose object only with a dose document title.
GENERAL_SR_CLASSES = frozenset({ENHANCED_SR, COMPREHENSIVE_SR})

# ----- Document titles (CID 10000 / CID 10040)
XRAY_RADIATION_DOSE_REPORT = Code("113701", "DCM", "X-Ray Radiation Dose Report")
RADIOPHARMACEUTICAL_RADIATION_DOSE_REPORT = Code("113500", "DCM", "Radiopharmaceutical Radiation Dose Report")
DOSE_REPORT_TITLES = frozenset(
    {
        (XRAY_RADIATION_DOSE_REPORT.scheme, XRAY_RADIATION_DOSE_REPORT.value),
        (RADIOPHARMACEUTICAL_RADIATION_DOSE_REPORT.scheme, RADIOPHARMACEUTICAL_RADIATION_DOSE_REPORT.value),
    }
)

# ----- SOP classes that hold no image (a series of only these gets no sample image)
NON_IMAGE_CLASS_PREFIXES = (
    "1.2.840.10008.5.1.4.1.1.88.",  # structured reports, key object selection (88.59)
    "1.2.840.10008.5.1.4.1.1.11.",  # presentation states
    "1.2.840.10008.5.1.4.1.1.66",  # raw data (66), spatial registration (66.1, 66.3), fiducials (66.2)
    "1.2.840.10008.5.1.4.1.1.9.",  # waveforms (ECG, …)
    "1.2.840.10008.5.1.4.1.1.104.",  # encapsulated PDF / CDA / STL
    "1.2.840.10008.5.1.4.1.1.481.2",  # RT dose … RT plans (481.1, RT Image, is an image)
    "1.2.840.10008.5.1.4.1.1.481.3",
    "1.2.840.10008.5.1.4.1.1.481.4",
    "1.2.840.10008.5.1.4.1.1.481.5",
    "1.2.840.10008.5.1.4.1.1.481.6",
    "1.2.840.10008.5.1.4.1.1.481.7",
    "1.2.840.10008.5.1.4.1.1.481.8",
    "1.2.840.10008.5.1.4.1.1.481.9",
    "1.2.840.10008.5.1.4.38.",  # hanging protocols
    "1.2.840.10008.5.1.4.39.",  # color palettes
)
# Modalities of series that hold no image, for when the SOP class is unknown.
NON_IMAGE_MODALITIES = frozenset({"SR", "KO", "PR", "REG", "RAW", "DOC", "FID", "ECG", "RWV", "PLAN"})

# Modalities whose sample must carry the administered radiopharmaceutical.
RADIOPHARMACEUTICAL_MODALITIES = frozenset({"PT", "NM"})

# ----- Vendor dose screens (secondary captures of the scanner's dose page)
DOSE_SCREEN_IMAGE_TYPE_VALUES = frozenset({"DOSE_INFO", "DOSE_REPORT", "DOSE_SCREEN", "SCREEN_SAVE_DOSE"})
# Philips "Dose Info", GE "Dose Report" (series 999), Siemens "Patient Protocol" (series 501), Canon "Dose Summary"
DOSE_SCREEN_DESCRIPTION = re.compile(
    r"^\s*(dose\s*(info|report|summary|screen)|patient\s*protocol)\s*$", re.I
)


class Role:
    """Why an instance is forwarded."""

    DOSE_OBJECT = "dose_object"
    DOSE_SCREEN = "dose_screen"
    SAMPLE_IMAGE = "sample_image"


@dataclass(frozen=True)
class InstanceDetails:
    """Facts read from an instance's own tags (costly: asked only where a rule needs them)."""

    has_radiopharmaceutical_info: bool = False
    document_title: tuple[str, str] | None = None  # (scheme, code value) of ConceptNameCodeSequence
    has_exposure_dose_sequence: bool = False
    image_type: tuple[str, ...] = ()


@dataclass(frozen=True)
class InstanceFacts:
    """What the index gives cheaply: identifiers, SOP class, InstanceNumber, whether it holds pixel data."""

    instance_id: str  # the PACS's id (Orthanc id, or SOPInstanceUID for a C-FIND answer)
    sop_instance_uid: str
    sop_class_uid: str | None
    instance_number: int | None = None
    has_pixel_data: bool | None = None
    image_type: tuple[str, ...] | None = None  # when the index answers it (C-FIND does)


@dataclass
class SeriesFacts:
    series_id: str
    series_instance_uid: str
    modality: str
    description: str = ""
    instances: list[InstanceFacts] = field(default_factory=list)
    number: int | None = None  # SeriesNumber


@dataclass(frozen=True)
class Selected:
    instance: InstanceFacts
    series_instance_uid: str
    role: str


DetailsFn = Callable[[InstanceFacts], InstanceDetails]


def no_details(instance: InstanceFacts) -> None:
    """For sources that cannot say (C-FIND): rules needing details fall back to their default."""
    return None


def by_instance_number(instances: Iterable[InstanceFacts]) -> list[InstanceFacts]:
    """InstanceNumber order; instances without one last, ties by SOPInstanceUID (deterministic)."""
    return sorted(
        instances,
        key=lambda i: (i.instance_number is None, i.instance_number or 0, i.sop_instance_uid),
    )


def is_non_image_class(sop_class_uid: str | None) -> bool:
    return bool(sop_class_uid) and sop_class_uid.startswith(NON_IMAGE_CLASS_PREFIXES)


def is_secondary_capture(sop_class_uid: str | None) -> bool:
    return sop_class_uid == SECONDARY_CAPTURE or bool(
        sop_class_uid and sop_class_uid.startswith(MULTIFRAME_SECONDARY_CAPTURE_PREFIX)
    )


def is_image(series: SeriesFacts, instance: InstanceFacts) -> bool:
    """An image instance: pixel data where the index says so, else judged by SOP class, else by modality."""
    if instance.sop_class_uid:
        if is_non_image_class(instance.sop_class_uid):
            return False
        return instance.has_pixel_data is not False
    if instance.has_pixel_data is not None:
        return instance.has_pixel_data
    return series.modality.upper() not in NON_IMAGE_MODALITIES


def dose_role(
    series: SeriesFacts, instance: InstanceFacts, details: DetailsFn, *, unknown_title_is_dose: bool = False
) -> str | None:
    """`Role.DOSE_OBJECT` / `Role.DOSE_SCREEN` when the instance is a dose object, else None.

    `unknown_title_is_dose`: a general SR whose title cannot be read (C-FIND answers without
    ConceptNameCodeSequence) counts as a dose object (a few kB too many rather than a dose report lost)."""
    sop_class = instance.sop_class_uid
    if sop_class in DOSE_SR_CLASSES:
        return Role.DOSE_OBJECT
    if sop_class in GENERAL_SR_CLASSES:
        d = details(instance)
        if d is None or d.document_title is None:
            return Role.DOSE_OBJECT if unknown_title_is_dose and d is None else None
        return Role.DOSE_OBJECT if d.document_title in DOSE_REPORT_TITLES else None
    if is_secondary_capture(sop_class) or (sop_class is None and series.modality.upper() in ("OT", "SC")):
        if DOSE_SCREEN_DESCRIPTION.match(series.description or ""):
            return Role.DOSE_SCREEN
        if instance.image_type and DOSE_SCREEN_IMAGE_TYPE_VALUES & {v.upper() for v in instance.image_type}:
            return Role.DOSE_SCREEN
        d = details(instance)
        if d is not None and (
            d.has_exposure_dose_sequence or DOSE_SCREEN_IMAGE_TYPE_VALUES & {v.upper() for v in d.image_type}
        ):
            return Role.DOSE_SCREEN
    return None


def sample_image(
    series: SeriesFacts, images: list[InstanceFacts], details: DetailsFn
) -> InstanceFacts | None:
    """The one image of a series the dose PACS gets (PT/NM: one carrying the radiopharmaceutical)."""
    ordered = by_instance_number(images)
    if not ordered:
        return None
    if series.modality.upper() in RADIOPHARMACEUTICAL_MODALITIES:
        for instance in ordered:
            d = details(instance)
            if d is None:  # the source cannot say: the first by InstanceNumber
                break
            if d.has_radiopharmaceutical_info:
                return instance
    return ordered[0]


def select_series(
    series: SeriesFacts, details: DetailsFn = no_details, *, unknown_title_is_dose: bool = False
) -> list[Selected]:
    """The instances of one series to forward."""
    chosen: list[Selected] = []
    images: list[InstanceFacts] = []
    for instance in series.instances:
        role = dose_role(series, instance, details, unknown_title_is_dose=unknown_title_is_dose)
        if role is not None:
            chosen.append(Selected(instance, series.series_instance_uid, role))
        elif is_image(series, instance):
            images.append(instance)
    if images:
        sample = sample_image(series, images, details)
        if sample is not None:
            chosen.append(Selected(sample, series.series_instance_uid, Role.SAMPLE_IMAGE))
    return chosen


def select_study(
    series: Iterable[SeriesFacts], details: DetailsFn = no_details, *, unknown_title_is_dose: bool = False
) -> list[Selected]:
    """Every dose object and one image per image series of a study, in series order."""
    result: list[Selected] = []
    for s in series:
        result.extend(select_series(s, details, unknown_title_is_dose=unknown_title_is_dose))
    return result
