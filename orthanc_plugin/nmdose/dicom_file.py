"""Read a DICOM file's header with pydicom: ``dcmread(path, stop_before_pixels=True)``.

A dataset stored without the Part 10 preamble and ``DICM`` prefix (old archives, media, some exports) is read with
``force=True`` when its first bytes are a data element of group 0002 (File Meta) or 0008 (the first group of any
composite object) in little endian; anything else keeps pydicom's :class:`~pydicom.errors.InvalidDicomError`.
Values stay raw until asked for (pydicom converts on access; ``Dataset.get_item`` gives the raw element).
"""

from __future__ import annotations

import io
import os
from struct import unpack_from

from pydicom import dcmread
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

_FIRST_GROUPS = frozenset({0x0002, 0x0008})


def read_header(path: str | os.PathLike) -> Dataset:
    """The file's dataset without pixel data; a file without the Part 10 preamble is read with ``force``.

    Raises :class:`EOFError` for a file cut inside its last element: pydicom then returns the bytes that are
    there without a word, and a report cut in its content tree would read as a shorter report.
    """
    source = _source(path)
    try:
        ds = dcmread(source, stop_before_pixels=True)
    except InvalidDicomError:
        if not starts_like_a_dataset(path):
            raise
        ds = dcmread(_source(path), stop_before_pixels=True, force=True)
    _check_complete(ds)
    return ds


# Files up to this size are read into memory in one call and parsed from there: ~9 % faster than pydicom's many
# small reads on the file (measured on the dose bench's files); larger ones (image series with pixel data, which
# stop_before_pixels skips) are read from the file.
WHOLE_READ_MAX = 4 * 1024 * 1024


def _source(path: str | os.PathLike):
    """A BytesIO of the whole file when it is small, else the path."""
    try:
        if os.path.getsize(path) > WHOLE_READ_MAX:
            return path
        with open(path, "rb") as fh:
            return io.BytesIO(fh.read())
    except OSError:
        return path  # let dcmread raise its own error (no such file, no right to read)


def truncation(ds: Dataset) -> str | None:
    """How a file is cut inside its last element ("(7FE0,0010) declares 1000 bytes, the file holds 10"), or None:
    pydicom returns the bytes that are there without a word."""
    if not ds:
        return None
    tag = next(reversed(ds.keys()))
    elem = ds.get_item(tag, keep_deferred=True)
    value = elem.value if type(elem) is RawDataElement else getattr(elem, "value", None)
    length = getattr(elem, "length", None)
    if type(value) is bytes and length not in (None, 0xFFFFFFFF) and len(value) < length:
        return f"{tag} declares {length} bytes, the file holds {len(value)}"
    return None


def _check_complete(ds: Dataset) -> None:
    cut = truncation(ds)
    if cut:
        raise EOFError(f"truncated: {cut}")


def starts_like_a_dataset(path: str | os.PathLike) -> bool:
    """Whether the file's first bytes are a little-endian element of group 0002 or 0008 (a dataset written
    without the preamble), as opposed to anything else ``force=True`` would read as garbage."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
    except OSError:
        return False
    return len(head) == 8 and unpack_from("<H", head)[0] in _FIRST_GROUPS
