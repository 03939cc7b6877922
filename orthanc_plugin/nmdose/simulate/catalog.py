"""What the simulated department does: its exams, radiopharmaceuticals and scanners.

Coded concepts (radionuclides, agents, routes, CT target regions) come from :mod:`nmdose.dose.codes`, the one
table shared with the dose readers and the dose-object builders. Descriptions follow the default `target_descriptions` of ``config/retrieve_options.yaml``; the ones in
:data:`LEFT_OUT_DESCRIPTIONS` are deliberately missing there, so the census must find and report them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pydicom.sr.coding import Code as PydicomCode

from nmdose.dicom_sr import Code
from nmdose.dose import codes as C

# Radionuclide and agent codes, half-lives and routes come from the one code table shared with the dose readers
# (nmdose.dose.codes: CID 18/4020 radionuclides, CID 25/4021 radiopharmaceuticals, CID 11 routes).
POSITRON_FRACTION = {"F18": 0.9673, "Ga68": 0.8894}
INTRAVENOUS_ROUTE: Code = C.ROUTES["intravenous"]


def sr_code(code: PydicomCode) -> Code:
    """A pydicom code-dictionary entry as the (value, scheme, meaning) triple nmdose uses."""
    return Code(code.value, code.scheme_designator, code.meaning)


@dataclass(frozen=True)
class Radiopharmaceutical:
    """An agent as the department gives it: codes, the free text scanners write, and a typical activity."""

    key: str  # key into nmdose.dose.codes.RADIOPHARMACEUTICALS (also the rdsr builders' agent name)
    text: str  # Radiopharmaceutical (0018,0031) as scanners write it
    activity_mbq: tuple[float, float]  # fixed range, or per-kg range when per_kg
    per_kg: bool = False
    uptake_min: tuple[int, int] = (60, 70)  # injection to scan start

    @property
    def agent(self) -> Code:
        return C.RADIOPHARMACEUTICALS[self.key][0]

    @property
    def nuclide(self) -> str:
        return C.RADIOPHARMACEUTICALS[self.key][1]

    @property
    def nuclide_code(self) -> Code:
        return C.RADIONUCLIDES[self.nuclide][0]

    @property
    def half_life_s(self) -> float:
        return C.RADIONUCLIDES[self.nuclide][1]

    @property
    def positron_fraction(self) -> float | None:
        return POSITRON_FRACTION.get(self.nuclide)


RADIOPHARMACEUTICALS: dict[str, Radiopharmaceutical] = {
    r.key: r
    for r in [
        Radiopharmaceutical("fdg", "Fluorodeoxyglucose", (3.5, 5.0), True),
        Radiopharmaceutical("dotatate", "Ga-68 DOTATATE", (100, 200), False, (45, 60)),
        Radiopharmaceutical("psma11", "Ga-68 PSMA-11", (1.8, 2.2), True, (55, 65)),
        Radiopharmaceutical("psma1007", "F-18 PSMA-1007", (3.0, 4.0), True, (90, 120)),
        Radiopharmaceutical("florbetaben", "Florbetaben", (260, 320), False, (90, 110)),
        Radiopharmaceutical("mdp", "Tc-99m MDP", (550, 925), False, (150, 200)),
        Radiopharmaceutical("pertechnetate", "Tc-99m Pertechnetate", (111, 185), False, (15, 25)),
        Radiopharmaceutical("sestamibi", "Tc-99m Sestamibi", (740, 1110), False, (30, 60)),
        Radiopharmaceutical("tetrofosmin", "Tc-99m Tetrofosmin", (740, 1110), False, (30, 60)),
    ]
}


@dataclass(frozen=True)
class Scanner:
    """One device of the department. ``legacy`` devices send Enhanced SR dose reports and SRT codes."""

    key: str
    family: str  # "petct", "spectct", "ct"
    manufacturer: str
    model: str
    station: str
    serial: str
    software: str
    pet_matrix: int = 0  # realistic PET matrix
    legacy: bool = False
    weight: float = 1.0
    # what this scanner calls an exam's CT protocol (CtScan.protocol -> its own name; Korean ones only in studies
    # written in ISO_IR 192): several raw names for one examination, for the standard names (issue 16 item 1)
    protocols: tuple[tuple[str, str], ...] = ()
    korean_protocols: tuple[tuple[str, str], ...] = ()
    # (share of the period, new station name, new software version): the scanner's upgrade, after which its
    # studies carry the new names (the scanners' identity rule must keep it one scanner; docs/dose.md "Scanners")
    upgrade: tuple[float, str, str] | None = None

    def protocol(self, name: str, korean: bool = False) -> str:
        """The CT protocol name this scanner writes for the department's protocol `name`."""
        if korean and dict(self.korean_protocols).get(name):
            return dict(self.korean_protocols)[name]
        return dict(self.protocols).get(name, name)


SCANNERS: dict[str, Scanner] = {
    s.key: s
    for s in [
        Scanner(
            "vision",
            "petct",
            "SIEMENS",
            "Biograph Vision 600",
            "NMPETCT1",
            "PV60021",
            "VR20B",
            220,
            weight=3,
            protocols=(("PET-CT WB low dose", "WholeBody_CTAC"), ("PET-CT torso low dose", "Torso_CTAC")),
            korean_protocols=(("PET-CT WB low dose", "전신 저선량 CT"),),
        ),
        Scanner(
            "dmi",
            "petct",
            "GE MEDICAL SYSTEMS",
            "Discovery MI",
            "NMPETCT2",
            "DMI4R0887",
            "pet_coreload.46",
            192,
            weight=2,
            protocols=(("PET-CT WB low dose", "WB CTAC 3.75"), ("PET-CT torso low dose", "CTAC TORSO 3.75")),
            korean_protocols=(("PET-CT WB low dose", "전신 CT 감쇠보정"),),
        ),
        Scanner(
            "ste",
            "petct",
            "GE MEDICAL SYSTEMS",
            "Discovery STE",
            "NMPETCT0",
            "STE1734",
            "pet_coreload.31",
            128,
            legacy=True,
            weight=0,
        ),
        Scanner(
            "intevo", "spectct", "SIEMENS", "Symbia Intevo Bold", "NMSPECT1", "IB1152", "VB22A", weight=2
        ),
        Scanner(
            "nm870",
            "spectct",
            "GE MEDICAL SYSTEMS",
            "Discovery NM/CT 870 DR",
            "NMSPECT2",
            "NM870DR114",
            "GENIE 2.8",
            weight=1,
        ),
        Scanner(
            "hawkeye",
            "spectct",
            "GE MEDICAL SYSTEMS",
            "Infinia Hawkeye 4",
            "NMSPECT0",
            "HK4-2210",
            "2.105",
            legacy=True,
            weight=0,
        ),
        Scanner(
            "force",
            "ct",
            "SIEMENS",
            "SOMATOM Force",
            "CTRAD1",
            "FC75412",
            "syngo CT VB20A",
            weight=2,
            protocols=(
                ("Chest routine", "Thorax 1.0 B31f"),
                ("Head routine", "Kopf 1.0 H31s"),
                ("Abdomen-Pelvis contrast", "Abdomen 1.0 B30f"),
            ),  # fmt: skip
            upgrade=(0.55, "CT-ER1", "syngo CT VB30A"),  # moved to the emergency department and upgraded
        ),
        Scanner(
            "aquilion",
            "ct",
            "CANON_MEC",
            "Aquilion ONE",
            "CTRAD2",
            "AQ1A9928",
            "V10.6",
            weight=1,
            protocols=(
                ("Chest routine", "CHEST ROUTINE"),
                ("Head routine", "BRAIN ROUTINE"),
                ("Abdomen-Pelvis contrast", "ABD-PELVIS C+"),
            ),  # fmt: skip
        ),
        Scanner(
            "revolution",
            "ct",
            "GE MEDICAL SYSTEMS",
            "Revolution CT",
            "CTRAD3",
            "REV0412",
            "revo_ct_22",
            weight=1,
            protocols=(
                ("Chest routine", "CT Chest"),
                ("Head routine", "CT Head"),
                ("Abdomen-Pelvis contrast", "CT Abdomen/Pelvis"),
            ),  # fmt: skip
        ),
        Scanner(
            "sensation",
            "ct",
            "SIEMENS",
            "Sensation 64",
            "CTRAD0",
            "S64-54412",
            "syngo CT 2009E",
            legacy=True,
            weight=0,
        ),
    ]
}


@dataclass(frozen=True)
class CtScan:
    """The CT part of an exam: protocol name, target region, phantom and typical exposure."""

    protocol: str
    region: str  # key into nmdose.dose.codes.TARGET_REGIONS
    head: bool  # 16 cm head phantom, else 32 cm body phantom
    ctdivol_mgy: tuple[float, float]
    length_mm: tuple[float, float]
    kvp: int
    slices_realistic: tuple[int, int]


@dataclass(frozen=True)
class Exam:
    """A StudyDescription the department uses and what a correct study of it holds."""

    key: str
    description: str
    family: str  # petct, nm_bone, nm_thyroid, nm_mpi, spectct, ct
    radiopharmaceuticals: tuple[str, ...] = ()
    ct: CtScan | None = None
    weight: float = 1.0
    in_default: bool = True
    korean: bool = False
    since: float = 0.0  # share of the period before the exam was introduced (new tracers)
    body_part: str = ""
    series_extra: dict = field(default_factory=dict)

    @property
    def scanner_family(self) -> str:
        return {"petct": "petct", "spectct": "spectct", "ct": "ct"}.get(self.family, "spectct")

    @property
    def has_ct(self) -> bool:
        return self.ct is not None

    @property
    def expected_modalities(self) -> tuple[str, ...]:
        """ModalitiesInStudy of a correct study (what the PACS derives from its series, SR included)."""
        mods = set()
        if self.family == "petct":
            mods.add("PT")
        if self.family.startswith("nm") or self.family == "spectct":
            mods.add("NM")
        if self.ct is not None:
            mods.update(("CT", "SR"))
        return tuple(sorted(mods))


_PET_WB = CtScan("PET-CT WB low dose", "whole_body", False, (2.0, 5.0), (850, 1100), 120, (250, 350))
_PET_TORSO = CtScan(
    "PET-CT torso low dose", "chest_abdomen_pelvis", False, (2.0, 5.0), (650, 900), 120, (200, 280)
)
_PET_BRAIN = CtScan("PET-CT brain", "head", True, (10.0, 20.0), (180, 230), 120, (70, 110))
_SPECT_CT = CtScan(
    "SPECT-CT low dose", "chest_abdomen_pelvis", False, (1.5, 4.0), (350, 500), 130, (100, 160)
)
_SPECT_NECK = CtScan("SPECT-CT neck", "neck", False, (3.0, 6.0), (180, 260), 130, (80, 120))

EXAMS: dict[str, Exam] = {
    e.key: e
    for e in [
        Exam("petct_wb_fdg", "PET-CT Whole Body FDG", "petct", ("fdg",), _PET_WB, 26, body_part="WHOLEBODY"),
        Exam(
            "petct_wb_fdg_ko",
            "전신 PET-CT",
            "petct",
            ("fdg",),
            _PET_WB,
            8,
            korean=True,
            body_part="WHOLEBODY",
        ),
        Exam(
            "petct_torso_fdg",
            "PET-CT Torso FDG",
            "petct",
            ("fdg",),
            _PET_TORSO,
            8,
            body_part="CHEST_TO_PELVIS",
        ),
        Exam("petct_brain_fdg", "PET-CT Brain FDG", "petct", ("fdg",), _PET_BRAIN, 3, body_part="BRAIN"),
        Exam(
            "petct_dotatate",
            "PET-CT Ga-68 DOTATATE",
            "petct",
            ("dotatate",),
            _PET_TORSO,
            2,
            body_part="CHEST_TO_PELVIS",
        ),
        Exam(
            "petct_psma",
            "PET-CT PSMA",
            "petct",
            ("psma11", "psma1007"),
            _PET_TORSO,
            4,
            body_part="CHEST_TO_PELVIS",
        ),
        Exam("nm_bone", "NM Whole Body Bone Scan", "nm_bone", ("mdp",), None, 14, body_part="WHOLEBODY"),
        Exam("nm_thyroid", "NM Thyroid Scan", "nm_thyroid", ("pertechnetate",), None, 5, body_part="NECK"),
        Exam(
            "nm_mpi",
            "NM Myocardial Perfusion SPECT",
            "nm_mpi",
            ("sestamibi", "tetrofosmin"),
            None,
            6,
            body_part="HEART",
        ),
        Exam("spectct_bone", "SPECT-CT Bone", "spectct", ("mdp",), _SPECT_CT, 4, body_part="CHEST_TO_PELVIS"),
        Exam(
            "ct_chest",
            "CT Chest",
            "ct",
            (),
            CtScan("Chest routine", "chest", False, (5, 12), (300, 380), 120, (250, 330)),
            8,
            body_part="CHEST",
        ),
        Exam(
            "ct_abdpel",
            "CT Abdomen Pelvis",
            "ct",
            (),
            CtScan("Abdomen-Pelvis contrast", "abdomen_pelvis", False, (8, 15), (400, 520), 120, (320, 440)),
            6,
            body_part="ABDOMEN",
        ),
        Exam(
            "ct_brain",
            "CT Brain",
            "ct",
            (),
            CtScan("Head routine", "head", True, (40, 60), (140, 180), 120, (120, 160)),
            3,
            body_part="HEAD",
        ),
        # Deliberately missing from the default target descriptions.
        Exam(
            "nm_bone_ko",
            "전신 뼈 스캔",
            "nm_bone",
            ("mdp",),
            None,
            3,
            in_default=False,
            korean=True,
            body_part="WHOLEBODY",
        ),
        Exam(
            "petct_amyloid",
            "PET-CT Brain Amyloid",
            "petct",
            ("florbetaben",),
            _PET_BRAIN,
            1,
            in_default=False,
            since=0.5,
            body_part="BRAIN",
        ),
        Exam(
            "spectct_parathyroid",
            "SPECT-CT Parathyroid",
            "spectct",
            ("sestamibi",),
            _SPECT_NECK,
            1,
            in_default=False,
            body_part="NECK",
        ),
        Exam(
            "ct_ldct",
            "Low Dose Chest CT",
            "ct",
            (),
            CtScan("Chest low dose", "chest", False, (0.8, 2.0), (300, 360), 100, (250, 300)),
            2,
            in_default=False,
            body_part="CHEST",
        ),
    ]
}

#: The canonical target descriptions: every exam above except the deliberately left-out ones. Mirrors
#: ``config/retrieve_options.yaml`` ``target_descriptions`` (which the lead keeps in sync).
DEFAULT_TARGET_DESCRIPTIONS: tuple[str, ...] = tuple(e.description for e in EXAMS.values() if e.in_default)

#: Descriptions the simulation uses but leaves out of the default list on purpose (census must report them).
LEFT_OUT_DESCRIPTIONS: tuple[str, ...] = tuple(e.description for e in EXAMS.values() if not e.in_default)

#: The exam the planted earliest study belongs to (an ordinary target description).
EARLIEST_EXAM = "nm_bone"
