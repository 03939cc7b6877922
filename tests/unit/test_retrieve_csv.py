"""CSV input: the header names the column; bad rows are reported with their line numbers, good rows kept."""

import pytest

from nmdose.retrieve.csv_input import CsvInputError, read_csv


def write(tmp_path, text, encoding="utf-8"):
    p = tmp_path / "list.csv"
    p.write_bytes(text.encode(encoding))
    return p


def test_accession_numbers_with_problems_reported_by_line(tmp_path):
    rows, problems = read_csv(
        write(
            tmp_path,
            "AccessionNumber,comment\nA100,ok\n,empty\nA101\nA100,again\n"
            "ABCDEFGHIJKLMNOPQ,too long\nA1*,wild\n",
        )
    )
    assert [(r.line, r.value) for r in rows] == [(2, "A100"), (4, "A101")]
    assert [(p.line, p.message) for p in problems] == [
        (3, "empty AccessionNumber"),
        (5, "duplicate of line 2"),
        (6, "AccessionNumber 'ABCDEFGHIJKLMNOPQ' is longer than 16 characters"),
        (7, "'A1*': wildcards and backslashes are not allowed"),
    ]


def test_patient_ids_with_date_ranges(tmp_path):
    rows, problems = read_csv(
        write(
            tmp_path,
            "PatientID;date_from;date_to\nP1;2020-01-01;2020-12-31\n"
            "P2;;\nP3;2021-13-01;\nP4;2022-05-01;2021-01-01\n",
        )
    )
    assert [(r.value, r.date_range) for r in rows] == [("P1", "20200101-20201231"), ("P2", None)]
    assert [p.line for p in problems] == [4, 5]
    assert rows[0].query() == {"PatientID": "P1", "StudyDate": "20200101-20201231"}


def test_study_uids_are_validated(tmp_path):
    rows, problems = read_csv(write(tmp_path, "StudyInstanceUID\n1.2.840.1\n1.2.abc\n1.02.3\n"))
    assert [r.value for r in rows] == ["1.2.840.1"]
    assert [p.line for p in problems] == [3, 4]


def test_korean_excel_export_in_cp949(tmp_path):
    rows, _ = read_csv(write(tmp_path, "환자번호,PatientID\n홍길동,P77\n", encoding="cp949"))
    assert rows[0].value == "P77"


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "empty file"),
        ("Name,Comment\nx,y\n", "exactly one of AccessionNumber, PatientID, StudyInstanceUID"),
        ("AccessionNumber,PatientID\nA,B\n", "exactly one of"),
        ("AccessionNumber\n", "no data rows"),
    ],
)
def test_unusable_files_are_one_clear_error(tmp_path, text, message):
    with pytest.raises(CsvInputError, match=message):
        read_csv(write(tmp_path, text))
