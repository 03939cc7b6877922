"""NM image header reader: RadiopharmaceuticalInformationSequence of the NM Isotope module (PS3.3 C.8.4.10), where
Radionuclide Total Dose is in MBq by the standard (PET holds Bq; see :mod:`nmdose.dose.pet_image_header`)."""

from __future__ import annotations

from typing import Any

from pydicom.dataset import Dataset

from nmdose.dose.pet_image_header import read_radiopharmaceutical_information
from nmdose.dose.result import Report


def read_nm_image_header(ds: Dataset, report: Report) -> list[dict[str, Any]]:
    """NM Isotope module: administrations, Radionuclide Total Dose in MBq by the standard."""
    return read_radiopharmaceutical_information(ds, "NM", report)
