"""Alert rule evaluation with known answers (pure: no database)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from nmdose.alerts.rules import RuleError, check_rule, evaluate, evaluate_rule
from nmdose.config import ReferenceLevel

STUDY = {
    "study_instance_uid": "1.2.3",
    "study_date": dt.date(2024, 5, 10),
    "study_description": "CT Chest",
    "standard_name": "CT chest routine",
    "scanner_id": 7,
    "patient_pseudonym": "p1:" + "a" * 32,
    "patient_age_years": 50.0,
    "ct_total_dlp_mgycm": 600.0,
    "ct_effective_dose_msv": 8.4,
    "nm_effective_dose_msv": None,
    "total_effective_dose_msv": 8.4,
}
EVENTS = [
    {"acquisition_protocol": "Chest routine", "target_region": "Chest", "ctdivol_mgy": 12.0, "dlp_mgycm": 450.0,
     "dose_check": None, "irradiation_event_uid": "1.2.3.1"},
    {"acquisition_protocol": "Chest HR", "target_region": "Chest", "ctdivol_mgy": 30.0, "dlp_mgycm": 150.0,
     "dose_check": None, "irradiation_event_uid": "1.2.3.2"},
]  # fmt: skip
ADMINS = [{"agent": "Fluorodeoxyglucose F^18^", "activity_mbq": 400.0, "activity_per_kg_mbq": 5.7}]
LEVELS = [
    ReferenceLevel(name="chest ctdivol", modality="CT", match={"protocols": ["chest"]}, quantity="ctdivol_mgy",
                   value=10, source="test source A", year=2022, status="official"),
    ReferenceLevel(name="chest dlp", modality="CT", match={"descriptions": ["^CT chest"]}, quantity="dlp_mgycm",
                   value=350, source="test source B", year=2022, status="official"),
    ReferenceLevel(name="chest dlp proposed", modality="CT", match={"descriptions": ["chest"]},
                   quantity="dlp_mgycm", value=200, source="test source C", year=2022, status="proposed"),
    ReferenceLevel(name="child chest", modality="CT", match={"protocols": ["chest"]}, quantity="ctdivol_mgy",
                   value=2, source="paediatric", year=2022, status="official", age_band={"max_years": 16}),
]  # fmt: skip


def rule(kind, **kw):
    return check_rule({"name": f"r-{kind}", "kind": kind, **kw}) | {"id": 1}


def fire(r, study=STUDY, events=EVENTS, admins=ADMINS, history=None):
    return evaluate_rule(r, study, events, admins, LEVELS, history)


def test_ctdivol_and_dlp_above_a_value():
    f = fire(rule("ctdivol_above", threshold=25))
    assert (f["quantity"], f["measured"], f["limit_value"], f["dedup_key"]) == (
        "ctdivol_mgy",
        30.0,
        25,
        "1.2.3",
    )
    assert f["details"]["acquisition_protocol"] == "Chest HR"
    assert fire(rule("ctdivol_above", threshold=30)) is None  # above, not at
    assert fire(rule("dlp_above", threshold=599))["measured"] == 600.0
    assert fire(rule("dlp_above", threshold=600)) is None


def test_above_the_reference_level_times_a_factor():
    f = fire(rule("ctdivol_level", factor=2))  # 30 > 2 x 10 (the child level does not apply at 50 years)
    assert (f["measured"], f["limit_value"], f["level_name"], f["level_source"]) == (
        30.0, 20.0, "chest ctdivol", "test source A")  # fmt: skip
    assert f["details"]["ratio_to_level"] == 3.0
    assert fire(rule("ctdivol_level", factor=3)) is None
    child = fire(rule("ctdivol_level", factor=2), study={**STUDY, "patient_age_years": 10})
    assert child["level_name"] == "child chest" and child["limit_value"] == 4
    # DLP per study: 600 > 1.5 x 350 (official); the proposed 200 only with level_status all
    f = fire(rule("dlp_level", factor=1.5))
    assert (f["measured"], f["limit_value"], f["level_name"]) == (600.0, 525.0, "chest dlp")
    assert fire(rule("dlp_level", factor=2)) is None
    assert fire(rule("dlp_level", factor=2, level_status="all"))["level_name"] == "chest dlp proposed"


def test_activity_band_and_per_kg_with_agent_scope():
    assert fire(rule("activity_band", band_low=150, band_high=450)) is None
    f = fire(rule("activity_band", band_high=350))
    assert (f["measured"], f["limit_value"]) == (400.0, 350)
    assert fire(rule("activity_band", band_high=350, agent="^Tc")) is None  # another agent: out of scope
    low = fire(rule("activity_per_kg_band", band_low=6.0, agent="fluorodeoxy"))
    assert (low["quantity"], low["measured"], low["limit_value"]) == ("activity_per_kg_mbq", 5.7, 6.0)
    with pytest.raises(RuleError, match="band_low"):
        check_rule({"name": "x", "kind": "activity_band", "band_low": 5, "band_high": 1})
    with pytest.raises(RuleError, match="band_low, band_high"):
        check_rule({"name": "x", "kind": "activity_band"})


def test_effective_dose_and_scopes():
    assert fire(rule("effective_dose_above", threshold=8))["measured"] == 8.4
    assert fire(rule("effective_dose_above", threshold=9)) is None
    assert fire(rule("effective_dose_above", threshold=8, standard_name="ct CHEST routine")) is not None
    assert fire(rule("effective_dose_above", threshold=8, standard_name="CT head")) is None
    assert fire(rule("effective_dose_above", threshold=8, scanner_id=7)) is not None
    assert fire(rule("effective_dose_above", threshold=8, scanner_id=8)) is None
    merged = {**STUDY, "scanner_merged_into": 8}  # scanner 7 merged into 8 on the scanners page
    assert fire(rule("effective_dose_above", threshold=8, scanner_id=8), study=merged) is not None
    # NM part missing: CT alone is a lower bound that already exceeds
    partial = {**STUDY, "total_effective_dose_msv": None, "nm_effective_dose_msv": None}
    assert fire(rule("effective_dose_above", threshold=8), study=partial)["measured"] == 8.4


def test_the_scanners_own_dose_check():
    check = {"ctdivol_alert_value_configured": True, "ctdivol_alert_value": 25.0,
             "accumulated_ctdivol_forward_estimate": 30.0, "alert_person_name": "KIM^TECH",
             "alert_reason_for_proceeding": "obese patient", "ctdivol_notification_value": None}  # fmt: skip
    events = [EVENTS[0], {**EVENTS[1], "dose_check": check}]
    f = fire(rule("dose_check"), events=events)
    assert (f["quantity"], f["measured"], f["limit_value"]) == ("dose_check", 30.0, 25.0)
    (hit,) = f["details"]["events"]
    assert (hit["alert_person_name"], hit["alert_reason_for_proceeding"]) == ("KIM^TECH", "obese patient")
    assert hit["irradiation_event_uid"] == "1.2.3.2"
    assert fire(rule("dose_check", dose_check_which="notification"), events=events) is None
    assert fire(rule("dose_check", dose_check_which="any"), events=events)["measured"] == 30.0
    assert fire(rule("dose_check")) is None


def dc(**items):
    return [{**EVENTS[0], "dose_check": items}]


def test_configured_values_or_estimates_alone_are_no_alert():
    # Siemens writes its configured CTDIvol alert value (1000 mGy) on every event; nothing went off
    assert (
        fire(rule("dose_check"), events=dc(ctdivol_alert_value_configured=True, ctdivol_alert_value=1000.0))
        is None
    )
    # Spectrum Dynamics writes forward estimates with nothing configured
    quiet = dc(
        dlp_alert_value_configured=False, accumulated_dlp_forward_estimate=243.0, dlp_forward_estimate=127.0
    )
    assert fire(rule("dose_check", dose_check_which="any"), events=quiet) is None
    # an estimate below its value is no alert; above it is (Toshiba: DLP 251.2 > 100)
    assert (
        fire(rule("dose_check"), events=dc(dlp_alert_value=100.0, accumulated_dlp_forward_estimate=99.0))
        is None
    )
    f = fire(rule("dose_check"), events=dc(dlp_alert_value=100.0, accumulated_dlp_forward_estimate=251.2))
    assert (f["measured"], f["limit_value"]) == (251.2, 100.0)
    # someone proceeded: the alert went off even without the numbers
    f = fire(rule("dose_check"), events=dc(alert_reason_for_proceeding="trauma"))
    assert (f["measured"], f["limit_value"]) == (None, None)
    # a notification: its own pair
    notif = dc(ctdivol_notification_value=50.0, ctdivol_forward_estimate=60.0)
    assert fire(rule("dose_check"), events=notif) is None
    assert fire(rule("dose_check", dose_check_which="notification"), events=notif)["measured"] == 60.0


def test_one_patient_in_a_window():
    day = dt.date(2024, 5, 10)
    history = [
        {
            "study_instance_uid": "a",
            "study_date": day - dt.timedelta(days=100),
            "total_effective_dose_msv": 20.0,
        },
        {
            "study_instance_uid": "b",
            "study_date": day - dt.timedelta(days=400),
            "total_effective_dose_msv": 90.0,
        },
        {"study_instance_uid": "1.2.3", "study_date": day, "total_effective_dose_msv": 8.4},
    ]
    f = fire(rule("patient_studies", max_studies=1, window_days=365), history=history)
    assert (f["measured"], f["limit_value"], f["dedup_key"]) == (
        2,
        1,
        f"{STUDY['patient_pseudonym']}|2024-05-10",
    )
    assert f["details"]["studies"] == ["1.2.3", "a"]
    assert fire(rule("patient_studies", max_studies=2, window_days=365), history=history) is None
    assert fire(rule("patient_studies", max_studies=2, window_days=401), history=history)["measured"] == 3
    f = fire(rule("patient_dose", threshold=28, window_days=365), history=history)
    assert f["measured"] == pytest.approx(28.4)
    assert fire(rule("patient_dose", threshold=28.4, window_days=365), history=history) is None
    assert fire(rule("patient_dose", threshold=1, window_days=365), study={**STUDY, "patient_pseudonym": None},
                history=history) is None  # fmt: skip


def test_rules_checked_and_disabled_rules_skipped():
    with pytest.raises(RuleError, match="threshold: required"):
        check_rule({"name": "x", "kind": "dlp_above"})
    with pytest.raises(RuleError, match="email_to"):
        check_rule({"name": "x", "kind": "dose_check", "email_to": ["not an address"]})
    with pytest.raises(RuleError, match="https"):
        check_rule({"name": "x", "kind": "dose_check", "webhook_url": "http://h/x"}, prod=True)
    with pytest.raises(RuleError, match="agent"):
        check_rule({"name": "x", "kind": "dose_check", "agent": "("})
    on, off = rule("dlp_above", threshold=1), rule("dlp_above", threshold=1, enabled=False)
    assert [r["enabled"] for r, _f in evaluate([on, off], STUDY, EVENTS, ADMINS)] == [True]


REALFILES = Path(__file__).resolve().parents[3].parent / "shared" / "realfiles"


def test_real_vendors_dose_checks():
    """OpenREM's anonymised RDSRs: Toshiba's dose-check alert (DLP forward estimate 251.2 > 100 mGy·cm, proceeded by
    the user) fires; Siemens' and Philips' configured values and Spectrum Dynamics' bare estimates do not."""
    from nmdose.dose.parse import parse_file

    def events(name):
        return parse_file(str(REALFILES / name))["ct"]["events"]

    assert REALFILES.is_dir(), f"{REALFILES}: the real files are missing"
    f = evaluate_rule(rule("dose_check"), STUDY, events("openrem-0.10.0/CT-RDSR-Toshiba_DoseCheck.dcm"), [])
    assert (f["measured"], f["limit_value"]) == (251.2, 100.0)
    assert [e["alert_person_name"] for e in f["details"]["events"]] == ["Luuk", "Luuk"]
    for name in ("openrem-0.10.0/CT-RDSR-Siemens-Multi-1.dcm", "openrem-0.10.0/CT-RDSR-Philips_BigBore4DCT.dcm",
                 "openrem-develop/CT-RDSR-SpectrumDynamics.dcm"):  # fmt: skip
        for which in ("alert", "notification", "any"):
            assert (
                evaluate_rule(rule("dose_check", dose_check_which=which), STUDY, events(name), []) is None
            ), name
