"""Generic DICOM SR content items (PS3.3 C.17.3): build them, and walk a content tree once.

Shared by the synthetic-object builders (`nmdose.simulate.rdsr`) and the dose readers (`nmdose.dose`). Codes are
plain ``(value, scheme, meaning)`` triples (:class:`Code`) so this module needs no code table of its own.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from struct import Struct, unpack_from
from typing import Any, NamedTuple

from pydicom.charset import convert_encodings, decode_bytes
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.sr._snomed_dict import mapping as _SNOMED
from pydicom.valuerep import TEXT_VR_DELIMS

_SRT_TO_SCT: dict[str, str] = _SNOMED["SRT"]


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


@dataclass(slots=True)
class Node:
    """One content item reduced to what the dose readers use; built once per file by :func:`walk`.

    Read-only once built: the walk shares the Node of a leaf item between documents with identical bytes.
    """

    value_type: str
    concept: str  # code key, "" when the item has no concept name
    relationship: str
    value: Any = None  # str for TEXT/UIDREF/DATETIME/PNAME, the raw NumericValue for NUM, a Code for CODE
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


# Tags read by the walker; it reads pydicom's raw element bytes itself (one dict lookup per tag, no per-element
# conversion objects), which is what keeps parsing close to the cost of dcmread.
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


def _encodings(ds: Dataset) -> list[str]:
    try:
        elem = ds._dict.get(0x00080005)
        raw = elem.value if elem is not None else None
        if (
            type(raw) is bytes and raw.isascii()
        ):  # the raw declaration (read as pydicom would, without its layers)
            text = raw.decode("ascii").strip(" \x00")
            return convert_encodings([t.strip() for t in text.split("\\")] if "\\" in text else text or None)
        return convert_encodings(ds.get("SpecificCharacterSet"))
    except Exception:  # unknown or malformed declaration: decode as Latin-1, the readers warn on the text
        return ["iso8859"]


_SQ_TAGS = frozenset({_CONCEPT_NAME, _CONTENT, _MEASURED_VALUE, _UNITS, _CONCEPT_CODE, 0x0040A504, 0x0040A170,
                      0x00081199, 0x0040A0B0, 0x0040A370, 0x0040A375, 0x0040A385, 0x0040A525})  # fmt: skip
_LONG_VRS = frozenset(
    {b"OB", b"OW", b"OF", b"OD", b"OL", b"OV", b"SQ", b"UT", b"UN", b"UC", b"UR", b"SV", b"UV"}
)
_ITEM = (0xFFFE, 0xE000)
_ITEM_END = (0xFFFE, 0xE00D)
_SEQUENCE_END = (0xFFFE, 0xE0DD)


def _raw_items(
    buf: memoryview, pos: int, end: int | None, implicit: bool, fmt: str
) -> tuple[list[dict], int]:
    """Items of a raw sequence value as ``{tag: bytes | list[items]}``; stops at its end or delimiter."""
    items: list[dict] = []
    limit = len(buf) if end is None else end
    hhl = fmt + "HHL"
    while pos + 8 <= limit:
        group, element, length = unpack_from(hhl, buf, pos)
        pos += 8
        if (group, element) == _SEQUENCE_END:
            break
        if (group, element) != _ITEM:
            raise ValueError(
                f"sequence item tag expected at offset {pos - 8}, found ({group:04X},{element:04X})"
            )
        if length == 0xFFFFFFFF:
            item, pos = _raw_dataset(buf, pos, None, implicit, fmt)
        else:
            if pos + length > limit:
                raise ValueError("sequence item runs past the end of its sequence")
            item, _ = _raw_dataset(buf, pos, pos + length, implicit, fmt)
            pos += length
        items.append(item)
    return items, pos


def _raw_dataset(buf: Any, pos: int, end: int | None, implicit: bool, fmt: str) -> tuple[dict, int]:
    if not implicit and fmt == "<":
        return _raw_dataset_explicit_le(buf, pos, end)
    data: dict = {}
    limit = len(buf) if end is None else end
    hh, long_, short = fmt + "HH", fmt + "L", fmt + "H"
    while pos + 8 <= limit:
        group, element = unpack_from(hh, buf, pos)
        if group == 0xFFFE:
            if element == 0xE00D:
                return data, pos + 8
            raise ValueError(f"unexpected delimiter ({group:04X},{element:04X}) in a sequence item")
        tag = group << 16 | element
        if implicit:
            vr = None
            (length,) = unpack_from(long_, buf, pos + 4)
            pos += 8
        else:
            vr = bytes(buf[pos + 4 : pos + 6])
            if vr in _LONG_VRS:
                (length,) = unpack_from(long_, buf, pos + 8)
                pos += 12
            else:
                (length,) = unpack_from(short, buf, pos + 6)
                pos += 8
        if vr == b"SQ" or (vr in (None, b"UN") and (length == 0xFFFFFFFF or tag in _SQ_TAGS)):
            if length == 0xFFFFFFFF:
                data[tag], pos = _raw_items(buf, pos, None, implicit, fmt)
            else:
                if pos + length > limit:
                    raise ValueError(f"sequence ({group:04X},{element:04X}) runs past the end of its item")
                data[tag], _ = _raw_items(buf, pos, pos + length, implicit, fmt)
                pos += length
            continue
        if length == 0xFFFFFFFF:
            raise ValueError(f"undefined length for ({group:04X},{element:04X}), not a sequence")
        if pos + length > limit:
            raise ValueError(f"element ({group:04X},{element:04X}) runs past the end of its item")
        data[tag] = bytes(buf[pos : pos + length])
        pos += length
    return data, pos


_EXPLICIT_LE_HEADER = Struct("<HH2sH").unpack_from
_UINT32_LE = Struct("<L").unpack_from


def _raw_dataset_explicit_le(buf: Any, pos: int, end: int | None) -> tuple[dict, int]:
    """The common case (explicit VR little endian): one struct call per element header, sequences inline."""
    data: dict = {}
    limit = len(buf) if end is None else end
    header, uint32, long_vrs = _EXPLICIT_LE_HEADER, _UINT32_LE, _LONG_VRS
    while pos + 8 <= limit:
        group, element, vr, length = header(buf, pos)
        if group == 0xFFFE:
            if element == 0xE00D:
                return data, pos + 8
            raise ValueError(f"unexpected delimiter ({group:04X},{element:04X}) in a sequence item")
        if vr in long_vrs:
            (length,) = uint32(buf, pos + 8)
            pos += 12
            if vr == b"SQ" or (vr == b"UN" and (length == 0xFFFFFFFF or (group << 16 | element) in _SQ_TAGS)):
                if length == 0xFFFFFFFF:
                    data[group << 16 | element], pos = _raw_items_explicit_le(buf, pos, limit)
                else:
                    if pos + length > limit:
                        raise ValueError(
                            f"sequence ({group:04X},{element:04X}) runs past the end of its item"
                        )
                    data[group << 16 | element], _ = _raw_items_explicit_le(buf, pos, pos + length)
                    pos += length
                continue
            if length == 0xFFFFFFFF:
                raise ValueError(f"undefined length for ({group:04X},{element:04X}), not a sequence")
        else:
            pos += 8
        if pos + length > limit:
            raise ValueError(f"element ({group:04X},{element:04X}) runs past the end of its item")
        data[group << 16 | element] = buf[pos : pos + length]
        pos += length
    return data, pos


_ITEM_HEADER = Struct("<HHL").unpack_from


def _raw_items_explicit_le(buf: Any, pos: int, limit: int) -> tuple[list[dict], int]:
    """:func:`_raw_items` for explicit VR little endian."""
    items: list[dict] = []
    header = _ITEM_HEADER
    while pos + 8 <= limit:
        group, element, length = header(buf, pos)
        pos += 8
        if group != 0xFFFE or element != 0xE000:
            if group == 0xFFFE and element == 0xE0DD:
                break
            raise ValueError(
                f"sequence item tag expected at offset {pos - 8}, found ({group:04X},{element:04X})"
            )
        if length == 0xFFFFFFFF:
            item, pos = _raw_dataset_explicit_le(buf, pos, limit)
        else:
            if pos + length > limit:
                raise ValueError("sequence item runs past the end of its sequence")
            item, _ = _raw_dataset_explicit_le(buf, pos, pos + length)
            pos += length
        items.append(item)
    return items, pos


def _sequence(item: Any, tag: int) -> Any:
    """Items of a sequence element: parsed here from raw bytes, or pydicom's own when it already parsed them."""
    if type(item) is dict:
        return item.get(tag)
    elem = item._dict.get(tag)
    if elem is None:
        return None
    value = elem.value
    if isinstance(value, (bytes, bytearray)):  # defined-length sequence pydicom has not parsed (it is lazy)
        fmt = "<" if elem.is_little_endian else ">"
        items, _ = _raw_items(bytes(value), 0, len(value), bool(elem.is_implicit_VR), fmt)
        return items
    return value


def _text(item: Any, tag: int, encodings: list[str]) -> Any:
    if type(item) is dict:
        value = item.get(tag)
        if type(value) is bytes:  # the common case: a raw value parsed by this module
            try:
                text = value.decode("ascii")
            except UnicodeDecodeError:
                text = decode_bytes(value, encodings, TEXT_VR_DELIMS)
            text = text.rstrip(" \x00")
            if "\\" in text:
                return text.split("\\")
            return text if text else None
    else:
        elem = item._dict.get(tag)
        if elem is None:
            return None
        value = elem.value
    if value is None:
        return None
    if isinstance(value, (bytes, bytearray, memoryview)):
        raw = bytes(value)
        try:
            text = raw.decode("ascii")
        except UnicodeDecodeError:
            text = decode_bytes(raw, encodings, TEXT_VR_DELIMS)
        text = text.rstrip(" \x00")
        if "\\" in text:
            return text.split("\\")
        return text if text else None
    if isinstance(value, (str, int, float)):
        return value
    if type(value).__name__ == "MultiValue":
        return list(value)
    return str(value)


def sequence_items(item: Any, tag: int) -> Any:
    """Items of a sequence element of a dataset or raw item (raw dicts when pydicom had not parsed it)."""
    return _sequence(item, tag)


def item_text(item: Any, tag: int, encodings: list[str] | None = None) -> Any:
    """A text value of a dataset or raw item (ASCII fast path; else decoded with ``encodings``)."""
    return _text(item, tag, encodings or ["iso8859"])


def _read_code(item: Any, encodings: list[str]) -> Code:
    value = _text(item, _CODE_VALUE, encodings) or _text(item, _LONG_CODE_VALUE, encodings)
    if value is None:
        value = _text(item, _URN_CODE_VALUE, encodings)
    return Code(
        str(value or "").strip(),
        str(_text(item, _SCHEME, encodings) or "").strip(),
        str(_text(item, _MEANING, encodings) or "").strip(),
    )


# Raw code items repeat a lot (every event has the same concept names): decoded once per distinct bytes.
_CODE_CACHE: dict[tuple, tuple[Code, str]] = {}
_CODE_CACHE_MAX = 20000


def _code_and_key(seq: Any, encodings: list[str]) -> tuple[Code | None, str]:
    """First code of a code sequence and its key (``""`` when absent)."""
    if not seq:
        return None, ""
    item = seq[0]
    if type(item) is not dict:
        code = _read_code(item, encodings)
        return code, code.key
    get = item.get
    cache_key = (get(_CODE_VALUE), get(_SCHEME), get(_MEANING), get(_LONG_CODE_VALUE), get(_URN_CODE_VALUE),
                 encodings[0] if len(encodings) == 1 else tuple(encodings))  # fmt: skip
    try:
        hit = _CODE_CACHE.get(cache_key)
    except TypeError:  # an unhashable value (a nested sequence where a text was expected)
        code = _read_code(item, encodings)
        return code, code.key
    if hit is None:
        code = _read_code(item, encodings)
        if len(_CODE_CACHE) >= _CODE_CACHE_MAX:
            _CODE_CACHE.clear()
        hit = _CODE_CACHE[cache_key] = (code, code.key)
    return hit


def _first_code(seq: Any, encodings: list[str]) -> Code | None:
    return _code_and_key(seq, encodings)[0]


def walk(item: Dataset, encodings: list[str] | None = None) -> Node:
    """Reduce an SR document (or one content item) and its ContentSequence to :class:`Node`s, once."""
    if encodings is None:
        encodings = _encodings(item)
    if type(item) is not dict:
        fast = _walk_document_fast(item, encodings)
        if fast is not None:
            return fast
    return _walk(item, encodings)


def _walk(item: Any, encodings: list[str]) -> Node:
    concept, concept_key = _code_and_key(_sequence(item, _CONCEPT_NAME), encodings)
    value_type = str(_text(item, _VALUE_TYPE, encodings) or "").strip()
    node = Node(
        value_type=value_type,
        concept=concept_key,
        relationship=str(_text(item, _RELATIONSHIP, encodings) or "").strip(),
        concept_meaning=concept.meaning if concept else "",
    )
    if value_type == "NUM":
        mvs = _sequence(item, _MEASURED_VALUE)
        if mvs:
            mv = mvs[0]
            node.value = _text(mv, _NUMERIC_VALUE, encodings)
            node.unit = _first_code(_sequence(mv, _UNITS), encodings)
    elif value_type == "CODE":
        node.value = _first_code(_sequence(item, _CONCEPT_CODE), encodings)
    elif value_type == "TEXT":
        node.value = _text(item, _TEXT_VALUE, encodings)
    elif value_type == "UIDREF":
        node.value = _text(item, _UID, encodings)
    elif value_type == "DATETIME":
        node.value = _text(item, _DATETIME, encodings)
    elif value_type == "PNAME":
        node.value = _text(item, _PERSON_NAME, encodings)
    children = _sequence(item, _CONTENT)
    if children:
        node.children = [_walk(child, encodings) for child in children]
    return node


# ------------------------------------------------------------------------------------------ single-pass walk
#
# The common case, an explicit VR little endian document whose ContentSequence pydicom has left as raw bytes, is
# reduced to Nodes in one pass over those bytes: no intermediate dict per item, and the code sequences (concept
# names, units, coded values: the same few hundred byte strings in every report) are looked up by their raw bytes
# before being parsed at all. Anything this pass does not expect (a UN sequence, a delimiter out of place, a
# length past the end) makes it give up and the general walk above reads the document, so both give the same
# Nodes or the same error.


class _Unusual(Exception):
    """Outside what the single-pass walk reads; the general walk takes over."""


_ITEM_DELIMITER = b"\xfe\xff\x0d\xe0"
_SEQUENCE_DELIMITER = b"\xfe\xff\xdd\xe0"
_SPAN_CACHE: dict[tuple, Any] = {}
_SPAN_CACHE_MAX = 50000
# Leaf content items of defined length (a kVp, a pitch, an acquisition type, a phantom...) repeat across the
# events and reports of a department byte for byte: the Node of identical bytes is shared (Nodes are read-only).
_LEAF_CACHE: dict[tuple, Node] = {}
_LEAF_MAX_BYTES = 512
_VALUE_ELEMENTS = frozenset({0xA120, 0xA123, 0xA124, 0xA160})  # DateTime, PersonName, UID, TextValue


def _walk_document_fast(ds: Dataset, encodings: list[str]) -> Node | None:
    elem = ds._dict.get(_CONTENT)
    if elem is None or not isinstance(elem.value, (bytes, bytearray)):
        return None
    if elem.is_implicit_VR or not elem.is_little_endian:
        return None
    try:
        node = _walk(_without_content(ds), encodings)
        value = bytes(elem.value)
        node.children, _ = _content_items(value, 0, len(value), _enc_key(encodings), encodings)
    except Exception:  # anything unexpected: the general walk reads it (and words any error)
        return None
    return node


class _Shallow:
    """A dataset stand-in without its ContentSequence (the root's own concept, value type...)."""

    __slots__ = ("_dict",)

    def __init__(self, d: dict):
        self._dict = d


def _without_content(ds: Dataset) -> Any:
    d = {tag: e for tag, e in ds._dict.items() if tag != _CONTENT}
    return _Shallow(d)


def _enc_key(encodings: list[str]) -> Any:
    return encodings[0] if len(encodings) == 1 else tuple(encodings)


def _content_items(buf: bytes, pos: int, limit: int, ek: Any, encodings: list[str]) -> tuple[list[Node], int]:
    nodes: list[Node] = []
    header = _ITEM_HEADER
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
                if length <= _LEAF_MAX_BYTES:
                    key = (buf[pos:end], ek)
                    node = _LEAF_CACHE.get(key)
                    if node is None:
                        node, _ = _content_item(buf, pos, end, False, ek, encodings)
                        if not node.children:
                            if len(_LEAF_CACHE) >= _SPAN_CACHE_MAX:
                                _LEAF_CACHE.clear()
                            _LEAF_CACHE[key] = node
                else:
                    node, _ = _content_item(buf, pos, end, False, ek, encodings)
                pos = end
            nodes.append(node)
        elif element == 0xE0DD:
            return nodes, pos
        else:
            raise _Unusual
    return nodes, pos


def _content_item(
    buf: bytes, pos: int, limit: int, delimited: bool, ek: Any, encodings: list[str]
) -> tuple[Node, int]:
    header, uint32, long_vrs = _EXPLICIT_LE_HEADER, _UINT32_LE, _LONG_VRS
    relationship = value_type = b""
    concept: tuple[Code | None, str] = (None, "")
    values: dict[int, bytes] = {}
    measured: tuple[Any, Code | None] | None = None
    coded: Code | None = None
    children: list[Node] = []
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
            (length,) = uint32(buf, pos + 8)
            pos += 12
            if vr == b"SQ":
                if group == 0x0040:
                    if element == 0xA730:
                        if length == 0xFFFFFFFF:
                            children, pos = _content_items(buf, pos, limit, ek, encodings)
                        else:
                            end = pos + length
                            if end > limit:
                                raise _Unusual
                            children, _ = _content_items(buf, pos, end, ek, encodings)
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
                raise _Unusual
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
                values[element] = buf[pos:end]
        pos = end
    vt = _short_text(value_type, encodings)
    node = Node(
        value_type=vt,
        concept=concept[1],
        relationship=_short_text(relationship, encodings),
        concept_meaning=concept[0].meaning if concept[0] else "",
    )
    if vt == "NUM":
        if measured is not None:
            node.value, node.unit = measured
    elif vt == "CODE":
        node.value = coded
    elif vt == "TEXT":
        node.value = _decode(values.get(0xA160), encodings)
    elif vt == "UIDREF":
        node.value = _decode(values.get(0xA124), encodings)
    elif vt == "DATETIME":
        node.value = _decode(values.get(0xA120), encodings)
    elif vt == "PNAME":
        node.value = _decode(values.get(0xA123), encodings)
    if children:
        node.children = children
    return node, pos


_SHORT: dict[bytes, str] = {}


def _short_text(raw: bytes, encodings: list[str]) -> str:
    """RelationshipType / ValueType (a handful of distinct values) as the general walk words them."""
    hit = _SHORT.get(raw)
    if hit is None:
        hit = str(_decode(raw, encodings) or "").strip()
        if len(_SHORT) < 1000:
            _SHORT[raw] = hit
    return hit


def _decode(raw: bytes | None, encodings: list[str]) -> Any:
    """A text value as :func:`_text` gives it: None when empty, a list when multi-valued."""
    if raw is None:
        return None
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        text = decode_bytes(raw, encodings, TEXT_VR_DELIMS)
    text = text.rstrip(" \x00")
    if "\\" in text:
        return text.split("\\")
    return text if text else None


def _span(
    buf: bytes, pos: int, length: int, limit: int, kind: int, ek: Any, encodings: list[str]
) -> tuple[Any, int]:
    """A code sequence (kind 1: ``(Code, key)``) or measured value sequence (kind 2: ``(value, unit)``) at
    ``pos``, looked up by its raw bytes first. For an undefined length the span is guessed as far as the first
    sequence delimiter; a guess is only ever cached when the full parse ended exactly there."""
    if length != 0xFFFFFFFF:
        end = pos + length
        if end > limit:
            raise _Unusual
        raw = buf[pos:end]
        key = (kind, raw, ek)
        hit = _SPAN_CACHE.get(key)
        if hit is None:
            hit = _parse_span(raw, kind, encodings)
            _remember(key, hit)
        return hit, end
    guess = buf.find(_SEQUENCE_DELIMITER, pos, limit)
    if guess >= 0:
        key = (kind, buf[pos:guess], ek)
        hit = _SPAN_CACHE.get(key)
        if hit is not None:
            return hit, guess + 8
    items, end = _raw_items_explicit_le(buf, pos, limit)
    hit = _value_of_items(items, kind, encodings)
    if end - 8 == guess:
        _remember((kind, buf[pos:guess], ek), hit)
    return hit, end


def _remember(key: tuple, value: Any) -> None:
    if len(_SPAN_CACHE) >= _SPAN_CACHE_MAX:
        _SPAN_CACHE.clear()
    _SPAN_CACHE[key] = value


def _parse_span(raw: bytes, kind: int, encodings: list[str]) -> Any:
    items, _ = _raw_items_explicit_le(raw, 0, len(raw))
    return _value_of_items(items, kind, encodings)


def _value_of_items(items: list[dict], kind: int, encodings: list[str]) -> Any:
    if kind == 1:
        if not items:
            return (None, "")
        code = _read_code(items[0], encodings)
        return (code, code.key)
    if not items:
        return (None, None)
    mv = items[0]
    return (_text(mv, _NUMERIC_VALUE, encodings), _first_code(_sequence(mv, _UNITS), encodings))


def _skip_sequence(buf: bytes, pos: int, length: int, limit: int) -> int:
    if length != 0xFFFFFFFF:
        end = pos + length
        if end > limit:
            raise _Unusual
        return end
    _, end = _raw_items_explicit_le(buf, pos, limit)
    return end
