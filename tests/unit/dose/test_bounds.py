"""Issue 14 item 10: UIDs and text bounded before insert; a database error classified by SQLSTATE."""

from __future__ import annotations

import psycopg2
import pytest
from pydicom.uid import generate_uid

from nmdose.dose.bounds import TEXT_MAX, uid_problem
from nmdose.dose.ingest import is_connection_failure
from nmdose.dose.parse import parse_file
from nmdose.simulate import rdsr as R


@pytest.mark.parametrize(
    ("value", "ok"),
    [("1.2.840.10008.5.1.4.1.1.88.67", True), (generate_uid(), True), ("1.2.0840.1", True),  # leading 0: tolerated
     ("1." + "2" * 63, False), ("1.2.abc", False), ("1..2", False), ("1.2.", False), ("", False)],
)  # fmt: skip
def test_uid_syntax(value, ok):
    assert (uid_problem(value) is None) is ok


def test_a_long_or_malformed_uid_makes_the_parse_an_error_naming_the_file_and_the_attribute(tmp_path):
    ds = R.ct_radiation_dose_sr(R.DoseStudyInfo(), [R.CtAcquisition()], series_uid=generate_uid(),
                                sop_uid=generate_uid())  # fmt: skip
    ds.StudyInstanceUID = "1." + "7" * 21707
    result = parse_file(R.save(ds, tmp_path / "long.dcm"))
    assert result["status"] == "error"
    assert (
        str(tmp_path / "long.dcm") in result["error"] and "Study Instance UID (0020,000D)" in result["error"]
    )
    assert "21709 characters" in result["error"]
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), "1.2.3.x"
    result = parse_file(R.save(ds, tmp_path / "syntax.dcm"))
    assert result["status"] == "error" and "Series Instance UID (0020,000E)" in result["error"]


def test_free_text_is_truncated_with_a_warning(tmp_path):
    study = R.DoseStudyInfo(study_description="D" * 5000)
    ds = R.ct_radiation_dose_sr(study, [R.CtAcquisition(acquisition_protocol="P" * 3000)],
                                series_uid=generate_uid(), sop_uid=generate_uid())  # fmt: skip
    result = parse_file(R.save(ds, tmp_path / "text.dcm"))
    assert result["status"] == "ok"
    assert result["study_description"] == "D" * TEXT_MAX
    assert result["ct"]["events"][0]["acquisition_protocol"] == "P" * TEXT_MAX
    assert any("study_description: 5000 characters; truncated" in w for w in result["warnings"])


def _error(cls, code):
    return type("E", (cls,), {"pgcode": code})("boom")


@pytest.mark.parametrize(
    ("exc", "outage"),
    [(_error(psycopg2.OperationalError, "54000"), False),  # ProgramLimitExceeded: the entry's fault
     (_error(psycopg2.DataError, "22001"), False), (_error(psycopg2.IntegrityError, "23505"), False),
     (_error(psycopg2.OperationalError, "08006"), True), (_error(psycopg2.OperationalError, "57P01"), True),
     (_error(psycopg2.OperationalError, "57P03"), True), (_error(psycopg2.OperationalError, None), True),
     (_error(psycopg2.OperationalError, "53100"), True),  # disk full: wait, never dead-letter good files
     (psycopg2.InterfaceError("connection already closed"), True), (ValueError("NUL"), False)],
)  # fmt: skip
def test_database_errors_are_classified_by_sqlstate(exc, outage):
    assert is_connection_failure(exc) is outage
