"""The ground-truth manifest of a simulation: what was generated, with the mess planted on purpose.

Written as ``manifest.json`` next to the generated files. Later stages' tests (census, retrieve, dose parser)
compare what they find against it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from nmdose.simulate.model import SimulationError

FORMAT = "nmdose-simulation-manifest/1"


@dataclass
class SeriesRecord:
    """One series as written: UID, number, modality, SOP class, instance count (frames per instance)."""

    series_uid: str
    number: int
    modality: str
    sop_class_uid: str
    sop_class: str
    description: str
    instances: int
    frames: int = 1


@dataclass
class DoseObjectRecord:
    """A dose object and the values it carries (the dose parser's expected output).

    ``kind``: ct_rdsr, ct_esr (Enhanced SR holding TID 10011) or radiopharmaceutical_rdsr. ``part`` is 1 or 2
    when one report is split over two objects. CT events list irradiation_event_uid, acquisition_type,
    acquisition_protocol, target_region, ctdivol_mgy, dlp_mgycm, phantom, scanning_length_mm, pitch, kvp, ma.
    """

    sop_uid: str
    series_uid: str
    sop_class_uid: str
    kind: str
    part: int = 1
    parts: int = 1
    total_dlp_mgycm: float | None = None
    events: list[dict[str, Any]] = field(default_factory=list)
    administration: dict[str, Any] | None = None


@dataclass
class StudyRecord:
    """One study: identity, what it holds, what its description says it should hold, and its planted mess."""

    study_uid: str
    date: str  # StudyDate, YYYYMMDD
    time: str  # StudyTime, HHMMSS
    description: str
    exam: str
    in_default_targets: bool
    specific_character_set: str
    modalities: list[str]  # ModalitiesInStudy as the PACS derives it from the series present
    expected_modalities: list[str]  # what a correct study of this description holds
    accession: str
    patient_id: str
    patient_sex: str
    patient_age: str
    patient_weight_kg: float | None  # None: PatientWeight absent from the images
    manufacturer: str
    model: str
    station: str
    instances: int
    path: str  # folder of its files, relative to the manifest
    series: list[SeriesRecord] = field(default_factory=list)
    dose_objects: list[DoseObjectRecord] = field(default_factory=list)
    radiopharmaceutical: dict[str, Any] | None = None
    mess: list[str] = field(default_factory=list)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StudyRecord:
        data = dict(data)
        data["series"] = [SeriesRecord(**s) for s in data.get("series", [])]
        data["dose_objects"] = [DoseObjectRecord(**d) for d in data.get("dose_objects", [])]
        return cls(**data)


@dataclass
class Manifest:
    """Everything a simulation run produced; ``mess`` maps each planted problem to its StudyInstanceUIDs."""

    seed: int
    parameters: dict[str, Any]
    studies: list[StudyRecord]
    summary: dict[str, Any]
    mess: dict[str, list[str]]
    mess_descriptions: dict[str, str]
    target_descriptions: list[str]
    left_out_descriptions: list[str]
    generator: str = ""
    format: str = FORMAT

    def save(self, path: Path) -> Path:
        """Write as JSON (UTF-8, Korean kept readable); byte-identical for the same content."""
        path = Path(path)
        path.write_text(json.dumps(asdict(self), ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: Path) -> Manifest:
        """Read a manifest written by :meth:`save` (a folder means its ``manifest.json``)."""
        path = Path(path)
        if path.is_dir():
            path = path / "manifest.json"
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise SimulationError(f"{path}: cannot read the simulation manifest ({exc})") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise SimulationError(f"{path}: not a simulation manifest (want format {FORMAT})")
        data["studies"] = [StudyRecord.from_dict(s) for s in data["studies"]]
        return cls(**data)

    def study(self, uid: str) -> StudyRecord:
        """The record of one StudyInstanceUID."""
        for s in self.studies:
            if s.study_uid == uid:
                return s
        raise KeyError(uid)

    def target_studies(
        self, modalities: tuple[str, ...] = ("PT", "NM", "CT"), descriptions: list[str] | None = None
    ) -> list[StudyRecord]:
        """Studies a census should find: a target modality present, and the description among ``descriptions``
        (default: this run's default target descriptions; pass every description to include the left-out ones)."""
        wanted = set(self.target_descriptions if descriptions is None else descriptions)
        return [s for s in self.studies if set(s.modalities) & set(modalities) and s.description in wanted]

    @property
    def instance_count(self) -> int:
        return sum(s.instances for s in self.studies)

    def count_by_modality(self) -> dict[str, dict[str, int]]:
        """Per series modality: studies holding it, series and instances (what a PACS reports)."""
        out: dict[str, dict[str, int]] = {}
        for study in self.studies:
            for mod in sorted({s.modality for s in study.series}):
                out.setdefault(mod, {"studies": 0, "series": 0, "instances": 0})["studies"] += 1
            for series in study.series:
                entry = out[series.modality]
                entry["series"] += 1
                entry["instances"] += series.instances
        return dict(sorted(out.items()))
