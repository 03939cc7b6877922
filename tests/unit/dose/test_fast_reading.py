"""The fast paths give exactly what pydicom gives: ``read_header`` vs ``dcmread(stop_before_pixels=True)``, the
single-pass SR walk vs the general walk, ``sequence_datasets`` vs pydicom's sequence conversion, on every
encoding the files of real scanners use (defined and undefined lengths, implicit VR, big endian, deflate...)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.errors import InvalidDicomError
from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian, ImplicitVRLittleEndian

from nmdose import dicom_file, dicom_sr
from nmdose.dicom_file import read_header, sequence_datasets
from nmdose.dose.parse import parse_file
from nmdose.simulate import rdsr as R

EVENTS = [
    R.CtAcquisition(acquisition_protocol="Head", target_region="head", ctdivol_mgy=41.27, phantom="head16"),
    R.CtAcquisition(sources=[R.XraySource("A"), R.XraySource("B", kvp=100.0)], ctdivol_mgy=9.81),
    R.CtAcquisition(acquisition_type="constant_angle", ctdivol_mgy=None, dlp_mgycm=None),
]


def _undefined_lengths(ds):
    """Every sequence and item written with undefined length (as many scanners write them)."""
    for elem in ds.iterall():
        if elem.VR == "SQ":
            elem.is_undefined_length = True
            for item in elem.value:
                item.is_undefined_length_sequence_item = True
    return ds


def _same_dataset(a, b) -> None:
    assert [e.tag for e in a] == [e.tag for e in b]
    for ea, eb in zip(a, b, strict=True):
        assert (ea.tag, ea.VR) == (eb.tag, eb.VR)
        assert ea.value == eb.value, ea.tag


def _write(ds, path: Path, transfer_syntax=None) -> Path:
    if transfer_syntax is not None:
        ds.file_meta.TransferSyntaxUID = transfer_syntax
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.fixture
def ct_sr():
    study = R.DoseStudyInfo(study_description="CT 흉부", specific_character_set="ISO_IR 192")
    return R.ct_radiation_dose_sr(study, EVENTS, series_uid="1.2.3.1", sop_uid="1.2.3.2")


@pytest.mark.parametrize(
    "encoding", ["explicit", "undefined_lengths", "implicit", "implicit_undefined", "big_endian", "deflated"]
)
def test_read_header_equals_dcmread(ct_sr, tmp_path, encoding):
    ds = copy.deepcopy(ct_sr)
    if "undefined" in encoding:
        _undefined_lengths(ds)
    ts = {"implicit": ImplicitVRLittleEndian, "implicit_undefined": ImplicitVRLittleEndian,
          "big_endian": ExplicitVRBigEndian, "deflated": DeflatedExplicitVRLittleEndian}.get(encoding)  # fmt: skip
    path = _write(ds, tmp_path / "sr.dcm", ts)
    _same_dataset(dcmread(path, stop_before_pixels=True), read_header(path))
    assert read_header(path).file_meta.TransferSyntaxUID == dcmread(path).file_meta.TransferSyntaxUID


def test_read_header_stops_before_pixel_data(tmp_path):
    admin = R.RadiopharmaceuticalAdministration()
    ds = R.pet_nm_image_header(
        R.DoseStudyInfo(), admin, modality="PT", series_uid="1.2.4.1", sop_uid="1.2.4.2"
    )
    ds.Rows, ds.Columns, ds.BitsAllocated, ds.BitsStored, ds.HighBit = 4, 4, 16, 16, 15
    ds.SamplesPerPixel, ds.PixelRepresentation, ds.PhotometricInterpretation = 1, 0, "MONOCHROME2"
    ds.PixelData = b"\x01\x00" * 16
    path = _write(ds, tmp_path / "pt.dcm")
    fast = read_header(path)
    assert "PixelData" not in fast
    _same_dataset(dcmread(path, stop_before_pixels=True), fast)
    items = sequence_datasets(read_header(path)._dict[0x00540016], ["iso8859"])
    assert items is not None and len(items) == 1
    _same_dataset(dcmread(path).RadiopharmaceuticalInformationSequence[0], items[0])


def test_large_files_and_unusual_files_go_to_dcmread(ct_sr, tmp_path, monkeypatch):
    path = _write(copy.deepcopy(ct_sr), tmp_path / "sr.dcm")
    monkeypatch.setattr(dicom_file, "MAX_FAST_BYTES", 100)
    _same_dataset(dcmread(path, stop_before_pixels=True), read_header(path))


def _outcome(read, path: Path):
    try:
        return read(path)
    except Exception as exc:
        return exc


def test_broken_files_give_what_dcmread_gives(ct_sr, tmp_path):
    good = _write(copy.deepcopy(ct_sr), tmp_path / "sr.dcm").read_bytes()
    cases = {
        "no-preamble": good[132:],
        "not-dicom": b"hello, not DICOM at all" * 20,
        "random-after-dicm": b"\x00" * 128 + b"DICM" + bytes(range(256)) * 4,
        "bad-vr": good.replace(b"CS", b"c?", 3),
        "truncated-meta": good[:150],
    }
    for name, data in cases.items():
        path = tmp_path / f"{name}.dcm"
        path.write_bytes(data)
        fast = _outcome(read_header, path)
        expected = _outcome(lambda p: dcmread(p, stop_before_pixels=True), path)
        if isinstance(expected, Exception):
            assert type(fast) is type(expected), name
        else:
            _same_dataset(expected, fast)
    with pytest.raises(InvalidDicomError):
        read_header(tmp_path / "not-dicom.dcm")
    truncated = tmp_path / "truncated.dcm"
    truncated.write_bytes(good[: len(good) // 2])
    assert parse_file(truncated)["status"] == "error"


@pytest.mark.parametrize("undefined", [False, True])
def test_single_pass_walk_equals_general_walk(ct_sr, tmp_path, undefined):
    ds = copy.deepcopy(ct_sr)
    if undefined:
        _undefined_lengths(ds)
    path = _write(ds, tmp_path / "sr.dcm")
    fast_ds = read_header(path)
    encodings = dicom_sr._encodings(fast_ds)
    assert dicom_sr._walk_document_fast(fast_ds, encodings) is not None  # the fast path really ran
    general = dicom_sr._walk(dcmread(path), encodings)
    assert dicom_sr.walk(fast_ds) == general
    assert dicom_sr.walk(read_header(path)) == general  # again, now from the leaf cache
    protocols = [n.value for n in general.descendants() if n.concept == "DCM:125203"]
    assert protocols == ["Head", "Chest routine", "Chest routine"]


def test_leaf_cache_never_mixes_character_sets(tmp_path):
    event = R.CtAcquisition(acquisition_protocol="Tête")
    latin1 = R.ct_radiation_dose_sr(R.DoseStudyInfo(specific_character_set="ISO_IR 100"), [event],
                                     series_uid="1.2.5.1", sop_uid="1.2.5.2")  # fmt: skip
    utf8 = R.ct_radiation_dose_sr(R.DoseStudyInfo(specific_character_set="ISO_IR 192"), [event],
                                  series_uid="1.2.5.3", sop_uid="1.2.5.4")  # fmt: skip
    for name, ds in (("latin1", latin1), ("utf8", utf8)):
        result = parse_file(_write(ds, tmp_path / f"{name}.dcm"))
        assert result["ct"]["events"][0]["acquisition_protocol"] == "Tête", name


def test_malformed_content_falls_back_to_the_general_walk(ct_sr, tmp_path):
    path = _write(copy.deepcopy(ct_sr), tmp_path / "sr.dcm")
    ds = read_header(path)
    elem = ds._dict[0x0040A730]
    broken = bytearray(elem.value)
    broken[0:4] = b"\x08\x00\x10\x00"  # not an item tag where the first item starts
    ds._dict[0x0040A730] = elem._replace(value=bytes(broken))
    assert dicom_sr._walk_document_fast(ds, dicom_sr._encodings(ds)) is None
    with pytest.raises(ValueError, match="sequence item tag expected"):
        dicom_sr.walk(ds)
