"""merge_study: cumulative/continued RDSRs, RDSR over ESR, RRDSR injection time over PET header."""

from __future__ import annotations

import datetime as dt

from pydicom.uid import generate_uid

from nmdose.dose.parse import merge_study, parse_file
from nmdose.simulate import rdsr as R


def test_cumulative_rdsrs_merge_by_event_uid_without_double_counting(files):
    study = R.DoseStudyInfo()
    a, b, c = (R.CtAcquisition(dlp_mgycm=d) for d in (100.0, 200.0, 300.0))
    parsed = [parse_file(files.ct(events, study=study)) for events in ([a], [a, b], [a, b, c])]
    merged = merge_study(parsed)
    assert merged["ct"]["source_kind"] == "ct_rdsr"
    assert [e["irradiation_event_uid"] for e in merged["ct"]["events"]] == [
        a.irradiation_event_uid, b.irradiation_event_uid, c.irradiation_event_uid]  # fmt: skip
    assert merged["ct"]["total_dlp_mgycm"] == 600.0


def test_continued_rdsr_for_reopened_study_adds_its_events(files):
    study = R.DoseStudyInfo()
    first = [R.CtAcquisition(dlp_mgycm=150.0), R.CtAcquisition(dlp_mgycm=250.0)]
    continued = [R.CtAcquisition(dlp_mgycm=50.0)]
    merged = merge_study(
        [parse_file(files.ct(first, study=study)), parse_file(files.ct(continued, study=study))]
    )
    assert merged["ct"]["total_events"] == 3
    assert merged["ct"]["total_dlp_mgycm"] == 450.0


def test_rdsr_is_preferred_over_esr_for_the_same_study(files):
    study = R.DoseStudyInfo()
    events = [R.CtAcquisition(dlp_mgycm=120.0)]
    esr = parse_file(files.ct(events, study=study, sop_class="enhanced_sr"))
    rdsr = parse_file(files.ct(events, study=study))
    merged = merge_study([esr, rdsr])
    assert merged["ct"]["source_kind"] == "ct_rdsr" and merged["ct"]["total_events"] == 1
    assert any("not used" in u for s in merged["sources"] for u in s["used_for"])


def test_rrdsr_injection_time_wins_over_pet_header_and_difference_is_kept(files):
    study = R.DoseStudyInfo()
    sr_time = dt.datetime(2024, 3, 15, 9, 0, 0)
    header_time = dt.datetime(2024, 3, 15, 9, 2, 30)
    rrdsr = parse_file(files.rrdsr(R.RadiopharmaceuticalAdministration(start_datetime=sr_time), study=study))
    series = generate_uid()
    headers = []
    for _ in range(3):  # three images of one series: one administration
        ds = R.pet_nm_image_header(study, R.RadiopharmaceuticalAdministration(start_datetime=header_time),
                                   modality="PT", series_uid=series, sop_uid=generate_uid())  # fmt: skip
        headers.append(parse_file(R.save(ds, files.path("pt"))))
    merged = merge_study([*headers, rrdsr])
    assert len(merged["radiopharmaceutical"]) == 1
    adm = merged["radiopharmaceutical"][0]
    assert adm["source"] == "rrdsr"
    assert adm["start_datetime"] == "2024-03-15T09:00:00"
    assert adm["header_start_datetime"] == "2024-03-15T09:02:30"
    assert adm["injection_time_difference_s"] == 150.0


def test_header_only_study_keeps_one_administration_per_series(files):
    study = R.DoseStudyInfo()
    parsed = [parse_file(files.image("PT", study=study)) for _ in range(4)]
    merged = merge_study(parsed)
    assert len(merged["radiopharmaceutical"]) == 1
    assert merged["radiopharmaceutical"][0]["activity_mbq"] == 370.0


def test_same_instance_twice_is_read_once(files):
    path = files.ct([R.CtAcquisition(dlp_mgycm=100.0)])
    merged = merge_study([parse_file(path), parse_file(path)])
    assert merged["ct"]["total_events"] == 1 and merged["ct"]["total_dlp_mgycm"] == 100.0
