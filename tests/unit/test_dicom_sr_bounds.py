"""The single-pass readers of raw explicit VR little endian sequences stay inside their bounds: an undefined-length
sequence or item cut short (no delimiter), a delimiter whose length field lies past the end, a long-VR header
whose length field lies past the end are the module's parse error (``_Unusual``, the plain walk then reads the
document), never a span that ends past the buffer nor items read from what follows it."""

from __future__ import annotations

import struct

import pytest
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.tag import BaseTag
from pydicom.uid import ExplicitVRLittleEndian

from nmdose import dicom_sr as S
from nmdose.dicom_sr import Code, container, num, split_items, walk, walk_fast, walk_plain

_LONG = {"OB", "OW", "SQ", "UT", "UN", "UC", "UR"}
UNDEFINED = 0xFFFFFFFF
ENC = ["iso8859"]


def elem(tag: int, vr: str, value: bytes) -> bytes:
    head = struct.pack("<HH", tag >> 16, tag & 0xFFFF) + vr.encode()
    if vr in _LONG:
        return head + b"\0\0" + struct.pack("<L", len(value)) + value
    return head + struct.pack("<H", len(value)) + value


def sq_undefined(tag: int, items: bytes, *, delimiter: bool = True) -> bytes:
    head = struct.pack("<HH", tag >> 16, tag & 0xFFFF) + b"SQ\0\0" + struct.pack("<L", UNDEFINED)
    return head + items + (seq_delimiter() if delimiter else b"")


def item(data: bytes) -> bytes:
    return struct.pack("<HHL", 0xFFFE, 0xE000, len(data)) + data


def item_undefined(data: bytes, *, delimiter: bool = True) -> bytes:
    end = struct.pack("<HHL", 0xFFFE, 0xE00D, 0) if delimiter else b""
    return struct.pack("<HHL", 0xFFFE, 0xE000, UNDEFINED) + data + end


def seq_delimiter() -> bytes:
    return struct.pack("<HHL", 0xFFFE, 0xE0DD, 0)


def code_item(value: str, meaning: str) -> bytes:
    def pad(text: str) -> bytes:
        raw = text.encode()
        return raw + b" " * (len(raw) % 2)

    return item(
        elem(0x00080100, "SH", pad(value))
        + elem(0x00080102, "SH", b"DCM ")
        + elem(0x00080104, "LO", pad(meaning))
    )


def test_an_undefined_length_sequence_cut_short_is_not_split():
    inner = sq_undefined(0x0040A043, code_item("113701", "X-Ray Dose"), delimiter=False)
    value = item(inner)  # the item's defined length ends where the nested sequence was cut
    assert split_items(value) is None
    with pytest.raises(S._Unusual):
        S._read_items(value, 0, len(value), False, S._raw_dataset)
    whole = item(sq_undefined(0x0040A043, code_item("113701", "X-Ray Dose")))
    assert split_items(whole) == [{0x0040A043: [{0x00080100: (b"SH", b"113701"), 0x00080102: (b"SH", b"DCM "),
                                                 0x00080104: (b"LO", b"X-Ray Dose")}]}]  # fmt: skip


def test_an_undefined_length_item_cut_short_is_not_split():
    cut = item_undefined(elem(0x00080100, "SH", b"113701"), delimiter=False)
    assert split_items(cut) is None
    assert split_items(item_undefined(elem(0x00080100, "SH", b"113701"))) == [
        {0x00080100: (b"SH", b"113701")}
    ]


def test_a_cached_span_is_never_taken_when_its_delimiter_runs_past_the_end():
    span = code_item("99BOUNDS1", "Bounds check") + seq_delimiter()
    hit, end = S._span(span, 0, UNDEFINED, len(span), 1, ENC[0], ENC)  # parsed and cached
    assert end == len(span) and hit[1] == "DCM:99BOUNDS1"
    assert S._span(span, 0, UNDEFINED, len(span), 1, ENC[0], ENC) == (hit, len(span))  # the cached answer
    cut = span[:-4]  # the delimiter's tag is there, its length field is not
    with pytest.raises(S._Unusual):
        S._span(cut, 0, UNDEFINED, len(cut), 1, ENC[0], ENC)
    # the same inside a larger buffer: bytes past ``limit`` are not the span's
    with pytest.raises(S._Unusual):
        S._span(span, 0, UNDEFINED, len(span) - 4, 1, ENC[0], ENC)


def test_a_long_vr_header_whose_length_field_lies_past_the_limit_is_refused():
    # an SQ header ends the item at ``limit``; the next 4 bytes (undefined length) belong to something else
    buf = struct.pack("<HH", 0x0040, 0xA043) + b"SQ\0\0" + struct.pack("<L", UNDEFINED) + seq_delimiter()
    for read in (S._raw_dataset, lambda *a: S._measured_dataset(*a, ENC[0], ENC)):
        with pytest.raises(S._Unusual):
            read(buf, 0, 8, False)
    with pytest.raises(S._Unusual):
        S._content_item(buf, 0, 8, False, ENC[0], ENC)


def _report_with_raw_tree(tree: bytes) -> Dataset:
    """A dataset as ``dcmread`` leaves it: the ContentSequence a raw explicit VR little endian element."""
    ds = Dataset()
    ds.file_meta = Dataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ValueType = "CONTAINER"
    ds._dict[BaseTag(0x0040A730)] = RawDataElement(BaseTag(0x0040A730), "SQ", len(tree), tree, 0, False, True)
    return ds


def test_a_content_tree_with_a_nested_sequence_cut_short_goes_to_the_plain_walk():
    leaf = num("CONTAINS", Code("113830", "DCM", "Mean CTDIvol"), 12.5, Code("mGy", "UCUM", "mGy"))
    good = container(Code("113819", "DCM", "CT Acquisition"), [leaf])

    def encoded(ds: Dataset) -> bytes:
        fp = DicomBytesIO()
        fp.is_little_endian, fp.is_implicit_VR = True, False
        write_dataset(fp, ds)
        return fp.getvalue()

    body = encoded(good)
    whole = item(body)
    fast = walk_fast(_report_with_raw_tree(whole))
    assert fast is not None and fast.children[0].concept == "DCM:113819"
    # the same event with its own ContentSequence of undefined length and no sequence delimiter
    cut_tree = item(
        body.split(b"\x40\x00\x30\xa7")[0] + sq_undefined(0x0040A730, item(encoded(leaf)), delimiter=False)
    )
    ds = _report_with_raw_tree(cut_tree)
    assert walk_fast(ds) is None
    assert walk(ds) == walk_plain(ds)
