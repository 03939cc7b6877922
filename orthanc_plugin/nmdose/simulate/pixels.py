"""Synthetic pixel data without numpy: ellipse phantoms painted row by row, cached per shape and slice.

Images are plausible to look at (a body outline, lungs, spine, hot organs) but carry no clinical meaning. A
handful of slices per shape are computed once and reused, so a 1,000-study PACS is fast to write.
"""

from __future__ import annotations

import math
import sys
from array import array
from functools import lru_cache

VARIANTS = 8  # distinct slices per (kind, shape); slice i uses variant i % VARIANTS

Ellipse = tuple[float, float, float, float, int]  # centre x, centre y, radius x, radius y (fractions), value


def _paint(rows: int, cols: int, background: int, ellipses: list[Ellipse]) -> bytes:
    img = array("H", [background]) * (rows * cols)
    for cx, cy, rx, ry, value in ellipses:
        cxp, cyp, rxp, ryp = cx * cols, cy * rows, rx * cols, ry * rows
        if rxp < 0.5 or ryp < 0.5:
            continue
        y0, y1 = max(0, int(cyp - ryp)), min(rows, int(cyp + ryp) + 1)
        for y in range(y0, y1):
            t = (y + 0.5 - cyp) / ryp
            if abs(t) >= 1:
                continue
            half = rxp * math.sqrt(1 - t * t)
            x0, x1 = max(0, int(cxp - half + 0.5)), min(cols, int(cxp + half + 0.5))
            if x1 > x0:
                img[y * cols + x0 : y * cols + x1] = array("H", [value]) * (x1 - x0)
    if sys.byteorder == "big":  # pragma: no cover - DICOM pixel data here is little endian
        img.byteswap()
    return img.tobytes()


@lru_cache(maxsize=256)
def ct_slice(rows: int, cols: int, variant: int) -> bytes:
    """A CT slice, stored value = HU + 1024 (RescaleIntercept -1024)."""
    z = variant / VARIANTS
    body_rx = 0.36 + 0.06 * math.sin(z * math.pi)
    shapes: list[Ellipse] = [
        (0.5, 0.52, 0.42, 0.06, 1024 - 100),  # table
        (0.5, 0.5, body_rx, 0.3, 1024 + 40),  # soft tissue
    ]
    if variant % 2 == 0:  # chest level: lungs
        shapes += [(0.36, 0.47, 0.1, 0.17, 1024 - 820), (0.64, 0.47, 0.1, 0.17, 1024 - 820)]
    else:  # abdomen level: liver
        shapes += [(0.38, 0.48, 0.13, 0.14, 1024 + 60)]
    shapes += [(0.5, 0.7, 0.04, 0.04, 1024 + 700)]  # vertebra
    return _paint(rows, cols, 0, shapes)


@lru_cache(maxsize=256)
def ct_localizer(rows: int, cols: int) -> bytes:
    """A frontal topogram: a body silhouette."""
    shapes: list[Ellipse] = [
        (0.5, 0.12, 0.09, 0.1, 1024 + 300),  # head
        (0.5, 0.5, 0.2, 0.36, 1024 + 200),  # trunk
        (0.42, 0.38, 0.06, 0.12, 1024 - 400),
        (0.58, 0.38, 0.06, 0.12, 1024 - 400),
    ]
    return _paint(rows, cols, 0, shapes)


@lru_cache(maxsize=256)
def emission_slice(rows: int, cols: int, variant: int, hot: int = 0) -> bytes:
    """A PET or SPECT slice: low background in the body, a few hot organs (counts, or Bq/ml before slope)."""
    z = variant / VARIANTS
    shapes: list[Ellipse] = [(0.5, 0.5, 0.34 + 0.05 * math.sin(z * math.pi), 0.28, 400)]
    if variant % 3 == 0:
        shapes += [(0.5, 0.45, 0.12, 0.12, 3200 + hot)]  # brain / heart
    elif variant % 3 == 1:
        shapes += [(0.4, 0.5, 0.14, 0.13, 1200), (0.62, 0.55, 0.05, 0.05, 4000 + hot)]  # liver, lesion
    else:
        shapes += [(0.5, 0.62, 0.08, 0.06, 6000 + hot)]  # bladder
    return _paint(rows, cols, 0, shapes)


@lru_cache(maxsize=64)
def planar_frame(rows: int, cols: int, view: int) -> bytes:
    """A planar whole-body or spot view (bone-scan like): skeleton as bright ellipses."""
    shapes: list[Ellipse] = [
        (0.5, 0.08, 0.16, 0.06, 300),  # skull
        (0.5, 0.45, 0.05, 0.3, 500 + 50 * view),  # spine
        (0.5, 0.62, 0.22, 0.06, 450),  # pelvis
        (0.38, 0.82, 0.05, 0.15, 250),  # femora
        (0.62, 0.82, 0.05, 0.15, 250),
        (0.3, 0.35, 0.04, 0.1, 200),
        (0.7, 0.35, 0.04, 0.1, 200),
    ]
    return _paint(rows, cols, 5, shapes)


def volume(kind: str, rows: int, cols: int, count: int, start: int = 0) -> bytes:
    """``count`` consecutive frames of ``kind`` ("emission" or "planar") concatenated for a multi-frame image."""
    if kind == "planar":
        return b"".join(planar_frame(rows, cols, (start + i) % 2) for i in range(count))
    return b"".join(emission_slice(rows, cols, (start + i) % VARIANTS) for i in range(count))
