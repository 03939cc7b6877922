"""The census's correction reasons read back for the research page (census.modalities.explain_reason): every text
`correction` writes gives its code and values, whatever the description holds."""

from __future__ import annotations

import pytest

from nmdose.census import modalities as M
from nmdose.config import ModalityRule


@pytest.mark.parametrize(
    "description", ["PET-CT WB", 'it\'s (odd) "x" (majority: 1 of 2 studies carry NM)', "전신"]
)
def test_a_majority_reason_reads_back(description):
    found = [(description, ["CT", "PT"])] * 3 + [(description, ["CT", "SR"])]
    exp = M.expectations(found)[description]
    corrected, reason = M.correction(["CT", "SR"], exp)
    assert corrected == ["CT", "PT"]
    assert M.explain_reason(reason) == {"code": "majority", "found": ["CT", "SR"], "expected": ["CT", "PT"],
                                        "agreeing": 3, "studies": 4, "tie": False}  # fmt: skip


def test_a_tie_and_an_empty_set_read_back():
    found = [("X", ["NM"]), ("X", ["PT"])] * 2 + [("X", [])]
    exp = M.expectations(found)["X"]
    _corrected, reason = M.correction([], exp)
    assert M.explain_reason(reason) == {"code": "majority", "found": [], "expected": ["NM"], "agreeing": 2,
                                        "studies": 5, "tie": True}  # fmt: skip


def test_a_rule_reason_reads_back_with_its_pattern():
    rule = ModalityRule(pattern="bone (scan|spect)", modalities=["NM"])
    exp = M.expectations([("Bone scan", ["OT"])], [rule])["Bone scan"]
    _corrected, reason = M.correction(["OT"], exp)
    assert M.explain_reason(reason) == {"code": "rule", "found": ["OT"], "expected": ["NM"],
                                        "rule": "bone (scan|spect)"}  # fmt: skip


def test_another_text_is_kept_as_it_is():
    assert M.explain_reason("majority") == {"code": "other", "text": "majority"}
    assert M.explain_reason(None) is None
