"""Generate a synthetic nuclear-medicine department: plan every study from the seed, then write the files.

Planning draws every random number from one ``random.Random`` seeded with the seed, in a fixed order, before any
file is written; UIDs are hashes of the seed and the object's position. The same seed and ``today`` therefore
give byte-identical files and manifest.
"""

from __future__ import annotations

import logging
import os
import random
import shutil
from collections import Counter, defaultdict
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from nmdose import __version__
from nmdose.dose import codes as C
from nmdose.simulate import catalog, images
from nmdose.simulate.catalog import EXAMS, RADIOPHARMACEUTICALS, SCANNERS, Exam
from nmdose.simulate.manifest import DoseObjectRecord, Manifest, SeriesRecord, StudyRecord
from nmdose.simulate.model import (
    CT_IMAGE,
    ENHANCED_SR,
    MESS_DESCRIPTIONS,
    MESS_EARLIEST,
    MESS_ENHANCED_SR,
    MESS_INJECTION_MISMATCH,
    MESS_KOREAN,
    MESS_MISLABELLED,
    MESS_NO_WEIGHT,
    MESS_NOT_IN_DEFAULT,
    MESS_PT_BQ,
    MESS_PT_MBQ,
    MESS_RDSR_SPLIT,
    MESS_SRT_CODES,
    NM_IMAGE,
    PET_IMAGE,
    RADIOPHARMACEUTICAL_RADIATION_DOSE_SR,
    SOP_CLASS_NAMES,
    XRAY_RADIATION_DOSE_SR,
    Patient,
    SeriesPlan,
    SimulationError,
    StudyPlan,
)

log = logging.getLogger(__name__)

UID_ROOT = "1.2.826.0.1.3680043.10.1234."
EARLIEST_GAP_YEARS = 3  # the planted earliest study lies this many years before the period starts
MIN_STUDIES_FOR_ALL_MESS = 20  # from this size on, every kind of mess is planted at least once
PARALLEL_FROM = 60  # studies; below this, worker processes cost more than they save

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class Sizes:
    """Matrix sizes and slice counts: tiny by default, realistic for benchmarks."""

    realistic: bool

    def ct(self, exam: Exam, rng: random.Random) -> tuple[int, int]:
        if self.realistic:
            lo, hi = exam.ct.slices_realistic
            return 512, rng.randint(lo, hi)
        return 64, rng.randint(3, 6)

    def pt(self, scanner_matrix: int, length_mm: float, rng: random.Random) -> tuple[int, int]:
        if self.realistic:
            return scanner_matrix or 192, max(60, int(length_mm / 2.0))
        return 32, rng.randint(3, 6)

    def nm(self, kind: str) -> tuple[int, int, int]:
        """rows, cols, frames for one NM instance of ``kind``."""
        if not self.realistic:
            return {
                "nm_whole_body": (64, 32, 2),
                "nm_static": (32, 32, 1),
                "nm_tomo": (32, 32, 8),
                "nm_recon": (32, 32, 8),
            }[kind]
        return {
            "nm_whole_body": (1024, 256, 2),
            "nm_static": (256, 256, 1),
            "nm_tomo": (128, 128, 120),
            "nm_recon": (128, 128, 128),
        }[kind]


def _uid(seed: int, *parts: object) -> str:
    return generate_uid(UID_ROOT, entropy_srcs=["nmdose-sim", str(seed), *map(str, parts)])


# ------------------------------------------------------------------------------------------------ planning


def _pick_exams(rng: random.Random, n: int) -> list[Exam]:
    """The exam of every study; the planted earliest study first. Small sets still get every kind of mess."""
    pool = [e for e in EXAMS.values()]
    weights = [e.weight for e in pool]
    forced: list[str] = []
    if n >= MIN_STUDIES_FOR_ALL_MESS:
        forced = (
            ["petct_wb_fdg"] * 4 + ["spectct_bone"] * 3 + ["ct_chest", "ct_abdpel", "nm_thyroid", "nm_mpi"]
        )
        forced += [e.key for e in pool if e.korean or not e.in_default]
    rest = max(0, n - 1 - len(forced))
    chosen = [EXAMS[k] for k in forced[: max(0, n - 1)]] + rng.choices(pool, weights, k=rest)
    rng.shuffle(chosen)
    return [EXAMS[catalog.EARLIEST_EXAM]] + chosen if n >= 1 else []


def _study_datetime(rng: random.Random, lo: date, hi: date) -> datetime:
    day = lo + timedelta(days=rng.randint(0, max(0, (hi - lo).days)))
    if day.weekday() == 6 and day > lo:  # nothing on Sundays
        day -= timedelta(days=1)
    minutes = rng.randint(8 * 60, 16 * 60 + 30)
    return datetime(day.year, day.month, day.day, minutes // 60, minutes % 60, rng.randint(0, 59))


def _patients(rng: random.Random, n: int, today: date) -> list[Patient]:
    out = []
    for i in range(max(1, int(n * 0.7))):
        sex = rng.choice("MF")
        age = rng.randint(25, 88)
        birth = date(today.year - age, rng.randint(1, 12), rng.randint(1, 28))
        height = rng.uniform(1.60, 1.88) if sex == "M" else rng.uniform(1.48, 1.74)
        bmi = rng.uniform(18.5, 31)
        out.append(Patient(i + 1, birth, sex, round(height, 2), round(bmi * height * height, 1)))
    return out


def _scanner(rng: random.Random, family: str):
    candidates = [s for s in SCANNERS.values() if s.family == family and not s.legacy]
    return rng.choices(candidates, [s.weight for s in candidates])[0]


def _legacy_scanner(family: str):
    return next(s for s in SCANNERS.values() if s.family == family and s.legacy)


def _plan(seed: int, n: int, years: int, today: date) -> list[StudyPlan]:
    rng = random.Random(f"nmdose-simulate:{seed}")
    exams = _pick_exams(rng, n)
    start = today - timedelta(days=round(365.25 * years))
    patients = _patients(rng, n, today)
    plans: list[StudyPlan] = []
    for i, exam in enumerate(exams):
        if i == 0:
            hi = start - timedelta(days=round(365.25 * EARLIEST_GAP_YEARS))
            started = _study_datetime(rng, hi - timedelta(days=90), hi)
        else:
            lo = start + timedelta(days=round((today - start).days * exam.since))
            started = _study_datetime(rng, lo, today)
        patient = rng.choice(patients)
        scanner = _scanner(rng, exam.scanner_family)
        weight = round(patient.weight_kg * rng.uniform(0.96, 1.04), 1)
        plan = StudyPlan(
            index=i,
            uid="",
            exam=exam,
            scanner=scanner,
            patient=patient,
            started=started,
            accession="",
            frame_of_reference_uid="",
            weight_kg=weight,
        )
        if exam.radiopharmaceuticals:
            keys = exam.radiopharmaceuticals
            if exam.key == "petct_psma":  # Ga-68 PSMA-11 first, F-18 PSMA-1007 once it became available
                keys = ("psma11",) if started.date() < start + (today - start) * 0.6 else ("psma1007",)
            rp = RADIOPHARMACEUTICALS[rng.choice(keys)]
            lo_a, hi_a = rp.activity_mbq
            activity = rng.uniform(lo_a, hi_a) * (weight if rp.per_kg else 1)
            plan.radiopharmaceutical = rp
            plan.activity_mbq = round(activity, 1)
            plan.injection = started - timedelta(
                minutes=rng.randint(*rp.uptake_min), seconds=rng.randint(0, 59)
            )
            plan.rrdsr = exam.family == "petct" and (scanner.key == "vision" and rng.random() < 0.7)
        plans.append(plan)

    _plant_mess(rng, plans, start, today)
    for (
        plan
    ) in plans:  # no random draw: the same seed gives the same studies as before upgrades were simulated
        upgrade = plan.scanner.upgrade
        plan.upgraded = bool(upgrade) and plan.started.date() >= start + (today - start) * upgrade[0]

    # Chronological order gives realistic accession numbers; identity follows from the final position.
    plans.sort(key=lambda p: (p.started, p.index))
    per_year: Counter[tuple[str, int]] = Counter()
    for i, plan in enumerate(plans):
        plan.index = i
        plan.uid = _uid(seed, "study", i)
        plan.frame_of_reference_uid = _uid(seed, "for", i)
        prefix = "CT" if plan.exam.family == "ct" else "NM"
        per_year[(prefix, plan.started.year)] += 1
        plan.accession = f"{prefix}{plan.started.year}{per_year[(prefix, plan.started.year)]:06d}"
        if plan.exam.korean:
            plan.mess.add(MESS_KOREAN)
        if not plan.exam.in_default:
            plan.mess.add(MESS_NOT_IN_DEFAULT)
    return plans


def _choose(rng: random.Random, candidates: list[StudyPlan], rate: float, minimum: int) -> list[StudyPlan]:
    if not candidates:
        return []
    k = min(len(candidates), max(minimum, round(rate * len(candidates))))
    return rng.sample(candidates, k)


def _plant_mess(rng: random.Random, plans: list[StudyPlan], start: date, today: date) -> None:
    """Decide which studies carry which planted problem (see model.MESS_DESCRIPTIONS)."""
    earliest, ordinary = plans[0], plans[1:]
    earliest.mess.add(MESS_EARLIEST)
    at_least = 1 if len(plans) >= MIN_STUDIES_FOR_ALL_MESS else 0

    # Wrong ModalitiesInStudy: a minority of a description's studies, so the majority still shows the truth.
    by_description: dict[str, list[StudyPlan]] = defaultdict(list)
    for p in ordinary:
        if p.exam.family in ("petct", "spectct"):
            by_description[p.exam.description].append(p)
    for group in by_description.values():
        if len(group) >= 3:
            k = min((len(group) - 1) // 2, max(1, round(0.03 * len(group))))
            for p in rng.sample(group, k):
                p.mess.add(MESS_MISLABELLED)
                p.rrdsr = False

    def ok(p: StudyPlan) -> bool:
        return MESS_MISLABELLED not in p.mess

    radiopharm = [p for p in ordinary if p.radiopharmaceutical and ok(p)]
    for p in _choose(rng, radiopharm, 0.03, at_least):
        p.mess.add(MESS_NO_WEIGHT)
        p.weight_kg = None
    pet = [p for p in ordinary if p.exam.family == "petct" and ok(p)]
    for p in _choose(rng, pet, 0.02, at_least):
        p.mess.add(MESS_PT_MBQ)
    for p in ordinary:
        if p.exam.family == "petct" and ok(p) and MESS_PT_MBQ not in p.mess:
            p.mess.add(MESS_PT_BQ)

    # Older scanners (first half of the period) send Enhanced SR dose reports and SNOMED-RT codes.
    midpoint = start + (today - start) / 2
    with_ct = [p for p in ordinary if p.exam.has_ct and ok(p)]
    early = [p for p in with_ct if p.started.date() < midpoint] or with_ct
    early_pet = [p for p in early if p.exam.family == "petct" and p.radiopharmaceutical.key == "fdg"]
    legacy = _choose(rng, early_pet, 0.0, at_least)
    legacy += _choose(rng, [p for p in early if p not in legacy], 0.03, 0)
    for p in legacy:
        p.scanner = _legacy_scanner(p.exam.scanner_family)
        p.mess.add(MESS_ENHANCED_SR)
        p.rrdsr = False
        rp = p.radiopharmaceutical
        if rp is not None and C.legacy_srt(rp.agent) != rp.agent:
            p.mess.add(MESS_SRT_CODES)
    split = [p for p in with_ct if MESS_ENHANCED_SR not in p.mess]
    for p in _choose(rng, split, 0.02, at_least):
        p.mess.add(MESS_RDSR_SPLIT)

    with_rrdsr = [p for p in ordinary if p.rrdsr]
    if not with_rrdsr and at_least:
        candidates = [p for p in pet if MESS_ENHANCED_SR not in p.mess]
        for p in candidates[:1]:
            p.rrdsr = True
        with_rrdsr = candidates[:1]
    for p in _choose(rng, with_rrdsr, 0.1, at_least):
        p.mess.add(MESS_INJECTION_MISMATCH)


# ------------------------------------------------------------------------------------------------- series


def _add_series(
    plan: StudyPlan,
    seed: int,
    number: int,
    modality: str,
    sop_class: str,
    description: str,
    kind: str,
    instances: int,
    rows: int = 0,
    cols: int = 0,
    frames: int = 1,
    **extra,
) -> SeriesPlan:
    series = SeriesPlan(
        uid=_uid(seed, "series", plan.index, number),
        number=number,
        modality=modality,
        sop_class=sop_class,
        description=description,
        kind=kind,
        instances=instances,
        frames=frames,
        rows=rows,
        cols=cols,
        extra=extra,
    )
    series.sop_uids = [_uid(seed, "sop", plan.index, number, i) for i in range(instances)]
    plan.series.append(series)
    return series


def _ct_events(plan: StudyPlan, rng: random.Random, seed: int) -> list[dict]:
    """Ground truth of the CT irradiation events: a localizer and one spiral (two when the report is split)."""
    scan = plan.exam.ct
    phantom = "head16" if scan.head else "body32"
    collimation = {"SIEMENS": (0.6, 38.4), "CANON_MEC": (0.5, 40.0)}.get(
        plan.scanner.manufacturer, (0.625, 40.0)
    )
    events = [
        {
            "irradiation_event_uid": _uid(seed, "event", plan.index, 0),
            "acquisition_type": "constant_angle",
            "acquisition_protocol": "Topogram" if plan.scanner.manufacturer == "SIEMENS" else "Scout",
            "target_region": scan.region,
            "ctdivol_mgy": None,
            "dlp_mgycm": None,
            "phantom": None,
            "scanning_length_mm": round(scan.length_mm[1] * 1.2, 1),
            "pitch": None,
            "kvp": 120,
            "ma": 35,
            "exposure_time_s": round(rng.uniform(3, 8), 2),
            "single_collimation_mm": collimation[0],
            "total_collimation_mm": collimation[0],
        }
    ]
    spirals = 2 if MESS_RDSR_SPLIT in plan.mess else 1
    for k in range(spirals):
        ctdivol = round(rng.uniform(*scan.ctdivol_mgy), 2)
        length = round(rng.uniform(*scan.length_mm), 1)
        pitch = round(rng.choice((0.8, 0.9, 0.984, 1.0, 1.2)), 3)
        dlp = round(ctdivol * (length / 10 + collimation[1] / 10), 2)  # scan length plus over-ranging
        events.append(
            {
                "irradiation_event_uid": _uid(seed, "event", plan.index, k + 1),
                "acquisition_type": "spiral",
                "acquisition_protocol": plan.ct_protocol if k == 0 else f"{plan.ct_protocol} additional",
                "target_region": scan.region,
                "ctdivol_mgy": ctdivol,
                "dlp_mgycm": dlp,
                "phantom": phantom,
                "scanning_length_mm": length,
                "pitch": pitch,
                "kvp": scan.kvp,
                "ma": int(rng.uniform(60, 140) * ctdivol / max(1.0, scan.ctdivol_mgy[0]))
                if not scan.head
                else 300,
                "exposure_time_s": round(length / (pitch * collimation[1]) * 0.5, 2),
                "single_collimation_mm": collimation[0],
                "total_collimation_mm": collimation[1],
            }
        )
    return events


def _build_series(plan: StudyPlan, rng: random.Random, seed: int, sizes: Sizes) -> None:
    exam, family = plan.exam, plan.exam.family
    mislabelled = MESS_MISLABELLED in plan.mess
    number = 1
    if family in ("nm_bone", "nm_thyroid", "nm_mpi", "spectct"):
        if family == "nm_bone" or (family == "spectct" and exam.key == "spectct_bone" and rng.random() < 0.5):
            r, c, f = sizes.nm("nm_whole_body")
            _add_series(plan, seed, number, "NM", NM_IMAGE, "WB Bone ANT/POST", "nm_whole_body", 1, r, c, f)
            number += 1
        if family == "nm_bone" and rng.random() < 0.4:
            r, c, _ = sizes.nm("nm_static")
            _add_series(plan, seed, number, "NM", NM_IMAGE, "Spot views", "nm_static", 1, r, c, 2)
            number += 1
        if family == "nm_thyroid":
            r, c, f = sizes.nm("nm_static")
            _add_series(plan, seed, number, "NM", NM_IMAGE, "Thyroid ANT", "nm_static", 1, r, c, f)
            number += 1
            if rng.random() < 0.5:
                _add_series(plan, seed, number, "NM", NM_IMAGE, "Thyroid pinhole", "nm_static", 1, r, c, f)
                number += 1
        phases = ("Stress", "Rest") if family == "nm_mpi" else (("SPECT",) if family == "spectct" else ())
        for phase in phases:
            r, c, f = sizes.nm("nm_tomo")
            rr, rc, rf = sizes.nm("nm_recon")
            if family == "nm_mpi" and sizes.realistic:
                r, c, f = rr, rc, rf = 64, 64, 64
            _add_series(plan, seed, number, "NM", NM_IMAGE, f"{phase} TOMO", "nm_tomo", 1, r, c, f)
            _add_series(plan, seed, number + 1, "NM", NM_IMAGE, f"{phase} OSEM", "nm_recon", 1, rr, rc, rf)
            number += 2
    if exam.has_ct and not (mislabelled and family == "spectct"):
        size, slices = sizes.ct(exam, rng)
        events = _ct_events(plan, rng, seed)
        spiral = events[1]
        first = number if family == "spectct" else 1  # SPECT-CT: CT after the NM series
        scout = "Topogram" if plan.scanner.manufacturer == "SIEMENS" else "Scout"
        _add_series(plan, seed, first, "CT", CT_IMAGE, scout, "ct_localizer", 1, size, size)
        dose = {"ctdivol": spiral["ctdivol_mgy"], "ma": spiral["ma"]}
        thick = round(spiral["scanning_length_mm"] / slices, 2) if sizes.realistic else 3.0
        name = f"{plan.ct_protocol} {thick:.3g}"
        _add_series(
            plan, seed, first + 1, "CT", CT_IMAGE, name, "ct", slices, size, size, thickness=thick, **dose
        )
        if family == "ct" and rng.random() < 0.4:
            name = f"{plan.ct_protocol} lung 1.0"
            _add_series(
                plan, seed, first + 2, "CT", CT_IMAGE, name, "ct", slices, size, size, thickness=1.0, **dose
            )
        plan.dose_objects = [{"kind": "ct", "events": events}]
    if family == "petct" and not mislabelled:
        matrix, slices = sizes.pt(plan.scanner.pet_matrix, exam.ct.length_mm[0], rng)
        thick = 2.0 if sizes.realistic else 3.0
        shape = (slices, matrix, matrix)
        _add_series(plan, seed, 3, "PT", PET_IMAGE, "PET AC", "pt", *shape, corrected=True, thickness=thick)
        if rng.random() < 0.35:
            _add_series(
                plan, seed, 4, "PT", PET_IMAGE, "PET NAC", "pt", *shape, corrected=False, thickness=thick
            )
    if plan.dose_objects:
        sop_class = ENHANCED_SR if MESS_ENHANCED_SR in plan.mess else XRAY_RADIATION_DOSE_SR
        _add_series(plan, seed, 501, "SR", sop_class, "Dose Report", "ct_dose", 1)
        if MESS_RDSR_SPLIT in plan.mess:
            _add_series(plan, seed, 502, "SR", sop_class, "Dose Report", "ct_dose", 1, part=2)
    if plan.rrdsr:
        _add_series(
            plan,
            seed,
            601,
            "SR",
            RADIOPHARMACEUTICAL_RADIATION_DOSE_SR,
            "Radiopharmaceutical Dose Report",
            "rp_dose",
            1,
        )


# ---------------------------------------------------------------------------------------------- dose objects


def _dose_study_info(plan: StudyPlan):
    from nmdose.simulate import rdsr

    return rdsr.DoseStudyInfo(
        patient_id=plan.patient.patient_id,
        patient_name=plan.patient.name,
        patient_birth_date=plan.patient.birth_date.strftime("%Y%m%d"),
        patient_sex=plan.patient.sex,
        patient_age=f"{plan.age_years:03d}Y",
        patient_weight_kg=plan.weight_kg,
        patient_height_m=plan.patient.height_m,
        study_instance_uid=plan.uid,
        study_date=images.da(plan.started),
        study_time=images.tm(plan.started),
        study_description=plan.exam.description,
        accession_number=plan.accession,
        manufacturer=plan.scanner.manufacturer,
        model_name=plan.scanner.model,
        station_name=plan.station_name,
        device_serial_number=plan.scanner.serial,
        specific_character_set=plan.charset,
        protocol_name=plan.ct_protocol if plan.exam.ct else plan.exam.description,
        body_part_examined=plan.exam.body_part or None,
    )


def _ct_acquisition(event: dict):
    from nmdose.simulate import rdsr

    return rdsr.CtAcquisition(
        acquisition_protocol=event["acquisition_protocol"],
        target_region=event["target_region"],
        acquisition_type=event["acquisition_type"],
        ctdivol_mgy=event["ctdivol_mgy"],
        dlp_mgycm=event["dlp_mgycm"],
        phantom=event["phantom"],
        scanning_length_mm=event["scanning_length_mm"],
        exposure_time_s=event["exposure_time_s"],
        pitch=event["pitch"],
        nominal_single_collimation_mm=event["single_collimation_mm"],
        nominal_total_collimation_mm=event["total_collimation_mm"],
        sources=[rdsr.XraySource("A", event["kvp"], event["ma"], round(event["ma"] * 1.3), 0.5)],
        irradiation_event_uid=event["irradiation_event_uid"],
    )


def _administration(plan: StudyPlan, seed: int):
    from nmdose.simulate import rdsr

    rp = plan.radiopharmaceutical
    start = _rrdsr_injection(plan)
    return rdsr.RadiopharmaceuticalAdministration(
        agent=rp.key,
        radionuclide=rp.nuclide,
        activity_mbq=plan.activity_mbq,
        start_datetime=start,
        stop_datetime=start + timedelta(seconds=30),
        route="intravenous",
        half_life_s=rp.half_life_s,
        event_uid=_uid(seed, "administration", plan.index),
    )


def _rrdsr_injection(plan: StudyPlan) -> datetime:
    """The injector's time; two minutes later than the PET header when that mess is planted."""
    extra = timedelta(minutes=2) if MESS_INJECTION_MISMATCH in plan.mess else timedelta(0)
    return plan.injection + extra


def _dose_dataset(plan: StudyPlan, series: SeriesPlan, seed: int) -> tuple[Dataset, DoseObjectRecord]:
    from nmdose.simulate import rdsr

    info = _dose_study_info(plan)
    sop_uid = series.sop_uids[0]
    if series.kind == "rp_dose":
        admin = _administration(plan, seed)
        ds = rdsr.radiopharmaceutical_dose_sr(info, admin, series_uid=series.uid, sop_uid=sop_uid)
        record = DoseObjectRecord(
            sop_uid,
            series.uid,
            series.sop_class,
            "radiopharmaceutical_rdsr",
            administration={
                "agent": admin.agent,
                "radionuclide": admin.radionuclide,
                "activity_mbq": admin.activity_mbq,
                "start_datetime": admin.start_datetime.isoformat(),
                "half_life_s": admin.half_life_s,
                "route": admin.route,
                "event_uid": admin.event_uid,
            },
        )
        return ds, record
    events = plan.dose_objects[0]["events"]
    split = MESS_RDSR_SPLIT in plan.mess
    part = series.extra.get("part", 1)
    if split:  # continued report: the first object holds localizer + first spiral, the second the new spiral
        events = events[:2] if part == 1 else events[2:]
    enhanced = series.sop_class == ENHANCED_SR
    start = plan.started + timedelta(minutes=2 if part == 1 else 25)
    ds = rdsr.ct_radiation_dose_sr(
        info,
        [_ct_acquisition(e) for e in events],
        series_uid=series.uid,
        sop_uid=sop_uid,
        sop_class="enhanced_sr" if enhanced else "xray_rdsr",
        start=start,
        **({"legacy_srt_codes": True} if enhanced else {}),
    )
    total = round(sum(e["dlp_mgycm"] or 0.0 for e in events), 2)
    record = DoseObjectRecord(
        sop_uid,
        series.uid,
        series.sop_class,
        "ct_esr" if enhanced else "ct_rdsr",
        part,
        2 if split else 1,
        total,
        [dict(e) for e in events],
    )
    return ds, record


def _harmonise_sr(ds: Dataset, plan: StudyPlan, series: SeriesPlan, impl_uid: str) -> None:
    """Give dose objects the same study/equipment attributes as the images (as a real scanner does)."""
    ds.file_meta.ImplementationClassUID = impl_uid
    ds.file_meta.ImplementationVersionName = images.IMPLEMENTATION_VERSION
    ds.SeriesNumber = series.number
    ds.InstanceNumber = 1
    ds.StudyID = plan.accession[-8:]
    ds.ReferringPhysicianName = f"SIM^REFERRER{plan.patient.number % 17 + 1}"
    ds.InstitutionName = images.INSTITUTION
    ds.IssuerOfPatientID = "NMDOSE-SIM"
    ds.SoftwareVersions = plan.software_version
    when = plan.started + timedelta(minutes=30 if series.extra.get("part", 1) == 1 else 45)
    ds.SeriesDate = images.da(when)
    ds.SeriesTime = images.tm(when)
    ds.ContentDate = images.da(when)
    ds.ContentTime = images.tm(when)
    ds.InstanceCreationDate = images.da(when)
    ds.InstanceCreationTime = images.tm(when)


# ------------------------------------------------------------------------------------------------- writing


def _prepare(out_dir: Path) -> None:
    out_dir = Path(out_dir)
    if out_dir.exists():
        if not out_dir.is_dir():
            raise SimulationError(f"{out_dir}: exists and is not a folder")
        ours = (out_dir / "manifest.json").exists() or (out_dir / "studies").exists()
        if any(out_dir.iterdir()) and not ours:
            raise SimulationError(
                f"{out_dir}: folder is not empty and holds no simulation; choose another --out"
            )
        shutil.rmtree(out_dir / "studies", ignore_errors=True)
        (out_dir / "manifest.json").unlink(missing_ok=True)
    out_dir.mkdir(parents=True, exist_ok=True)


def _write_study(plan: StudyPlan, out_dir: Path, seed: int, impl_uid: str) -> StudyRecord:
    folder = Path("studies") / f"{plan.index + 1:05d}"
    dose_records: list[DoseObjectRecord] = []
    for series in plan.series:
        sdir = out_dir / folder / f"{series.number:03d}_{series.modality}"
        sdir.mkdir(parents=True, exist_ok=True)
        for i, sop_uid in enumerate(series.sop_uids):
            if series.kind in ("ct_dose", "rp_dose"):
                ds, record = _dose_dataset(plan, series, seed)
                _harmonise_sr(ds, plan, series, impl_uid)
                dose_records.append(record)
            elif series.modality == "CT":
                ds = images.ct_image(plan, series, i, sop_uid, impl_uid)
            elif series.modality == "PT":
                ds = images.pet_image(plan, series, i, sop_uid, impl_uid)
            else:
                ds = images.nm_image(plan, series, i, sop_uid, impl_uid)
            ds.save_as(sdir / f"{i + 1:04d}.dcm", enforce_file_format=True)
    rp = plan.radiopharmaceutical
    pet_bq = MESS_PT_BQ in plan.mess
    return StudyRecord(
        study_uid=plan.uid,
        date=images.da(plan.started),
        time=images.tm(plan.started),
        description=plan.exam.description,
        exam=plan.exam.key,
        in_default_targets=plan.exam.in_default,
        specific_character_set=plan.charset,
        modalities=list(plan.modalities),
        expected_modalities=list(plan.exam.expected_modalities),
        accession=plan.accession,
        patient_id=plan.patient.patient_id,
        patient_sex=plan.patient.sex,
        patient_age=f"{plan.age_years:03d}Y",
        patient_weight_kg=plan.weight_kg,
        manufacturer=plan.scanner.manufacturer,
        model=plan.scanner.model,
        station=plan.station_name,
        instances=sum(s.instances for s in plan.series),
        path=folder.as_posix(),
        series=[
            SeriesRecord(
                s.uid,
                s.number,
                s.modality,
                s.sop_class,
                SOP_CLASS_NAMES[s.sop_class],
                s.description,
                s.instances,
                s.frames,
            )
            for s in plan.series
        ],
        dose_objects=dose_records,
        radiopharmaceutical=None
        if rp is None
        else {
            "agent": rp.key,
            "agent_code": f"{rp.agent.scheme}:{rp.agent.value}",
            "agent_meaning": rp.agent.meaning,
            "radionuclide": rp.nuclide,
            "half_life_s": rp.half_life_s,
            "activity_mbq": plan.activity_mbq,
            "injection_datetime": plan.injection.isoformat(),
            "header_total_dose": plan.activity_mbq * 1e6 if pet_bq else plan.activity_mbq,
            "header_total_dose_unit": "Bq" if pet_bq else "MBq",
            "in_images": any(s.modality in ("PT", "NM") for s in plan.series),
        },
        mess=sorted(plan.mess),
    )


def _write_job(job: tuple[StudyPlan, Path, int, str]) -> StudyRecord:
    plan, out_dir, seed, impl_uid = job
    record = _write_study(plan, out_dir, seed, impl_uid)
    log.debug("simulated study %s (%s)", plan.uid, plan.exam.key)
    return record


def generate(
    out_dir: Path,
    *,
    studies: int,
    years: int,
    seed: int,
    realistic_size: bool = False,
    today: date | None = None,
    progress: Progress | None = None,
    workers: int | None = None,
) -> Manifest:
    """Write ``studies`` synthetic studies over ``years`` years ending ``today`` into ``out_dir/studies`` and
    the ground truth into ``out_dir/manifest.json``. Deterministic for (seed, studies, years, today).

    ``workers``: processes writing files (default: one per CPU, at most 4; small sets stay in-process). Every
    study is planned here first, so the output does not depend on it."""
    if studies < 1:
        raise SimulationError(f"--studies must be at least 1 (got {studies})")
    if years < 1:
        raise SimulationError(f"--years must be at least 1 (got {years})")
    today = today or date.today()
    out_dir = Path(out_dir)
    _prepare(out_dir)
    plans = _plan(seed, studies, years, today)
    sizes = Sizes(realistic_size)
    impl_uid = UID_ROOT + "0.1"
    for plan in plans:
        rng = random.Random(f"nmdose-simulate:{seed}:study:{plan.index}")  # series layout, sizes, doses
        _build_series(plan, rng, seed, sizes)
    workers = workers or min(4, os.cpu_count() or 1)
    jobs = [(plan, out_dir, seed, impl_uid) for plan in plans]
    records: list[StudyRecord] = []
    if workers > 1 and len(plans) >= PARALLEL_FROM:
        with ProcessPoolExecutor(workers) as pool:
            for record in pool.map(_write_job, jobs, chunksize=4):
                records.append(record)
                if progress:
                    progress(len(records), len(plans))
    else:
        for job in jobs:
            records.append(_write_job(job))
            if progress:
                progress(len(records), len(plans))

    mess: dict[str, list[str]] = {k: [] for k in MESS_DESCRIPTIONS}
    for record in records:
        for flag in record.mess:
            mess[flag].append(record.study_uid)
    manifest = Manifest(
        seed=seed,
        parameters={
            "studies": studies,
            "years": years,
            "realistic_size": realistic_size,
            "today": today.isoformat(),
            "uid_root": UID_ROOT,
        },
        studies=records,
        summary={},
        mess=mess,
        mess_descriptions=dict(MESS_DESCRIPTIONS),
        target_descriptions=list(catalog.DEFAULT_TARGET_DESCRIPTIONS),
        left_out_descriptions=list(catalog.LEFT_OUT_DESCRIPTIONS),
        generator=f"nmdose {__version__}",
    )
    manifest.summary = _summary(manifest)
    manifest.save(out_dir / "manifest.json")
    return manifest


def _summary(manifest: Manifest) -> dict:
    studies = manifest.studies
    return {
        "studies": len(studies),
        "series": sum(len(s.series) for s in studies),
        "instances": manifest.instance_count,
        "first_date": min(s.date for s in studies),
        "last_date": max(s.date for s in studies),
        "by_modality": manifest.count_by_modality(),
        "by_modalities_in_study": dict(sorted(Counter("\\".join(s.modalities) for s in studies).items())),
        "by_description": dict(sorted(Counter(s.description for s in studies).items())),
        "dose_objects": dict(sorted(Counter(d.kind for s in studies for d in s.dose_objects).items())),
        "mess": {k: len(v) for k, v in manifest.mess.items()},
    }
