"""A corpus of >= 50 broken files: parse_file reports each (error or warnings) and never raises."""

from __future__ import annotations

import random
from pathlib import Path

from pydicom.dataelem import RawDataElement
from pydicom.tag import Tag
from pydicom.uid import generate_uid

from nmdose.dicom_sr import Code, container, text
from nmdose.dose.parse import parse_file
from nmdose.simulate import rdsr as R


def _broken_corpus(folder: Path) -> list[tuple[Path, str]]:
    """(path, what is wrong); 'error' or 'warn' expected for each."""
    rng = random.Random(6)
    out: list[tuple[Path, str]] = []
    good = R.save(R.ct_radiation_dose_sr(R.DoseStudyInfo(), [R.CtAcquisition(), R.CtAcquisition()],
                                         series_uid=generate_uid(), sop_uid=generate_uid()), folder / "good.dcm")  # fmt: skip
    data = good.read_bytes()
    for i, cut in enumerate(range(200, len(data), max(1, len(data) // 20))):  # truncated at 20 places
        p = folder / f"trunc{i}.dcm"
        p.write_bytes(data[:cut])
        out.append((p, "truncated"))
    for i in range(10):  # random bytes, with and without the DICM prefix
        p = folder / f"random{i}.dcm"
        body = rng.randbytes(rng.randint(0, 4000))
        p.write_bytes((b"\0" * 128 + b"DICM" + body) if i % 2 else body)
        out.append((p, "random"))
    for i in range(8):  # bit flips inside the dataset
        p = folder / f"flip{i}.dcm"
        b = bytearray(data)
        for _ in range(20):
            pos = rng.randrange(200, len(b))
            b[pos] = rng.randrange(256)
        p.write_bytes(bytes(b))
        out.append((p, "bitflip"))
    study = R.DoseStudyInfo()

    def save(ds, name, what):
        p = folder / f"{name}.dcm"
        R.save(ds, p)
        out.append((p, what))

    def uids():
        return {"series_uid": generate_uid(), "sop_uid": generate_uid()}

    # SR that is not a dose report
    ds = R.ct_radiation_dose_sr(study, [R.CtAcquisition()], **uids(),
                                title=Code("126000", "DCM", "Imaging Measurement Report"))  # fmt: skip
    save(ds, "not_dose_sr", "not_dose")
    # missing mandatory items: no accumulated data, no event UID, no procedure reported
    save(
        R.ct_radiation_dose_sr(study, [R.CtAcquisition()], **uids(), omit_accumulated=True),
        "no_accum",
        "warn",
    )
    ds = R.ct_radiation_dose_sr(study, [R.CtAcquisition()], **uids())
    ds.ContentSequence = [c for c in ds.ContentSequence if c.ConceptNameCodeSequence[0].CodeValue != "121058"]
    save(ds, "no_procedure", "warn")
    ds = R.ct_radiation_dose_sr(study, [R.CtAcquisition()], **uids())
    event = ds.ContentSequence[-2]
    event.ContentSequence = [
        c for c in event.ContentSequence if c.ConceptNameCodeSequence[0].CodeValue != "113769"
    ]
    save(ds, "no_event_uid", "warn")
    # absurd values
    for name, kw in [("neg_ctdi", {"ctdivol_mgy": -5.0}), ("huge_ctdi", {"ctdivol_mgy": 1e7}),
                     ("neg_dlp", {"dlp_mgycm": -1.0}), ("huge_kvp", {"sources": [R.XraySource(kvp=5000)]})]:  # fmt: skip
        save(R.ct_radiation_dose_sr(study, [R.CtAcquisition(**kw)], **uids()), name, "warn")
    save(R.radiopharmaceutical_dose_sr(study, R.RadiopharmaceuticalAdministration(activity_mbq=1e9), **uids()),
         "huge_activity", "warn")  # fmt: skip
    save(R.radiopharmaceutical_dose_sr(study, R.RadiopharmaceuticalAdministration(activity_mbq=-3), **uids()),
         "neg_activity", "warn")  # fmt: skip
    # wrong VRs / unparsable values in the content tree
    ds = R.ct_radiation_dose_sr(study, [R.CtAcquisition()], **uids())
    mv = ds.ContentSequence[-2].ContentSequence[-1].ContentSequence[0].MeasuredValueSequence[0]
    mv._dict[Tag(0x0040A30A)] = RawDataElement(Tag(0x0040A30A), "LO", 6, b"twelve", 0, False, True)
    save(ds, "wrong_vr_numeric", "warn")
    ds = R.ct_radiation_dose_sr(study, [R.CtAcquisition()], **uids())
    mv = ds.ContentSequence[-2].ContentSequence[-1].ContentSequence[0].MeasuredValueSequence[0]
    mv._dict[Tag(0x0040A30A)] = RawDataElement(Tag(0x0040A30A), "UN", 2, b"\xff\xfe", 0, False, True)
    save(ds, "un_numeric", "warn")
    ds = R.ct_radiation_dose_sr(study, [R.CtAcquisition()], **uids())
    ds.ContentSequence.append(container(Code("113819", "DCM", "CT Acquisition"),
                                        [text("CONTAINS", Code("125203", "DCM", "Acquisition Protocol"), "x")]))  # fmt: skip
    save(ds, "event_without_anything", "warn")
    # PET without radiopharmaceutical information; unknown units; empty RRDSR
    ds = R.pet_nm_image_header(study, R.RadiopharmaceuticalAdministration(), modality="PT", **uids())
    del ds.RadiopharmaceuticalInformationSequence
    save(ds, "pet_no_info", "warn")
    save(R.ct_radiation_dose_sr(study, [R.CtAcquisition()], **uids(), dlp_unit="furlong"), "bad_unit", "warn")
    ds = R.radiopharmaceutical_dose_sr(study, R.RadiopharmaceuticalAdministration(), **uids())
    ds.ContentSequence = [ds.ContentSequence[0]]
    save(ds, "rrdsr_empty", "warn")
    ds = R.pet_nm_image_header(study, R.RadiopharmaceuticalAdministration(), modality="PT", **uids())
    ds.RadiopharmaceuticalInformationSequence[0].RadionuclideTotalDose = "-1"
    save(ds, "pet_negative_dose", "warn")
    ds = R.pet_nm_image_header(study, R.RadiopharmaceuticalAdministration(), modality="PT", **uids())
    ds.PatientAge = "abc"
    save(ds, "bad_age", "warn")
    empty = folder / "empty.dcm"
    empty.write_bytes(b"")
    out.append((empty, "empty"))
    out.append((folder / "missing.dcm", "missing"))
    return out


def test_broken_corpus_is_reported_file_by_file_and_never_raises(tmp_path):
    corpus = _broken_corpus(tmp_path)
    assert len(corpus) >= 50
    for path, what in corpus:
        result = parse_file(path)  # must not raise
        assert result["file"] == str(path)
        if what == "not_dose":
            assert result["status"] == "not_dose", (path.name, result)
        elif what == "warn":
            assert result["status"] in ("ok", "error"), (path.name, result)
            assert result["warnings"] or result["error"], (path.name, result)
        elif what in ("random", "empty", "missing", "truncated"):  # a cut file never passes for a shorter one
            assert result["status"] == "error", (path.name, result)
            assert str(path) in result["error"]
        else:  # bit flips: either an error, or whatever could still be read, with warnings saying what was wrong
            assert what == "bitflip"
            assert result["status"] == "error" or result["warnings"], (path.name, result)
        if result["status"] == "error":
            assert result["error"] and str(path) in result["error"]
