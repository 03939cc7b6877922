"""The plan of one simulated study, decided before any file is written (so the manifest is the ground truth)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime

from nmdose.errors import NmdoseError
from nmdose.simulate.catalog import Exam, Radiopharmaceutical, Scanner
from nmdose.sop_classes import (
    COMPREHENSIVE_SR,
    CT_IMAGE,
    ENHANCED_SR,
    NM_IMAGE,
    PET_IMAGE,
    RADIOPHARMACEUTICAL_RADIATION_DOSE_SR,
    XRAY_RADIATION_DOSE_SR,
)


class SimulationError(NmdoseError):
    """The simulation could not be generated, written or read (names the folder and what was expected)."""


# SOP classes the simulation writes (nmdose.sop_classes), with the standard's names for the manifest.
SOP_CLASS_NAMES = {
    uid: uid.name
    for uid in (
        CT_IMAGE,
        PET_IMAGE,
        NM_IMAGE,
        XRAY_RADIATION_DOSE_SR,
        RADIOPHARMACEUTICAL_RADIATION_DOSE_SR,
        ENHANCED_SR,
        COMPREHENSIVE_SR,
    )
}

# Mess planted on purpose; each name is a key of Manifest.mess listing the affected StudyInstanceUIDs.
MESS_EARLIEST = "earliest_study"
MESS_MISLABELLED = "modalities_wrong_for_description"
MESS_NOT_IN_DEFAULT = "description_not_in_default_targets"
MESS_KOREAN = "korean_description"
MESS_PT_BQ = "pt_activity_in_bq"
MESS_PT_MBQ = "pt_activity_in_mbq"
MESS_NO_WEIGHT = "missing_patient_weight"
MESS_RDSR_SPLIT = "rdsr_split_over_two_objects"
MESS_ENHANCED_SR = "dose_report_in_enhanced_sr"
MESS_SRT_CODES = "legacy_srt_codes"
MESS_INJECTION_MISMATCH = "injection_time_differs_in_rrdsr"

MESS_DESCRIPTIONS = {
    MESS_EARLIEST: "one study years before all others: the earliest StudyDate overall",
    MESS_MISLABELLED: "ModalitiesInStudy wrong for the description (e.g. a PET-CT arriving as CT\\SR only)",
    MESS_NOT_IN_DEFAULT: "StudyDescription missing from the default target descriptions",
    MESS_KOREAN: "Korean StudyDescription, SpecificCharacterSet ISO_IR 192",
    MESS_PT_BQ: "PET images hold RadionuclideTotalDose in Bq (NM images hold MBq)",
    MESS_PT_MBQ: "PET images hold RadionuclideTotalDose in MBq (unusual scanner setting)",
    MESS_NO_WEIGHT: "PatientWeight absent from PT/NM images",
    MESS_RDSR_SPLIT: "CT dose report split over two X-Ray Radiation Dose SR objects (continued report)",
    MESS_ENHANCED_SR: "CT dose report in an Enhanced SR from an older scanner (no RDSR)",
    MESS_SRT_CODES: "legacy SNOMED-RT (SRT) codes in the radiopharmaceutical sequence",
    MESS_INJECTION_MISMATCH: "injection time in the Radiopharmaceutical Dose SR differs from the PET header",
}


@dataclass
class Patient:
    """A synthetic patient: no real person, IDs like SIM000123."""

    number: int
    birth_date: date
    sex: str
    height_m: float
    weight_kg: float

    @property
    def patient_id(self) -> str:
        return f"SIM{self.number:06d}"

    @property
    def name(self) -> str:
        return f"SIM^PATIENT{self.number}"


@dataclass
class SeriesPlan:
    """One series: modality, SOP class, how many instances, and how its images look."""

    uid: str
    number: int
    modality: str
    sop_class: str
    description: str
    kind: str  # ct, ct_localizer, pt, nm_whole_body, nm_static, nm_tomo, nm_recon, ct_dose, rp_dose
    instances: int
    frames: int = 1
    rows: int = 0
    cols: int = 0
    sop_uids: list[str] = field(default_factory=list)
    extra: dict = field(default_factory=dict)


@dataclass
class StudyPlan:
    """Everything about one study, decided from the seed before files are written."""

    index: int
    uid: str
    exam: Exam
    scanner: Scanner
    patient: Patient
    started: datetime
    accession: str
    frame_of_reference_uid: str
    weight_kg: float | None
    radiopharmaceutical: Radiopharmaceutical | None = None
    activity_mbq: float = 0.0
    injection: datetime | None = None
    rrdsr: bool = False
    mess: set[str] = field(default_factory=set)
    series: list[SeriesPlan] = field(default_factory=list)
    dose_objects: list[dict] = field(default_factory=list)
    upgraded: bool = False  # after its scanner's upgrade (catalog.Scanner.upgrade): new station and software

    @property
    def station_name(self) -> str:
        return self.scanner.upgrade[1] if self.upgraded and self.scanner.upgrade else self.scanner.station

    @property
    def software_version(self) -> str:
        return self.scanner.upgrade[2] if self.upgraded and self.scanner.upgrade else self.scanner.software

    @property
    def ct_protocol(self) -> str:
        """The CT protocol name as this study's scanner writes it (catalog.Scanner.protocol)."""
        return self.scanner.protocol(self.exam.ct.protocol, self.exam.korean) if self.exam.ct else ""

    @property
    def korean(self) -> bool:
        return self.exam.korean

    @property
    def charset(self) -> str:
        return "ISO_IR 192" if self.exam.korean else "ISO_IR 100"

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(sorted({s.modality for s in self.series}))

    @property
    def age_years(self) -> int:
        b, d = self.patient.birth_date, self.started.date()
        return d.year - b.year - ((d.month, d.day) < (b.month, b.day))
