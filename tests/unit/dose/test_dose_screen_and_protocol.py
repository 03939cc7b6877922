"""Philips Dose Info secondary capture and the protocol reader."""

from __future__ import annotations

from pydicom.uid import generate_uid

from nmdose.dose.parse import parse_file
from nmdose.simulate import rdsr as R


def test_philips_dose_info_reads_events_and_private_total_dlp(files):
    events = [R.CtAcquisition(acquisition_protocol="Surview", acquisition_type="constant_angle", ctdivol_mgy=0.1,
                              dlp_mgycm=2.0),
              R.CtAcquisition(ctdivol_mgy=9.8, dlp_mgycm=400.0, exposure_time_s=6.5,
                              sources=[R.XraySource(kvp=120, tube_current_ma=250)])]  # fmt: skip
    path = R.save(R.philips_dose_info(R.DoseStudyInfo(), events, series_uid=generate_uid(), sop_uid=generate_uid()),
                  files.path("philips"))  # fmt: skip
    result = parse_file(path)
    assert result["status"] == "ok" and result["kind"] == "ct_dose_screen"
    assert result["ct"]["total_dlp_mgycm"] == 402.0
    assert result["ct"]["total_events"] == 2
    second = result["ct"]["events"][1]
    assert second["ctdivol_mgy"] == 9.8 and second["exposure_time_s"] == 6.5
    assert second["sources"][0]["kvp"] == 120 and second["sources"][0]["tube_current_ma"] == 250
    assert second["acquisition_type"] == "Spiral Acquisition"


def test_protocol_fields_come_from_the_header(files):
    study = R.DoseStudyInfo(protocol_name="WB FDG", body_part_examined="WHOLEBODY", requested_procedure="PET-CT WB",
                            performed_procedure="PET-CT Whole Body")  # fmt: skip
    result = parse_file(files.image("PT", study=study, series_description="PET AC"))
    assert result["protocol"] == {
        "protocol_name": "WB FDG",
        "series_description": "PET AC",
        "requested_procedure": "PET-CT WB",
        "performed_procedure": "PET-CT Whole Body",
        "body_part": "WHOLEBODY",
    }


def test_ct_acquisition_protocol_and_target_region_per_event(files):
    events = [R.CtAcquisition(acquisition_protocol="Head std", target_region="head"),
              R.CtAcquisition(acquisition_protocol="CAP", target_region="chest_abdomen_pelvis")]  # fmt: skip
    result = parse_file(files.ct(events))
    got = [
        (e["acquisition_protocol"], e["target_region"], e["target_region_code"])
        for e in result["ct"]["events"]
    ]
    assert got == [("Head std", "Head", "SCT:69536005"),
                   ("CAP", "Chest, Abdomen and Pelvis", "SCT:416775004")]  # fmt: skip
