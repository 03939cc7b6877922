"""The parse shortcuts of issue 15 give what the plain reading gives: a container's head looked up by its bytes
(nmdose.dicom_sr._HEAD_CACHE), code keys and measured values remembered by what they depend on. Outcomes only:
the same Nodes as the plain walk and the same parse result, caches cold or warm."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
from pydicom import dcmread

from nmdose import dicom_sr
from nmdose.dicom_file import read_header
from nmdose.dicom_sr import (
    Code,
    RawItem,
    code_key,
    container,
    num,
    pydicom_value,
    text,
    walk_fast,
    walk_plain,
)
from nmdose.dose.header import _raw_item_value
from nmdose.dose.parse import parse_file
from nmdose.dose.result import Report
from nmdose.simulate import rdsr as R

MM = Code("mm", "UCUM", "mm")


def _empty_caches() -> None:
    for cache in dicom_sr.CACHES:
        cache.data.clear()
        cache.nbytes = 0


def _sr(tmp_path: Path, name: str, meaning: str, values: list[str], charset: str = "ISO_IR 100") -> Path:
    """An SR whose root holds two containers with the same head (``meaning`` as concept meaning) and different
    children."""
    study = R.DoseStudyInfo(specific_character_set=charset)
    ds = R.ct_radiation_dose_sr(
        study, [R.CtAcquisition()], series_uid="1.2.9.15.1", sop_uid=f"1.2.9.15.{ord(name)}"
    )
    kids = [
        container(
            Code("113822", "DCM", meaning), [num("CONTAINS", Code("113825", "DCM", "Scanning Length"), v, MM)]
        )
        for v in values
    ]
    kids.append(
        container(Code("113822", "DCM", meaning), [text("CONTAINS", Code("125203", "DCM", "P"), "x")])
    )
    ds.ContentSequence = list(ds.ContentSequence) + kids
    return R.save(ds, tmp_path / f"{name}.dcm")


def _agrees(path: Path) -> None:
    fast = walk_fast(read_header(path))
    assert fast is not None, "the single-pass walk did not run"
    assert fast == walk_plain(dcmread(path, stop_before_pixels=True))


@pytest.mark.parametrize(
    "meaning",
    [
        "CT Acquisition Parameters",
        "Spurious @\x000\xa7SQ inside",  # the ContentSequence tag's bytes inside a value of the head
    ],
)
def test_container_heads_read_as_the_plain_walk_cold_and_warm(tmp_path, meaning):
    first = _sr(tmp_path, "a", meaning, ["100", "200.5"])
    second = _sr(tmp_path, "b", meaning, ["300", "1e3"])  # the same heads, other children
    _empty_caches()
    for path in (first, second, first, second):
        _agrees(path)


def test_head_cache_keeps_heads_only_up_to_a_content_sequence(tmp_path):
    _empty_caches()
    _agrees(_sr(tmp_path, "a", "CT Acquisition Parameters", ["100"]))
    assert dicom_sr._HEAD_CACHE.data, "no container head was kept"
    for (head, _ek), _state in dicom_sr._HEAD_CACHE.data.items():
        assert dicom_sr._CONTENT_SQ not in head


def test_parse_results_do_not_depend_on_what_the_caches_hold(tmp_path):
    paths = [
        _sr(tmp_path, "a", "CT Acquisition Parameters", ["100", "200.5"]),
        _sr(tmp_path, "b", "Spurious @\x000\xa7SQ inside", ["300"]),
        _sr(tmp_path, "c", "CT Acquisition Parameters", ["5"], charset="ISO_IR 192"),
    ]
    _empty_caches()
    cold = [json.dumps(parse_file(p), sort_keys=True) for p in paths]
    warm = [json.dumps(parse_file(p), sort_keys=True) for p in reversed(paths)][::-1]
    _empty_caches()
    again = [json.dumps(parse_file(p), sort_keys=True) for p in reversed(paths)][::-1]
    assert cold == warm == again


def test_code_key_remembered_equals_computed():
    _empty_caches()
    for scheme, value in [
        ("SRT", "C-B1031"),
        ("srt ", " C-B1031"),
        ("DCM", "113691"),
        ("SCT", "1"),
        (None, None),
    ]:
        first = code_key(scheme, value)
        assert code_key(scheme, value) == first == dicom_sr._code_key(scheme, value)


def test_measured_remembered_only_without_warnings():
    _empty_caches()
    item = walk_plain(_ds_with(num("CONTAINS", Code("1", "DCM", "x"), "9999", MM))).children[0]
    for _ in range(2):  # implausible: warned each time, never remembered
        report = Report("f")
        assert report.measured(item, "mm", "x") is None
        assert len(report.warnings) == 1
    assert not dicom_sr.MEASURED_CACHE.data
    ok = walk_plain(_ds_with(num("CONTAINS", Code("1", "DCM", "x"), "12.5", MM))).children[0]
    for _ in range(2):
        report = Report("f")
        assert report.measured(ok, "mm", "x") == 12.5
        assert report.warnings == []
    assert len(dicom_sr.MEASURED_CACHE.data) == 1


def _ds_with(item):
    study = R.DoseStudyInfo()
    ds = R.ct_radiation_dose_sr(study, [R.CtAcquisition()], series_uid="1.2.9.15.9", sop_uid="1.2.9.15.10")
    ds.ContentSequence = [item]
    return ds


@pytest.mark.parametrize("vr", ["ST", "LT", "UT"])
def test_single_text_in_a_raw_item_is_what_pydicom_gives(vr):
    tag = 0x00400310  # CommentsOnRadiationDose
    raws = [
        b"abc",
        b"abc  ",
        b"a\\b c\x00",
        b" lead",
        b"x" * 1024,
        b"x" * 1025,
        b"\x00\x00",
        b"  ",
        b"caf\xe9",
        b"",
    ]
    for raw in raws:
        for encodings in (["iso8859"], ["utf_8"], ["latin_1"]):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # pydicom warns of an ST over 1024 characters
                expected = pydicom_value(tag, vr, raw, encodings)
            got = _raw_item_value(RawItem({tag: (vr.encode(), raw)}, encodings), tag)
            assert (got, type(got)) == (expected, type(expected)), (vr, raw, encodings)
