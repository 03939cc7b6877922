"""Radiopharmaceutical effective dose coefficients: the table, agent matching by code and name, age bands,
rest/stress, and the reasons given when there is no value."""

from __future__ import annotations

import pytest

from nmdose.dicom_sr import code_key
from nmdose.dose import codes as C
from nmdose.dose import derived as D

TC99M = C.RADIONUCLIDES["Tc99m"][0].key
I131 = C.RADIONUCLIDES["I131"][0].key


def code(agent: str) -> str:
    return C.RADIOPHARMACEUTICALS[agent][0].key


@pytest.mark.parametrize(
    ("agent", "e", "source"),
    [
        # PET, ICRP 128
        ("fdg", 0.019, "ICRP Publication 128"),
        ("naf", 0.017, "18F-fluoride"),
        ("fdopa", 0.025, "ICRP 106"),
        ("fet", 0.016, "18F-FET"),
        ("methionine", 0.0084, "11C-methionine"),
        ("water", 0.0011, "15O-water"),
        # bone
        ("mdp", 0.0057, "phosphonates"),
        ("hdp", 0.0057, "phosphonates"),
        # myocardial perfusion (rest value unless stress is named)
        ("sestamibi", 0.0090, "MIBI at rest"),
        ("tetrofosmin", 0.0080, "tetrofosmin at rest"),
        ("thallium", 0.14, "201Tl"),
        # lung, thyroid
        ("maa", 0.011, "99mTc-MAA"),
        ("pertechnetate", 0.013, "without blocking agent"),
        # renal
        ("dtpa", 0.0049, "normal renal function"),
        ("mag3", 0.0070, "normal renal function"),
        ("dmsa", 0.0088, "99mTc-DMSA"),
        # brain
        ("hmpao", 0.0093, "HM-PAO"),
        ("ecd", 0.0077, "99mTc-ECD"),
        ("ioflupane", 0.025, "FP-CIT"),
        # neuroendocrine
        ("mibg123", 0.013, "123I-MIBG"),
        ("pentetreotide", 0.054, "111In-octreotide"),
        ("dotatate", 0.021, "Sandstrom"),
        ("dotatoc", 0.023, "Hartmann"),
        # PSMA, not in ICRP 128: the paper is named
        ("psma11", 0.022, "Sandgren"),
        ("dcfpyl", 0.0139, "Szabo"),
        ("psma1007", 0.022, "Giesel"),
    ],
)
def test_adult_coefficient_by_code_names_its_source(agent, e, source):
    value, note = D.nm_coefficient(code(agent), 45.0)
    assert value == e
    assert source in note and f"code {code(agent)}" in note


def test_legacy_srt_code_matches_like_its_sct_code():
    srt_fdg = code_key("SRT", "C-B1031")  # how the readers key an old scanner's FDG code
    assert D.nm_coefficient(srt_fdg, 45.0)[0] == 0.019


@pytest.mark.parametrize(
    "text",
    ["Fludeoxyglucose F^18^", "FDG", "18F-FDG", "F-18 FDG", "[18F]FDG", "FDG-F18", "Fluorodeoxyglucose"],
)
def test_fdg_header_spellings_map_to_fdg(text):
    assert D.match_agent(None, text)[0] == "fdg"
    value, note = D.nm_coefficient(None, 45.0, agent_text=text)
    assert value == 0.019 and f"name {text!r}" in note


@pytest.mark.parametrize(
    ("text", "agent"),
    [
        ("Tc-99m MDP", "mdp"),
        ("99mTc-HDP", "hdp"),
        ("Technetium Tc^99m^ medronate", "mdp"),
        ("Tc99m-MIBI", "sestamibi"),
        ("Myoview", "tetrofosmin"),
        ("Tc-99m MAG3", "mag3"),
        ("Ga-68 PSMA-11", "psma11"),
        ("68Ga-PSMA-HBED-CC", "psma11"),
        ("[68Ga]Ga-DOTA-TATE", "dotatate"),
        ("Ga-68 DOTATOC", "dotatoc"),
        ("18F-PSMA-1007", "psma1007"),
        ("123I-FP-CIT", "ioflupane"),
        ("DaTSCAN", "ioflupane"),
        ("I-123 MIBG", "mibg123"),
        ("I-131 MIBG", "mibg131"),
        ("Tl-201", "thallium"),
        ("18F-NaF", "naf"),
        ("6-Fluoro-L-DOPA", "fdopa"),
        ("O-15 H2O", "water"),
    ],
)
def test_header_names_map_to_agents(text, agent):
    assert D.match_agent(None, text)[0] == agent


def test_an_unknown_code_falls_back_to_the_name():
    assert D.match_agent("99SDM:XYZ", "Tc-99m MDP") == ("mdp", "name 'Tc-99m MDP'")


@pytest.mark.parametrize(
    ("age", "band", "e"),
    [(1.0, 1, 0.095), (2.9, 1, 0.095), (3.0, 5, 0.056), (6.0, 5, 0.056), (11.0, 10, 0.037),
     (16.0, 15, 0.024), (17.9, 15, 0.024), (18.0, None, 0.019), (70.0, None, 0.019)],
)  # fmt: skip
def test_fdg_paediatric_bands_are_the_ct_bands(age, band, e):
    assert D.age_band(age) == band
    value, note = D.nm_coefficient(code("fdg"), age)
    assert value == e
    assert (f"{band} y band" in note) if band is not None else ", adult" in note


def test_unknown_age_is_adult_and_said_so():
    value, note = D.nm_coefficient(code("mdp"), None)
    assert value == 0.0057 and note.startswith("age unknown, adult assumed")


@pytest.mark.parametrize(
    ("agent", "children"),
    [
        ("mdp", {15: 0.0070, 10: 0.011, 5: 0.014, 1: 0.027}),
        ("sestamibi", {15: 0.012, 10: 0.018, 5: 0.028, 1: 0.053}),
        ("ecd", {15: 0.0098, 10: 0.015, 5: 0.022, 1: 0.040}),
        ("mibg123", {15: 0.017, 10: 0.026, 5: 0.037, 1: 0.068}),
        ("pertechnetate", {15: 0.017, 10: 0.026, 5: 0.042, 1: 0.079}),
    ],
)
def test_paediatric_values_per_band(agent, children):
    ages = {15: 15.0, 10: 10.0, 5: 5.0, 1: 1.0}
    assert {band: D.nm_coefficient(code(agent), ages[band])[0] for band in children} == children


def test_newborn_and_unchecked_paediatric_bands_give_no_value_and_say_why():
    value, note = D.nm_coefficient(code("fdg"), 0.2)
    assert value is None and "no newborn phantom" in note
    value, note = D.nm_coefficient(code("dtpa"), 8.0)
    assert value is None and "10 y band" in note and "no checked paediatric value" in note
    assert D.nm_coefficient(code("psma11"), 16.0)[0] is None


@pytest.mark.parametrize(
    ("agent_code", "text", "reason"),
    [
        (None, None, "agent not recognised (no code)"),
        ("99SDM:XYZ", "Mystery tracer", "agent not recognised"),
        (code("florbetaben"), None, "not in ICRP 128"),
        (code("ammonia"), None, "not verified"),
        (None, "Ga-68 PSMA", "PSMA ligand not named"),
        (None, "Ga-68 DOTANOC", "published estimates disagree"),
        (code("nai131"), None, "thyroid uptake"),
        (None, "Tc-99m DTPA aerosol", "by inhalation"),
        (None, "Tc-99m HMPAO WBC", "labelled cells"),
        (None, "In-111 DTPA", "the administration's nuclide In111"),
    ],
)
def test_no_coefficient_gives_none_and_a_reason(agent_code, text, reason):
    value, note = D.nm_coefficient(agent_code, 45.0, agent_text=text)
    assert value is None and note.startswith("no coefficient") and reason in note


def test_nuclide_code_must_agree_with_the_agent():
    value, note = D.nm_coefficient(None, 45.0, agent_text="MIBG", nuclide_code=I131)
    assert value is None and "131I-MIBG" in note
    assert D.nm_coefficient(code("fdg"), 45.0, nuclide_code=TC99M)[0] is None


def _mpi(description: str | None, *protocols: str, age: float = 60.0) -> dict:
    return {
        "study_description": description,
        "protocols": [{"protocol_name": p} for p in protocols],
        "patient": {"age_years": age, "weight_kg": 80.0},
        "radiopharmaceutical": [
            {"agent": "Tc-99m Sestamibi", "radionuclide_code": TC99M, "activity_mbq": 800.0}
        ],
    }


@pytest.mark.parametrize(
    ("description", "protocols", "phase", "e"),
    [
        ("NM Myocardial perfusion STRESS", (), "stress", 0.0079),
        ("Myocardial perfusion", ("MPI Exercise",), "stress", 0.0079),
        ("Myocardial perfusion", ("REST",), "rest", 0.0090),
        ("MPI 1-day rest/stress", (), "both", 0.0090),
        ("Myocardial perfusion", (), None, 0.0090),
    ],
)
def test_sestamibi_takes_the_exercise_value_only_when_stress_alone_is_named(description, protocols, phase, e):
    merged = _mpi(description, *protocols)
    assert D.mpi_phase(merged) == phase
    derived = D.derive_study(merged)
    (adm,) = derived["administrations"]
    assert adm["coefficient_msv_per_mbq"] == e
    assert derived["nm_effective_dose_msv"] == pytest.approx(800.0 * e)
    assert ("MIBI at exercise" if phase == "stress" else "MIBI at rest") in derived["sources"]["nm"]


def test_derive_study_matches_an_uncoded_header_agent_by_name_and_records_the_source():
    merged = {
        "patient": {"age_years": 10.0, "weight_kg": 30.0},
        "radiopharmaceutical": [{"agent": "18F-FDG", "agent_code": None, "activity_mbq": 111.0}],
    }
    derived = D.derive_study(merged)
    assert derived["nm_effective_dose_msv"] == pytest.approx(111.0 * 0.037)
    assert "10 y band" in derived["administrations"][0]["note"]
    assert derived["sources"]["nm"] == "ICRP Publication 128 (2015), 18F-FDG (ICRP 106 model)"


def test_the_table_is_consistent():
    for key, coef in D.NM_COEFFICIENTS.items():
        assert coef.nuclide in C.RADIONUCLIDES, key
        assert coef.source and 0 < coef.adult < 1, key
        assert set(coef.children) <= {1, 5, 10, 15}, key
        # younger phantoms never get a smaller coefficient: catches transposed digits
        ladder = [coef.children[b] for b in (1, 5, 10, 15) if b in coef.children] + [coef.adult]
        assert ladder == sorted(ladder, reverse=True), key
    targets = {t for v in D.AGENT_COEFFICIENT.values() for t in (v if isinstance(v, tuple) else (v,))}
    assert targets == set(D.NM_COEFFICIENTS)
    named = {key for key, _pattern in D.AGENT_NAME_PATTERNS} | {
        k for variants in D.BY_NUCLIDE.values() for k in variants.values()
    }
    for agent in C.RADIOPHARMACEUTICALS:  # every coded agent has a coefficient or a stated reason
        assert (agent in D.AGENT_COEFFICIENT) != (agent in D.NO_COEFFICIENT), agent
    for agent in [*D.AGENT_COEFFICIENT, *D.NO_COEFFICIENT]:  # and every agent can be reached
        assert agent in C.RADIOPHARMACEUTICALS or agent in named, agent
