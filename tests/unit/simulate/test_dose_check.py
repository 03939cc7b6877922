"""The simulation's scanner dose-check alerts (TID 10015): a selected study of the department's scanners carries
the alert and notification on its highest-CTDIvol event, and the parser reads them back; hand-built test studies
(manufacturer "SIMULATED") and unselected studies are never touched."""

from __future__ import annotations

from pydicom.uid import generate_uid

from nmdose.dose.parse import parse_file
from nmdose.simulate import dose_check
from nmdose.simulate import rdsr as R


def _uid(selected: bool) -> str:
    while True:
        uid = generate_uid()
        if dose_check.selected(uid) == selected:
            return uid


def _events(tmp_path, manufacturer: str, uid: str) -> list[dict]:
    info = R.DoseStudyInfo(study_instance_uid=uid, manufacturer=manufacturer)
    events = [R.CtAcquisition(acquisition_protocol="Topogram", ctdivol_mgy=None, dlp_mgycm=None),
              R.CtAcquisition(acquisition_protocol="Body low", ctdivol_mgy=6.0),
              R.CtAcquisition(acquisition_protocol="Body high", ctdivol_mgy=25.0)]  # fmt: skip
    ds = R.ct_radiation_dose_sr(info, events, series_uid=generate_uid(), sop_uid=generate_uid())
    return parse_file(str(R.save(ds, tmp_path / f"{uid}.dcm")))["ct"]["events"]


def test_a_selected_department_study_carries_the_scanners_alert(tmp_path):
    events = _events(tmp_path, "SIEMENS", _uid(True))
    checks = [e["dose_check"] for e in events]
    assert [any(v is not None for v in c.values()) for c in checks] == [False, False, True]
    c = checks[2]
    assert (c["ctdivol_alert_value"], c["accumulated_ctdivol_forward_estimate"]) == (20.0, 25.0)
    assert (c["ctdivol_notification_value"], c["ctdivol_forward_estimate"]) == (15.0, 25.0)
    assert (
        c["alert_person_name"] == dose_check.PERSON and c["alert_reason_for_proceeding"] == dose_check.REASON
    )
    assert c["ctdivol_alert_value_configured"] is True and c["dlp_alert_value_configured"] is False


def test_test_studies_and_unselected_studies_are_untouched(tmp_path):
    for manufacturer, uid in (("SIMULATED", _uid(True)), ("SIEMENS", _uid(False))):
        events = _events(tmp_path, manufacturer, uid)
        assert all(not any(v is not None for v in e["dose_check"].values()) for e in events)


def test_about_three_percent_are_chosen_and_always_the_same():
    uids = [f"1.2.826.0.1.3680043.9.{i}" for i in range(20_000)]
    share = sum(map(dose_check.selected, uids)) / len(uids)
    assert 0.025 < share < 0.035
    assert [dose_check.selected(u) for u in uids[:50]] == [dose_check.selected(u) for u in uids[:50]]


def test_the_generated_department_carries_them_on_the_selected_studies_only(tmp_path):
    """The simulation's own RDSRs (seed 5, 6 studies: one PET-CT is selected): a dose check exactly on the studies
    the hash selects; the demo's seed-42 archive of 200 studies has several such CT studies."""
    from datetime import date

    from nmdose.simulate import generate, generator

    generate(tmp_path / "sim", studies=6, years=2, seed=5, today=date(2025, 6, 30))
    with_check, ct_studies = set(), set()
    for path in sorted((tmp_path / "sim" / "studies").rglob("*.dcm")):
        parsed = parse_file(str(path))
        events = (parsed.get("ct") or {}).get("events") or []
        if events and parsed.get("kind") in ("ct_rdsr", "ct_esr"):
            ct_studies.add(parsed["study_instance_uid"])
        if any(any(v is not None for v in (e.get("dose_check") or {}).values()) for e in events):
            with_check.add(parsed["study_instance_uid"])
    assert len(with_check) == 1 and with_check == {u for u in ct_studies if dose_check.selected(u)}
    demo = [
        p
        for p in generator._plan(42, 200, 10, date(2026, 1, 1))
        if p.ct_protocol and dose_check.selected(p.uid)
    ]
    assert len(demo) >= 3
