"""Fast, never-raising access to header attributes (the readers' ``_safe``/``_get``).

pydicom converts a raw element on first access through several layers (keyword lookup, hooks, value
conversion): about 50 µs per attribute, and a few hundred µs to convert a sequence, a sizeable part of
``parse_file`` for a small object. So, through pydicom's public API:

- a text element that pydicom has left raw (``Dataset.get_item``) and whose bytes are plain ASCII (no byte over
  0x7F and no ESC, so no character set is involved) is decoded here directly;
- a sequence left raw in explicit VR little endian is split by the same splitter as the SR content tree
  (:func:`nmdose.dicom_sr.sequence_items`) into ``RawItem``s, whose values go through the same two rules;
- one binary FD value in such an item is unpacked here (what pydicom gives: a float);
- an element pydicom has converted already gives its ``value`` (what ``Dataset.get`` returns);
- everything else (other text, ISO 2022 escapes, binary VRs, implicit VR or UN elements, a sequence the splitter
  does not read) is pydicom's: ``ds[tag].value`` or ``convert_raw_data_element`` with the inherited character set.

:func:`get_values` reads several attributes of one dataset at once from a snapshot of its elements (the file
header: 16 attributes per file). A value pydicom cannot convert is treated as absent.
"""

from __future__ import annotations

from struct import Struct
from typing import Any

from pydicom.datadict import tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.tag import BaseTag

from nmdose.dicom_sr import RawItem, get_element, pydicom_value, sequence_items

_TEXT_VRS = frozenset({"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "SH", "TM", "UI"})
_TEXT_VR_BYTES = frozenset(vr.encode("ascii") for vr in _TEXT_VRS)  # as a RawItem holds them
_TAGS: dict[str, BaseTag] = {}
_INT_TAGS: dict[str, int] = {}
# get_values' keyword tuples (a few, fixed in code) as int tags
_KEYWORD_TAGS: dict[tuple[str, ...], tuple[int, ...]] = {}
_FD = Struct("<d").unpack
# one-value text VRs: the longest value pydicom's validation accepts
_SINGLE_MAX = {"ST": 1024, "LT": 10240, "UT": 0xFFFFFFFE}


def _text(raw: bytes) -> Any:
    text = raw.decode("ascii").strip(" \x00")
    return text.split("\\") if "\\" in text else text


def _plain_ascii(raw: Any) -> bool:
    return type(raw) is bytes and raw.isascii() and b"\x1b" not in raw


def get_value(ds: Any, keyword: str) -> Any:
    """``ds.get(keyword)``, faster for plain-ASCII text and raw sequences, None when absent or not convertible."""
    if type(ds) is RawItem:
        tag = _INT_TAGS.get(keyword)
        if tag is None:
            tag = _INT_TAGS[keyword] = int(tag_for_keyword(keyword))
        return _raw_item_value(ds, tag)
    tag = _TAGS.get(keyword)
    if tag is None:
        tag = _TAGS[keyword] = BaseTag(tag_for_keyword(keyword))
    elem = get_element(ds, tag)
    if elem is None:
        return None
    if type(elem) is not RawDataElement:  # converted already: what ``ds.get(keyword)`` gives
        return elem.value
    vr, value = elem.VR, elem.value
    if vr in _TEXT_VRS and _plain_ascii(value):
        return _text(value)
    if vr == "SQ" and type(value) is bytes:
        return sequence_items(ds, tag)
    try:
        return ds[tag].value  # ``ds.get(keyword)`` without the keyword lookup
    except Exception:  # a value pydicom cannot convert: treat as absent (the caller warns where it matters)
        return None


def get_values(ds: Any, keywords: tuple[str, ...]) -> list[Any]:
    """``[get_value(ds, k) for k in keywords]`` (distinct keywords) with one look at the dataset's elements: raw
    plain-ASCII text and converted values are taken from a snapshot of ``ds.items()``, anything else from
    :func:`get_value` (converting an element changes no other one, so the snapshot stays true for the rest)."""
    if type(ds) is RawItem:
        return [get_value(ds, k) for k in keywords]
    try:  # keyed by plain int: a BaseTag key compares through a Python-level __eq__ on every lookup
        elements = dict(zip(map(int, ds.keys()), ds.values(), strict=True))
    except Exception:
        return [get_value(ds, k) for k in keywords]
    fixed = type(keywords) is tuple
    tags = _KEYWORD_TAGS.get(keywords) if fixed else None
    if tags is None:
        tags = tuple(int(tag_for_keyword(k)) for k in keywords)
        if fixed and len(_KEYWORD_TAGS) < 64:
            _KEYWORD_TAGS[keywords] = tags
    out = []
    append, found, raw_type, text_vrs = out.append, elements.get, RawDataElement, _TEXT_VRS
    for keyword, tag in zip(keywords, tags, strict=True):
        elem = found(tag)
        if elem is None:
            append(None)
            continue
        if type(elem) is not raw_type:
            append(elem.value)
            continue
        value = elem.value
        # _plain_ascii and _text, inline
        if elem.VR in text_vrs and type(value) is bytes and value.isascii() and b"\x1b" not in value:
            text = value.decode("ascii").strip(" \x00")
            append(text.split("\\") if "\\" in text else text)
        else:  # deferred or empty (value None), other VRs: the one-element path
            append(get_value(ds, keyword))
    return out


def _raw_item_value(item: RawItem, tag: int) -> Any:
    found = item.data.get(tag)
    if found is None:
        return None
    if type(found) is list:
        return sequence_items(item, tag)
    vr, value = found
    if vr in _TEXT_VR_BYTES and value.isascii() and b"\x1b" not in value:  # _plain_ascii and _text, inline
        text = value.decode("ascii").strip(" \x00")
        return text.split("\\") if "\\" in text else text
    vr = vr.decode("ascii")
    if vr == "FD" and len(value) == 8:  # one binary float: what pydicom gives, without building an element
        return _FD(value)[0]
    if 0 < len(value) <= _SINGLE_MAX.get(vr, -1) and _plain_ascii(value):
        # ST, LT, UT: pydicom's convert_single_string (no split), within the length its validation allows
        return value.decode("ascii").rstrip("\x00 ")
    try:
        return pydicom_value(tag, vr, value, item.encodings)
    except Exception:
        return None
