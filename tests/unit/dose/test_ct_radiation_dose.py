"""CT Radiation Dose reader (TID 10011-10015) and its real-world quirks, on synthetic files."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from nmdose.dose.parse import parse_file
from nmdose.simulate import rdsr as R


def only_event(result: dict) -> dict:
    assert result["status"] == "ok", result
    assert len(result["ct"]["events"]) == 1
    return result["ct"]["events"][0]


def test_rdsr_values_come_out_in_contract_units(files):
    event = R.CtAcquisition(
        acquisition_protocol="Thorax std",
        target_region="chest",
        ctdivol_mgy=12.3,
        dlp_mgycm=456.7,
        phantom="body32",
        scanning_length_mm=321.5,
        exposure_time_s=4.2,
        pitch=0.984,
        nominal_single_collimation_mm=0.6,
        nominal_total_collimation_mm=38.4,
        sources=[R.XraySource("A", 110, 180, 250, 0.33)],
    )
    result = parse_file(files.ct([event], total_dlp_mgycm=456.7))
    e = only_event(result)
    assert result["kind"] == "ct_rdsr"
    assert result["ct"]["total_dlp_mgycm"] == 456.7
    assert result["ct"]["total_events"] == 1
    assert e["ctdivol_mgy"] == 12.3
    assert e["dlp_mgycm"] == 456.7
    assert e["phantom"] == "body32" and e["phantom_code"] == "DCM:113691"
    assert e["target_region"] == "Chest" and e["target_region_code"] == "SCT:51185008"
    assert e["acquisition_type"] == "Spiral Acquisition" and e["acquisition_type_code"] == "SCT:116152004"
    assert e["acquisition_protocol"] == "Thorax std"
    assert e["scanning_length_mm"] == 321.5
    assert e["exposure_time_s"] == 4.2
    assert e["pitch"] == 0.984
    assert e["nominal_single_collimation_mm"] == 0.6
    assert e["nominal_total_collimation_mm"] == 38.4
    assert e["sources"] == [
        {"id": "A", "kvp": 110.0, "max_tube_current_ma": 250.0, "tube_current_ma": 180.0,
         "exposure_time_per_rotation_s": 0.33}
    ]  # fmt: skip
    assert result["warnings"] == []


def test_every_contract_key_is_present_with_null_for_missing(files):
    result = parse_file(files.ct([R.CtAcquisition(pitch=None, acquisition_protocol=None)]))
    for key in ("file", "status", "error", "warnings", "kind", "sop_instance_uid", "study_instance_uid",
                "series_instance_uid", "modality", "manufacturer", "model_name", "station_name",
                "device_serial_number", "study_date", "study_description", "accession_number", "patient",
                "protocol", "ct", "radiopharmaceutical"):  # fmt: skip
        assert key in result
    e = only_event(result)
    assert e["pitch"] is None and e["acquisition_protocol"] is None
    assert set(e["dose_check"]) >= {"dlp_alert_value", "notification_reason_for_proceeding"}
    assert result["study_date"] == "2024-03-15"


def test_dual_source_event_keeps_kvp_per_source(files):
    event = R.CtAcquisition(
        sources=[R.XraySource("A", 140, 120, 200, 0.28), R.XraySource("B", 80, 400, 500, 0.28)]
    )
    e = only_event(parse_file(files.ct([event])))
    assert [(s["id"], s["kvp"], s["tube_current_ma"]) for s in e["sources"]] == [
        ("A", 140, 120),
        ("B", 80, 400),
    ]


def test_enhanced_and_comprehensive_sr_titled_113701_read_as_ct_esr(files):
    for sop_class in ("enhanced_sr", "comprehensive_sr"):
        result = parse_file(files.ct([R.CtAcquisition(ctdivol_mgy=7.5)], sop_class=sop_class))
        assert result["kind"] == "ct_esr"
        assert only_event(result)["ctdivol_mgy"] == 7.5


def test_legacy_srt_codes_match_their_sct_equivalents(files):
    e = only_event(parse_file(files.ct([R.CtAcquisition(target_region="head")], legacy_srt_codes=True)))
    assert e["target_region"] == "Head" and e["target_region_code"] == "SCT:69536005"
    assert e["acquisition_type_code"] == "SCT:116152004"


@pytest.mark.parametrize(
    ("unit", "expected_warning"),
    [("mGycm", False), ("mGy.cm", False), ("mGy*cm", False), ("Gy.cm", False), ("cGy.cm", False)],
)
def test_non_ucum_dlp_units_are_converted(files, unit, expected_warning):
    e = only_event(parse_file(files.ct([R.CtAcquisition(dlp_mgycm=250.0)], dlp_unit=unit)))
    assert e["dlp_mgycm"] == pytest.approx(250.0)


def test_one_cgy_cm_is_ten_mgy_cm(files):
    result = parse_file(files.ct([R.CtAcquisition(dlp_mgycm=10.0)], dlp_unit="cGy.cm"))
    assert result["ct"]["events"][0]["dlp_mgycm"] == pytest.approx(10.0)
    assert result["ct"]["total_dlp_mgycm"] == pytest.approx(10.0)


def test_unknown_unit_is_warned_and_not_stored(files):
    result = parse_file(files.ct([R.CtAcquisition(dlp_mgycm=250.0)], dlp_unit="mGy/cm"))
    e = only_event(result)
    assert e["dlp_mgycm"] is None
    assert any("DLP" in w and "unknown unit" in w and result["file"] in w for w in result["warnings"])


def test_cgy_ctdivol_converted(files):
    e = only_event(parse_file(files.ct([R.CtAcquisition(ctdivol_mgy=15.0)], ctdivol_unit="cGy")))
    assert e["ctdivol_mgy"] == pytest.approx(15.0)


def test_non_ucum_scheme_with_known_spelling_reads(files):
    e = only_event(parse_file(files.ct([R.CtAcquisition(ctdivol_mgy=3.3)], unit_scheme="99PHI")))
    assert e["ctdivol_mgy"] == 3.3


def test_missing_units_are_not_guessed(files):
    result = parse_file(files.ct([R.CtAcquisition(ctdivol_mgy=3.3, pitch=1.2)], omit_units=True))
    e = only_event(result)
    assert e["ctdivol_mgy"] is None
    assert e["pitch"] == 1.2  # dimensionless: harmless
    assert any("Mean CTDIvol" in w and "no unit" in w for w in result["warnings"])


def test_missing_content_template_sequence_still_reads(files):
    result = parse_file(files.ct([R.CtAcquisition(ctdivol_mgy=9.1)], omit_template=True))
    assert only_event(result)["ctdivol_mgy"] == 9.1
    assert any("ContentTemplateSequence" in w for w in result["warnings"])


def test_empty_target_region_gives_null_and_a_warning(files):
    result = parse_file(files.ct([R.CtAcquisition()], empty_target_region=True))
    e = only_event(result)
    assert e["target_region"] is None and e["target_region_code"] is None
    assert any("Target Region" in w and "empty" in w for w in result["warnings"])


def test_procedure_reported_without_its_child_is_warned_not_fatal(files):
    result = parse_file(files.ct([R.CtAcquisition(ctdivol_mgy=4.4)], procedure_reported_without_child=True))
    assert only_event(result)["ctdivol_mgy"] == 4.4
    assert any("Has Intent" in w for w in result["warnings"])


def test_two_valued_decimal_string_uses_first_value_with_warning(files):
    result = parse_file(files.ct([R.CtAcquisition(ctdivol_mgy=12.3)], two_valued_ds=True))
    assert only_event(result)["ctdivol_mgy"] == 12.3
    assert any("2 values" in w for w in result["warnings"])


def test_slash_in_private_container_does_not_fail_the_file(files):
    result = parse_file(files.ct([R.CtAcquisition(ctdivol_mgy=5.5)], private_slash_value=True))
    assert only_event(result)["ctdivol_mgy"] == 5.5


def test_zero_length_sequences_are_tolerated(files):
    result = parse_file(files.ct([R.CtAcquisition(ctdivol_mgy=6.6)], zero_length_sequences=True))
    assert only_event(result)["ctdivol_mgy"] == 6.6


def test_localizer_without_ctdivol_keeps_null(files):
    topogram = R.CtAcquisition(acquisition_protocol="Topogram", acquisition_type="constant_angle",
                               ctdivol_mgy=None, dlp_mgycm=None, pitch=None)  # fmt: skip
    result = parse_file(files.ct([topogram, R.CtAcquisition(ctdivol_mgy=8.0)]))
    events = result["ct"]["events"]
    assert events[0]["acquisition_type"] == "Constant Angle Acquisition"
    assert events[0]["ctdivol_mgy"] is None and events[0]["dlp_mgycm"] is None
    assert events[1]["ctdivol_mgy"] == 8.0
    assert not any("CTDIvol" in w for w in result["warnings"])


def test_dose_check_alert_and_notification_are_read(files):
    check = R.DoseCheck(
        dlp_alert_value_configured=True, ctdivol_alert_value_configured=False, dlp_alert_value=1000,
        accumulated_dlp_forward_estimate=1100, alert_reason_for_proceeding="Obese patient",
        alert_person_name="Kim^Minsu", dlp_notification_value_configured=True, dlp_notification_value=500,
        dlp_forward_estimate=550, ctdivol_notification_value=50, ctdivol_forward_estimate=55,
        notification_reason_for_proceeding="Protocol",
    )  # fmt: skip
    dc = only_event(parse_file(files.ct([R.CtAcquisition(dose_check=check)])))["dose_check"]
    assert dc["dlp_alert_value_configured"] is True and dc["ctdivol_alert_value_configured"] is False
    assert dc["dlp_alert_value"] == 1000 and dc["accumulated_dlp_forward_estimate"] == 1100
    assert dc["alert_reason_for_proceeding"] == "Obese patient" and dc["alert_person_name"] == "Kim^Minsu"
    assert dc["dlp_notification_value"] == 500 and dc["dlp_forward_estimate"] == 550
    assert dc["ctdivol_notification_value"] == 50 and dc["ctdivol_forward_estimate"] == 55
    assert dc["notification_reason_for_proceeding"] == "Protocol"


def test_utf8_bytes_under_latin1_declaration_are_repaired(files):
    study = R.DoseStudyInfo(study_description="흉부 CT", protocol_name="Tête")
    result = parse_file(files.ct([R.CtAcquisition()], study=study, utf8_as_latin1=True))
    assert result["study_description"] == "흉부 CT"
    assert result["protocol"]["protocol_name"] == "Tête"
    assert any("UTF-8" in w for w in result["warnings"])


def test_iso_ir_192_korean_text_reads(files):
    study = R.DoseStudyInfo(study_description="PET-CT 전신", specific_character_set="ISO_IR 192")
    event = R.CtAcquisition(acquisition_protocol="흉부 저선량")
    result = parse_file(files.ct([event], study=study))
    assert result["study_description"] == "PET-CT 전신"
    assert only_event(result)["acquisition_protocol"] == "흉부 저선량"
    assert result["warnings"] == []


def test_negative_ctdivol_is_not_stored(files):
    result = parse_file(files.ct([R.CtAcquisition(ctdivol_mgy=-3.0)]))
    assert only_event(result)["ctdivol_mgy"] is None
    assert any("implausible" in w and "Mean CTDIvol" in w for w in result["warnings"])


@pytest.mark.skipif(shutil.which("dsrdump") is None, reason="DCMTK dsrdump not installed")
def test_built_objects_pass_dsrdump_without_content_tree_errors(files):
    built = [
        files.ct([R.CtAcquisition(acquisition_type="constant_angle", ctdivol_mgy=None, dlp_mgycm=None, pitch=None),
                  R.CtAcquisition(dose_check=R.DoseCheck(dlp_alert_value_configured=True, dlp_alert_value=900,
                                                         alert_person_name="Lee^S")),
                  R.CtAcquisition(sources=[R.XraySource("A"), R.XraySource("B", kvp=100)])]),
        files.ct(sop_class="enhanced_sr"),
        files.ct(sop_class="comprehensive_sr"),
        files.ct(legacy_srt_codes=True),
        files.ct(omit_template=True),
        files.ct(dlp_unit="cGy.cm"),
        files.rrdsr(),
        files.rrdsr(legacy_srt_codes=True, activity_unit="Bq"),
    ]  # fmt: skip
    for path in built:
        proc = subprocess.run(["dsrdump", str(path)], capture_output=True, text=True, timeout=30)
        assert proc.returncode == 0, proc.stderr
        assert proc.stderr.strip() == "", f"{path.name}: {proc.stderr}"
