"""Derived dose values of a merged study (issue 6 item 8); every coefficient carries its source.

- CT effective dose E = DLP x k, k by body region and age band (ICRP Publication 103 tissue weighting factors):
  adults from Deak et al., Radiology 2010;257(1):158-166; children from Lee et al., Med Phys 2012;39(4):2129-2146,
  Table XII ("NCI ED103", 120 kVp).
- Radiopharmaceutical effective dose E = A x e, e in mSv/MBq for adults from ICRP Publication 128 (the
  compendium of ICRP 53/80/106 values). Only coefficients checked against a cited table are listed; anything
  else gives no value (and says why) rather than a guessed one.
- PET-CT total = CT + radiopharmaceutical effective dose, only when both are known.
- Activity per kg = administered activity / patient weight.
- Activity at injection: when the activity was measured before the injection (the PET/NM header or RRDSR gives a
  measurement time earlier than the start time), it is decay-corrected with A(t) = A0 * 2^(-dt / T1/2).

No value is ever invented: a missing input, an unknown region or agent gives ``None`` and a reason in ``notes``.
"""

from __future__ import annotations

import datetime as _dt
import math
from typing import Any

from nmdose.dose import codes as C

CT_K_SOURCE_ADULT = "Deak PD et al. Radiology 2010;257(1):158-166 (ICRP 103), adult"
CT_K_SOURCE_CHILD = "Lee C et al. Med Phys 2012;39(4):2129-2146, Table XII, NCI ED103 at 120 kVp"
NM_E_SOURCE = "ICRP Publication 128 (2015), adult"

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

# ICRP 128 adult effective dose per administered activity (mSv/MBq), by agent key of codes.RADIOPHARMACEUTICALS.
# Values checked against ICRP 106/80/53 as tabulated in Andersson et al., EJNMMI Phys 2014;1:9, Table 1 column
# (E/A0)1 (the ICRP published values carried into ICRP 128) and ICRP 53 for pertechnetate.
NM_E_ADULT: dict[str, float] = {
    "fdg": 0.019,
    "fdopa": 0.025,
    "methionine": 0.0084,
    "pertechnetate": 0.013,  # no blocking agent
}


def _region_key(target_region_code: str | None) -> str | None:
    if not target_region_code:
        return None
    target = C.TARGET_REGION_BY_KEY.get(target_region_code)
    return REGION_OF_TARGET.get(target) if target else None


def age_band(age_years: float | None) -> int | None:
    """Paediatric band of Lee et al. (0, 1, 5, 10, 15 years) or None for adults (>= 18) and unknown age."""
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


def nm_coefficient(agent_code: str | None, age_years: float | None) -> tuple[float | None, str]:
    """(effective dose per activity in mSv/MBq, note naming the source or why there is none)."""
    agent = C.RADIOPHARMACEUTICAL_BY_KEY.get(agent_code or "")
    if agent is None:
        return None, f"no coefficient: agent {agent_code or 'missing'} not in the table"
    if age_years is not None and age_years < 18:
        return None, f"no coefficient: paediatric ICRP 128 values not in the table (age {age_years:g} y)"
    e = NM_E_ADULT.get(agent)
    if e is None:
        return None, f"no coefficient for {agent} in the checked ICRP 128 subset"
    return e, f"{agent}: {NM_E_SOURCE}"


def decay_correct(activity_mbq: float, measured_at: _dt.datetime, injected_at: _dt.datetime,
                  half_life_s: float) -> float:  # fmt: skip
    """Activity at ``injected_at`` of ``activity_mbq`` measured at ``measured_at`` (A0 * 2^(-dt/T1/2))."""
    dt_s = (injected_at - measured_at).total_seconds()
    return activity_mbq * math.pow(2.0, -dt_s / half_life_s)


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
    nm_total = 0.0
    nm_known = False
    nm_missing = 0
    for adm in merged.get("radiopharmaceutical") or []:
        activity = adm.get("activity_mbq")
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
        e_coef, note = nm_coefficient(adm.get("agent_code"), age)
        e = None if e_coef is None or at_injection is None else round(at_injection * e_coef, 6)
        if e is not None:
            nm_total += e
            nm_known = True
        elif at_injection is not None:
            nm_missing += 1
        per_kg = None if at_injection is None or not weight else round(at_injection / weight, 6)
        administrations.append({"activity_at_injection_mbq": at_injection, "decay_correction": correction,
                                "activity_per_kg_mbq": per_kg, "coefficient_msv_per_mbq": e_coef,
                                "effective_dose_msv": e, "note": note})  # fmt: skip
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
        "sources": {"ct_k_adult": CT_K_SOURCE_ADULT, "ct_k_child": CT_K_SOURCE_CHILD, "nm": NM_E_SOURCE},
        "notes": notes,
    }
