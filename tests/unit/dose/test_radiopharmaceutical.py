"""Radiopharmaceutical Radiation Dose SR (TID 10021), PET/NM image headers and the Bq/MBq rule."""

from __future__ import annotations

import datetime as dt

import pytest

from nmdose.dose.parse import parse_file
from nmdose.dose.pet_image_header import activity_in_mbq
from nmdose.simulate import rdsr as R


def only_administration(result: dict) -> dict:
    assert result["status"] == "ok", result
    assert len(result["radiopharmaceutical"]) == 1
    return result["radiopharmaceutical"][0]


def test_rrdsr_administration_is_read_with_codes_and_iso_times(files):
    adm = R.RadiopharmaceuticalAdministration(
        agent="fdg", radionuclide="F18", activity_mbq=351.2, start_datetime=dt.datetime(2024, 3, 15, 9, 5, 30),
        stop_datetime=dt.datetime(2024, 3, 15, 9, 6), pre_measured_activity_mbq=370.0, post_measured_activity_mbq=12.5,
    )  # fmt: skip
    result = parse_file(files.rrdsr(adm))
    a = only_administration(result)
    assert result["kind"] == "radiopharmaceutical_rdsr"
    assert a["agent"] == "Fluorodeoxyglucose F^18^" and a["agent_code"] == "SCT:35321007"
    assert a["radionuclide"] == "^18^Fluorine" and a["radionuclide_code"] == "SCT:77004003"
    assert a["activity_mbq"] == 351.2
    assert a["start_datetime"] == "2024-03-15T09:05:30" and a["stop_datetime"] == "2024-03-15T09:06:00"
    assert a["half_life_s"] == 6586.2
    assert a["route"] == "Intravenous route" and a["route_code"] == "SCT:47625008"
    assert a["pre_measured_activity_mbq"] == 370.0 and a["post_measured_activity_mbq"] == 12.5
    assert a["activity_rule"] == "rrdsr_units"
    assert result["patient"] == {"age_years": 55.0, "sex": "M", "weight_kg": 70.0, "height_m": 1.7}


def test_rrdsr_legacy_srt_codes_read(files):
    a = only_administration(parse_file(files.rrdsr(legacy_srt_codes=True)))
    assert a["agent_code"] == "SCT:35321007" and a["radionuclide_code"] == "SCT:77004003"
    assert a["activity_mbq"] == 370.0


@pytest.mark.parametrize(
    ("unit", "value_mbq"), [("Bq", 370.0), ("kBq", 370.0), ("GBq", 370.0), ("mCi", 370.0)]
)
def test_rrdsr_activity_units_are_converted_to_mbq(files, unit, value_mbq):
    adm = R.RadiopharmaceuticalAdministration(activity_mbq=value_mbq)
    a = only_administration(parse_file(files.rrdsr(adm, activity_unit=unit)))
    assert a["activity_mbq"] == pytest.approx(value_mbq)


def test_absurd_activity_is_not_stored(files):
    result = parse_file(files.rrdsr(R.RadiopharmaceuticalAdministration(activity_mbq=1e9)))
    assert only_administration(result)["activity_mbq"] is None
    assert any("implausible" in w and "Administered activity" in w for w in result["warnings"])


def test_pet_header_total_dose_in_bq_is_converted(files):
    result = parse_file(files.image("PT", R.RadiopharmaceuticalAdministration(activity_mbq=370.0)))
    a = only_administration(result)
    assert result["kind"] == "pet_image"
    assert a["activity_mbq"] == pytest.approx(370.0) and a["activity_rule"] == "pt_header_bq"
    assert a["start_datetime"] == "2024-03-15T09:00:00"
    assert a["positron_fraction"] == pytest.approx(0.9673)
    assert result["warnings"] == []


def test_pet_header_holding_mbq_is_recognised_by_magnitude(files):
    result = parse_file(
        files.image("PT", R.RadiopharmaceuticalAdministration(activity_mbq=370.0), total_dose_unit="MBq")
    )
    a = only_administration(result)
    assert a["activity_mbq"] == pytest.approx(370.0)
    assert a["activity_rule"] == "pt_header_mbq_by_nuclide_range"
    assert any("Radionuclide Total Dose" in w for w in result["warnings"])


def test_nm_header_holds_mbq(files):
    adm = R.RadiopharmaceuticalAdministration("mdp", "Tc99m", 740.0)
    a = only_administration(parse_file(files.image("NM", adm)))
    assert a["activity_mbq"] == 740.0 and a["activity_rule"] == "nm_header_mbq"
    assert a["radionuclide_code"] == "SCT:72454006"


def test_nm_header_holding_bq_is_recognised(files):
    adm = R.RadiopharmaceuticalAdministration("mdp", "Tc99m", 740.0)
    result = parse_file(files.image("NM", adm, total_dose_unit="Bq"))
    a = only_administration(result)
    assert a["activity_mbq"] == pytest.approx(740.0) and a["activity_rule"] == "nm_header_bq_by_nuclide_range"


@pytest.mark.parametrize(
    ("value", "modality", "nuclide", "mbq", "rule"),
    [
        (3.7e8, "PT", "F18", 370.0, "pt_header_bq"),
        (370.0, "PT", "F18", 370.0, "pt_header_mbq_by_nuclide_range"),
        (370.0, "PT", None, 370.0, "pt_header_mbq_by_magnitude"),
        (740.0, "NM", "Tc99m", 740.0, "nm_header_mbq"),
        (7.4e8, "NM", "Tc99m", 740.0, "nm_header_bq_by_nuclide_range"),
        (5550.0, "NM", "I131", 5550.0, "nm_header_mbq"),
    ],
)
def test_activity_rule_by_modality_magnitude_and_nuclide(value, modality, nuclide, mbq, rule):
    got, got_rule, _ = activity_in_mbq(value, modality, nuclide)
    assert got == pytest.approx(mbq) and got_rule == rule


def test_start_time_without_datetime_or_acquisition_date_uses_the_study_date(files):
    adm = R.RadiopharmaceuticalAdministration(start_datetime=dt.datetime(2024, 3, 15, 9, 0))
    a = only_administration(parse_file(files.image("PT", adm, start_time_only=True)))
    assert a["start_datetime"] == "2024-03-15T09:00:00"
    assert a["start_datetime_source"] == "header_start_time+StudyDate"


def test_start_time_goes_on_the_acquisition_date_not_the_series_date(files):
    """A series reconstructed (or re-sent) the next day carries that day as SeriesDate: the injection was on the
    acquisition's day (issue 16 item 5; the former rule took SeriesDate first)."""
    study = R.DoseStudyInfo(study_date="20240315", study_time="080000")
    adm = R.RadiopharmaceuticalAdministration(start_datetime=dt.datetime(2024, 3, 15, 9, 0))
    a = only_administration(parse_file(files.image(
        "PT", adm, study=study, start_time_only=True, series_datetime=dt.datetime(2024, 3, 16, 14, 0),
        acquisition_datetime=dt.datetime(2024, 3, 15, 10, 5))))  # fmt: skip
    assert a["start_datetime"] == "2024-03-15T09:00:00"
    assert a["start_datetime_source"] == "header_start_time+AcquisitionDate"


def test_start_time_before_a_late_study_time_is_not_moved_when_the_acquisition_time_is_known(files):
    """StudyTime can be the registration (before the injection); the acquisition time decides the day."""
    study = R.DoseStudyInfo(study_date="20240315", study_time="083000")
    adm = R.RadiopharmaceuticalAdministration(start_datetime=dt.datetime(2024, 3, 15, 9, 0))
    result = parse_file(files.image("PT", adm, study=study, start_time_only=True,
                                    acquisition_datetime=dt.datetime(2024, 3, 15, 10, 0)))  # fmt: skip
    a = only_administration(result)
    assert a["start_datetime"] == "2024-03-15T09:00:00"
    assert a["start_datetime_source"] == "header_start_time+AcquisitionDate"
    assert not any("day before" in w for w in result["warnings"])


def test_start_time_after_the_acquisition_time_is_the_previous_day_and_recorded(files):
    study = R.DoseStudyInfo(study_date="20240316", study_time="000500")
    adm = R.RadiopharmaceuticalAdministration(start_datetime=dt.datetime(2024, 3, 15, 23, 40))
    result = parse_file(files.image("PT", adm, study=study, start_time_only=True,
                                    acquisition_datetime=dt.datetime(2024, 3, 16, 0, 45)))  # fmt: skip
    a = only_administration(result)
    assert a["start_datetime"] == "2024-03-15T23:40:00"
    assert a["start_datetime_source"] == "header_start_time+AcquisitionDate-1day"
    assert any("after AcquisitionTime" in w and "day before" in w for w in result["warnings"])


def test_injection_before_midnight_imaged_after_is_placed_on_the_previous_day(files):
    study = R.DoseStudyInfo(study_date="20240316", study_time="003000")
    adm = R.RadiopharmaceuticalAdministration(start_datetime=dt.datetime(2024, 3, 15, 23, 40))
    result = parse_file(files.image("PT", adm, study=study, start_time_only=True))
    assert only_administration(result)["start_datetime"] == "2024-03-15T23:40:00"
