"""A corpus of >= 50 broken files: parse_file reports each and never raises. Each file has its expected outcome:
an error naming the file and what is wrong with it, or a report read with a warning naming the problem (the
concept or attribute, and the bad value), or not a dose object; only random bit flips may end either way."""

from __future__ import annotations

import random
import re
from pathlib import Path

from pydicom.dataelem import RawDataElement
from pydicom.tag import Tag
from pydicom.uid import generate_uid

from nmdose.dicom_sr import Code, container, text
from nmdose.dose.parse import parse_file
from nmdose.simulate import rdsr as R

# a cut file: an element whose declared length runs past the end, or (cut inside the header) nothing usable
_TRUNCATED = (
    r"truncated: \(\w{4},\w{4}\) declares \d+ bytes, the file holds \d+"
    r"|no SOP Class UID \(0008,0016\) nor Modality: not a usable DICOM object"
)
_NOT_PART10 = r"not a DICOM Part 10 file"


def _broken_corpus(folder: Path) -> list[tuple[Path, str]]:
    """(path, what is wrong) for each file of the corpus (tests/integration/test_dose_ingest.py spools them)."""
    return [(path, what) for path, what, _pattern in _broken_corpus_expected(folder)]


def _broken_corpus_expected(folder: Path) -> list[tuple[Path, str, str | None]]:
    """(path, what is wrong, the pattern its error or one of its warnings must match): an error for 'truncated',
    'random', 'empty', 'missing'; status ok with a warning for 'warn'; not_dose with a warning for 'not_dose'."""
    rng = random.Random(6)
    out: list[tuple[Path, str, str | None]] = []
    good = R.save(R.ct_radiation_dose_sr(R.DoseStudyInfo(), [R.CtAcquisition(), R.CtAcquisition()],
                                         series_uid=generate_uid(), sop_uid=generate_uid()), folder / "good.dcm")  # fmt: skip
    data = good.read_bytes()
    for i, cut in enumerate(range(200, len(data), max(1, len(data) // 20))):  # truncated at 20 places
        p = folder / f"trunc{i}.dcm"
        p.write_bytes(data[:cut])
        out.append((p, "truncated", _TRUNCATED))
    for i in range(10):  # random bytes, with and without the DICM prefix
        p = folder / f"random{i}.dcm"
        body = rng.randbytes(rng.randint(0, 4000))
        p.write_bytes((b"\0" * 128 + b"DICM" + body) if i % 2 else body)
        # with the prefix, random bytes read as elements whose lengths run past the end (or as nothing usable)
        out.append((p, "random", _TRUNCATED if i % 2 else _NOT_PART10))
    for i in range(8):  # bit flips inside the dataset
        p = folder / f"flip{i}.dcm"
        b = bytearray(data)
        for _ in range(20):
            pos = rng.randrange(200, len(b))
            b[pos] = rng.randrange(256)
        p.write_bytes(bytes(b))
        out.append((p, "bitflip", None))
    study = R.DoseStudyInfo()

    def save(ds, name, what, pattern):
        p = folder / f"{name}.dcm"
        R.save(ds, p)
        out.append((p, what, pattern))

    def uids():
        return {"series_uid": generate_uid(), "sop_uid": generate_uid()}

    # SR that is not a dose report
    ds = R.ct_radiation_dose_sr(study, [R.CtAcquisition()], **uids(),
                                title=Code("126000", "DCM", "Imaging Measurement Report"))  # fmt: skip
    save(
        ds,
        "not_dose_sr",
        "not_dose",
        r"Not a dose object: .* document title is DCM:126000 \(Imaging Measurement",
    )
    # missing mandatory items: no accumulated data, no event UID, no procedure reported
    save(R.ct_radiation_dose_sr(study, [R.CtAcquisition()], **uids(), omit_accumulated=True), "no_accum", "warn",
         r"CT Accumulated Dose Data \(113811, DCM\): missing")  # fmt: skip
    ds = R.ct_radiation_dose_sr(study, [R.CtAcquisition()], **uids())
    ds.ContentSequence = [c for c in ds.ContentSequence if c.ConceptNameCodeSequence[0].CodeValue != "121058"]
    save(ds, "no_procedure", "warn", r"Procedure reported \(121058, DCM\): missing")
    ds = R.ct_radiation_dose_sr(study, [R.CtAcquisition()], **uids())
    event = ds.ContentSequence[-2]
    event.ContentSequence = [
        c for c in event.ContentSequence if c.ConceptNameCodeSequence[0].CodeValue != "113769"
    ]
    save(ds, "no_event_uid", "warn", r"Irradiation Event UID \(113769, DCM\): missing")
    # absurd values
    for name, kw, pattern in [
        ("neg_ctdi", {"ctdivol_mgy": -5.0}, r"Mean CTDIvol: implausible value -5\.0 mGy; not stored"),
        (
            "huge_ctdi",
            {"ctdivol_mgy": 1e7},
            r"Mean CTDIvol: implausible value 10000000\.0 mGy .*; not stored",
        ),
        ("neg_dlp", {"dlp_mgycm": -1.0}, r"DLP: implausible value -1\.0 mGy\.cm; not stored"),
        (
            "huge_kvp",
            {"sources": [R.XraySource(kvp=5000)]},
            r"KVP: implausible value 5000\.0 kV .*; not stored",
        ),
    ]:
        save(R.ct_radiation_dose_sr(study, [R.CtAcquisition(**kw)], **uids()), name, "warn", pattern)
    save(R.radiopharmaceutical_dose_sr(study, R.RadiopharmaceuticalAdministration(activity_mbq=1e9), **uids()),
         "huge_activity", "warn",
         r"Administered activity \(113507, DCM\): implausible value 1000000000\.0 MBq .*; not stored")  # fmt: skip
    save(R.radiopharmaceutical_dose_sr(study, R.RadiopharmaceuticalAdministration(activity_mbq=-3), **uids()),
         "neg_activity", "warn",
         r"Administered activity \(113507, DCM\): implausible value -3\.0 MBq; not stored")  # fmt: skip
    # wrong VRs / unparsable values in the content tree
    ds = R.ct_radiation_dose_sr(study, [R.CtAcquisition()], **uids())
    mv = ds.ContentSequence[-2].ContentSequence[-1].ContentSequence[0].MeasuredValueSequence[0]
    mv._dict[Tag(0x0040A30A)] = RawDataElement(Tag(0x0040A30A), "LO", 6, b"twelve", 0, False, True)
    save(ds, "wrong_vr_numeric", "warn", r"Mean CTDIvol: not a number 'twelve'; not stored")
    ds = R.ct_radiation_dose_sr(study, [R.CtAcquisition()], **uids())
    mv = ds.ContentSequence[-2].ContentSequence[-1].ContentSequence[0].MeasuredValueSequence[0]
    mv._dict[Tag(0x0040A30A)] = RawDataElement(Tag(0x0040A30A), "UN", 2, b"\xff\xfe", 0, False, True)
    save(ds, "un_numeric", "warn", r"Mean CTDIvol: not a number .*; not stored")
    ds = R.ct_radiation_dose_sr(study, [R.CtAcquisition()], **uids())
    ds.ContentSequence.append(container(Code("113819", "DCM", "CT Acquisition"),
                                        [text("CONTAINS", Code("125203", "DCM", "Acquisition Protocol"), "x")]))  # fmt: skip
    save(ds, "event_without_anything", "warn",
         r"Total Number of Irradiation Events \(113812, DCM\): says 1 but the report holds 2 CT Acquisition")  # fmt: skip
    # PET without radiopharmaceutical information; unknown units; empty RRDSR
    ds = R.pet_nm_image_header(study, R.RadiopharmaceuticalAdministration(), modality="PT", **uids())
    del ds.RadiopharmaceuticalInformationSequence
    save(ds, "pet_no_info", "warn", r"RadiopharmaceuticalInformationSequence \(0054,0016\): absent or empty")
    save(R.ct_radiation_dose_sr(study, [R.CtAcquisition()], **uids(), dlp_unit="furlong"), "bad_unit", "warn",
         r"DLP: 300\.0: unknown unit 'furlong' \(expected mGy\.cm\); not stored")  # fmt: skip
    ds = R.radiopharmaceutical_dose_sr(study, R.RadiopharmaceuticalAdministration(), **uids())
    ds.ContentSequence = [ds.ContentSequence[0]]
    save(
        ds,
        "rrdsr_empty",
        "warn",
        r"Radiopharmaceutical Administration \(113502, DCM\): no administration container",
    )
    ds = R.pet_nm_image_header(study, R.RadiopharmaceuticalAdministration(), modality="PT", **uids())
    ds.RadiopharmaceuticalInformationSequence[0].RadionuclideTotalDose = "-1"
    save(
        ds,
        "pet_negative_dose",
        "warn",
        r"Radionuclide Total Dose \(0018,1074\): implausible value -1\.0; not stored",
    )
    ds = R.pet_nm_image_header(study, R.RadiopharmaceuticalAdministration(), modality="PT", **uids())
    ds.PatientAge = "abc"
    save(ds, "bad_age", "warn", r"Patient's Age \(0010,1010\): not an age string 'ABC'; not stored")
    empty = folder / "empty.dcm"
    empty.write_bytes(b"")
    out.append((empty, "empty", _NOT_PART10))
    out.append((folder / "missing.dcm", "missing", r"no such file"))
    return out


def test_broken_corpus_is_reported_file_by_file_and_never_raises(tmp_path):
    corpus = _broken_corpus_expected(tmp_path)
    assert len(corpus) >= 50
    for path, what, pattern in corpus:
        result = parse_file(path)  # must not raise
        assert result["file"] == str(path)
        prefix = f"{path}: "
        assert all(w.startswith(prefix) for w in result["warnings"]), (path.name, result)
        if (
            what == "bitflip"
        ):  # random bytes changed: an error, or whatever could still be read, with warnings
            assert (result["status"] == "error" and result["error"].startswith(prefix)) or result[
                "warnings"
            ], (
                path.name,
                result,
            )
            continue
        if what in ("truncated", "random", "empty", "missing"):  # a cut file never passes for a shorter one
            assert result["status"] == "error", (path.name, result)
            assert result["error"].startswith(prefix) and re.search(pattern, result["error"]), (
                path.name,
                result,
            )
            continue
        assert result["status"] == ("not_dose" if what == "not_dose" else "ok"), (path.name, result)
        assert result["error"] is None, (path.name, result)
        assert [w for w in result["warnings"] if re.search(pattern, w)], (
            path.name,
            pattern,
            result["warnings"],
        )
