"""The keyed parts of a pseudonymised copy (nmdose.pseudonymise.deid), on synthetic dose objects as Orthanc's
profile would hand them over (its own part is tested against a real Orthanc in tests/integration)."""

from __future__ import annotations

import io
import re

import pydicom
import pytest
from pydicom.uid import generate_uid

from nmdose.pseudonymise import deid
from nmdose.simulate import rdsr as R

KEY = "k" * 40


def _files(patient_id="SECRET-PID-1"):
    import datetime as dt

    study = R.DoseStudyInfo(study_instance_uid=generate_uid(), patient_id=patient_id, patient_name="Hong^Gildong",
                            study_date="20240315")  # fmt: skip
    admin = R.RadiopharmaceuticalAdministration(start_datetime=dt.datetime(2024, 3, 15, 9, 0))
    check = R.DoseCheck(dlp_alert_value_configured=True, dlp_alert_value=1000.0,
                        accumulated_dlp_forward_estimate=1200.0, alert_reason_for_proceeding="clinical need",
                        alert_person_name="Kim^Radiographer")  # fmt: skip
    event = R.CtAcquisition(acquisition_protocol="WB", dlp_mgycm=321.0, dose_check=check)
    ct = R.ct_radiation_dose_sr(study, [event],
                                series_uid=generate_uid(), sop_uid=generate_uid())  # fmt: skip
    nm = R.radiopharmaceutical_dose_sr(study, admin, series_uid=generate_uid(), sop_uid=generate_uid())
    out = []
    for ds in (ct, nm):
        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=True)
        out.append((ds, buf.getvalue()))
    return study, out


def _values(ds, vr):
    found = []

    def walk(d):
        for e in d:
            if e.VR == "SQ":
                for item in e.value:
                    walk(item)
            elif vr == e.VR and e.value:
                found.append((e.keyword, str(e.value)))

    walk(ds)
    return found


def test_one_pseudonym_per_patient_and_project_and_none_shared_across_projects():
    a, b = deid.project_key(KEY, "trial-a"), deid.project_key(KEY, "trial-b")
    assert deid.pseudonym(a, "PID1") == deid.pseudonym(a, " PID1\x00") != deid.pseudonym(b, "PID1")
    assert deid.pseudonym(a, "PID1") != deid.pseudonym(a, "PID2")
    assert re.fullmatch(r"P[0-9A-F]{16}", deid.pseudonym(a, "PID1"))
    assert deid.project_key("other" * 8, "trial-a") != a
    days = {deid.shift_days(a, f"PID{i}") for i in range(200)}
    assert all(-365 <= d <= -1 for d in days) and len(days) > 100
    assert deid.shift_days(a, "PID1") == deid.shift_days(a, "PID1")


def test_the_anonymize_request_keeps_the_dose_attributes_only_when_asked():
    body = deid.anonymize_request("PABC", deid.Options())
    assert body["Replace"] == {"PatientID": "PABC", "PatientName": "PABC"} and body["DicomVersion"] == "2021b"
    assert {"ContentSequence", "RadiopharmaceuticalInformationSequence", "PatientWeight"} <= set(body["Keep"])
    bare = deid.anonymize_request("PABC", deid.Options(keep_dose=False))
    assert "ContentSequence" not in bare["Keep"] and "StudyInstanceUID" in bare["Keep"]
    assert not body["KeepPrivateTags"]


def test_uids_are_mapped_alike_everywhere_and_class_uids_are_kept():
    key = deid.project_key(KEY, "trial-a")
    study, files = _files()
    (ct, ct_bytes), (nm, nm_bytes) = files
    out_ct, facts = deid.transform(ct_bytes, key, study.patient_id, deid.Options())
    out_nm, facts_nm = deid.transform(nm_bytes, key, study.patient_id, deid.Options())
    a, b = pydicom.dcmread(io.BytesIO(out_ct)), pydicom.dcmread(io.BytesIO(out_nm))
    assert (
        a.StudyInstanceUID
        == b.StudyInstanceUID
        == facts["study_instance_uid"]
        == facts_nm["study_instance_uid"]
    )
    assert a.StudyInstanceUID == deid.map_uid(key, study.study_instance_uid) != study.study_instance_uid
    assert a.SOPInstanceUID == deid.map_uid(key, ct.SOPInstanceUID) == a.file_meta.MediaStorageSOPInstanceUID
    assert a.SOPClassUID == ct.SOPClassUID and len(a.StudyInstanceUID) <= 64
    originals = {v for _, v in _values(ct, "UI")} | {v for _, v in _values(nm, "UI")}
    for kw, v in _values(a, "UI") + _values(b, "UI"):
        assert v not in originals or v.startswith("1.2.840.10008.") or kw in deid.CLASS_UID_KEYWORDS, (kw, v)
    # the same input twice: the same output (an export run twice stores nothing twice)
    assert deid.transform(ct_bytes, key, study.patient_id, deid.Options())[0] == out_ct
    other = deid.transform(ct_bytes, deid.project_key(KEY, "trial-b"), study.patient_id, deid.Options())[1]
    assert other["study_instance_uid"] != facts["study_instance_uid"]


@pytest.mark.parametrize("dates", ["shift", "keep"])
def test_every_date_moves_by_the_patients_days_or_none(dates):
    import datetime as dt

    key = deid.project_key(KEY, "trial-a")
    study, files = _files()
    (nm, nm_bytes) = files[1]
    out = pydicom.dcmread(
        io.BytesIO(deid.transform(nm_bytes, key, study.patient_id, deid.Options(dates=dates))[0])
    )
    days = deid.shift_days(key, study.patient_id) if dates == "shift" else 0
    want = (dt.date(2024, 3, 15) + dt.timedelta(days=days)).strftime("%Y%m%d")
    assert out.StudyDate == want
    nested = [v for kw, v in _values(out, "DT") if kw == "DateTime" or "DateTime" in kw]
    assert nested and all(v.startswith(want) for v in nested), nested  # the administration's time too
    assert out.LongitudinalTemporalInformationModified == ("MODIFIED" if days else "UNMODIFIED")


def test_the_patient_is_named_by_the_pseudonym_and_nobody_inside_the_content():
    key = deid.project_key(KEY, "trial-a")
    study, files = _files()
    for _ds, data in files:
        out, facts = deid.transform(data, key, study.patient_id, deid.Options())
        copy = pydicom.dcmread(io.BytesIO(out))
        assert (
            copy.PatientID
            == str(copy.PatientName)
            == facts["pseudonym"]
            == deid.pseudonym(key, study.patient_id)
        )
        assert b"SECRET-PID-1" not in out and b"Hong" not in out
        assert [kw for kw, _ in _values(copy, "PN") if kw != "PatientName"] == []
        assert (
            copy.PatientIdentityRemoved == "YES"
            and "nmdose: keyed pseudonyms and UIDs" in copy.DeidentificationMethod
        )
        assert b"Kim" not in out
    assert (
        b"Kim^Radiographer" in files[0][1]
    )  # the person who proceeded past the dose check was in the original
