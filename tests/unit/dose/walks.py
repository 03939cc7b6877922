"""The check behind the read-layer equivalence tests: the single-pass walk and the plain pydicom walk give the
same Nodes for a file (used on every file the dose tests write, and on the real vendor files)."""

from __future__ import annotations

from pathlib import Path

from pydicom import dcmread

from nmdose.dicom_file import read_header
from nmdose.dicom_sr import walk_fast, walk_plain


def fast_walk_agrees(path: Path) -> bool | None:
    """True when the single-pass walk reads ``path`` and equals the plain walk; None when it does not apply
    (not readable, no raw explicit-VR content tree). Raises AssertionError on a difference."""
    try:
        ds = read_header(path)
    except Exception:
        return None
    fast = walk_fast(ds)
    if fast is None:
        return None
    plain = walk_plain(dcmread(path, stop_before_pixels=True, force=True))
    assert fast == plain, f"{path}: single-pass and plain walks differ"
    return True
