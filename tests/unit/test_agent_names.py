"""One table of agent spellings (nmdose.agent_names) read two ways: strict for the names the pages show, loose
for the ICRP coefficient. What the strict reading names, the loose one names the same."""

from __future__ import annotations

import pytest

from nmdose import agent_names
from nmdose.dose import derived
from nmdose.web import names

SAMPLES = [
    "Fluorodeoxyglucose F^18^", "18F-FDG", "Tc-99m MDP", "Technetium Tc^99m^ medronate", "Ga-68 DOTATATE",
    "Fluorocholine", "choline", "F-18 sodium fluoride", "fluoride", "Rubidium chloride Rb^82^", "Rb-82",
    "Sodium iodide I^131^", "iodide", "octreotide", "In-111 pentetreotide", "PSMA-1007", "Ga-68 PSMA-11", "PSMA",
    "Tc-99m macroaggregated albumin", "aggregated albumin", "mercaptoacetyltriglycine", "MIBG I-123",
    "Thallous chloride Tl^201^", "thallium", "F-DOPA", "dopa", "Tc-99m DTPA aerosol", "water", "nothing known",
]  # fmt: skip


def key(pats, text):
    norm = agent_names.normalise(text)
    return next((k for k, p in pats if p.search(norm)), None)


@pytest.mark.parametrize("text", SAMPLES)
def test_the_loose_reading_names_what_the_strict_one_names(text):
    strict, loose = agent_names.patterns(loose=False), agent_names.patterns(loose=True)
    if key(strict, text) is not None:
        assert key(loose, text) == key(strict, text)


def test_both_users_read_the_one_table():
    assert [k for k, _ in names.PATTERNS] == [k for k, s, _ in agent_names.SPELLINGS if s]
    assert [k for k, _ in derived.AGENT_NAME_PATTERNS] == [k for k, _, _ in agent_names.SPELLINGS]
    assert names.OTHER_FORM is derived.OTHER_FORM is agent_names.OTHER_FORM
    # the differences on purpose: loose short forms give a coefficient, not a display name
    assert derived.agent_from_text("choline") == "fluorocholine" and names.agent_name("choline") == "choline"
    assert derived.agent_from_text("iodide") == "nai131"
    assert names.agent_name("Fluorodeoxyglucose F^18^") == "¹⁸F-FDG"
