"""The StudyTime of a dose object reaches dose.study.study_time (issue 19: the report's workload by hour)."""

from __future__ import annotations

import datetime as dt

from pydicom import dcmread

from nmdose.dose.derived import derive_study
from nmdose.dose.ingest import study_rows
from nmdose.dose.merge import merge_study
from nmdose.dose.parse import parse_file
from nmdose.simulate import rdsr as R


def _with_study_time(path, value):
    """The object at `path` with its StudyTime removed (None) or set to `value`."""
    ds = dcmread(path)
    if value is None:
        del ds.StudyTime
    else:
        ds.StudyTime = value
    ds.save_as(path)
    return path


def _study(objects):
    merged = merge_study(objects)
    return study_rows(merged, derive_study(merged), objects)["study"]


def test_the_study_time_is_parsed_and_stored_to_the_second(files):
    parsed = parse_file(files.ct(study=R.DoseStudyInfo(study_time="143005.123")))
    assert parsed["status"] == "ok" and parsed["study_time"] == "14:30:05"
    assert _study([parsed])["study_time"] == dt.time(14, 30, 5)


def test_a_missing_or_malformed_study_time_is_null_and_the_first_object_with_one_gives_it(files):
    missing = parse_file(_with_study_time(files.ct(), None))
    bad = parse_file(_with_study_time(files.ct(), "99"))
    assert missing["study_time"] is None and bad["study_time"] is None
    assert missing["status"] == "ok" and bad["status"] == "ok"  # nothing else lost
    later = parse_file(files.ct(study=R.DoseStudyInfo(study_time="0705")))
    assert _study([missing, bad])["study_time"] is None
    assert _study([missing, later])["study_time"] == dt.time(7, 5)
