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

from nmdose.dose import codes as C
from nmdose.sop_classes import (
    GENERAL_SR_CLASSES,
    NON_IMAGE_MODALITIES,
    DoseByClass,
    dose_by_class,
    is_non_image_class,
)

# SOP classes, the modalities of non-image objects and the class-based dose decision: nmdose.sop_classes.

# ----- Document titles of dose reports (CID 10000 / CID 10040), from the one code table (nmdose.dose.codes)
DOSE_REPORT_TITLES = frozenset(
    (code.scheme, code.value)
    for code in (C.XRayRadiationDoseReport, C.RadiopharmaceuticalRadiationDoseReport)
)

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
    by_class = dose_by_class(sop_class)
    if by_class == DoseByClass.DOSE_SR:
        return Role.DOSE_OBJECT
    if by_class == DoseByClass.TITLED_SR and sop_class in GENERAL_SR_CLASSES:
        d = details(instance)
        if d is None or d.document_title is None:
            return Role.DOSE_OBJECT if unknown_title_is_dose and d is None else None
        return Role.DOSE_OBJECT if d.document_title in DOSE_REPORT_TITLES else None
    if by_class == DoseByClass.SCREEN or (sop_class is None and series.modality.upper() in ("OT", "SC")):
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
