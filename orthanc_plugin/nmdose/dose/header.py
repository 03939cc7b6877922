"""Fast, never-raising access to header attributes (the readers' ``_safe``/``_get``).

pydicom converts a raw element on first access through several layers (keyword lookup, hooks, value
conversion): about 50 µs per attribute, a sizeable part of ``parse_file`` for a small SR. For the plain-text VRs
the readers use, the raw bytes are decoded here directly when they are pure ASCII (no character set involved);
raw explicit-VR sequences are split into lazy item datasets by :func:`nmdose.dicom_file.sequence_datasets`
instead of pydicom's slower conversion. Anything else (non-ASCII text, binary VRs, implicit-VR files) goes
through pydicom as before. A value pydicom cannot convert is treated as absent.
"""

from __future__ import annotations

from typing import Any

from pydicom.datadict import tag_for_keyword
from pydicom.dataelem import RawDataElement

from nmdose.dicom_file import sequence_datasets

_TEXT_VRS = frozenset({"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "SH", "TM", "UI"})
_TAGS: dict[str, int | None] = {}


def get_value(ds: Any, keyword: str) -> Any:
    """``ds.get(keyword)``, faster for ASCII text elements, None when absent or not convertible."""
    tag = _TAGS.get(keyword)
    if tag is None:
        tag = _TAGS[keyword] = tag_for_keyword(keyword)
    try:
        elem = ds._dict.get(tag)
    except AttributeError:
        elem = None
    if elem is None:
        return None
    if type(elem) is RawDataElement and elem.VR in _TEXT_VRS and type(elem.value) is bytes:
        try:
            text = elem.value.decode("ascii")
        except UnicodeDecodeError:
            pass  # a character set is involved: pydicom decodes it
        else:
            text = text.strip(" \x00")
            return text.split("\\") if "\\" in text else text
    if type(elem) is RawDataElement and elem.VR == "SQ":
        try:
            encodings = ds._character_set
        except Exception:
            encodings = None
        items = sequence_datasets(elem, encodings or "iso8859")
        if items is not None:
            return items
    try:
        return ds.get(keyword)
    except Exception:  # a value pydicom cannot convert: treat as absent (the caller warns where it matters)
        return None
