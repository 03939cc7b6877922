"""One dropped file: is it DICOM (the ``DICM`` prefix, or a dataset without the Part 10 preamble that pydicom
reads), its UIDs, and the patient rewrite on a staged copy (the dropped file itself is never changed).

Kinds: ``dicom`` (to import), ``dicomdir`` (the CD's index: skipped and listed), ``not_dicom`` (skipped and
listed), ``broken`` (looks like DICOM but cannot be read, is cut short or lacks its UIDs: the folder fails).
"""

from __future__ import annotations

import io
import os
import struct
from dataclasses import dataclass
from pathlib import Path

from pydicom import dcmread
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset

from nmdose.dicom_file import starts_like_a_dataset, truncation

DICOMDIR_CLASS = "1.2.840.10008.1.3.10"  # Media Storage Directory Storage
UTF8 = "ISO_IR 192"


@dataclass
class FileInfo:
    """What one file of a dropped folder is. ``rel``: its path inside the folder."""

    rel: str
    size: int
    kind: str  # dicom | dicomdir | not_dicom | broken
    reason: str = ""
    study_uid: str = ""
    series_uid: str = ""
    sop_uid: str = ""
    patient_id: str = ""  # as dropped (only used to find the study in Orthanc when the folder does not match)


_UID_TAGS = {"StudyInstanceUID": 0x0020000D, "SeriesInstanceUID": 0x0020000E, "SOPInstanceUID": 0x00080018,
             "SOPClassUID": 0x00080016}  # fmt: skip


def _raw_uid(ds: Dataset, tag: int) -> str:
    """A UID straight from the element's bytes (no conversion: the classification reads every file)."""
    try:
        elem = ds.get_item(tag)
    except Exception:  # noqa: BLE001
        return ""
    if elem is None:
        return ""
    value = elem.value if type(elem) is RawDataElement else getattr(elem, "value", None)
    if isinstance(value, bytes):
        return value.decode("ascii", "replace").strip("\0 ")
    return str(value or "").strip()


def has_dicm_prefix(path: str | os.PathLike) -> bool:
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def _truncated(ds) -> str | None:
    cut = truncation(ds)
    return f"cut short: {cut}" if cut else None


def read(path: str | os.PathLike, *, header_only: bool = False) -> Dataset:
    """The dataset (with ``force`` for a dataset written without the preamble)."""
    force = not has_dicm_prefix(path)
    return dcmread(path, stop_before_pixels=header_only, force=force)


def classify(path: Path, rel: str) -> FileInfo:
    """Read `path` once, completely (a file cut inside its pixel data is broken, not importable)."""
    size = path.stat().st_size
    if path.name.upper() == "DICOMDIR":
        return FileInfo(rel, size, "dicomdir", "DICOMDIR (the medium's index)")
    if not has_dicm_prefix(path) and not starts_like_a_dataset(path):
        return FileInfo(rel, size, "not_dicom", "no DICM prefix and not a DICOM dataset")
    try:
        ds = read(path)
        cut = _truncated(ds)
    except Exception as exc:  # noqa: BLE001 - any reading error makes the file broken, named in the report
        return FileInfo(rel, size, "broken", f"unreadable DICOM ({type(exc).__name__}: {str(exc)[:160]})")
    if cut:
        return FileInfo(rel, size, "broken", cut)
    meta_class = str(getattr(getattr(ds, "file_meta", None), "MediaStorageSOPClassUID", "") or "")
    if meta_class == DICOMDIR_CLASS:
        return FileInfo(rel, size, "dicomdir", "DICOMDIR (the medium's index)")
    uids = {}
    for keyword, tag in _UID_TAGS.items():
        uids[keyword] = _raw_uid(ds, tag)
        if not uids[keyword]:
            return FileInfo(rel, size, "broken", f"DICOM without {keyword}")
    try:
        patient_id = str(ds.get("PatientID", "") or "")
    except Exception:  # noqa: BLE001
        patient_id = ""
    return FileInfo(rel, size, "dicom", "", uids["StudyInstanceUID"], uids["SeriesInstanceUID"],
                    uids["SOPInstanceUID"], patient_id)  # fmt: skip


def rewritten(src: Path, patient_id: str, patient_name: str) -> bytes:
    """A copy of `src`, in memory, with PatientID and PatientName set; the file itself is never written.

    A value outside ASCII switches the copy to UTF-8 (``ISO_IR 192``). Fast path (:func:`rewritten_raw`, a Part
    10 file in explicit VR little endian, not deflated): the elements are rewritten byte by byte, the file meta
    and the pixel data copied as they are; when nothing must be re-encoded (an ASCII value, or a file already
    UTF-8 or in the default repertoire, or whose every text value is plain ASCII) only the header up to PatientID
    is walked, the rest follows byte for byte; a file in one single-byte character set (``ISO_IR 100`` …) has
    each text value that is not ASCII decoded with it and written again in UTF-8. Otherwise (another character
    set, implicit VR, group lengths…) :func:`rewritten_fully`."""
    data = Path(src).read_bytes()
    try:
        out = rewritten_raw(data, patient_id, patient_name)
    except _Unsupported:
        out = None
    return out if out is not None else rewritten_fully(src, patient_id, patient_name)


class _Unsupported(Exception):
    """The byte-level rewrite does not handle this file: the full rewrite does."""


_IMPLICIT, _BIG, _DEFLATED_TS = "1.2.840.10008.1.2", "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99"
_LONG_VRS = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"UC", b"UN", b"UR", b"UT"})
_TEXT_VRS = frozenset({b"SH", b"LO", b"ST", b"LT", b"PN", b"UC", b"UT"})  # what SpecificCharacterSet governs
_UNDEFINED = 0xFFFFFFFF
_ITEM, _ITEM_END, _SEQ_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
_CHARSET, _PATIENT_NAME, _PATIENT_ID = 0x00080005, 0x00100010, 0x00100020
_SINGLE_BYTE = {"ISO_IR 100": "latin_1", "ISO_IR 101": "iso8859_2", "ISO_IR 109": "iso8859_3",
                "ISO_IR 110": "iso8859_4", "ISO_IR 126": "iso_ir_126", "ISO_IR 127": "iso_ir_127",
                "ISO_IR 138": "iso_ir_138", "ISO_IR 144": "iso_ir_144", "ISO_IR 148": "iso_ir_148",
                "ISO_IR 166": "iso_ir_166"}  # fmt: skip


def _element(tag: int, vr: bytes, value: bytes) -> bytes:
    if vr in _LONG_VRS:
        return struct.pack("<HH2sHI", tag >> 16, tag & 0xFFFF, vr, 0, len(value)) + value
    if len(value) > 0xFFFF:
        raise _Unsupported
    return struct.pack("<HH2sH", tag >> 16, tag & 0xFFFF, vr, len(value)) + value


def _text(value: str) -> bytes:
    raw = value.encode("utf-8")
    return raw + b" " if len(raw) % 2 else raw


def _header(data: bytes, pos: int) -> tuple[int, bytes, int, int]:
    """(tag, VR, value length, header length) of the explicit VR little endian element at `pos`."""
    group, elem = struct.unpack_from("<HH", data, pos)
    vr = data[pos + 4 : pos + 6]
    if vr in _LONG_VRS:
        return group << 16 | elem, vr, struct.unpack_from("<I", data, pos + 8)[0], 12
    if len(vr) != 2 or not vr.isalpha() or not vr.isupper():
        raise _Unsupported  # not explicit VR
    return group << 16 | elem, vr, struct.unpack_from("<H", data, pos + 6)[0], 8


def _dataset(data: bytes, pos: int, end: int | None, codec: str | None, overrides: dict[int, tuple[bytes, bytes]],
             top: bool = False) -> tuple[bytes, int]:  # fmt: skip
    """The elements from `pos` to `end` (None: up to an item delimitation, consumed) rewritten: `overrides` (tag
    -> VR, value) replace or join the elements in tag order; with `codec`, non-ASCII text is re-encoded to UTF-8.
    Returns (the elements, the position after them)."""
    out = bytearray()
    limit = len(data) if end is None else end
    pending = sorted(overrides)
    while pos < limit:
        if top and not pending and codec is None:  # nothing left to change: the rest byte for byte
            out += data[pos:limit]
            return bytes(out), limit
        group, elem = struct.unpack_from("<HH", data, pos)
        tag = group << 16 | elem
        if tag == _ITEM_END:
            if end is not None:
                raise _Unsupported
            break
        if group == 0xFFFE or (elem == 0 and group != 2):  # a stray delimiter, a group length
            raise _Unsupported
        while pending and pending[0] < tag:
            out += _element(pending[0], *overrides[pending.pop(0)])
        tag, vr, length, hlen = _header(data, pos)
        vstart = pos + hlen
        if length == _UNDEFINED:
            if vr == b"SQ":
                items, pos = _sequence(data, vstart, None, codec)
                out += struct.pack("<HH2sHI", tag >> 16, tag & 0xFFFF, vr, 0, _UNDEFINED) + items
                out += struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)
            elif vr in (b"OB", b"OW"):  # encapsulated pixel data: items of defined length, copied as they are
                p = vstart
                while True:
                    itag = struct.unpack_from("<HH", data, p)
                    ilen = struct.unpack_from("<I", data, p + 4)[0]
                    if itag == (0xFFFE, 0xE0DD):
                        p += 8
                        break
                    if itag != (0xFFFE, 0xE000) or ilen == _UNDEFINED:
                        raise _Unsupported
                    p += 8 + ilen
                out += data[pos:p]
                pos = p
            else:
                raise _Unsupported
            if pending and pending[0] == tag:
                raise _Unsupported
            continue
        vend = vstart + length
        if vend > limit:
            raise _Unsupported  # cut short
        if pending and pending[0] == tag:
            out += _element(tag, *overrides[pending.pop(0)])
        elif vr == b"SQ":
            items, _ = _sequence(data, vstart, vend, codec)
            out += _element(tag, vr, items)
        elif codec is not None and vr in _TEXT_VRS and not data[vstart:vend].isascii():
            raw = data[vstart:vend]
            if b"\x1b" in raw:
                raise _Unsupported
            out += _element(tag, vr, _text(raw.decode(codec)))
        else:
            if tag == _CHARSET and not top:
                raise _Unsupported  # a character set of its own inside an item
            out += data[pos:vend]
        pos = vend
    else:
        if end is None:
            raise _Unsupported  # no item delimitation
    for t in pending:
        out += _element(t, *overrides[t])
    return bytes(out), (pos + 8 if end is None else pos)


def _sequence(data: bytes, pos: int, end: int | None, codec: str | None) -> tuple[bytes, int]:
    """The items of a sequence from `pos` to `end` (None: up to its delimitation, consumed, not returned)."""
    out = bytearray()
    while end is None or pos < end:
        tag = struct.unpack_from("<HH", data, pos)
        length = struct.unpack_from("<I", data, pos + 4)[0]
        if tag == (0xFFFE, 0xE0DD):
            if end is not None:
                raise _Unsupported
            return bytes(out), pos + 8
        if tag != (0xFFFE, 0xE000):
            raise _Unsupported
        if length == _UNDEFINED:
            content, pos = _dataset(data, pos + 8, None, codec, {})
            out += struct.pack("<HHI", 0xFFFE, 0xE000, _UNDEFINED) + content
            out += struct.pack("<HHI", 0xFFFE, 0xE00D, 0)
        else:
            content, after = _dataset(data, pos + 8, pos + 8 + length, codec, {})
            if after != pos + 8 + length:
                raise _Unsupported
            out += struct.pack("<HHI", 0xFFFE, 0xE000, len(content)) + content
            pos = after
    if pos != end:
        raise _Unsupported
    return bytes(out), pos


def rewritten_raw(data: bytes, patient_id: str, patient_name: str) -> bytes | None:
    """:func:`rewritten` byte by byte, or None (or _Unsupported) when the file is not one it handles: a Part 10
    file in explicit VR little endian (compressed pixel data included), in the default repertoire, UTF-8 or one
    single-byte character set (or whose text is plain ASCII)."""
    if data[128:132] != b"DICM":
        return None
    pos, syntax = 132, ""
    while pos + 8 <= len(data) and struct.unpack_from("<H", data, pos)[0] == 2:  # the file meta
        tag, vr, length, hlen = _header(data, pos)
        if length == _UNDEFINED:
            return None
        if tag == 0x00020010:
            syntax = data[pos + hlen : pos + hlen + length].decode("ascii", "replace").strip("\0 ")
        pos += hlen + length
    if not syntax or syntax in (_IMPLICIT, _BIG, _DEFLATED_TS):
        return None
    meta_end = pos
    charset_value = b""
    if pos + 8 <= len(data):  # SpecificCharacterSet is the first element or near it: read it raw
        p = pos
        while p + 8 <= len(data):
            tag, vr, length, hlen = _header(data, p)
            if tag >= _CHARSET or length == _UNDEFINED:
                if tag == _CHARSET:
                    charset_value = data[p + hlen : p + hlen + length]
                break
            p += hlen + length
    charset = [c.strip() for c in charset_value.decode("ascii", "replace").split("\\") if c.strip()]
    non_ascii = not (patient_id + patient_name).isascii()
    overrides = {_PATIENT_ID: (b"LO", _text(patient_id)), _PATIENT_NAME: (b"PN", _text(patient_name))}
    codec = None
    if non_ascii:
        overrides[_CHARSET] = (b"CS", b"ISO_IR 192")
        if charset not in ([], [UTF8]):
            if len(charset) != 1 or charset[0] not in _SINGLE_BYTE:
                return None
            codec = _SINGLE_BYTE[charset[0]]
    body, _ = _dataset(data, meta_end, len(data), codec, overrides, top=True)
    return data[:meta_end] + body


def rewritten_fully(src: Path, patient_id: str, patient_name: str) -> bytes:
    """:func:`rewritten` by reading and writing the whole dataset: every text value decoded with the file's
    own character set first, so the other names and descriptions keep their characters in UTF-8."""
    ds = read(src)
    if not (patient_id + patient_name).isascii():
        current = ds.get("SpecificCharacterSet", "") or ""
        current = [current] if isinstance(current, str) else list(current)
        if current != [UTF8]:
            ds.decode()  # every text value to str, with the original character set (sequences too)
            ds.SpecificCharacterSet = UTF8
    ds.PatientID = patient_id
    ds.PatientName = patient_name
    out = io.BytesIO()
    ds.save_as(out)
    return out.getvalue()


def rewrite(src: Path, dst: Path, patient_id: str, patient_name: str) -> None:
    """:func:`rewritten` written to `dst` (atomically)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(dst.name + ".part")
    tmp.write_bytes(rewritten(src, patient_id, patient_name))
    os.replace(tmp, dst)
