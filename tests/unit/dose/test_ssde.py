"""Size-specific dose estimate (TID 10013 CT Dose, AAPM 204/220) and the patient size it used (issue 16 item 5)."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from nmdose.dose.parse import parse_file
from nmdose.simulate import rdsr as R


def only_event(result: dict) -> dict:
    assert result["status"] == "ok", result
    (event,) = result["ct"]["events"]
    return event


def test_ssde_with_water_equivalent_diameter_is_read_beside_ctdivol(files):
    event = only_event(parse_file(files.ct([R.CtAcquisition(
        ctdivol_mgy=8.0, ssde_mgy=10.4, ssde_method="from_wed", water_equivalent_diameter_mm=265.0,
        wed_method="localizer")])))  # fmt: skip
    assert event["ctdivol_mgy"] == 8.0
    assert event["ssde_mgy"] == pytest.approx(10.4)
    assert event["ssde_method"] == "Estimated from Water Equivalent Diameter"
    assert event["ssde_method_code"] == "DCM:113988"
    assert event["water_equivalent_diameter_mm"] == pytest.approx(265.0)  # written as 26.5 cm
    assert event["water_equivalent_diameter_method"] == "Water Equivalent Diameter From Localizer"
    assert event["water_equivalent_diameter_method_code"] == "DCM:113984"
    assert (event["ssde_size_mm"], event["ssde_size_kind"]) == (
        pytest.approx(265.0),
        "water_equivalent_diameter",
    )


def test_ssde_without_method_uses_the_diameter_present(files):
    event = only_event(parse_file(files.ct([R.CtAcquisition(ssde_mgy=11.0, effective_diameter_mm=280.0,
                                                            lateral_dimension_mm=330.0, ap_dimension_mm=240.0)])))  # fmt: skip
    assert event["ssde_method"] is None
    assert (event["ssde_size_mm"], event["ssde_size_kind"]) == (pytest.approx(280.0), "effective_diameter")
    assert event["lateral_dimension_mm"] == pytest.approx(330.0)
    assert event["ap_dimension_mm"] == pytest.approx(240.0)


def test_ssde_method_decides_the_size_used(files):
    event = only_event(parse_file(files.ct([R.CtAcquisition(
        ssde_mgy=11.0, ssde_method="aapm204_lateral_plus_ap", effective_diameter_mm=280.0,
        lateral_dimension_mm=330.0, ap_dimension_mm=240.0, water_equivalent_diameter_mm=250.0)])))  # fmt: skip
    assert event["ssde_method"] == "AAPM 204 Sum of Lateral and AP Dimension"
    assert (event["ssde_size_mm"], event["ssde_size_kind"]) == (pytest.approx(570.0), "lateral_plus_ap")


def test_no_ssde_in_the_file_gives_null_and_no_warning(files):
    result = parse_file(files.ct([R.CtAcquisition()]))
    event = only_event(result)
    for key in ("ssde_mgy", "ssde_method", "ssde_size_mm", "ssde_size_kind", "water_equivalent_diameter_mm",
                "effective_diameter_mm", "lateral_dimension_mm", "ap_dimension_mm"):  # fmt: skip
        assert event[key] is None, key
    assert result["warnings"] == []


@pytest.mark.parametrize("ssde", [0.0, -5.0, 81.0])
def test_implausible_ssde_is_warned_and_not_stored(files, ssde):
    result = parse_file(
        files.ct([R.CtAcquisition(ctdivol_mgy=8.0, ssde_mgy=ssde, water_equivalent_diameter_mm=250)])
    )
    event = only_event(result)
    assert event["ssde_mgy"] is None and event["ssde_size_mm"] is None
    assert event["water_equivalent_diameter_mm"] == pytest.approx(250.0)  # the size itself is kept
    assert any("Size Specific Dose Estimate" in w and "not stored" in w for w in result["warnings"])


def test_ssde_at_ten_times_ctdivol_is_kept(files):
    event = only_event(parse_file(files.ct([R.CtAcquisition(ctdivol_mgy=2.0, ssde_mgy=20.0)])))
    assert event["ssde_mgy"] == 20.0


def test_default_builder_output_has_no_size_items(files):
    """The new builder fields default to nothing: existing synthetic objects are unchanged."""
    import pydicom

    ds = pydicom.dcmread(files.ct())
    text = str(ds)
    for code in ("113930", "113931", "113932", "113933", "113980", "370129005"):
        assert code not in text


@pytest.mark.skipif(shutil.which("dsrdump") is None, reason="DCMTK dsrdump not installed")
def test_ssde_objects_pass_dsrdump(files):
    path = files.ct([R.CtAcquisition(ssde_mgy=10.4, ssde_method="from_wed", water_equivalent_diameter_mm=265.0,
                                     wed_method="localizer", effective_diameter_mm=280.0,
                                     lateral_dimension_mm=330.0, ap_dimension_mm=240.0)])  # fmt: skip
    proc = subprocess.run(["dsrdump", str(path)], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip() == "", proc.stderr
