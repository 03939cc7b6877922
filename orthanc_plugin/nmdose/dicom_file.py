"""Read a DICOM Part 10 file's header into a lazy pydicom ``Dataset``, several times faster than ``dcmread``.

The dose readers need a file's header and, for SRs, its content tree. ``pydicom.dcmread`` spends most of its
time per element (a generator step, a file ``read`` and ``tell``, a tag object) and on the File Meta Information.
:func:`read_header` reads the file's bytes once and splits the main dataset into pydicom ``RawDataElement``s
itself, stopping before the pixel data, so the result behaves exactly like ``dcmread(..., stop_before_pixels=True)``
for every reader (values are converted by pydicom on first access, sequences stay raw until asked for).

Only the common encodings take this path: a file with the ``DICM`` preamble, File Meta in explicit VR little
endian, and a main dataset in explicit or implicit VR little endian, up to :data:`MAX_FAST_BYTES`. Everything
else (deflated or big-endian transfer syntaxes, files without a preamble, very large multi-frame images, or a
file this reader finds malformed) is handed to ``dcmread`` unchanged, so its behaviour and its error messages
stay pydicom's.
"""

from __future__ import annotations

import os
from struct import Struct
from typing import Any

from pydicom import dcmread
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.tag import BaseTag

MAX_FAST_BYTES = 16 * 1024 * 1024
EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"
IMPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2"
DEFLATED = "1.2.840.10008.1.2.1.99"
BIG_ENDIAN = "1.2.840.10008.1.2.2"
_PIXEL_DATA_TAGS = frozenset({0x7FE00008, 0x7FE00009, 0x7FE00010})  # where stop_before_pixels stops

_EXPLICIT_HEADER = Struct("<HH2sH").unpack_from
_IMPLICIT_HEADER = Struct("<HHL").unpack_from
_UINT32 = Struct("<L").unpack_from
_LONG_VRS = frozenset(
    {b"OB", b"OW", b"OF", b"OD", b"OL", b"OV", b"SQ", b"UT", b"UN", b"UC", b"UR", b"SV", b"UV"}
)
_VR_NAMES: dict[bytes, str] = {}


class _NotFast(Exception):
    """The file is valid for pydicom but outside what the fast path reads (or malformed): use ``dcmread``."""


def read_header(path: str | os.PathLike) -> Dataset:
    """The file's dataset without pixel data, as ``dcmread(path, stop_before_pixels=True)`` would give it."""
    file = os.fspath(path)
    try:
        with open(file, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            if size > MAX_FAST_BYTES:
                raise _NotFast
            buf = fh.read()
        return _read(buf, file)
    except (_NotFast, ValueError, KeyError, IndexError, UnicodeDecodeError, OSError):
        # dcmread gives its own answer: the same dataset, or the error (with pydicom's message) for a broken file.
        return dcmread(file, stop_before_pixels=True)


def _read(buf: bytes, file: str) -> Dataset:
    if len(buf) < 144 or buf[128:132] != b"DICM":
        raise _NotFast
    meta, pos = _elements(buf, 132, False, group=0x0002)
    ts_elem = meta.get(0x00020010)
    if ts_elem is None:
        raise _NotFast
    transfer_syntax = ts_elem.value.decode("ascii").strip(" \x00")
    if transfer_syntax in (DEFLATED, BIG_ENDIAN):
        raise _NotFast
    implicit = transfer_syntax == IMPLICIT_VR_LITTLE_ENDIAN
    if (
        implicit
        and pos + 6 <= len(buf)
        and buf[pos + 4 : pos + 6].isalpha()
        and buf[pos + 4 : pos + 6].isupper()
    ):
        raise _NotFast  # an explicit-VR dataset declared implicit: pydicom's heuristics handle it
    elements, _ = _elements(buf, pos, implicit)
    file_meta = FileMetaDataset()
    file_meta._dict.update(meta)
    ds = Dataset()
    ds._dict.update(elements)
    ds.file_meta = file_meta
    ds.preamble = buf[:128]
    ds.filename = file
    ds.set_original_encoding(implicit, True, None)
    return ds


def _elements(buf: bytes, pos: int, implicit: bool, group: int | None = None) -> tuple[dict, int]:
    """Top-level elements from ``pos`` as ``{BaseTag: RawDataElement}``, up to the pixel data or the end.

    ``group`` stops at the first element of another group (the File Meta Information).
    """
    out: dict[BaseTag, RawDataElement] = {}
    limit = len(buf)
    names = _VR_NAMES
    while pos + 8 <= limit:
        if implicit:
            grp, elem, length = _IMPLICIT_HEADER(buf, pos)
            vr_name = None
            header_end = pos + 8
            is_sq_vr = False
        else:
            grp, elem, vr, length = _EXPLICIT_HEADER(buf, pos)
            if vr in _LONG_VRS:
                (length,) = _UINT32(buf, pos + 8)
                header_end = pos + 12
            else:
                header_end = pos + 8
            vr_name = names.get(vr)
            if vr_name is None:
                if not (len(vr) == 2 and vr.isalpha() and vr.isupper()):
                    raise _NotFast  # not a VR: malformed, or a VR pydicom guesses around
                vr_name = names[vr] = vr.decode("ascii")
            is_sq_vr = vr == b"SQ"
        tag = grp << 16 | elem
        if group is not None and grp != group:
            return out, pos
        if tag in _PIXEL_DATA_TAGS:
            return out, pos
        if grp == 0xFFFE:
            raise _NotFast  # a delimiter at the top level
        if length == 0xFFFFFFFF:
            if not (is_sq_vr or implicit):
                raise _NotFast  # includes UN of undefined length (implicit VR inside): pydicom reads it
            end = _sequence_end(buf, header_end, implicit)
            value = buf[header_end : end - 8]
            key = BaseTag(tag)
            out[key] = RawDataElement(
                key, vr_name, len(value), value, header_end, implicit, True, True, False
            )
            pos = end
            continue
        end = header_end + length
        if end > limit:
            raise _NotFast  # truncated: pydicom words the error
        key = BaseTag(tag)
        out[key] = RawDataElement(
            key, vr_name, length, buf[header_end:end], header_end, implicit, True, True, False
        )
        pos = end
    return out, pos


def _sequence_end(buf: bytes, pos: int, implicit: bool) -> int:
    """Offset just after the Sequence Delimitation Item of an undefined-length sequence starting at ``pos``."""
    limit = len(buf)
    while pos + 8 <= limit:
        grp, elem, length = _IMPLICIT_HEADER(buf, pos)
        pos += 8
        if grp != 0xFFFE:
            raise _NotFast
        if elem == 0xE0DD:
            return pos
        if elem != 0xE000:
            raise _NotFast
        if length == 0xFFFFFFFF:
            pos = _item_end(buf, pos, implicit)
        else:
            pos += length
    raise _NotFast


def _item_end(buf: bytes, pos: int, implicit: bool) -> int:
    """Offset just after the Item Delimitation Item of an undefined-length item starting at ``pos``."""
    limit = len(buf)
    while pos + 8 <= limit:
        if implicit:
            grp, elem, length = _IMPLICIT_HEADER(buf, pos)
            if grp == 0xFFFE and elem == 0xE00D:
                return pos + 8
            pos += 8
            sq = length == 0xFFFFFFFF
        else:
            grp, elem, vr, length = _EXPLICIT_HEADER(buf, pos)
            if grp == 0xFFFE:
                if elem == 0xE00D:
                    return pos + 8
                raise _NotFast
            if vr in _LONG_VRS:
                (length,) = _UINT32(buf, pos + 8)
                pos += 12
            else:
                pos += 8
            sq = length == 0xFFFFFFFF
            if sq and vr != b"SQ":
                raise _NotFast
        if sq:
            pos = _sequence_end(buf, pos, implicit)
        else:
            pos += length
    raise _NotFast


def sequence_datasets(elem: RawDataElement, encodings: Any) -> list[Dataset] | None:
    """The items of a raw explicit-VR-little-endian sequence element as lazy ``Dataset``s (None: not raw or
    not that encoding, let pydicom convert it). Nested sequences stay raw; ``encodings`` is the parent's
    character set, used when an item's text is not ASCII."""
    if type(elem) is not RawDataElement:
        return None
    value = elem.value
    if elem.VR != "SQ" or elem.is_implicit_VR or not elem.is_little_endian or type(value) is not bytes:
        return None
    items: list[Dataset] = []
    limit = len(value)
    pos = 0
    try:
        while pos + 8 <= limit:
            grp, el, length = _IMPLICIT_HEADER(value, pos)
            pos += 8
            if grp != 0xFFFE:
                return None
            if el == 0xE0DD:
                break
            if el != 0xE000:
                return None
            if length == 0xFFFFFFFF:
                end = _item_end(value, pos, False)
                elements, _ = _elements(value[pos : end - 8], 0, False)
                pos = end
            else:
                if pos + length > limit:
                    return None
                elements, _ = _elements(value[pos : pos + length], 0, False)
                pos += length
            item = Dataset()
            item._dict.update(elements)
            item._parent_encoding = encodings
            items.append(item)
    except (_NotFast, ValueError, IndexError):
        return None
    return items
