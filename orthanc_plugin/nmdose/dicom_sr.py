"""Generic DICOM SR content items (PS3.3 C.17.3): build them, and walk a content tree once.

Shared by the synthetic-object builders (`nmdose.simulate.rdsr`) and the dose readers (`nmdose.dose`). Codes are
plain ``(value, scheme, meaning)`` triples (:class:`Code`) so this module needs no code table of its own.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from struct import Struct
from typing import Any, NamedTuple

from pydicom.charset import convert_encodings, decode_bytes
from pydicom.dataelem import RawDataElement, convert_raw_data_element
from pydicom.dataset import Dataset, FileDataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence

# The SNOMED-RT <-> SNOMED-CT table of PS3.16 Annex O. pydicom 3.0 ships it (private ``pydicom.sr._snomed_dict``,
# re-exported by ``pydicom.sr.coding``) for its own ``Code.__eq__`` but has no public lookup: the public API
# (``pydicom.sr.Code``, ``pydicom.sr.codedict.codes``) can say whether an SRT code equals an SCT code it is given,
# never which SCT code an SRT value maps to (``codes`` lists concepts by keyword per scheme and has no SRT), and
# the readers need that key. This is the one place nmdose reads it (codes.py takes the reverse map from here).
from pydicom.sr.coding import snomed_mapping as SNOMED_MAPPING
from pydicom.tag import BaseTag
from pydicom.valuerep import TEXT_VR_DELIMS

_SRT_TO_SCT: dict[str, str] = SNOMED_MAPPING["SRT"]


class Code(NamedTuple):
    """A coded concept: code value, coding scheme designator, code meaning."""

    value: str
    scheme: str
    meaning: str

    @property
    def key(self) -> str:
        """Scheme-qualified code, legacy SNOMED-RT mapped to SNOMED-CT: ``"SCT:51185008"``."""
        return code_key(self.scheme, self.value)


def code_key(scheme: str | None, value: str | None) -> str:
    """``"SCHEME:VALUE"`` with SRT (and the SNM3 alias) mapped to its SCT equivalent where one exists."""
    # by (scheme, value): the readers ask for the same few codes' keys in every report
    cache = _CODE_KEY_CACHE
    try:
        return cache.data[scheme, value]
    except (KeyError, TypeError):  # not seen yet, or unhashable (computed, never kept)
        pass
    key = _code_key(scheme, value)
    if type(scheme) is str and type(value) is str:
        cache.put((scheme, value), 1, key)
    return key


def _code_key(scheme: str | None, value: str | None) -> str:
    scheme = (scheme or "").strip().upper()
    value = (value or "").strip()
    if scheme in ("SRT", "SNM3"):
        sct = _SRT_TO_SCT.get(value)
        if sct is not None:
            return "SCT:" + sct
    return f"{scheme}:{value}"


# --------------------------------------------------------------------------------------------------- build


def code_sequence_item(code: Code) -> Dataset:
    """One item of a Code Sequence (Basic Coded Entry Attributes; LongCodeValue when over 16 chars)."""
    item = Dataset()
    if len(code.value) > 16:
        item.LongCodeValue = code.value
    else:
        item.CodeValue = code.value
    item.CodingSchemeDesignator = code.scheme
    item.CodeMeaning = code.meaning
    return item


def _item(relationship: str | None, value_type: str, concept: Code | None) -> Dataset:
    item = Dataset()
    if relationship:
        item.RelationshipType = relationship
    item.ValueType = value_type
    if concept is not None:
        item.ConceptNameCodeSequence = [code_sequence_item(concept)]
    return item


def container(
    concept: Code,
    children: Iterable[Dataset],
    *,
    relationship: str | None = "CONTAINS",
    continuity: str = "SEPARATE",
    template: str | None = None,
) -> Dataset:
    """CONTAINER content item; ``template`` adds a ContentTemplateSequence (DCMR, e.g. ``"10011"``)."""
    item = _item(relationship, "CONTAINER", concept)
    item.ContinuityOfContent = continuity
    if template is not None:
        tpl = Dataset()
        tpl.MappingResource = "DCMR"
        tpl.TemplateIdentifier = template
        item.ContentTemplateSequence = [tpl]
    kids = [c for c in children if c is not None]
    if kids:
        item.ContentSequence = kids
    return item


def num(
    relationship: str,
    concept: Code,
    value: float | str | None,
    unit: Code | None,
) -> Dataset:
    """NUM content item; ``value`` None gives an empty MeasuredValueSequence (value unknown)."""
    item = _item(relationship, "NUM", concept)
    if value is None:
        item.MeasuredValueSequence = Sequence([])
        return item
    mv = Dataset()
    mv.NumericValue = value if isinstance(value, str) else format_ds(value)
    if unit is not None:
        mv.MeasurementUnitsCodeSequence = [code_sequence_item(unit)]
    item.MeasuredValueSequence = [mv]
    return item


def code(relationship: str, concept: Code, value: Code | None) -> Dataset:
    """CODE content item; ``value`` None gives an empty ConceptCodeSequence (a non-conformant quirk)."""
    item = _item(relationship, "CODE", concept)
    item.ConceptCodeSequence = [code_sequence_item(value)] if value is not None else Sequence([])
    return item


def text(relationship: str, concept: Code, value: str) -> Dataset:
    """TEXT content item."""
    item = _item(relationship, "TEXT", concept)
    item.TextValue = value
    return item


def uidref(relationship: str, concept: Code, value: str) -> Dataset:
    """UIDREF content item."""
    item = _item(relationship, "UIDREF", concept)
    item.UID = value
    return item


def datetime_item(relationship: str, concept: Code, value: str) -> Dataset:
    """DATETIME content item (value in DICOM DT form, ``YYYYMMDDHHMMSS``)."""
    item = _item(relationship, "DATETIME", concept)
    item.DateTime = value
    return item


def pname(relationship: str, concept: Code, value: str) -> Dataset:
    """PNAME content item."""
    item = _item(relationship, "PNAME", concept)
    item.PersonName = value
    return item


def format_ds(value: float) -> str:
    """A decimal string of at most 16 characters."""
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    text_ = repr(float(value))
    if len(text_) <= 16:
        return text_
    return f"{value:.10g}"[:16]


# --------------------------------------------------------------------------------------------------- walk
#
# Two walks reduce a content tree to the same Nodes.
#
# The plain walk (:func:`walk_plain`) reads pydicom ``Dataset``s through the public API only, so it inherits
# pydicom's semantics: a sequence re-encoded as UN is read as implicit VR little endian (PS3.5 §6.2.2), each
# item's character set applies, ISO 2022 code extensions are decoded. It is the only fallback.
#
# The single-pass walk (:func:`walk_fast`) reads the raw bytes of a ContentSequence that pydicom left unconverted
# (``Dataset.get_item`` gives the ``RawDataElement``) in explicit VR little endian, the common case, about 100x
# faster than converting every item: no Dataset per item, and the code sequences (concept names, units, coded
# values: the same few hundred byte strings in every report) are looked up by their raw bytes before being parsed
# at all. Anything it does not expect (a UN element, a character set declared inside the tree, a delimiter out of
# place, a length past the end) hands the whole document to the plain walk.
#
# Both decode a text value themselves only when it is plain ASCII (no byte over 0x7F and no ESC, so no ISO 2022
# escape sequence) and follow pydicom's rules for its VR; any other text is decoded by pydicom.


@dataclass(slots=True)
class Node:
    """One content item reduced to what the dose readers use; built once per file by :func:`walk`.

    Read-only once built: the walk shares the Node of a leaf item between documents with identical bytes.
    """

    value_type: str
    concept: str  # code key, "" when the item has no concept name
    relationship: str
    value: Any = None  # str for TEXT/UIDREF/DATETIME/PNAME, the NumericValue text for NUM, a Code for CODE
    unit: Code | None = None
    children: list[Node] = field(default_factory=list)
    concept_meaning: str = ""

    def find(self, concept: str) -> Node | None:
        """First direct child with this concept key."""
        for child in self.children:
            if child.concept == concept:
                return child
        return None

    def find_all(self, concept: str) -> list[Node]:
        """Every direct child with this concept key."""
        return [c for c in self.children if c.concept == concept]

    def descendants(self) -> Iterator[Node]:
        """Depth-first, pre-order, excluding self."""
        stack = list(reversed(self.children))
        while stack:
            node = stack.pop()
            yield node
            if node.children:
                stack.extend(reversed(node.children))


_CHARSET = 0x00080005
_CONCEPT_NAME = 0x0040A043
_VALUE_TYPE = 0x0040A040
_RELATIONSHIP = 0x0040A010
_CONTENT = 0x0040A730
_MEASURED_VALUE = 0x0040A300
_NUMERIC_VALUE = 0x0040A30A
_UNITS = 0x004008EA
_CONCEPT_CODE = 0x0040A168
_TEXT_VALUE = 0x0040A160
_UID = 0x0040A124
_DATETIME = 0x0040A120
_PERSON_NAME = 0x0040A123
_CODE_VALUE = 0x00080100
_SCHEME = 0x00080102
_MEANING = 0x00080104
_LONG_CODE_VALUE = 0x00080119
_URN_CODE_VALUE = 0x00080120
_VALUE_TAG = {"TEXT": _TEXT_VALUE, "UIDREF": _UID, "DATETIME": _DATETIME, "PNAME": _PERSON_NAME}


def walk(ds: Dataset) -> Node:
    """Reduce an SR document and its content tree to :class:`Node`s, once (single-pass walk, else plain)."""
    node = walk_fast(ds)
    return node if node is not None else walk_plain(ds)


# ------------------------------------------------------------------------------------------- text values


def _ascii_multi(text: str) -> Any:
    """CS, UI, DT, PN: trailing padding off, then split (pydicom's ``multi_string``)."""
    text = text.rstrip(" \x00")
    if "\\" in text:
        return text.split("\\")
    return text or None


def _ascii_text(text: str) -> Any:
    """SH, LO, UC: split, then each value's trailing padding off (pydicom's ``convert_text``)."""
    if "\\" in text:
        return [v.rstrip("\x00 ") for v in text.split("\\")]
    return text.rstrip("\x00 ") or None


def _ascii_decimal(text: str) -> Any:
    """DS: stripped, split, each value stripped (``DSfloat``'s original string)."""
    text = text.strip().rstrip(" \x00")
    if "\\" in text:
        return [v.strip() for v in text.split("\\")]
    return text or None


def _ascii_single(text: str) -> Any:
    """UT: one value, backslashes included (pydicom's ``convert_single_string``)."""
    return text.rstrip("\x00 ") or None


_ASCII_RULES: dict[str, Any] = {
    "CS": _ascii_multi, "UI": _ascii_multi, "DT": _ascii_multi, "PN": _ascii_multi,
    "SH": _ascii_text, "LO": _ascii_text, "UC": _ascii_text, "DS": _ascii_decimal, "UT": _ascii_single,
}  # fmt: skip


def _normalized(value: Any) -> Any:
    """A pydicom element value in Node form: str, a list of str when multi-valued, None when empty."""
    if value is None:
        return None
    if isinstance(value, str):  # str, UID
        return str(value) or None
    if isinstance(value, (bytes, bytearray)):  # left undecoded by pydicom (UN): its text, Latin-1 at worst
        return _ascii_multi(decode_bytes(bytes(value), ["iso8859"], TEXT_VR_DELIMS))
    if isinstance(value, (list, tuple)):  # MultiValue
        return [str(v) for v in value]
    if isinstance(value, Sequence):
        return None
    return str(value) or None  # DSfloat, IS, PersonName: their original text


def _raw_text(tag: int, vr: str, raw: bytes, encodings: list[str]) -> Any:
    """A raw text value in Node form: plain ASCII decoded here by the VR's rule, anything else by pydicom."""
    rule = _ASCII_RULES.get(vr)
    if rule is not None and raw.isascii() and b"\x1b" not in raw:
        return rule(raw.decode("ascii"))
    return _normalized(pydicom_value(tag, vr, raw, encodings))


def pydicom_value(tag: int, vr: str, raw: bytes, encodings: list[str]) -> Any:
    """The value pydicom gives an element read as explicit VR little endian (``convert_raw_data_element``)."""
    elem = RawDataElement(
        tag=BaseTag(tag), VR=vr, length=len(raw), value=raw, value_tell=0, is_implicit_VR=False,
        is_little_endian=True,
    )  # fmt: skip
    return convert_raw_data_element(elem, encoding=encodings).value


# By the declaration's raw bytes, or by its value when pydicom has converted it (dcmread converts a file's own
# SpecificCharacterSet while reading): at most 256 declarations of at most 64 bytes or characters.
_ENCODINGS: dict[bytes | str | tuple[str, ...], list[str]] = {}


def document_encodings(ds: Dataset) -> list[str] | None:
    """The character set of a file's dataset, or of a dataset declaring its own, as pydicom's codec names
    (Latin-1 when the declaration cannot be read). None for a dataset that may be a sequence item without a
    declaration: its character set is its parent's, which only pydicom knows (it then converts the values)."""
    try:
        elem = ds.get_item(_CHARSET)
    except Exception:
        return None
    if elem is None:
        return ["iso8859"] if isinstance(ds, FileDataset) else None
    key = _declaration_key(elem)
    if key is not None:
        hit = _ENCODINGS.get(key)
        if hit is not None:
            return hit
    try:
        encodings = convert_encodings(ds.get("SpecificCharacterSet"))
    except Exception:
        encodings = ["iso8859"]
    if key is not None and len(_ENCODINGS) < 256:
        _ENCODINGS[key] = encodings
    return encodings


def _declaration_key(elem: Any) -> bytes | str | tuple[str, ...] | None:
    """What a SpecificCharacterSet element declares, as a cache key: its raw bytes, or the value pydicom converted
    it to (a str, or a tuple of str when multi-valued); None when too long or of another type."""
    value = elem.value
    if type(elem) is RawDataElement:
        return value if type(value) is bytes and len(value) <= 64 else None
    if type(value) is str:
        return value if len(value) <= 64 else None
    if isinstance(value, MultiValue) and all(type(v) is str for v in value):
        key = tuple(value)
        return key if sum(map(len, key)) <= 64 else None
    return None


# ---------------------------------------------------------------------------------------------- plain walk


def get_element(ds: Dataset, tag: int) -> Any:
    """``ds.get_item(tag)``: the element as pydicom holds it (a ``RawDataElement`` until it is converted), None
    when absent or when pydicom cannot even give that."""
    try:
        return ds.get_item(tag)
    except Exception:
        return None


class RawItem:
    """One item of a sequence pydicom left raw in explicit VR little endian, split by :func:`split_items`:
    ``{tag: (VR, bytes) | [items]}`` and the character set it inherits from its dataset."""

    __slots__ = ("data", "encodings")

    def __init__(self, data: dict, encodings: list[str]):
        self.data = data
        self.encodings = encodings


def sequence_items(ds: Dataset | RawItem, tag: int) -> Any:
    """The items of a sequence element: :class:`RawItem`s when pydicom left it raw in explicit VR little endian
    and the splitter reads it, else pydicom's converted items (None when absent or not a sequence)."""
    if type(ds) is RawItem:
        found = ds.data.get(tag)
        return [RawItem(d, ds.encodings) for d in found] if type(found) is list else None
    elem = get_element(ds, tag)
    if elem is None:
        return None
    if type(elem) is RawDataElement:
        value = elem.value
        if elem.VR == "SQ" and type(value) is bytes and elem.is_little_endian and not elem.is_implicit_VR:
            encodings = document_encodings(ds)
            items = split_items(value) if encodings is not None else None
            if items is not None:
                return [RawItem(d, encodings) for d in items]
    return _items(ds, tag)


def item_text(ds: Dataset | RawItem, tag: int) -> Any:
    """A text value in Node form (a str, a list of str when multi-valued, None when empty)."""
    if type(ds) is RawItem:
        found = ds.data.get(tag)
        if found is None or type(found) is list:
            return None
        return _raw_text(tag, found[0].decode("ascii"), found[1], ds.encodings)
    return _text(ds, tag)


def _items(ds: Dataset, tag: int) -> Any:
    """The items of a sequence element of ``ds`` as pydicom converts them (None when absent or not a sequence)."""
    try:
        if ds.get_item(tag) is None:
            return None
        value = ds[tag].value
    except Exception:
        return None
    return value if isinstance(value, Sequence) else None


def _text(ds: Dataset, tag: int) -> Any:
    """A text value of ``ds`` in Node form (plain ASCII read from the raw bytes, anything else by pydicom)."""
    elem = get_element(ds, tag)
    if elem is None:
        return None
    if type(elem) is RawDataElement:
        raw, vr = elem.value, elem.VR
        rule = _ASCII_RULES.get(vr) if vr else None
        if rule is not None and type(raw) is bytes and raw.isascii() and b"\x1b" not in raw:
            return rule(raw.decode("ascii"))
        try:
            elem = ds[tag]
        except Exception:  # pydicom cannot convert it: its raw text, for the readers to warn about
            return _normalized(raw) if isinstance(raw, (bytes, bytearray)) else None
    return _normalized(elem.value)


def _code(get: Any, item: Any) -> Code:
    value = get(item, _CODE_VALUE) or get(item, _LONG_CODE_VALUE) or get(item, _URN_CODE_VALUE)
    return Code(
        str(value or "").strip(),
        str(get(item, _SCHEME) or "").strip(),
        str(get(item, _MEANING) or "").strip(),
    )


def _first_code(items: Any) -> Code | None:
    return _code(_text, items[0]) if items else None


def walk_plain(item: Dataset) -> Node:
    """The plain walk: ``item`` and its ContentSequence through pydicom's public API."""
    concept = _first_code(_items(item, _CONCEPT_NAME))
    value_type = str(_text(item, _VALUE_TYPE) or "").strip()
    node = Node(
        value_type=value_type,
        concept=concept.key if concept else "",
        relationship=str(_text(item, _RELATIONSHIP) or "").strip(),
        concept_meaning=concept.meaning if concept else "",
    )
    if value_type == "NUM":
        mvs = _items(item, _MEASURED_VALUE)
        if mvs:
            node.value = _text(mvs[0], _NUMERIC_VALUE)
            node.unit = _first_code(_items(mvs[0], _UNITS))
    elif value_type == "CODE":
        node.value = _first_code(_items(item, _CONCEPT_CODE))
    elif value_type in _VALUE_TAG:
        node.value = _text(item, _VALUE_TAG[value_type])
    children = _items(item, _CONTENT)
    if children:
        node.children = [walk_plain(child) for child in children]
    return node


# ------------------------------------------------------------------------------------------ single-pass walk


class _Unusual(Exception):
    """Outside what the single-pass walk reads; the plain walk takes over."""


class _ByteBoundedCache:
    """A cache keyed by raw byte spans that holds at most ``max_bytes`` of them (cleared when full); a span over
    ``max_key_bytes`` is never kept. Crafted reports with large distinct spans cannot grow it without bound."""

    __slots__ = ("data", "nbytes", "max_bytes", "max_key_bytes")

    def __init__(self, max_bytes: int, max_key_bytes: int):
        self.data: dict[Any, Any] = {}
        self.nbytes = 0
        self.max_bytes = max_bytes
        self.max_key_bytes = max_key_bytes

    def put(self, key: Any, size: int, value: Any) -> None:
        if size > self.max_key_bytes:
            return
        if self.nbytes + size > self.max_bytes:
            self.data.clear()
            self.nbytes = 0
        self.data[key] = value
        self.nbytes += size


# Code and measured-value sequences by their raw bytes; leaf content items (a kVp, a pitch, an acquisition type,
# a phantom...) repeat across the events and reports of a department byte for byte: the Node of identical bytes is
# shared (Nodes are read-only). ValueType/RelationshipType: a handful of short values.
_SPAN_CACHE = _ByteBoundedCache(max_bytes=4 << 20, max_key_bytes=1024)
_LEAF_CACHE = _ByteBoundedCache(max_bytes=4 << 20, max_key_bytes=512)
_SHORT_CACHE = _ByteBoundedCache(max_bytes=64 << 10, max_key_bytes=16)
# Counted in entries (size 1 each), not bytes: code_key by (scheme, value), and the readers' measured values
# (nmdose.dose.result.Report.measured) by (NumericValue text, unit Code, quantity) when no warning was due.
_CODE_KEY_CACHE = _ByteBoundedCache(max_bytes=4096, max_key_bytes=1)
MEASURED_CACHE = _ByteBoundedCache(max_bytes=4096, max_key_bytes=1)
# A content item's elements before its ContentSequence (see _content_item), by their raw bytes.
_HEAD_CACHE = _ByteBoundedCache(max_bytes=1 << 20, max_key_bytes=512)
CACHES = (_SPAN_CACHE, _LEAF_CACHE, _SHORT_CACHE, _CODE_KEY_CACHE, MEASURED_CACHE, _HEAD_CACHE)

_EXPLICIT_LE_HEADER = Struct("<HH2sH").unpack_from
_ITEM_HEADER = Struct("<HHL").unpack_from
_UINT32_LE = Struct("<L").unpack_from
_LONG_VRS = frozenset(
    {b"OB", b"OW", b"OF", b"OD", b"OL", b"OV", b"SQ", b"UT", b"UN", b"UC", b"UR", b"SV", b"UV"}
)
_SEQUENCE_DELIMITER = b"\xfe\xff\xdd\xe0"
_CONTENT_SQ = b"\x40\x00\x30\xa7SQ"  # ContentSequence (0040,A730) SQ, explicit VR little endian
_VALUE_ELEMENTS = frozenset({0xA120, 0xA123, 0xA124, 0xA160})  # DateTime, PersonName, UID, TextValue


def walk_fast(ds: Dataset) -> Node | None:
    """The single-pass walk, or None when the ContentSequence is not raw explicit VR little endian bytes or holds
    anything this walk does not read (the plain walk then reads the document)."""
    elem = get_element(ds, _CONTENT)
    if (
        type(elem) is not RawDataElement
        or elem.VR != "SQ"
        or elem.is_implicit_VR
        or not elem.is_little_endian
        or type(elem.value) is not bytes
    ):
        return None
    encodings = document_encodings(ds)
    if encodings is None:
        return None
    ek = encodings[0] if len(encodings) == 1 else tuple(encodings)
    try:
        name = ds.get_item(_CONCEPT_NAME)
        if type(name) is RawDataElement and name.VR == "SQ" and type(name.value) is bytes:
            raw = name.value
            concept, _ = _span(raw, 0, len(raw), len(raw), 1, ek, encodings)
        else:
            code = _first_code(_items(ds, _CONCEPT_NAME))
            concept = (code, code.key) if code else (None, "")
        node = Node(
            value_type=str(_text(ds, _VALUE_TYPE) or "").strip(),
            concept=concept[1],
            relationship=str(_text(ds, _RELATIONSHIP) or "").strip(),
            concept_meaning=concept[0].meaning if concept[0] else "",
        )
        value = elem.value
        node.children, _ = _content_items(value, 0, len(value), False, ek, encodings)
    except Exception:  # anything unexpected: the plain walk reads it (and words any error)
        return None
    return node


def _content_items(
    buf: bytes, pos: int, limit: int, delimited: bool, ek: Any, encodings: list[str]
) -> tuple[list[Node], int]:
    """The content items of a ContentSequence up to ``limit`` or its sequence delimiter (which an undefined-length
    sequence, ``delimited``, must have before ``limit``)."""
    nodes: list[Node] = []
    append = nodes.append
    header = _ITEM_HEADER
    leaves = _LEAF_CACHE
    cached, max_key = leaves.data.get, leaves.max_key_bytes  # put() clears the same dict, never replaces it
    while pos + 8 <= limit:
        group, element, length = header(buf, pos)
        pos += 8
        if group != 0xFFFE:
            raise _Unusual
        if element == 0xE000:
            if length == 0xFFFFFFFF:
                node, pos = _content_item(buf, pos, limit, True, ek, encodings)
            else:
                end = pos + length
                if end > limit:
                    raise _Unusual
                if length <= max_key:
                    key = (buf[pos:end], ek)
                    node = cached(key)
                    if node is None:
                        node, _ = _content_item(buf, pos, end, False, ek, encodings)
                        if not node.children:
                            leaves.put(key, length, node)
                else:
                    node, _ = _content_item(buf, pos, end, False, ek, encodings)
                pos = end
            append(node)
        elif element == 0xE0DD:
            return nodes, pos
        else:
            raise _Unusual
    if delimited:
        raise _Unusual  # no sequence delimiter: cut short
    return nodes, pos


def _content_item(
    buf: bytes, pos: int, limit: int, delimited: bool, ek: Any, encodings: list[str]
) -> tuple[Node, int]:
    header, uint32, long_vrs = _EXPLICIT_LE_HEADER, _UINT32_LE, _LONG_VRS
    relationship = value_type = b""
    concept: tuple[Code | None, str] = (None, "")
    values: dict[int, tuple[bytes, bytes]] = {}
    measured: tuple[Any, Code | None] | None = None
    coded: Code | None = None
    children: list[Node] = []
    # A container's head (its elements before the ContentSequence: relationship, value type, concept name...) is
    # the same bytes in every report of a scanner: looked up by those bytes, then the walk goes on from the
    # ContentSequence. Kept only once a parse has reached a ContentSequence element starting exactly there.
    head_key = None
    nested = buf.find(_CONTENT_SQ, pos, min(limit, pos + _HEAD_CACHE.max_key_bytes + 6))
    if nested >= 0:
        head_key = (buf[pos:nested], ek)
        hit = _HEAD_CACHE.data.get(head_key)
        if hit is not None:
            relationship, value_type, concept, measured, coded = hit
            pos = nested
            head_key = None
    while True:
        if pos + 8 > limit:
            if delimited:
                raise _Unusual
            break
        group, element, vr, length = header(buf, pos)
        if group == 0xFFFE:
            if element == 0xE00D and delimited:
                pos += 8
                break
            raise _Unusual
        if vr in long_vrs:
            if pos + 12 > limit:
                raise _Unusual
            (length,) = uint32(buf, pos + 8)
            pos += 12
            if vr == b"SQ":
                if group == 0x0040:
                    if element == 0xA730:
                        if head_key is not None and pos - 12 == nested and not values:
                            _HEAD_CACHE.put(head_key, len(head_key[0]), (relationship, value_type, concept,
                                                                         measured, coded))  # fmt: skip
                        if length == 0xFFFFFFFF:
                            children, pos = _content_items(buf, pos, limit, True, ek, encodings)
                        else:
                            end = pos + length
                            if end > limit:
                                raise _Unusual
                            children, _ = _content_items(buf, pos, end, False, ek, encodings)
                            pos = end
                        continue
                    if element == 0xA043:
                        concept, pos = _span(buf, pos, length, limit, 1, ek, encodings)
                        continue
                    if element == 0xA300:
                        measured, pos = _span(buf, pos, length, limit, 2, ek, encodings)
                        continue
                    if element == 0xA168:
                        coded_pair, pos = _span(buf, pos, length, limit, 1, ek, encodings)
                        coded = coded_pair[0]
                        continue
                pos = _skip_sequence(buf, pos, length, limit)
                continue
            if length == 0xFFFFFFFF or vr == b"UN":
                raise _Unusual  # UN: pydicom's rules apply (the plain walk)
        else:
            pos += 8
        end = pos + length
        if end > limit:
            raise _Unusual
        if group == 0x0040:
            if element == 0xA010:
                relationship = buf[pos:end]
            elif element == 0xA040:
                value_type = buf[pos:end]
            elif element in _VALUE_ELEMENTS:
                values[element] = (vr, buf[pos:end])
        elif group == 0x0008 and element == 0x0005:
            raise _Unusual  # a character set declared inside the tree: pydicom's rules apply
        pos = end
    short = _SHORT_CACHE.data.get
    vt = short(value_type)
    if vt is None:
        vt = _short_text(_VALUE_TYPE, value_type, encodings)
    rel = short(relationship)
    if rel is None:
        rel = _short_text(_RELATIONSHIP, relationship, encodings)
    value = unit = None
    if vt == "NUM":
        if measured is not None:
            value, unit = measured
    elif vt == "CODE":
        value = coded
    elif vt in _VALUE_TAG:
        tag = _VALUE_TAG[vt]
        found = values.get(tag & 0xFFFF)
        if found is not None:
            value = _raw_text(tag, found[0].decode("ascii"), found[1], encodings)
    # positional: Node(value_type, concept, relationship, value, unit, children, concept_meaning); ``children`` is
    # this item's own list (a new empty one without a ContentSequence, as the field's default would be)
    code = concept[0]
    return Node(vt, concept[1], rel, value, unit, children, code.meaning if code else ""), pos


def _short_text(tag: int, raw: bytes, encodings: list[str]) -> str:
    """RelationshipType / ValueType (CS: a handful of distinct values) as the plain walk words them."""
    hit = _SHORT_CACHE.data.get(raw)
    if hit is None:
        hit = str(_raw_text(tag, "CS", raw, encodings) or "").strip()
        _SHORT_CACHE.put(raw, len(raw), hit)
    return hit


def _span(
    buf: bytes, pos: int, length: int, limit: int, kind: int, ek: Any, encodings: list[str]
) -> tuple[Any, int]:
    """A code sequence (kind 1: ``(Code, key)``) or measured value sequence (kind 2: ``(value, unit)``) at
    ``pos``, looked up by its raw bytes first. For an undefined length the span is guessed as far as the first
    sequence delimiter whose 8 bytes lie before ``limit`` (looked for only as far as a cacheable span reaches); a
    guess is only ever cached when the full parse ended exactly there."""
    cache = _SPAN_CACHE
    if length != 0xFFFFFFFF:
        end = pos + length
        if end > limit:
            raise _Unusual
        raw = buf[pos:end] if length <= cache.max_key_bytes else None
        hit = cache.data.get((kind, raw, ek)) if raw is not None else None
        if hit is None:
            hit, _ = _parse_span(buf, pos, end, False, kind, ek, encodings)
            if raw is not None:
                cache.put((kind, raw, ek), length, hit)
        return hit, end
    # find() keeps the whole 4-byte tag before its end argument: the delimiter's length field must fit as well
    guess = buf.find(_SEQUENCE_DELIMITER, pos, min(limit - 4, pos + cache.max_key_bytes + 4))
    if guess >= 0:
        hit = cache.data.get((kind, buf[pos:guess], ek))
        if hit is not None:
            return hit, guess + 8
    hit, end = _parse_span(buf, pos, limit, True, kind, ek, encodings)
    if end - 8 == guess:
        cache.put((kind, buf[pos:guess], ek), guess - pos, hit)
    return hit, end


def _parse_span(
    buf: bytes, pos: int, limit: int, delimited: bool, kind: int, ek: Any, encodings: list[str]
) -> tuple[Any, int]:
    """A span not in the cache. A measured value's unit (a code sequence, the same few in every report) is looked
    up by its own bytes: only the number is new in most measured values."""
    if kind == 2:
        items, end = _read_items(buf, pos, limit, delimited, _measured_dataset, ek, encodings)
        return _measured_value(items, encodings), end
    items, end = _read_items(buf, pos, limit, delimited, _raw_dataset)
    return _value_of_items(items, kind, encodings), end


_NOT_A_SEQUENCE = object()


def _measured_value(items: list[dict], encodings: list[str]) -> tuple[Any, Code | None]:
    """``_value_of_items(items, 2)`` for items read by :func:`_measured_dataset`: the same checks and answer."""
    if not items:
        return None, None
    first = items[0]
    units = first.pop(_UNITS, None)
    if units is _NOT_A_SEQUENCE:
        raise _Unusual
    found = first.get(_NUMERIC_VALUE)
    if found is None:
        return None, units
    if type(found) is list:  # a sequence where a text was expected
        raise _Unusual
    return _raw_text(_NUMERIC_VALUE, found[0].decode("ascii"), found[1], encodings), units


def _measured_dataset(
    buf: bytes, pos: int, limit: int, delimited: bool, ek: Any, encodings: list[str]
) -> tuple[dict, int]:
    """:func:`_raw_dataset` of a measured value item, its MeasurementUnitsCodeSequence as the unit's Code (None
    when empty) through :func:`_span`, or ``_NOT_A_SEQUENCE`` when that element is not a sequence."""
    data: dict = {}
    header, uint32, long_vrs = _EXPLICIT_LE_HEADER, _UINT32_LE, _LONG_VRS
    while pos + 8 <= limit:
        group, element, vr, length = header(buf, pos)
        if group == 0xFFFE:
            if element == 0xE00D:
                return data, pos + 8
            raise _Unusual
        tag = group << 16 | element
        if vr in long_vrs:
            if pos + 12 > limit:
                raise _Unusual
            (length,) = uint32(buf, pos + 8)
            pos += 12
            if vr == b"SQ":
                if tag == _UNITS:
                    unit, pos = _span(buf, pos, length, limit, 1, ek, encodings)
                    data[tag] = unit[0]
                else:
                    data[tag], pos = _raw_sequence(buf, pos, length, limit)
                continue
            if length == 0xFFFFFFFF or vr == b"UN":
                raise _Unusual
        else:
            pos += 8
        if pos + length > limit or tag == _CHARSET:
            raise _Unusual
        data[tag] = (vr, buf[pos : pos + length]) if tag != _UNITS else _NOT_A_SEQUENCE
        pos += length
    if delimited:
        raise _Unusual  # no item delimiter: cut short
    return data, pos


def _value_of_items(items: list[dict], kind: int, encodings: list[str]) -> Any:
    def get(item: dict, tag: int) -> Any:
        found = item.get(tag)
        if found is None:
            return None
        if type(found) is list:  # a sequence where a text was expected
            raise _Unusual
        return _raw_text(tag, found[0].decode("ascii"), found[1], encodings)

    if kind == 1:
        if not items:
            return (None, "")
        code = _code(get, items[0])
        return (code, code.key)
    if not items:
        return (None, None)
    mv = items[0]
    units = mv.get(_UNITS)
    if units is not None and type(units) is not list:
        raise _Unusual
    return (get(mv, _NUMERIC_VALUE), _code(get, units[0]) if units else None)


def _read_items(
    buf: bytes, pos: int, limit: int, delimited: bool, read_item: Any, *args: Any
) -> tuple[list, int]:
    """The items of a raw explicit VR little endian sequence, each read by ``read_item(buf, pos, limit, delimited,
    *args)``, up to ``limit`` or the sequence delimiter; an undefined-length sequence (``delimited``) must reach
    its delimiter before ``limit``, and so must an undefined-length item its item delimiter."""
    items: list = []
    header = _ITEM_HEADER
    while pos + 8 <= limit:
        group, element, length = header(buf, pos)
        pos += 8
        if group != 0xFFFE or element != 0xE000:
            if group == 0xFFFE and element == 0xE0DD:
                return items, pos
            raise _Unusual
        if length == 0xFFFFFFFF:
            item, pos = read_item(buf, pos, limit, True, *args)
        else:
            end = pos + length
            if end > limit:
                raise _Unusual
            item, _ = read_item(buf, pos, end, False, *args)
            pos = end
        items.append(item)
    if delimited:
        raise _Unusual  # no sequence delimiter: cut short
    return items, pos


def _raw_sequence(buf: bytes, pos: int, length: int, limit: int) -> tuple[list[dict], int]:
    """The items of a nested sequence whose value starts at ``pos`` (``length`` as its header says, undefined
    included) as ``{tag: (VR, bytes) | [items]}``, and where the sequence ends."""
    if length == 0xFFFFFFFF:
        return _read_items(buf, pos, limit, True, _raw_dataset)
    end = pos + length
    if end > limit:
        raise _Unusual
    items, _ = _read_items(buf, pos, end, False, _raw_dataset)
    return items, end


def _raw_dataset(buf: bytes, pos: int, limit: int, delimited: bool) -> tuple[dict, int]:
    data: dict = {}
    header, uint32, long_vrs = _EXPLICIT_LE_HEADER, _UINT32_LE, _LONG_VRS
    while pos + 8 <= limit:
        group, element, vr, length = header(buf, pos)
        if group == 0xFFFE:
            if element == 0xE00D:
                return data, pos + 8
            raise _Unusual
        if vr in long_vrs:
            if pos + 12 > limit:
                raise _Unusual
            (length,) = uint32(buf, pos + 8)
            pos += 12
            if vr == b"SQ":
                data[group << 16 | element], pos = _raw_sequence(buf, pos, length, limit)
                continue
            if length == 0xFFFFFFFF or vr == b"UN":
                raise _Unusual
        else:
            pos += 8
        if pos + length > limit or (group == 0x0008 and element == 0x0005):
            raise _Unusual
        data[group << 16 | element] = (vr, buf[pos : pos + length])
        pos += length
    if delimited:
        raise _Unusual  # no item delimiter: cut short
    return data, pos


def split_items(value: bytes) -> list[dict] | None:
    """The items of a raw explicit VR little endian sequence value as ``{tag: (VR, bytes) | [items]}``; None
    when it holds anything the splitter does not read (UN, a character set of its own, a broken length, an
    undefined-length item or sequence cut short...)."""
    try:
        items, _ = _read_items(value, 0, len(value), False, _raw_dataset)
    except Exception:
        return None
    return items


def _skip_sequence(buf: bytes, pos: int, length: int, limit: int) -> int:
    if length != 0xFFFFFFFF:
        end = pos + length
        if end > limit:
            raise _Unusual
        return end
    return _raw_sequence(buf, pos, length, limit)[1]
