"""The shortcuts of the post-read path give what the plain code gives: the text-bound scan, the header snapshot,
the private-creator lookup, the measured-value fast path and the template cache."""

from __future__ import annotations

import random
import warnings
from collections import OrderedDict
from struct import pack

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from nmdose.dicom_file import read_header
from nmdose.dicom_sr import Code, Node
from nmdose.dose import dose_screen
from nmdose.dose.bounds import TEXT_MAX, has_long_text, truncate_text
from nmdose.dose.header import get_value, get_values
from nmdose.dose.parse import _HEADER_KEYWORDS, parse_file
from nmdose.dose.result import Report
from nmdose.dose.units import convert, unit_text
from nmdose.simulate import rdsr as R
from tests.unit.dose.test_read_layer_equivalence import REAL, _synthetic


class _S(str):
    pass


class _D(dict):
    pass


class _L(list):
    pass


def _value(rng: random.Random, depth: int = 0):
    if depth > 3 or rng.random() < 0.5:
        return rng.choice(["x", "y" * (TEXT_MAX + 1), "z" * TEXT_MAX, _S("s"), _S("s" * 600), None, 1.5, 3, True,
                           ("t",), ("t" * 600,)])  # fmt: skip
    if rng.random() < 0.5:
        cls = rng.choice([dict, _D, OrderedDict])
        keys = ["file", "error", "warnings", "a", "b", "c"]
        return cls((rng.choice(keys), _value(rng, depth + 1)) for _ in range(rng.randint(0, 4)))
    return rng.choice([list, _L])(_value(rng, depth + 1) for _ in range(rng.randint(0, 4)))


def test_has_long_text_is_true_exactly_when_truncate_text_cuts():
    rng = random.Random(20261205)
    for _ in range(20000):
        value = _value(rng)
        cut: list = []
        truncate_text(value, lambda *a, cut=cut: cut.append(a))
        assert has_long_text(value) is bool(cut), value


def _paths(tmp_path):
    paths = [*REAL, *_synthetic(tmp_path)]
    ds = R.pet_nm_image_header(R.DoseStudyInfo(specific_character_set="ISO_IR 192", study_description="PET 전신"),
                               R.RadiopharmaceuticalAdministration(), modality="PT", series_uid=generate_uid(),
                               sop_uid=generate_uid())  # fmt: skip
    ds.PatientAge, ds.StationName = "", ""  # empty elements: pydicom converts them on access
    paths.append(R.save(ds, tmp_path / "pt.dcm"))
    return paths


def test_get_values_equals_get_value_one_by_one(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for path in _paths(tmp_path):
            expected = [get_value(read_header(path), k) for k in _HEADER_KEYWORDS]
            assert get_values(read_header(path), _HEADER_KEYWORDS) == expected, path.name
            ds = read_header(path)
            ds.get("PatientSex"), ds.get("Modality")  # some elements converted already
            assert get_values(ds, _HEADER_KEYWORDS) == expected, path.name


def _screen(tmp_path, creators: list[tuple[int, str, str]]):
    ds = R.philips_dose_info(R.DoseStudyInfo(), [R.CtAcquisition()], series_uid=generate_uid(),
                             sop_uid=generate_uid())  # fmt: skip
    for tag in [t for t in ds.keys() if t >> 16 == 0x00E1]:  # noqa: SIM118 (iterating a Dataset gives elements)
        del ds[tag]
    for element, vr, value in creators:
        ds.add_new(0x00E10000 | element, vr, value)
        if value == "ELSCINT1":
            ds.add_new(0x00E10000 | element << 8 | 0x21, "DS", "321.5")
    return R.save(ds, tmp_path / f"screen{len(list(tmp_path.iterdir()))}.dcm")


@pytest.mark.parametrize(
    "creators",
    [[(0x10, "LO", "ELSCINT1")], [(0x10, "LO", "OTHER"), (0x11, "LO", "ELSCINT1")], [(0x10, "LO", " ELSCINT1")],
     [(0x10, "LO", "ELSCINT1\\X")], [(0x12, "UN", b"ELSCINT1")], [(0x10, "LO", "OTHER")], []],
)  # fmt: skip
def test_private_creator_lookup_equals_private_block(tmp_path, creators):
    path = _screen(tmp_path, creators)

    def outcome(fn):
        try:
            return fn()
        except Exception as exc:
            return type(exc)

    ds_fast, ds_plain = read_header(path), read_header(path)
    expected = outcome(lambda: ds_plain.private_block(0x00E1, "ELSCINT1").get_tag(0x21))
    assert outcome(lambda: dose_screen._private_tag(ds_fast, 0x00E1, "ELSCINT1", 0x21)) == expected
    result = parse_file(path)
    assert result["status"] == "ok"
    if expected == 0x00E11021:
        assert result["ct"]["total_dlp_mgycm"] == 321.5


def _plain_measured(report: Report, node: Node, quantity: str, concept: str, positive: bool = False):
    value = report.number(node.value, concept)
    if value is None:
        return None
    converted, problem = convert(value, unit_text(node.unit), quantity)
    if problem is not None:
        report.warn(concept, f"{value!r}: {problem}; not stored")
        return None
    return report.plausible(converted, quantity, concept, positive=positive)


@pytest.mark.parametrize("value", ["12.5", " 7 ", "0", "-1", "1_0", "", "abc", "nan", "inf", "-inf", "1e400", "1\\2",
                                   "6000", None, ["3", "4"], b"5", 2.5])  # fmt: skip
@pytest.mark.parametrize("unit", [Code("mGy", "UCUM", "mGy"), Code("Gy", "UCUM", "Gy"), Code("", "UCUM", "mGy"),
                                  Code("", "", ""), Code("mGycm", "99X", "x"), Code("furlong", "UCUM", ""), None])  # fmt: skip
@pytest.mark.parametrize(("quantity", "positive"), [("mGy", False), ("mGy", True), ("ratio", False)])
def test_measured_equals_number_convert_plausible(value, unit, quantity, positive):
    node = Node(value_type="NUM", concept="DCM:113830", relationship="CONTAINS", value=value, unit=unit)
    fast, plain = Report("f"), Report("f")
    assert fast.measured(node, quantity, "c", positive=positive) == _plain_measured(
        plain, node, quantity, "c", positive
    )
    assert fast.warnings == plain.warnings


def test_template_cache_gives_the_same_warnings(tmp_path):
    study = R.DoseStudyInfo()
    paths = []
    for i, template in enumerate(["10011", "10012", "10011", None, "10012"]):
        ds = R.ct_radiation_dose_sr(
            study, [R.CtAcquisition()], series_uid=generate_uid(), sop_uid=generate_uid()
        )
        if template is None:
            del ds.ContentTemplateSequence
        else:
            ds.ContentTemplateSequence[0].TemplateIdentifier = template
        paths.append(R.save(ds, tmp_path / f"t{i}.dcm"))
    for path in paths + paths:
        template_warnings = [w for w in parse_file(path)["warnings"] if "ContentTemplateSequence" in w]
        ds = dcmread(path)
        if "ContentTemplateSequence" not in ds:
            assert template_warnings and "missing" in template_warnings[0]
        elif ds.ContentTemplateSequence[0].TemplateIdentifier == "10011":
            assert not template_warnings
        else:
            assert template_warnings and "'10012', expected 10011" in template_warnings[0]


def test_one_binary_float_in_a_raw_item_is_what_pydicom_gives():
    from nmdose.dicom_sr import RawItem

    for raw in (pack("<d", 12.5), pack("<d", float("nan")), pack("<2d", 1.0, 2.0), b""):
        item = RawItem({0x00189345: (b"FD", raw)}, ["iso8859"])
        ds = Dataset()
        ds.add_new(0x00189345, "FD", None)
        expected = dcmread_value(raw)
        got = get_value(item, "CTDIvol")
        assert (got != got and expected != expected) or got == expected, raw


def dcmread_value(raw: bytes):
    from nmdose.dicom_sr import pydicom_value

    return pydicom_value(0x00189345, "FD", raw, ["iso8859"])
