"""Derived dose values of a merged study (issue 6 item 8); every coefficient carries its source.

- CT effective dose E = DLP x k, k by body region and age band (ICRP Publication 103 tissue weighting factors):
  adults from Deak et al., Radiology 2010;257(1):158-166; children from Lee et al., Med Phys 2012;39(4):2129-2146,
  Table XII ("NCI ED103", 120 kVp).
- Radiopharmaceutical effective dose E = A x e, e in mSv/MBq by agent and age band: ICRP Publication 128 (the
  compendium of the ICRP 53/80/106 values plus its new 82Rb, iodide and FP-CIT models) where it has the agent,
  a cited dosimetry paper where it has not (68Ga-DOTATATE/-DOTATOC, the PSMA ligands). Each entry names its
  source and, where there was one, the independent table it was compared with; an agent or age band without an
  entry gives no value (and says why) rather than a guessed one. The agent is matched by code (CID 25/4021),
  else by its normalised header text.
- PET-CT total = CT + radiopharmaceutical effective dose, only when both are known.
- Activity per kg = administered activity / patient weight.
- Activity at injection: when the activity was measured before the injection (the PET/NM header or RRDSR gives a
  measurement time earlier than the start time), it is decay-corrected with A(t) = A0 * 2^(-dt / T1/2).

Age bands are the same for CT and radiopharmaceuticals (:func:`age_band`): adults from 18 years (and unknown
age, said so), then 15 (12.5-18), 10 (7.5-12.5), 5 (3-7.5), 1 (0.5-3) and 0 (< 0.5) years; ICRP 128 has no
newborn phantom, so the 0 band gives no radiopharmaceutical value.

No value is ever invented: a missing input, an unknown region or agent gives ``None`` and a reason in ``notes``.
"""

from __future__ import annotations

import datetime as _dt
import math
import re
from dataclasses import dataclass, field
from typing import Any

from nmdose import agent_names
from nmdose.dose import codes as C
from nmdose.dose.pet_image_header import nuclide_key

CT_K_SOURCE_ADULT = "Deak PD et al. Radiology 2010;257(1):158-166 (ICRP 103), adult"
CT_K_SOURCE_CHILD = "Lee C et al. Med Phys 2012;39(4):2129-2146, Table XII, NCI ED103 at 120 kVp"
NM_E_SOURCE = "ICRP Publication 128 (2015)"

# mSv per mGy.cm by body region, adult (ICRP 103 tissue weighting factors).
CT_K_ADULT: dict[str, float] = {
    "head": 0.0019,
    "neck": 0.0051,
    "chest": 0.0145,
    "abdomen": 0.0153,
    "pelvis": 0.0129,
    "trunk": 0.0152,
}
# Paediatric bands (years) -> region -> k (ICRP 103). Lee et al. give head, chest, abdomen-pelvis and
# chest-abdomen-pelvis only: neck has no paediatric value here and yields None.
CT_K_CHILD: dict[int, dict[str, float]] = {
    0: {"head": 0.0086, "chest": 0.0508, "abdomen_pelvis": 0.0475, "trunk": 0.0440},
    1: {"head": 0.0058, "chest": 0.0330, "abdomen_pelvis": 0.0309, "trunk": 0.0288},
    5: {"head": 0.0043, "chest": 0.0240, "abdomen_pelvis": 0.0221, "trunk": 0.0207},
    10: {"head": 0.0029, "chest": 0.0168, "abdomen_pelvis": 0.0142, "trunk": 0.0144},
    15: {"head": 0.0022, "chest": 0.0121, "abdomen_pelvis": 0.0114, "trunk": 0.0108},
}
# Target-region keys of codes.TARGET_REGIONS -> the region of the k tables.
REGION_OF_TARGET: dict[str, str] = {
    "head": "head",
    "brain": "head",
    "neck": "neck",
    "head_and_neck": "neck",
    "chest": "chest",
    "heart": "chest",
    "abdomen": "abdomen",
    "pelvis": "pelvis",
    "abdomen_pelvis": "abdomen_pelvis",
    "chest_abdomen": "trunk",
    "chest_abdomen_pelvis": "trunk",
    "whole_body": "trunk",
}
# The adult table has no abdomen-pelvis entry: the abdomen value is used (stated in the notes).
ADULT_FALLBACK = {"abdomen_pelvis": "abdomen"}
# Children: single abdomen or pelvis scans use the abdomen-pelvis value (stated in the notes).
CHILD_FALLBACK = {"abdomen": "abdomen_pelvis", "pelvis": "abdomen_pelvis"}


# ------------------------------------------------------------------------------ radiopharmaceutical coefficients
@dataclass(frozen=True)
class Coefficient:
    """Effective dose per administered activity (mSv/MBq) of one agent by age band, with where it comes from.

    ``children`` holds the ICRP 128 paediatric phantoms (15, 10, 5, 1 years) that were checked; a band that is
    missing gives no value. ``checked`` names the independent table the values were compared with ("" when they
    are transcribed from the cited publication without a second table at hand).
    """

    label: str
    nuclide: str  # key of codes.RADIONUCLIDES
    adult: float
    source: str
    children: dict[int, float] = field(default_factory=dict)
    checked: str = ""


ICRP128 = "ICRP Publication 128 (2015)"
ANDERSSON_T1 = "Andersson M et al., EJNMMI Phys 2014;1:9, Table 1, column (E/A0)1 (the ICRP value)"
FAHEY_T1 = (
    "Fahey FH, Treves ST, Adelstein SJ, J Nucl Med 2011;52(8):1240-1251, Table 1 "
    "(effective doses at weight-scaled activities for 1/5/10/15 y and adult, from ICRP 80/106)"
)
ANDERSSON_2016 = (
    "Andersson M et al., Radiat Prot Dosimetry 2016, 'Organ doses and effective dose for five PET "
    "radiopharmaceuticals' (ICRP 128 biokinetics recalculated with ICRP 103)"
)
GA68_TABLE = (
    "EJNMMI Res 2016 (erratum to 'Absorption, distribution and excretion of intravenously injected 68Ge/68Ga "
    "generator eluate in healthy rats'), Table 7"
)

NM_COEFFICIENTS: dict[str, Coefficient] = {
    # --- PET, ICRP 128
    "fdg": Coefficient(
        "18F-FDG", "F18", 0.019, f"{ICRP128}, 18F-FDG (ICRP 106 model)",
        {15: 0.024, 10: 0.037, 5: 0.056, 1: 0.095},
        f"adult: {ANDERSSON_T1}; children: {FAHEY_T1}",
    ),
    "naf": Coefficient(
        "18F-sodium fluoride", "F18", 0.017, f"{ICRP128}, 18F-fluoride (ICRP 53 model)",
        checked=f"{ANDERSSON_2016}: 9.0E-03 reported as 46 % below the ICRP value",
    ),
    "fdopa": Coefficient(
        "18F-L-DOPA", "F18", 0.025, f"{ICRP128}, 18F-L-dopa (ICRP 106 model)", checked=ANDERSSON_T1
    ),
    "fet": Coefficient(
        "18F-FET", "F18", 0.016, f"{ICRP128}, 18F-FET (ICRP 106 model)",
        checked=f"{ANDERSSON_2016}: 1.5E-02, reported as not significantly different",
    ),
    "methionine": Coefficient(
        "11C-methionine", "C11", 0.0084, f"{ICRP128}, 11C-methionine (ICRP 106 model)", checked=ANDERSSON_T1
    ),
    "water": Coefficient(
        "15O-water", "O15", 0.0011, f"{ICRP128}, 15O-water (ICRP 80 model)", checked=ANDERSSON_T1
    ),
    # --- SPECT / planar, ICRP 128
    "phosphonates": Coefficient(
        "99mTc-phosphonates (MDP, HDP, DPD)", "Tc99m", 0.0057,
        f"{ICRP128}, 99mTc-phosphates and phosphonates (ICRP 80 model)",
        {15: 0.0070, 10: 0.011, 5: 0.014, 1: 0.027},
        f"{FAHEY_T1}; adult also SNMMI 18F-fluoride PET/CT bone guideline (J Nucl Med 2010), dosimetry table",
    ),
    "sestamibi_rest": Coefficient(
        "99mTc-sestamibi, rest", "Tc99m", 0.0090, f"{ICRP128}, 99mTc-MIBI at rest (ICRP 80 model)",
        {15: 0.012, 10: 0.018, 5: 0.028, 1: 0.053}, FAHEY_T1,
    ),
    "sestamibi_exercise": Coefficient(
        "99mTc-sestamibi, exercise", "Tc99m", 0.0079, f"{ICRP128}, 99mTc-MIBI at exercise (ICRP 80 model)"
    ),
    "tetrofosmin_rest": Coefficient(
        "99mTc-tetrofosmin, rest", "Tc99m", 0.0080, f"{ICRP128}, 99mTc-tetrofosmin at rest (ICRP 80 model)"
    ),
    "tetrofosmin_exercise": Coefficient(
        "99mTc-tetrofosmin, exercise", "Tc99m", 0.0069,
        f"{ICRP128}, 99mTc-tetrofosmin at exercise (ICRP 80 model)",
    ),
    "maa": Coefficient("99mTc-MAA", "Tc99m", 0.011, f"{ICRP128}, 99mTc-MAA (ICRP 80 model)"),
    "pertechnetate": Coefficient(
        "99mTc-pertechnetate, no blocking agent", "Tc99m", 0.013,
        f"{ICRP128}, 99mTc-pertechnetate without blocking agent (ICRP 80 model)",
        {15: 0.017, 10: 0.026, 5: 0.042, 1: 0.079},
        "adult and 5 y: J Nucl Med Technol 2014;42(3):163 dosimetry tables (ICRP 53 p.199, ICRP 80 p.73)",
    ),
    "dtpa": Coefficient(
        "99mTc-DTPA, normal renal function", "Tc99m", 0.0049,
        f"{ICRP128}, 99mTc-DTPA, normal renal function (ICRP 80 model)",
    ),
    "mag3": Coefficient(
        "99mTc-MAG3, normal renal function", "Tc99m", 0.0070,
        f"{ICRP128}, 99mTc-MAG3, normal renal function (ICRP 80 model)",
        {15: 0.0090, 10: 0.012, 5: 0.012, 1: 0.022}, f"{FAHEY_T1} (agrees within 6 %)",
    ),
    "dmsa": Coefficient(
        "99mTc-DMSA", "Tc99m", 0.0088, f"{ICRP128}, 99mTc-DMSA (ICRP 80 model)",
        {15: 0.011, 10: 0.015, 5: 0.021, 1: 0.037},
    ),
    "hmpao": Coefficient("99mTc-HMPAO", "Tc99m", 0.0093, f"{ICRP128}, 99mTc-HM-PAO (ICRP 80 model)"),
    "ecd": Coefficient(
        "99mTc-ECD", "Tc99m", 0.0077, f"{ICRP128}, 99mTc-ECD (ICRP 106 model)",
        {15: 0.0098, 10: 0.015, 5: 0.022, 1: 0.040}, FAHEY_T1,
    ),
    "mibg123": Coefficient(
        "123I-MIBG", "I123", 0.013, f"{ICRP128}, 123I-MIBG (ICRP 80 model)",
        {15: 0.017, 10: 0.026, 5: 0.037, 1: 0.068}, FAHEY_T1,
    ),
    "ioflupane": Coefficient("123I-ioflupane", "I123", 0.025, f"{ICRP128}, 123I-FP-CIT (new model in ICRP 128)"),
    "thallium": Coefficient("201Tl-chloride", "Tl201", 0.14, f"{ICRP128}, 201Tl-ion (ICRP 106 model)"),
    "pentetreotide": Coefficient(
        "111In-pentetreotide", "In111", 0.054, f"{ICRP128}, 111In-octreotide (ICRP 80 model)"
    ),
    # --- not in ICRP 128: one published dosimetry study each, adults only
    "dotatate": Coefficient(
        "68Ga-DOTATATE", "Ga68", 0.021,
        "Sandstrom M et al., J Nucl Med 2013;54(10):1755-1759 (not in ICRP 128)", checked=GA68_TABLE,
    ),
    "dotatoc": Coefficient(
        "68Ga-DOTATOC", "Ga68", 0.023, "Hartmann H et al., Nuklearmedizin 2009;48:201-207 (not in ICRP 128)",
        checked=f"{GA68_TABLE}; Walker RC et al., J Nucl Med 2013;54(6):855-860, Table 3",
    ),
    "psma11": Coefficient(
        "68Ga-PSMA-11", "Ga68", 0.022,
        "Sandgren K et al., EJNMMI Phys 2019;6:2 (ICRP 103, IDAC-Dose 2.1; not in ICRP 128)",
    ),
    "dcfpyl": Coefficient(
        "18F-DCFPyL", "F18", 0.0139, "Szabo Z et al., Mol Imaging Biol 2015;17(4):565-574 (not in ICRP 128)"
    ),
    "psma1007": Coefficient(
        "18F-PSMA-1007", "F18", 0.022,
        "Giesel FL et al., Eur J Nucl Med Mol Imaging 2017;44(4):678-688, 4.4-5.5 mSv per 200-250 MBq "
        "(not in ICRP 128)",
    ),
}  # fmt: skip

# Agent key (codes.RADIOPHARMACEUTICALS, or a name-only key below) -> coefficient key, or (rest, exercise).
AGENT_COEFFICIENT: dict[str, str | tuple[str, str]] = {
    "fdg": "fdg",
    "naf": "naf",
    "fdopa": "fdopa",
    "fet": "fet",
    "methionine": "methionine",
    "water": "water",
    "mdp": "phosphonates",
    "hdp": "phosphonates",
    "dpd": "phosphonates",
    "sestamibi": ("sestamibi_rest", "sestamibi_exercise"),
    "tetrofosmin": ("tetrofosmin_rest", "tetrofosmin_exercise"),
    "maa": "maa",
    "pertechnetate": "pertechnetate",
    "dtpa": "dtpa",
    "mag3": "mag3",
    "dmsa": "dmsa",
    "hmpao": "hmpao",
    "ecd": "ecd",
    "mibg123": "mibg123",
    "ioflupane": "ioflupane",
    "thallium": "thallium",
    "pentetreotide": "pentetreotide",
    "dotatate": "dotatate",
    "dotatoc": "dotatoc",
    "psma11": "psma11",
    "dcfpyl": "dcfpyl",
    "psma1007": "psma1007",
}
# Known agents deliberately without a coefficient, and why.
NO_COEFFICIENT: dict[str, str] = {
    "ammonia": "13N-ammonia: ICRP 128 value not verified here (published adult values differ: 0.0020-0.0027)",
    "rubidium": "82Rb-chloride: the new ICRP 128 model's value not verified here",
    "fluorocholine": "choline (18F or 11C): no ICRP 128 value verified here",
    "florbetapir": "18F-florbetapir: not in ICRP 128; product information value not verified here",
    "flutemetamol": "18F-flutemetamol: not in ICRP 128; product information value not verified here",
    "florbetaben": "18F-florbetaben: not in ICRP 128; product information value not verified here",
    "dotanoc": "68Ga-DOTANOC: not in ICRP 128 and published estimates disagree (0.017-0.025)",
    "psma": "PSMA ligand not named (PSMA-11, -1007, DCFPyL, -617 differ)",
    "nai131": "iodide: ICRP 128 gives it per thyroid uptake, which is not known here",
    "mibg131": "131I-MIBG: not in the table",
    "psma617_lu177": "177Lu therapy: ICRP 128 covers diagnostic use only",
}
# Agent names as found in headers, matched on the normalised text: the loose reading of nmdose.agent_names (the
# pages show names by the strict one). Order matters: the first pattern that matches wins.
AGENT_NAME_PATTERNS = agent_names.patterns(loose=True)
# A name that fits several agents of one substance: the nuclide decides.
BY_NUCLIDE: dict[str, dict[str, str]] = {"mibg": {"I123": "mibg123", "I131": "mibg131"}}
NUCLIDE_OF_AGENT: dict[str, str] = {"dpd": "Tc99m", "dotanoc": "Ga68"}
OTHER_FORM = agent_names.OTHER_FORM  # forms with their own ICRP model (aerosol, labelled white cells)
INHALATION_ROUTE = C.ROUTES["inhalation"].key
# Words of a myocardial perfusion protocol that name the stress (ICRP: exercise) or rest acquisition.
STRESS_WORDS = re.compile(r"\b(stress|exercise|treadmill|ergometr\w*|bicycle|belastung)\b")
REST_WORDS = re.compile(r"\b(rest|ruhe)\b")


def _region_key(target_region_code: str | None) -> str | None:
    if not target_region_code:
        return None
    target = C.TARGET_REGION_BY_KEY.get(target_region_code)
    return REGION_OF_TARGET.get(target) if target else None


def age_band(age_years: float | None) -> int | None:
    """Paediatric band (0, 1, 5, 10, 15 y: Lee et al. for CT k, the ICRP 128 phantoms for radiopharmaceuticals)
    or None for adults (>= 18) and unknown age."""
    if age_years is None or age_years >= 18:
        return None
    for upper, band in ((0.5, 0), (3.0, 1), (7.5, 5), (12.5, 10)):
        if age_years < upper:
            return band
    return 15


def ct_k(target_region_code: str | None, age_years: float | None) -> tuple[float | None, str]:
    """(k in mSv/(mGy.cm), note naming the source or why there is none)."""
    region = _region_key(target_region_code)
    if region is None:
        return None, f"no k: target region {target_region_code or 'missing'} not mapped to a body region"
    band = age_band(age_years)
    if band is None:
        used = ADULT_FALLBACK.get(region, region) if region not in CT_K_ADULT else region
        k = CT_K_ADULT.get(used)
        if k is None:
            return None, f"no adult k for {region}"
        age_note = "age unknown, adult assumed; " if age_years is None else ""
        via = f" (the {used} value)" if used != region else ""
        return k, f"{age_note}{region}{via}: {CT_K_SOURCE_ADULT}"
    table = CT_K_CHILD[band]
    used = region if region in table else CHILD_FALLBACK.get(region, region)
    k = table.get(used)
    if k is None:
        return None, f"no paediatric k for {region} ({band} y band) in {CT_K_SOURCE_CHILD}"
    via = f" (the {used} value)" if used != region else ""
    return k, f"{region}{via}, {band} y band: {CT_K_SOURCE_CHILD}"


normalise_agent_text = agent_names.normalise


def agent_from_text(text: str | None, nuclide: str | None = None) -> str | None:
    """Agent key for a header's free text ("Fludeoxyglucose F^18^", "18F-FDG", "Tc-99m MDP"), or None."""
    if not text:
        return None
    norm = normalise_agent_text(text)
    for key, pattern in AGENT_NAME_PATTERNS:
        if pattern.search(norm):
            variants = BY_NUCLIDE.get(key)
            if variants is None:
                return key
            return variants.get(nuclide or "", next(iter(variants.values())))
    return None


def _nuclide(nuclide_code: str | None, agent_text: str | None) -> str | None:
    """The administration's nuclide: its code, else the agent text by the readers' own free-text rule."""
    return C.RADIONUCLIDE_BY_KEY.get(nuclide_code or "") or (
        nuclide_key(None, None, agent_text) if agent_text else None
    )


def match_agent(agent_code: str | None, agent_text: str | None = None,
                nuclide_code: str | None = None) -> tuple[str | None, str]:  # fmt: skip
    """(agent key, how it was matched): the agent code first (CID 25/4021, SRT mapped to SCT), then the name."""
    key = C.RADIOPHARMACEUTICAL_BY_KEY.get(agent_code or "")
    if key is not None:
        return key, f"code {agent_code}"
    key = agent_from_text(agent_text, _nuclide(nuclide_code, agent_text))
    if key is not None:
        return key, f"name {agent_text!r}"
    what = f"code {agent_code}" if agent_code else "no code"
    return None, f"{what}, name {agent_text!r}" if agent_text else what


def mpi_phase(merged: dict[str, Any]) -> str | None:
    """'stress', 'rest' or 'both' as the study's description and series protocols name them; None if neither."""
    texts = [merged.get("study_description")]
    for p in merged.get("protocols") or []:
        texts += [p.get(k) for k in ("protocol_name", "series_description", "requested_procedure",
                                     "performed_procedure")]  # fmt: skip
    words = " ".join(normalise_agent_text(t) for t in texts if t)
    stress, rest = bool(STRESS_WORDS.search(words)), bool(REST_WORDS.search(words))
    return "both" if stress and rest else "stress" if stress else "rest" if rest else None


def nm_coefficient(agent_code: str | None, age_years: float | None, *, agent_text: str | None = None,
                   nuclide_code: str | None = None, route_code: str | None = None,
                   phase: str | None = None) -> tuple[float | None, str]:  # fmt: skip
    """(effective dose per activity in mSv/MBq, note naming the agent, the source, or why there is none).

    The agent is matched by code, else by name; ``phase`` ('stress' alone selects the ICRP exercise value of
    sestamibi/tetrofosmin; anything else the rest value, which is the higher one).
    """
    value, note, _source = nm_coefficient_detail(
        agent_code,
        age_years,
        agent_text=agent_text,
        nuclide_code=nuclide_code,
        route_code=route_code,
        phase=phase,
    )
    return value, note


def nm_coefficient_detail(agent_code: str | None, age_years: float | None, *, agent_text: str | None = None,
                          nuclide_code: str | None = None, route_code: str | None = None,
                          phase: str | None = None) -> tuple[float | None, str, str | None]:  # fmt: skip
    """:func:`nm_coefficient` plus the source of the value used (None when there is no value)."""
    agent, how = match_agent(agent_code, agent_text, nuclide_code)
    if agent is None:
        return None, f"no coefficient: agent not recognised ({how})", None
    if agent in NO_COEFFICIENT:
        return None, f"no coefficient: {NO_COEFFICIENT[agent]} ({how})", None
    target = AGENT_COEFFICIENT.get(agent)
    if target is None:
        return None, f"no coefficient for {agent} in the table ({how})", None
    if (agent_text and OTHER_FORM.search(normalise_agent_text(agent_text))) or route_code == INHALATION_ROUTE:
        return (
            None,
            f"no coefficient: {agent} as labelled cells or by inhalation has its own model ({how})",
            None,
        )
    phase_note = ""
    if isinstance(target, tuple):
        rest, exercise = target
        if phase == "stress":
            target, phase_note = exercise, "; protocol names stress: ICRP exercise value"
        else:
            target = rest
            phase_note = {
                "both": "; protocol names rest and stress: rest value (the higher) for each administration",
                None: "; no stress named: rest value",
            }.get(phase, "")
    coef = NM_COEFFICIENTS[target]
    nuclide = _nuclide(nuclide_code, agent_text)
    if nuclide and nuclide != coef.nuclide:
        return (
            None,
            f"no coefficient: {coef.label} is {coef.nuclide}, the administration's nuclide {nuclide} ({how})",
            None,
        )
    band = age_band(age_years)
    if band is None:
        age_note = "age unknown, adult assumed; " if age_years is None else ""
        return coef.adult, f"{age_note}{coef.label}, adult ({how}{phase_note}): {coef.source}", coef.source
    if band not in coef.children:
        why = "ICRP 128 has no newborn phantom" if band == 0 else "no checked paediatric value in the table"
        return None, f"no coefficient: {coef.label}, {band} y band (age {age_years:g} y): {why} ({how})", None
    return coef.children[band], f"{coef.label}, {band} y band ({how}{phase_note}): {coef.source}", coef.source


def decay_correct(activity_mbq: float, measured_at: _dt.datetime, injected_at: _dt.datetime,
                  half_life_s: float) -> float:  # fmt: skip
    """Activity at ``injected_at`` of ``activity_mbq`` measured at ``measured_at`` (A0 * 2^(-dt/T1/2))."""
    dt_s = (injected_at - measured_at).total_seconds()
    return activity_mbq * math.pow(2.0, -dt_s / half_life_s)


# Plausible administered activity (MBq) per agent, else per nuclide, else a broad default: outside it the value is
# kept and shown with a warning (a physicist looks), never dropped. The limits are issue #16's (FDG 20-1500 MBq,
# Tc-99m agents 10-2000 MBq), a screening choice, not a guideline's diagnostic reference level.
PLAUSIBLE_ACTIVITY_BY_AGENT_MBQ: dict[str, tuple[float, float]] = {"fdg": (20.0, 1500.0)}
PLAUSIBLE_ACTIVITY_BY_NUCLIDE_MBQ: dict[str, tuple[float, float]] = {"Tc99m": (10.0, 2000.0)}
PLAUSIBLE_ACTIVITY_DEFAULT_MBQ = (0.1, 20000.0)


def activity_plausibility(adm: dict[str, Any], activity_mbq: float | None) -> str | None:
    """A warning when ``activity_mbq`` is outside the plausible range for the administration's agent; else None."""
    if activity_mbq is None:
        return None
    agent, _how = match_agent(adm.get("agent_code"), adm.get("agent"), adm.get("radionuclide_code"))
    nuclide = C.RADIOPHARMACEUTICALS[agent][1] if agent in C.RADIOPHARMACEUTICALS else None
    nuclide = nuclide or _nuclide(adm.get("radionuclide_code"), adm.get("agent"))
    if agent in PLAUSIBLE_ACTIVITY_BY_AGENT_MBQ:
        (lo, hi), what = PLAUSIBLE_ACTIVITY_BY_AGENT_MBQ[agent], agent.upper() if agent == "fdg" else agent
    elif nuclide in PLAUSIBLE_ACTIVITY_BY_NUCLIDE_MBQ:
        (lo, hi), what = PLAUSIBLE_ACTIVITY_BY_NUCLIDE_MBQ[nuclide], f"{nuclide} agents"
    else:
        (lo, hi), what = PLAUSIBLE_ACTIVITY_DEFAULT_MBQ, "any agent"
    if lo <= activity_mbq <= hi:
        return None
    label = adm.get("agent") or agent or "agent unknown"
    hint = ""
    if activity_mbq > hi and lo <= activity_mbq / 1e6 <= hi:
        hint = f"; {activity_mbq / 1e6:g} MBq if the value was Bq"
    elif activity_mbq < lo and lo <= activity_mbq * 1e6 <= hi:
        hint = f"; {activity_mbq * 1e6:g} MBq if the value was MBq stored as Bq"
    return f"{activity_mbq:g} MBq of {label} is outside {lo:g}-{hi:g} MBq plausible for {what}{hint}"


def half_life_used(adm: dict[str, Any]) -> tuple[float | None, str | None]:
    """(T1/2 in s, where from): the PET/NM header's RadionuclideHalfLife wins, then the dose report's, then the
    nuclide table (codes.RADIONUCLIDES)."""
    header = adm.get("header_half_life_s")
    if header:
        return header, "header"
    own = adm.get("half_life_s")
    if own:
        return own, "header" if adm.get("source") in ("pet_image", "nm_image") else "report"
    nuclide = _nuclide(adm.get("radionuclide_code"), adm.get("agent"))
    if nuclide in C.HALF_LIFE_S:
        return C.HALF_LIFE_S[nuclide], f"table ({nuclide})"
    return None, None


def net_activity(adm: dict[str, Any]) -> tuple[float | None, str | None]:
    """(net administered activity at injection in MBq, note): the pre-administration activity minus the residual,
    each decay-corrected from its own measurement time to the injection (start) time."""
    pre, post = adm.get("pre_measured_activity_mbq"), adm.get("post_measured_activity_mbq")
    if pre is None and post is None:
        return None, None
    injected_at = _dt_or_none(adm.get("start_datetime"))
    pre_at, post_at = (
        _dt_or_none(adm.get("pre_measured_datetime")),
        _dt_or_none(adm.get("post_measured_datetime")),
    )
    half_life, half_life_source = half_life_used(adm)
    needed = [("pre-administration activity", pre), ("its measurement time", pre_at),
              ("post-administration (residual) activity", post)]  # fmt: skip
    if post is not None:
        needed.append(("its measurement time", post_at))
    needed += [("injection time", injected_at), ("half-life", half_life)]
    missing = [name for name, value in needed if value is None]
    if missing:
        return None, "net activity not computed: no " + ", no ".join(missing)
    if pre_at > injected_at or post_at < injected_at:
        return None, (f"net activity not computed: pre measured {pre_at.isoformat()}, post {post_at.isoformat()}, "
                      f"injection {injected_at.isoformat()} out of order")  # fmt: skip
    pre_inj = decay_correct(pre, pre_at, injected_at, half_life)
    post_inj = decay_correct(post, post_at, injected_at, half_life)
    net = round(pre_inj - post_inj, 6)
    how = (f"pre {pre:g} MBq at {pre_at.isoformat()} -> {pre_inj:.6g}, post {post:g} MBq at {post_at.isoformat()} "
           f"-> {post_inj:.6g} MBq at injection {injected_at.isoformat()}, T1/2 {half_life:g} s ({half_life_source})")  # fmt: skip
    if net <= 0:
        return None, f"net activity not computed: residual not below the pre-administration activity ({how})"
    return net, f"net activity {net:g} MBq: {how}"


def activity_rule(adm: dict[str, Any], net: float | None) -> str | None:
    """Which activity the derived values use, and by which rule (``administered_activity_rule``)."""
    source = adm.get("source")
    if source in ("pet_image", "nm_image"):
        if adm.get("activity_mbq") is None:
            return None
        prefix = "pet_header" if source == "pet_image" else "nm_header"
        start = adm.get("start_datetime_source") or ""
        if start == "header_start_datetime":
            return f"{prefix}_start_datetime"
        return f"{prefix}_start_time" if start.startswith("header_start_time") else f"{prefix}_no_start_time"
    if adm.get("activity_mbq") is not None:
        return "rrdsr_administered"
    return "rrdsr_net_pre_post" if net is not None else None


def _dt_or_none(value: str | None) -> _dt.datetime | None:
    if not value:
        return None
    try:
        return _dt.datetime.fromisoformat(value).replace(tzinfo=None)
    except ValueError:
        return None


def derive_study(merged: dict[str, Any]) -> dict[str, Any]:
    """Derived values for a ``merge_study`` result: per event, per administration and study totals."""
    patient = merged.get("patient") or {}
    age = patient.get("age_years")
    weight = patient.get("weight_kg")
    notes: list[str] = []
    events = []
    ct_total = 0.0
    ct_known = False
    ct_missing = 0
    for event in (merged.get("ct") or {}).get("events", []):
        k, note = ct_k(event.get("target_region_code"), age)
        dlp = event.get("dlp_mgycm")
        e = None if k is None or dlp is None else round(dlp * k, 6)
        if e is not None:
            ct_total += e
            ct_known = True
        elif dlp:
            ct_missing += 1
        events.append({"k_msv_per_mgycm": k, "effective_dose_msv": e, "note": note})
    if ct_missing:
        notes.append(
            f"CT effective dose: {ct_missing} event(s) with DLP but no k (see events); total left empty"
        )
    administrations = []
    phase = mpi_phase(merged)
    nm_sources: set[str] = set()
    nm_total = 0.0
    nm_known = False
    nm_missing = 0
    for adm in merged.get("radiopharmaceutical") or []:
        net, net_note = net_activity(adm)
        rule = activity_rule(adm, net)
        activity = net if rule == "rrdsr_net_pre_post" else adm.get("activity_mbq")
        if (
            net is not None
            and adm.get("activity_mbq")
            and abs(net - adm["activity_mbq"]) > 0.1 * adm["activity_mbq"]
        ):
            net_note += (
                f"; differs from the administered activity {adm['activity_mbq']:g} MBq by more than 10 %"
            )
        at_injection = activity
        correction = None
        measured_at = _dt_or_none(adm.get("measured_datetime"))
        injected_at = _dt_or_none(adm.get("start_datetime"))
        half_life = adm.get("half_life_s") or C.HALF_LIFE_S.get(
            C.RADIONUCLIDE_BY_KEY.get(adm.get("radionuclide_code") or "", ""), 0.0
        )
        if activity is not None and measured_at and injected_at and half_life and measured_at < injected_at:
            at_injection = round(decay_correct(activity, measured_at, injected_at, half_life), 6)
            correction = (
                f"decay-corrected from {measured_at.isoformat()} to {injected_at.isoformat()} "
                f"with T1/2 {half_life:g} s"
            )
        e_coef, note, source = nm_coefficient_detail(
            adm.get("agent_code"),
            age,
            agent_text=adm.get("agent"),
            nuclide_code=adm.get("radionuclide_code"),
            route_code=adm.get("route_code"),
            phase=phase,
        )
        if source:
            nm_sources.add(source)
        e = None if e_coef is None or at_injection is None else round(at_injection * e_coef, 6)
        if e is not None:
            nm_total += e
            nm_known = True
        elif at_injection is not None:
            nm_missing += 1
        per_kg = None if at_injection is None or not weight else round(at_injection / weight, 6)
        plausibility = adm.get("plausibility") or activity_plausibility(adm, at_injection)
        if plausibility:
            notes.append(f"plausibility: {plausibility}")
        administrations.append({"activity_at_injection_mbq": at_injection, "decay_correction": correction,
                                "activity_per_kg_mbq": per_kg, "coefficient_msv_per_mbq": e_coef,
                                "effective_dose_msv": e, "note": note, "net_activity_mbq": net,
                                "net_activity_note": net_note, "administered_activity_rule": rule,
                                "plausibility": plausibility})  # fmt: skip
    if nm_missing:
        notes.append(
            f"radiopharmaceutical effective dose: {nm_missing} administration(s) without coefficient"
        )
    ct_effective = round(ct_total, 6) if ct_known and not ct_missing else None
    nm_effective = round(nm_total, 6) if nm_known and not nm_missing else None
    activities = [a["activity_at_injection_mbq"] for a in administrations if a["activity_at_injection_mbq"]]
    nm_activity = round(sum(activities), 6) if activities else None
    has_ct = bool(events)
    has_nm = bool(administrations)
    total = None
    if (
        (not has_ct or ct_effective is not None)
        and (not has_nm or nm_effective is not None)
        and (has_ct or has_nm)
    ):
        total = round((ct_effective or 0.0) + (nm_effective or 0.0), 6)
    return {
        "events": events,
        "administrations": administrations,
        "ct_effective_dose_msv": ct_effective,
        "nm_effective_dose_msv": nm_effective,
        "nm_total_activity_mbq": nm_activity,
        "total_effective_dose_msv": total,
        "activity_per_kg_mbq": None if nm_activity is None or not weight else round(nm_activity / weight, 6),
        "age_band_years": age_band(age),
        "sources": {
            "ct_k_adult": CT_K_SOURCE_ADULT,
            "ct_k_child": CT_K_SOURCE_CHILD,
            "nm": "; ".join(sorted(nm_sources)) or NM_E_SOURCE,
        },
        "notes": notes,
    }
