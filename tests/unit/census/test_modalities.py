"""Expected modality sets per description: majority vote, rules, corrections."""

from nmdose.census.modalities import correction, expectations, image_modalities
from nmdose.config import ModalityRule

PETCT = ("CT", "PT", "SR")


def test_majority_of_image_modalities_sets_the_expected_set():
    studies = [("PET-CT WB", PETCT)] * 5 + [("PET-CT WB", ("CT", "PT"))] + [("PET-CT WB", ("CT", "SR"))]
    exp = expectations(studies)["PET-CT WB"]
    assert exp.expected == ("CT", "PT") and exp.source == "majority" and exp.agreeing == 6
    assert exp.full == PETCT
    corrected, reason = correction(["CT", "SR"], exp)
    assert corrected == ["CT", "PT", "SR"] and "majority: 6 of 7" in reason
    assert correction(["CT", "PT"], exp) == (None, None)  # a missing dose report is not a wrong modality


def test_a_rule_overrides_the_majority():
    rules = [ModalityRule(pattern="spect.?ct", modalities=["NM", "CT"])]
    studies = [("SPECT-CT Bone", ("NM",))] * 3 + [("SPECT-CT Bone", ("CT", "NM", "SR"))]
    exp = expectations(studies, rules)["SPECT-CT Bone"]
    assert exp.expected == ("CT", "NM") and exp.source.startswith("rule")
    corrected, reason = correction(["NM"], exp)
    assert corrected == ["CT", "NM", "SR"] and "expects CT\\NM" in reason


def test_first_matching_rule_wins_and_is_case_insensitive():
    rules = [
        ModalityRule(pattern="PET.?CT", modalities=["PT", "CT"]),
        ModalityRule(pattern=".*", modalities=["XA"]),
    ]
    exps = expectations([("전신 pet-ct", ("CT", "SR")), ("NM Bone", ("NM",))], rules)
    assert exps["전신 pet-ct"].expected == ("CT", "PT")
    assert exps["NM Bone"].expected == ("XA",)


def test_tie_is_broken_deterministically_and_flagged():
    exp = expectations([("X", ("CT",)), ("X", ("NM",))])["X"]
    assert exp.expected == ("CT",) and exp.tie


def test_non_image_modalities_are_ignored():
    assert image_modalities(["SR", "KO", "PR", "CT", "PT"]) == ("CT", "PT")
