"""Agent and nuclide names as people write them (web/names.py, issue 16 item 6)."""

from __future__ import annotations

import pytest

from nmdose.dose import codes
from nmdose.web.names import agent_matches, agent_name, display_group, display_rows, nuclide_name


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("Fluorodeoxyglucose F^18^", "¹⁸F-FDG"),
        ("Fludeoxyglucose F^18^", "¹⁸F-FDG"),
        ("Fluorodeoxyglucose", "¹⁸F-FDG"),  # the simulation's header text
        ("18F-FDG", "¹⁸F-FDG"),
        ("[18F]FDG", "¹⁸F-FDG"),
        ("Fluorodeoxyglucose F18", "¹⁸F-FDG"),  # the carets dropped (simulate/rdsr.py)
        ("Technetium Tc^99m^ medronate", "⁹⁹ᵐTc-MDP"),
        ("Tc-99m MDP", "⁹⁹ᵐTc-MDP"),
        ("Technetium Tc^99m^Tetrofosmin", "⁹⁹ᵐTc-tetrofosmin"),
        ("Sodium fluoride F^18^", "¹⁸F-NaF"),
        ("Dotatate Ga^68^", "⁶⁸Ga-DOTATATE"),
        ("Ga-68 PSMA-11", "⁶⁸Ga-PSMA-11"),
        ("F-18 PSMA-1007", "¹⁸F-PSMA-1007"),
        ("Iodine^123 3-Iodobenzylguanidine MIBG", "¹²³I-MIBG"),
        ("Iodine^131 3-Iodobenzylguanidine MIBG", "¹³¹I-MIBG"),
        ("Technetium^99m Mercaptoacetyl triglycine MAG3", "⁹⁹ᵐTc-MAG3"),
        ("Indium^111 Pentetreotide", "¹¹¹In-pentetreotide"),
        ("Lutetium^177^ n-acetylaspartylglutamate", "¹⁷⁷Lu-PSMA-617"),
        ("Thallous chloride Tl^201^", "²⁰¹Tl-chloride"),
        ("Sodium iodide I^131^", "¹³¹I-NaI"),
        # generic rule: an agent the table does not know still reads well
        ("Iodine I^131^", "¹³¹I"),
        ("Gallium Ga^68^ FAPI-46", "⁶⁸Ga-FAPI-46"),
        ("^99m^Technetium", "⁹⁹ᵐTc"),
        ("Tc-99m", "⁹⁹ᵐTc"),
        ("Zirconium Zr^89^ girentuximab", "⁸⁹Zr-girentuximab"),
        ("Foo X^12^", "Foo X¹²"),
        # a known substance of another nuclide or form is not taken for the known agent
        ("In-111 DTPA", "¹¹¹In-DTPA"),
        ("Tc-99m DTPA aerosol", "⁹⁹ᵐTc-DTPA aerosol"),
        ("MIBG", "MIBG"),  # which iodine: not guessed
        ("", ""),
        (None, None),
    ],
)
def test_agent_names(raw, shown):
    assert agent_name(raw) == shown


def test_every_agent_of_the_code_table_has_its_standard_name():
    """Every CID 25 / 4021 meaning of nmdose.dose.codes reads as nuclide-agent, with no caret left."""
    for key, (code, nuclide) in codes.RADIOPHARMACEUTICALS.items():
        shown = agent_name(code.meaning)
        mass = nuclide_name(codes.RADIONUCLIDES[nuclide][0].meaning)
        assert shown.startswith(mass + "-") and "^" not in shown, (key, code.meaning, shown)


@pytest.mark.parametrize(
    ("raw", "shown"),
    [("^18^Fluorine", "¹⁸F"), ("^99m^Technetium", "⁹⁹ᵐTc"), ("^131^Iodine", "¹³¹I"), ("^68^Gallium", "⁶⁸Ga"),
     ("Tc-99m", "⁹⁹ᵐTc"), ("F-18", "¹⁸F"), ("99mTc", "⁹⁹ᵐTc"), ("Iodine-131", "¹³¹I"), (None, None)],
)  # fmt: skip
def test_nuclide_names(raw, shown):
    assert nuclide_name(raw) == shown


def test_every_nuclide_of_the_code_table_is_mass_and_symbol():
    for key, (code, _half_life) in codes.RADIONUCLIDES.items():
        shown = nuclide_name(code.meaning)
        assert "^" not in shown and shown.endswith(key.rstrip("m").rstrip("0123456789")), (key, shown)


def test_rows_get_the_display_name_and_keep_the_raw_text_next_to_it():
    rows = [{"study_instance_uid": "1.2", "agent": "Fluorodeoxyglucose F^18^", "activity_mbq": 300.0}]
    (out,) = display_rows(rows)
    assert list(out) == ["study_instance_uid", "agent", "agent_code_meaning", "activity_mbq"]
    assert (out["agent"], out["agent_code_meaning"]) == ("¹⁸F-FDG", "Fluorodeoxyglucose F^18^")
    assert rows[0]["agent"] == "Fluorodeoxyglucose F^18^"  # the input (a cached answer) is not changed
    (adm,) = display_rows([{"agent": None, "radionuclide": "^99m^Technetium"}], ("agent", "radionuclide"))
    assert adm == {"agent": None, "agent_code_meaning": None, "radionuclide": "⁹⁹ᵐTc",
                   "radionuclide_code_meaning": "^99m^Technetium"}  # fmt: skip
    ct, nm = display_group([{"kind": "ct_event", "group": "Head F^18^"},
                            {"kind": "administration", "group": "Tc-99m MDP"}])  # fmt: skip
    assert (ct["group"], ct["agent_code_meaning"]) == ("Head F^18^", None)  # a protocol stays as it is
    assert (nm["group"], nm["agent_code_meaning"]) == ("⁹⁹ᵐTc-MDP", "Tc-99m MDP")


def test_a_filter_names_an_agent_by_its_stored_text_or_its_display_name():
    assert agent_matches("¹⁸F-FDG", "Fluorodeoxyglucose F^18^")
    assert agent_matches("fluorodeoxyglucose f^18^", "Fluorodeoxyglucose F^18^")
    assert agent_matches("¹⁸f-fdg", "Fluorodeoxyglucose")
    assert not agent_matches("⁹⁹ᵐTc-MDP", "Fluorodeoxyglucose F^18^") and not agent_matches("x", None)
