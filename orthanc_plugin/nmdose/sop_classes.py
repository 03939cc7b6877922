"""Every SOP class UID nmdose names, the sets built from them, and the class-based dose-object decision.

The one home of these facts (issue #15 item 3): no other module of the package writes a
``1.2.840.10008.5.1.4.1.1.`` literal (tests/unit/test_sop_classes.py checks it). UIDs are pydicom's named UIDs
(:mod:`pydicom.uid`, PS3.4 Annex B.5 and PS3.6 Annex A) where pydicom has one; a literal only where it has none,
with a comment naming the class. Also here: the modalities of non-image objects (PS3.3 C.7.3.1.1.1), which the
census and the forwarding rules both ask.

A leaf module: standard library and pydicom only.
"""

from __future__ import annotations

from pydicom.uid import (
    UID,
    ComprehensiveSRStorage,
    CTImageStorage,
    EnhancedPETImageStorage,
    EnhancedSRStorage,
    EnhancedXRayRadiationDoseSRStorage,
    LegacyConvertedEnhancedPETImageStorage,
    NuclearMedicineImageStorage,
    PositronEmissionTomographyImageStorage,
    RadiopharmaceuticalRadiationDoseSRStorage,
    SecondaryCaptureImageStorage,
    XRayRadiationDoseSRStorage,
)

__all__ = [
    "COMPREHENSIVE_SR",
    "CT_IMAGE",
    "DOSE_CANDIDATE_CLASSES",
    "DOSE_CANDIDATE_MODALITIES",
    "DOSE_SR_CLASSES",
    "ECHO_DOSE_SR_CLASSES",
    "ENHANCED_PET_IMAGE",
    "ENHANCED_SR",
    "ENHANCED_XRAY_RADIATION_DOSE_SR",
    "GENERAL_SR_CLASSES",
    "LEGACY_CONVERTED_ENHANCED_PET_IMAGE",
    "MULTIFRAME_SECONDARY_CAPTURE_PREFIX",
    "NM_CLASSES",
    "NM_IMAGE",
    "NM_IMAGE_RETIRED",
    "NON_IMAGE_CLASS_PREFIXES",
    "NON_IMAGE_MODALITIES",
    "PET_CLASSES",
    "PET_IMAGE",
    "RADIOPHARMACEUTICAL_RADIATION_DOSE_SR",
    "SECONDARY_CAPTURE",
    "SR_PREFIX",
    "XRAY_RADIATION_DOSE_SR",
    "DoseByClass",
    "dose_by_class",
    "is_dose_candidate",
    "is_non_image_class",
    "is_secondary_capture",
]

# ----- single classes (PS3.4 Annex B.5)
CT_IMAGE: UID = CTImageStorage
PET_IMAGE: UID = PositronEmissionTomographyImageStorage
ENHANCED_PET_IMAGE: UID = EnhancedPETImageStorage
LEGACY_CONVERTED_ENHANCED_PET_IMAGE: UID = LegacyConvertedEnhancedPETImageStorage
NM_IMAGE: UID = NuclearMedicineImageStorage
# Nuclear Medicine Image Storage, the retired class (PS3.6 Annex A, keyword NuclearMedicineImageStorageRetired):
# pydicom's UID dictionary knows it but pydicom.uid exports no name for it.
NM_IMAGE_RETIRED: UID = UID("1.2.840.10008.5.1.4.1.1.5")
SECONDARY_CAPTURE: UID = SecondaryCaptureImageStorage
XRAY_RADIATION_DOSE_SR: UID = XRayRadiationDoseSRStorage
RADIOPHARMACEUTICAL_RADIATION_DOSE_SR: UID = RadiopharmaceuticalRadiationDoseSRStorage
ENHANCED_XRAY_RADIATION_DOSE_SR: UID = EnhancedXRayRadiationDoseSRStorage
ENHANCED_SR: UID = EnhancedSRStorage
COMPREHENSIVE_SR: UID = ComprehensiveSRStorage

# Every structured report class (and key object selection, 88.59) sits under this arc (PS3.4 Annex B.5 and O);
# a prefix, so pydicom has no name for it.
SR_PREFIX = "1.2.840.10008.5.1.4.1.1.88."

# ----- sets
# Radiation Dose SR classes: forwarding sends every instance as a dose object; the parser still reads its content
# (see dose_by_class).
# Enhanced X-Ray Radiation Dose SR (TID 10040, CT and projection X-ray from newer modalities) too: it is a dose
# object whatever its content, and the dose PACS is asked to accept it (nmdose echo); it used to be skipped.
DOSE_SR_CLASSES = frozenset(
    {XRAY_RADIATION_DOSE_SR, RADIOPHARMACEUTICAL_RADIATION_DOSE_SR, ENHANCED_XRAY_RADIATION_DOSE_SR}
)
# General SR classes that older scanners use for dose reports: a dose object only with a dose document title.
GENERAL_SR_CLASSES = frozenset({ENHANCED_SR, COMPREHENSIVE_SR})
# The dose SR classes the dose PACS is asked to accept (nmdose echo), in the order they are proposed.
ECHO_DOSE_SR_CLASSES: tuple[UID, ...] = (
    XRAY_RADIATION_DOSE_SR,
    RADIOPHARMACEUTICAL_RADIATION_DOSE_SR,
    ENHANCED_XRAY_RADIATION_DOSE_SR,
)
# Images whose header carries the administered radiopharmaceutical (RadiopharmaceuticalInformationSequence).
PET_CLASSES = frozenset({PET_IMAGE, ENHANCED_PET_IMAGE, LEGACY_CONVERTED_ENHANCED_PET_IMAGE})
NM_CLASSES = frozenset({NM_IMAGE, NM_IMAGE_RETIRED})
# The multi-frame secondary captures sit under the single-frame class's arc: 7.1 – 7.4 (single bit … true colour,
# pydicom's MultiFrame…SecondaryCaptureImageStorage).
MULTIFRAME_SECONDARY_CAPTURE_PREFIX = SECONDARY_CAPTURE + "."
# What the dose hooks hand to the dose parser, besides every SR class and the PT / NM / SR modalities (the same
# rule as conquest/lua/nmdose_import.lua's IMAGE_CLASSES, which keeps its own copy in Lua): PET, NM and the
# single-frame secondary capture (Philips "Dose Info" screens).
DOSE_CANDIDATE_CLASSES = frozenset({PET_IMAGE, ENHANCED_PET_IMAGE, LEGACY_CONVERTED_ENHANCED_PET_IMAGE, NM_IMAGE,
                                    SECONDARY_CAPTURE})  # fmt: skip
DOSE_CANDIDATE_MODALITIES = frozenset({"PT", "NM", "SR"})

# SOP classes that hold no image (a series of only these gets no sample image when forwarding). Prefixes of
# whole families (PS3.4 Annex B.5), so literals.
NON_IMAGE_CLASS_PREFIXES: tuple[str, ...] = (
    SR_PREFIX,  # structured reports, key object selection (88.59)
    "1.2.840.10008.5.1.4.1.1.11.",  # presentation states
    "1.2.840.10008.5.1.4.1.1.66",  # raw data (66), spatial registration (66.1, 66.3), fiducials (66.2), SEG (66.4)
    "1.2.840.10008.5.1.4.1.1.9.",  # waveforms (ECG, audio, …)
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

# Modalities of non-image objects (defined terms of Modality (0008,0060), PS3.3 C.7.3.1.1.1): they do not define
# what kind of exam a study is (census), and a series of them gets no sample image when its SOP class is unknown
# (forward). The union of the census's and the forwarding rules' former sets.
NON_IMAGE_MODALITIES = frozenset(
    {
        "AU",  # Audio
        "DOC",  # Document
        "ECG",  # Electrocardiography
        "FID",  # Fiducials
        "KO",  # Key Object Selection
        "PLAN",  # Plan
        "PR",  # Presentation State
        "RAW",  # Raw Data
        "REG",  # Registration
        "RWV",  # Real World Value Map
        "SEG",  # Segmentation
        "SR",  # SR Document
    }
)


# ----- predicates
def is_non_image_class(sop_class_uid: str | None) -> bool:
    return bool(sop_class_uid) and sop_class_uid.startswith(NON_IMAGE_CLASS_PREFIXES)


def is_secondary_capture(sop_class_uid: str | None) -> bool:
    """Secondary Capture Image Storage, single-frame or any multi-frame one (7, 7.1 – 7.4)."""
    return sop_class_uid == SECONDARY_CAPTURE or bool(
        sop_class_uid and sop_class_uid.startswith(MULTIFRAME_SECONDARY_CAPTURE_PREFIX)
    )


def is_dose_candidate(sop_class_uid: str, modality: str = "") -> bool:
    """Whether the dose hooks hand an object to the dose parser: every SR class, PET, NM (the current class),
    single-frame secondary capture, or modality PT / NM / SR. Cheap and wide: the parser then decides from the
    content (``status: "not_dose"`` for the rest)."""
    return (
        sop_class_uid.startswith(SR_PREFIX)
        or sop_class_uid in DOSE_CANDIDATE_CLASSES
        or modality in DOSE_CANDIDATE_MODALITIES
    )


class DoseByClass:
    """What a SOP class alone says about a dose object (answers of :func:`dose_by_class`)."""

    DOSE_SR = "dose_sr"  # X-Ray / Radiopharmaceutical Radiation Dose SR
    TITLED_SR = "titled_sr"  # another SR class: a dose object if its document title is a dose report's
    PET = "pet"  # PET image: the radiopharmaceutical in its header
    NM = "nm"  # NM image: the radiopharmaceutical in its header
    SCREEN = "screen"  # secondary capture: a vendor dose screen if marked so or carrying ExposureDoseSequence


def dose_by_class(sop_class_uid: str | None) -> str | None:
    """The one class-based answer to "is this a dose object?": a :class:`DoseByClass` value, or None when the
    SOP class alone does not point to dose content (an unknown class, an ordinary image, a waveform, …).

    The SOP class only: where the class is unknown or says nothing, each caller falls back on the modality in its
    own way, and after this answer the two deciders differ on purpose:

    - forwarding (:func:`nmdose.forward.select.dose_role`) picks what to *send* from cheap facts: DOSE_SR is sent
      whatever its content; TITLED_SR only for the Enhanced and Comprehensive SR classes
      (:data:`GENERAL_SR_CLASSES`) with a dose document title (other SR classes, key objects and Enhanced X-Ray
      Radiation Dose SR are not dose objects there, and as non-image series get no sample either); PET / NM are
      images (one sample per series); SCREEN (or, class unknown, modality OT / SC) when the series or the image
      is marked as a dose screen;
    - parsing (:func:`nmdose.dose.parse.parse_dataset`) decides from *content*, the modality taking over where the
      class says less (SR, then PT, then NM): every SR (DOSE_SR included) is read and is a dose object only if
      its document title and content tree are a dose report's; PET / NM images are read for their
      radiopharmaceutical; any other object (not only a secondary capture) is a CT dose screen when it carries
      ExposureDoseSequence.

    The dose hooks' filter (:func:`is_dose_candidate`) is narrower on classes (no retired NM, no multi-frame
    secondary capture: the same list as the Conquest hook's) and wider on modalities.
    """
    sop = sop_class_uid or ""
    if sop in DOSE_SR_CLASSES:
        return DoseByClass.DOSE_SR
    if sop.startswith(SR_PREFIX):
        return DoseByClass.TITLED_SR
    if sop in PET_CLASSES:
        return DoseByClass.PET
    if sop in NM_CLASSES:
        return DoseByClass.NM
    if is_secondary_capture(sop):
        return DoseByClass.SCREEN
    return None
