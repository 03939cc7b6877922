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

from nmdose.dicom_sr import RawItem, pydicom_value, sequence_items

_TEXT_VRS = frozenset({"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "SH", "TM", "UI"})
_TAGS: dict[str, BaseTag] = {}
_INT_TAGS: dict[str, int] = {}
_FD = Struct("<d").unpack


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
    try:
        elem = ds.get_item(tag)
    except Exception:
        return None
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
    out = []
    for keyword in keywords:
        tag = _INT_TAGS.get(keyword)
        if tag is None:
            tag = _INT_TAGS[keyword] = int(tag_for_keyword(keyword))
        elem = elements.get(tag)
        if elem is None:
            out.append(None)
        elif type(elem) is not RawDataElement:
            out.append(elem.value)
        elif elem.VR in _TEXT_VRS and _plain_ascii(elem.value):
            out.append(_text(elem.value))
        else:  # deferred or empty (value None), other VRs: the one-element path
            out.append(get_value(ds, keyword))
    return out


def _raw_item_value(item: RawItem, tag: int) -> Any:
    found = item.data.get(tag)
    if found is None:
        return None
    if type(found) is list:
        return sequence_items(item, tag)
    vr, value = found
    vr = vr.decode("ascii")
    if vr in _TEXT_VRS and _plain_ascii(value):
        return _text(value)
    if vr == "FD" and len(value) == 8:  # one binary float: what pydicom gives, without building an element
        return _FD(value)[0]
    try:
        return pydicom_value(tag, vr, value, item.encodings)
    except Exception:
        return None
