"""The DICOM read layer on pydicom's public API (issue 15 item 1): ``read_header`` is ``dcmread`` (with ``force``
for a dataset without the Part 10 preamble), text that is not plain ASCII is decoded by pydicom, a content tree
re-encoded as UN is read as pydicom reads it, and the walk's caches are bounded by bytes.

Each defect test fails on the hand-written read layer this replaced."""

from __future__ import annotations

import gc
import struct
import tracemalloc
import warnings
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import dcmwrite, write_dataset
from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian, ImplicitVRLittleEndian

from nmdose import dicom_sr
from nmdose.dicom_file import read_header
from nmdose.dicom_sr import Code, text
from nmdose.dose.parse import parse_file
from nmdose.simulate import rdsr as R

EVENTS = [
    R.CtAcquisition(acquisition_protocol="Head", target_region="head", ctdivol_mgy=41.27, phantom="head16"),
    R.CtAcquisition(sources=[R.XraySource("A"), R.XraySource("B", kvp=100.0)], ctdivol_mgy=9.81),
    R.CtAcquisition(acquisition_type="constant_angle", ctdivol_mgy=None, dlp_mgycm=None),
]


def _ct_sr(study: R.DoseStudyInfo | None = None, events=EVENTS) -> Dataset:
    study = study or R.DoseStudyInfo(study_description="CT 흉부", specific_character_set="ISO_IR 192")
    return R.ct_radiation_dose_sr(study, events, series_uid="1.2.3.1", sop_uid="1.2.3.2")


def _undefined_lengths(ds: Dataset) -> Dataset:
    """Every sequence and item written with undefined length (as many scanners write them)."""
    for elem in ds.iterall():
        if elem.VR == "SQ":
            elem.is_undefined_length = True
            for item in elem.value:
                item.is_undefined_length_sequence_item = True
    return ds


def _write(ds: Dataset, path: Path, transfer_syntax=None) -> Path:
    if transfer_syntax is not None:
        ds.file_meta.TransferSyntaxUID = transfer_syntax
    ds.save_as(path, enforce_file_format=True)
    return path


def _same_dataset(a: Dataset, b: Dataset) -> None:
    assert [e.tag for e in a] == [e.tag for e in b]
    for ea, eb in zip(a, b, strict=True):
        assert (ea.tag, ea.VR, ea.value) == (eb.tag, eb.VR, eb.value), ea.tag


def _events(result: dict) -> list[dict]:
    return (result.get("ct") or {}).get("events") or []


# ----------------------------------------------------------------------------------------------- reading


@pytest.mark.parametrize(
    "encoding", ["explicit", "undefined_lengths", "implicit", "implicit_undefined", "big_endian", "deflated"]
)
def test_read_header_is_dcmread_and_parses_every_encoding(tmp_path, encoding):
    ds = _ct_sr()
    if "undefined" in encoding:
        _undefined_lengths(ds)
    ts = {"implicit": ImplicitVRLittleEndian, "implicit_undefined": ImplicitVRLittleEndian,
          "big_endian": ExplicitVRBigEndian, "deflated": DeflatedExplicitVRLittleEndian}.get(encoding)  # fmt: skip
    path = _write(ds, tmp_path / "sr.dcm", ts)
    _same_dataset(dcmread(path, stop_before_pixels=True), read_header(path))
    result = parse_file(path)
    assert result["status"] == "ok", result
    assert [e["acquisition_protocol"] for e in _events(result)] == ["Head", "Chest routine", "Chest routine"]
    assert result["study_description"] == "CT 흉부"


def test_read_header_stops_before_pixel_data(tmp_path):
    ds = R.pet_nm_image_header(
        R.DoseStudyInfo(),
        R.RadiopharmaceuticalAdministration(),
        modality="PT",
        series_uid="1.2.4.1",
        sop_uid="1.2.4.2",
    )
    ds.Rows, ds.Columns, ds.BitsAllocated, ds.BitsStored, ds.HighBit = 4, 4, 16, 16, 15
    ds.SamplesPerPixel, ds.PixelRepresentation, ds.PhotometricInterpretation = 1, 0, "MONOCHROME2"
    ds.PixelData = b"\x01\x00" * 16
    path = _write(ds, tmp_path / "pt.dcm")
    assert "PixelData" not in read_header(path)
    assert parse_file(path)["radiopharmaceutical"][0]["activity_mbq"] is not None


def test_a_dataset_without_the_part10_preamble_is_read_with_force(tmp_path):
    """Old archives and media hold datasets without the 128-byte preamble and ``DICM`` (with or without File Meta
    Information); pydicom's ``force=True`` reads them, and so does the parser."""
    good = _write(_ct_sr(), tmp_path / "sr.dcm")
    no_preamble = tmp_path / "no-preamble.dcm"
    no_preamble.write_bytes(good.read_bytes()[128 + 4 :])  # File Meta kept, preamble and DICM dropped
    ds = _ct_sr()
    del ds.file_meta
    ds.preamble = None
    bare = tmp_path / "bare-dataset.dcm"
    dcmwrite(bare, ds, implicit_vr=True, little_endian=True)  # no preamble, no File Meta: implicit VR LE
    assert bare.read_bytes()[:2] == b"\x08\x00"
    for path in (no_preamble, bare):
        with pytest.raises(InvalidDicomError):
            dcmread(path)
        _same_dataset(dcmread(path, force=True, stop_before_pixels=True), read_header(path))
        result = parse_file(path)
        assert result["status"] == "ok", (path.name, result.get("error"))
        assert result["kind"] == "ct_rdsr"
        assert len(_events(result)) == 3


def test_what_is_not_dicom_stays_an_error(tmp_path):
    good = _write(_ct_sr(), tmp_path / "sr.dcm").read_bytes()
    cases = {
        "not-dicom": b"hello, not DICOM at all" * 20,
        "random-after-dicm": b"\x00" * 128 + b"DICM" + bytes(range(256)) * 4,
        "truncated-meta": good[:150],
        "truncated": good[: len(good) // 2],
        "empty": b"",
    }
    for name, data in cases.items():
        path = tmp_path / f"{name}.dcm"
        path.write_bytes(data)
        result = parse_file(path)
        assert result["status"] == "error", name
    with pytest.raises(InvalidDicomError):
        read_header(tmp_path / "not-dicom.dcm")
    assert "not a DICOM Part 10 file" in parse_file(tmp_path / "not-dicom.dcm")["error"]


# ------------------------------------------------------------------------------------------ the defects


def test_iso_2022_ir_87_text_is_decoded_not_returned_as_escape_sequences(tmp_path):
    """JIS X 0208 text is 7-bit (ESC $ B ... ESC ( B): decoding it as ASCII "succeeds" with the escapes in it."""
    study = R.DoseStudyInfo(study_description="頭部", specific_character_set="\\ISO 2022 IR 87")
    path = R.save(_ct_sr(study, [R.CtAcquisition(acquisition_protocol="頭部 単純")]), tmp_path / "jp.dcm")
    assert b"\x1b$B" in path.read_bytes()
    result = parse_file(path)
    assert result["status"] == "ok"
    assert result["study_description"] == "頭部"
    assert _events(result)[0]["acquisition_protocol"] == "頭部 単純"
    for node in dicom_sr.walk(read_header(path)).descendants():
        assert "\x1b" not in repr(node.value), node


def _implicit_value(sequence, undefined: bool) -> bytes:
    """The ContentSequence value in implicit VR little endian (with its delimiter when of undefined length)."""
    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, True
    holder = Dataset()
    holder.ContentSequence = sequence
    if undefined:
        _undefined_lengths(holder)
    write_dataset(fp, holder)
    return fp.getvalue()[8:]  # after the tag and the length


@pytest.mark.parametrize("undefined", [False, True])
def test_content_sequence_re_encoded_as_un_is_read_as_implicit_vr(tmp_path, undefined):
    """PS3.5 §6.2.2: a sequence sent as UN (a router with an old dictionary) holds implicit VR little endian
    items inside an explicit VR file; pydicom reads them, so the parser reads both events."""
    ds = _ct_sr(R.DoseStudyInfo(), EVENTS[:2])
    content = ds.ContentSequence
    del ds.ContentSequence
    assert all(e.tag < 0x0040A730 for e in ds)  # the ContentSequence is the last element: append it raw
    path = _write(ds, tmp_path / "un.dcm")
    value = _implicit_value(content, undefined)
    length = 0xFFFFFFFF if undefined else len(value)
    with open(path, "ab") as fh:
        fh.write(struct.pack("<HH2sHL", 0x0040, 0xA730, b"UN", 0, length) + value)
    assert len(dcmread(path).ContentSequence) == len(content)  # what pydicom reads
    result = parse_file(path)
    assert result["status"] == "ok", result.get("error")
    assert [e["acquisition_protocol"] for e in _events(result)] == ["Head", "Chest routine"]


def test_walk_caches_are_bounded_by_bytes(tmp_path):
    """Crafted reports with large distinct code spans must not grow the worker's memory (the caches kept every
    raw span: ~950 MB RSS after 40 files of 12 MB). 40 reports with 8 distinct 60 KB code meanings each (explicit
    LO, so the single-pass walk reads them) retain well under the 19 MB of spans they hold."""
    paths = []
    for i in range(40):
        ds = _ct_sr(R.DoseStudyInfo(), EVENTS[:1])
        for k in range(8):
            big = Code("99", "99NMDOSE", f"{i:04d}{k}" + "x" * 60_000)
            ds.ContentSequence.append(text("CONTAINS", big, "crafted"))
        paths.append(_write(ds, tmp_path / f"big{i:02d}.dcm"))
    assert dicom_sr.walk_fast(read_header(paths[0])) is not None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns about the over-long LO it decodes
        parse_file(paths[0])
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            for path in paths[1:]:
                assert parse_file(path)["status"] == "ok"
            gc.collect()
            retained = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
    assert retained < 4 * 1024 * 1024, f"{retained / 1e6:.1f} MB retained after 39 crafted reports"


def test_cache_budget_holds_under_many_distinct_spans():
    cache = dicom_sr._ByteBoundedCache(max_bytes=10_000, max_key_bytes=100)
    for i in range(5000):
        key = b"%06d" % i * 10  # 60 bytes each, all distinct
        cache.put(key, len(key), i)
        assert cache.nbytes <= cache.max_bytes
    cache.put(b"x" * 101, 101, "too large")
    assert b"x" * 101 not in cache.data
    for shared in dicom_sr.CACHES:
        assert shared.nbytes <= shared.max_bytes
