"""nmdose.sop_classes: the one home of SOP class UIDs, the non-image modalities and the class-based dose decision."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import nmdose
from nmdose import sop_classes as K
from nmdose.census.modalities import NON_IMAGE, image_modalities
from nmdose.echo import DOSE_SR_CLASSES as ECHO_CLASSES
from nmdose.forward import select as S
from nmdose.security import profile
from nmdose.sop_classes import DoseByClass, dose_by_class

PACKAGE_DIR = Path(nmdose.__file__).resolve().parent
REPO = PACKAGE_DIR.parent.parent
STORAGE_ARC = "1.2.840.10008.5.1.4.1.1."


def test_uids_are_the_standards():
    """PS3.6 Annex A / PS3.4 Annex B.5, written out here on purpose (the module takes pydicom's names)."""
    assert K.CT_IMAGE == "1.2.840.10008.5.1.4.1.1.2"
    assert K.PET_IMAGE == "1.2.840.10008.5.1.4.1.1.128"
    assert K.ENHANCED_PET_IMAGE == "1.2.840.10008.5.1.4.1.1.130"
    assert K.LEGACY_CONVERTED_ENHANCED_PET_IMAGE == "1.2.840.10008.5.1.4.1.1.128.1"
    assert K.NM_IMAGE == "1.2.840.10008.5.1.4.1.1.20"
    assert K.NM_IMAGE_RETIRED == "1.2.840.10008.5.1.4.1.1.5"
    assert K.SECONDARY_CAPTURE == "1.2.840.10008.5.1.4.1.1.7"
    assert K.XRAY_RADIATION_DOSE_SR == "1.2.840.10008.5.1.4.1.1.88.67"
    assert K.RADIOPHARMACEUTICAL_RADIATION_DOSE_SR == "1.2.840.10008.5.1.4.1.1.88.68"
    assert K.ENHANCED_XRAY_RADIATION_DOSE_SR == "1.2.840.10008.5.1.4.1.1.88.76"
    assert K.ENHANCED_SR == "1.2.840.10008.5.1.4.1.1.88.22"
    assert K.COMPREHENSIVE_SR == "1.2.840.10008.5.1.4.1.1.88.33"
    assert K.SR_PREFIX == "1.2.840.10008.5.1.4.1.1.88."
    assert K.MULTIFRAME_SECONDARY_CAPTURE_PREFIX == "1.2.840.10008.5.1.4.1.1.7."
    assert {
        "1.2.840.10008.5.1.4.1.1.128",
        "1.2.840.10008.5.1.4.1.1.130",
        "1.2.840.10008.5.1.4.1.1.128.1",
    } == K.PET_CLASSES
    assert {"1.2.840.10008.5.1.4.1.1.20", "1.2.840.10008.5.1.4.1.1.5"} == K.NM_CLASSES
    assert {
        "1.2.840.10008.5.1.4.1.1.128",
        "1.2.840.10008.5.1.4.1.1.130",
        "1.2.840.10008.5.1.4.1.1.128.1",
        "1.2.840.10008.5.1.4.1.1.20",
        "1.2.840.10008.5.1.4.1.1.7",
    } == K.DOSE_CANDIDATE_CLASSES


def test_echo_proposes_the_dose_sr_classes_under_their_standard_names():
    assert ECHO_CLASSES == (
        ("1.2.840.10008.5.1.4.1.1.88.67", "X-Ray Radiation Dose SR Storage"),
        ("1.2.840.10008.5.1.4.1.1.88.68", "Radiopharmaceutical Radiation Dose SR Storage"),
        ("1.2.840.10008.5.1.4.1.1.88.76", "Enhanced X-Ray Radiation Dose SR Storage"),
    )
    assert all(type(uid) is str for uid, _ in ECHO_CLASSES)


# The two sets this one replaced: census/modalities.py NON_IMAGE and forward/select.py NON_IMAGE_MODALITIES.
FORMER_CENSUS_NON_IMAGE = {"SR", "KO", "PR", "DOC", "REG", "SEG", "RWV", "PLAN", "FID", "AU"}
FORMER_FORWARD_NON_IMAGE = {"SR", "KO", "PR", "REG", "RAW", "DOC", "FID", "ECG", "RWV", "PLAN"}
# Defined terms of Modality (0008,0060) for non-image objects (PS3.3 C.7.3.1.1.1), those the union may hold.
PS3_3_NON_IMAGE_TERMS = {
    "AU", "DOC", "ECG", "EPS", "FID", "HD", "KO", "PLAN", "PR", "RAW", "REG", "RESP", "RTPLAN", "RTRECORD",
    "RTSTRUCT", "RWV", "SEG", "SMR", "SR",
}  # fmt: skip


def test_one_non_image_modality_set_the_union_of_the_former_two():
    assert K.NON_IMAGE_MODALITIES == FORMER_CENSUS_NON_IMAGE | FORMER_FORWARD_NON_IMAGE
    assert K.NON_IMAGE_MODALITIES <= PS3_3_NON_IMAGE_TERMS
    assert NON_IMAGE is K.NON_IMAGE_MODALITIES  # census
    assert S.NON_IMAGE_MODALITIES is K.NON_IMAGE_MODALITIES  # forward (is_image's fallback)
    assert image_modalities(["CT", "PT", "RAW", "ECG", "SEG", "AU", "SR"]) == ("CT", "PT")


def test_non_image_modalities_decide_only_when_the_class_is_unknown():
    unknown = S.InstanceFacts("i", "1.2.3", None)
    for modality in ("SEG", "AU", "RAW", "ECG"):
        assert S.is_image(S.SeriesFacts("s", "1.2", modality), unknown) is False
    assert S.is_image(S.SeriesFacts("s", "1.2", "PT"), unknown) is True
    seg = S.InstanceFacts(
        "i", "1.2.3", "1.2.840.10008.5.1.4.1.1.66.4"
    )  # Segmentation Storage: by class already
    assert S.is_image(S.SeriesFacts("s", "1.2", "SEG"), seg) is False


def _former_forward(sop: str | None) -> str | None:
    """forward/select.py's class rules before this module (dose_role's first steps)."""
    if sop in {"1.2.840.10008.5.1.4.1.1.88.67", "1.2.840.10008.5.1.4.1.1.88.68"}:
        return "dose object"
    if sop in {"1.2.840.10008.5.1.4.1.1.88.22", "1.2.840.10008.5.1.4.1.1.88.33"}:
        return "by title"
    if sop == "1.2.840.10008.5.1.4.1.1.7" or (sop and sop.startswith("1.2.840.10008.5.1.4.1.1.7.")):
        return "dose screen?"
    return None


def _former_parse(sop: str) -> str | None:
    """dose/parse.py's routing by class before this module (the modality left out)."""
    if sop.startswith("1.2.840.10008.5.1.4.1.1.88."):
        return "sr"
    if sop in {"1.2.840.10008.5.1.4.1.1.128", "1.2.840.10008.5.1.4.1.1.130", "1.2.840.10008.5.1.4.1.1.128.1"}:
        return "pet"
    if sop in {"1.2.840.10008.5.1.4.1.1.20", "1.2.840.10008.5.1.4.1.1.5"}:
        return "nm"
    return None


CLASSES = [
    None, "", "1.2.840.10008.5.1.4.1.1.88.67", "1.2.840.10008.5.1.4.1.1.88.68", "1.2.840.10008.5.1.4.1.1.88.76",
    "1.2.840.10008.5.1.4.1.1.88.22", "1.2.840.10008.5.1.4.1.1.88.33", "1.2.840.10008.5.1.4.1.1.88.11",
    "1.2.840.10008.5.1.4.1.1.88.59", "1.2.840.10008.5.1.4.1.1.128", "1.2.840.10008.5.1.4.1.1.130",
    "1.2.840.10008.5.1.4.1.1.128.1", "1.2.840.10008.5.1.4.1.1.20", "1.2.840.10008.5.1.4.1.1.5",
    "1.2.840.10008.5.1.4.1.1.7", "1.2.840.10008.5.1.4.1.1.7.1", "1.2.840.10008.5.1.4.1.1.7.4",
    "1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.5.1.4.1.1.66", "1.2.840.10008.5.1.4.1.1.11.1", "1.2.3.4",
]  # fmt: skip


@pytest.mark.parametrize("sop", CLASSES)
def test_the_one_dose_decision_answers_as_forward_and_parse_did(sop):
    answer = dose_by_class(sop)
    forward = {
        DoseByClass.DOSE_SR: "dose object",
        DoseByClass.SCREEN: "dose screen?",
        DoseByClass.TITLED_SR: "by title" if sop in K.GENERAL_SR_CLASSES else None,
    }.get(answer)
    if sop == K.ENHANCED_XRAY_RADIATION_DOSE_SR:  # the one change: forwarded as a dose object, was skipped
        assert (forward, _former_forward(sop)) == ("dose object", None)
    else:
        assert forward == _former_forward(sop)
    parse = {
        DoseByClass.DOSE_SR: "sr",
        DoseByClass.TITLED_SR: "sr",
        DoseByClass.PET: "pet",
        DoseByClass.NM: "nm",
    }
    assert parse.get(answer) == _former_parse(sop or "")


def test_dose_candidates_are_classes_the_dose_decision_names():
    for sop in K.DOSE_CANDIDATE_CLASSES:
        assert dose_by_class(sop) is not None
    assert profile.is_dose_candidate is K.is_dose_candidate
    assert K.is_dose_candidate("1.2.840.10008.5.1.4.1.1.88.11")  # any SR class
    assert K.is_dose_candidate("1.2.840.10008.5.1.4.1.1.2", "PT")  # by modality
    assert not K.is_dose_candidate("1.2.840.10008.5.1.4.1.1.2", "CT")
    assert not K.is_dose_candidate("1.2.840.10008.5.1.4.1.1.7.4", "OT")  # multi-frame SC: not handed over
    assert not K.is_dose_candidate("1.2.840.10008.5.1.4.1.1.5", "")  # retired NM class alone: not handed over


def test_the_conquest_hook_keeps_the_same_candidate_classes():
    """conquest/lua/nmdose_import.lua cannot import Python: its copy must equal DOSE_CANDIDATE_CLASSES."""
    lua = (REPO / "conquest" / "lua" / "nmdose_import.lua").read_text()
    block = re.search(r"local IMAGE_CLASSES = \{(.*?)\n\}", lua, re.S)
    assert block is not None
    assert set(re.findall(r"\['([0-9.]+)'\]", block.group(1))) == K.DOSE_CANDIDATE_CLASSES
    assert f"local SR_PREFIX = '{K.SR_PREFIX}'" in lua
    assert set(re.findall(r"(\w+) = true", lua.split("local MODALITIES = {", 1)[1].split("}", 1)[0])) == (
        K.DOSE_CANDIDATE_MODALITIES
    )


def test_no_sop_class_literal_outside_the_one_module():
    """Every SOP class UID of the package comes from nmdose.sop_classes (pydicom's names where it has them)."""
    offenders = [
        str(path.relative_to(PACKAGE_DIR))
        for path in sorted(PACKAGE_DIR.rglob("*.py"))
        if path.name != "sop_classes.py" and STORAGE_ARC in path.read_text(encoding="utf-8")
    ]
    assert offenders == []
