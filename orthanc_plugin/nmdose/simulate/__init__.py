"""Simulated clinical PACS: synthetic, standard-conformant nuclear-medicine DICOM with a ground-truth manifest.

``generate()`` writes the files and ``manifest.json``; ``upload()`` stores them into the simulation PACS.
"""

from nmdose.simulate.catalog import DEFAULT_TARGET_DESCRIPTIONS, LEFT_OUT_DESCRIPTIONS
from nmdose.simulate.generator import SimulationError, generate
from nmdose.simulate.manifest import Manifest, SeriesRecord, StudyRecord

__all__ = [
    "DEFAULT_TARGET_DESCRIPTIONS",
    "LEFT_OUT_DESCRIPTIONS",
    "Manifest",
    "SeriesRecord",
    "SimulationError",
    "StudyRecord",
    "generate",
]
