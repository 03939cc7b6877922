"""Capped answers: Orthanc's 0xFE00 error, silent caps, findscu output."""

from datetime import date

from nmdose.census.finder import (
    is_capped_error,
    parse_findscu_output,
    silently_capped,
    study_query,
)
from nmdose.census.modalities import split_modalities
from nmdose.census.ranges import DateRange, TimeRange


def test_orthanc_fe00_error_means_capped_not_a_dead_pacs():
    msg = 'researchPACS: POST /modalities/simulationPACS/query -> HTTP 500: C-FIND SCU to AET "NMFULLDATA" has failed with DIMSE status 0xFE00'
    assert is_capped_error(msg)
    assert not is_capped_error(
        "researchPACS: POST ... -> HTTP 500: DicomAssociation - connecting to AET NMFULLDATA failed"
    )


def test_exactly_the_limit_is_a_silent_cap():
    assert silently_capped(25, 25) and silently_capped(26, 25)
    assert not silently_capped(24, 25) and not silently_capped(10_000, None)


def test_query_has_matching_and_empty_return_keys():
    q = study_query(
        DateRange(date(2024, 1, 1), date(2024, 1, 31)),
        TimeRange(0, 720),
        ("PT", "NM"),
        ["StudyDate", "StudyTime", "StudyInstanceUID"],
    )
    assert q == {
        "StudyDate": "20240101-20240131",
        "StudyTime": "000000-115959",
        "StudyInstanceUID": "",
        "ModalitiesInStudy": "PT\\NM",
    }
    assert "ModalitiesInStudy" not in study_query(
        DateRange(date(2024, 1, 1), date(2024, 1, 1)), None, (), ["StudyDate"]
    )


def test_modalities_in_study_is_split_and_sorted():
    assert split_modalities("PT\\CT\\SR ") == ["CT", "PT", "SR"]
    assert split_modalities("") == [] and split_modalities(None) == []


FINDSCU = """I: Requesting Association
I: ---------------------------
I: Find Response: 1 (Pending)
I:
I: # Dicom-Data-Set
I: (0008,0005) CS [ISO_IR 192]                             #  10, 1 SpecificCharacterSet
I: (0008,0020) DA [20230121]                               #   8, 1 StudyDate
I: (0008,0061) CS [CT\\SR ]                                 #   6, 2 ModalitiesInStudy
I: (0008,1030) LO [전신 뼈 스캔]                           #  18, 1 StudyDescription
I: (0020,000d) UI [1.2.3.4]                                #   8, 1 StudyInstanceUID
I:
I: ---------------------------
I: Find Response: 2 (Pending)
I: (0020,000d) UI [1.2.3.5]                                #   8, 1 StudyInstanceUID
I: Received Final Find Response (Cancel: MatchingTerminatedDueToCancelRequest)
"""


def test_findscu_output_is_parsed_per_response():
    answers = parse_findscu_output(FINDSCU)
    assert [a["StudyInstanceUID"] for a in answers] == ["1.2.3.4", "1.2.3.5"]
    assert answers[0]["ModalitiesInStudy"] == "CT\\SR" and answers[0]["StudyDescription"] == "전신 뼈 스캔"
    assert is_capped_error(FINDSCU)
