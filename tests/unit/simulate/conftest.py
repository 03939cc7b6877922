"""One small simulation shared by the unit tests of this folder (generation takes a few seconds)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from nmdose.simulate import Manifest, generate

TODAY = date(2025, 6, 30)
SEED = 20250630
STUDIES = 36
YEARS = 4


@pytest.fixture(scope="package")
def sim(tmp_path_factory) -> tuple[Path, Manifest]:
    out = tmp_path_factory.mktemp("sim") / "seed"
    manifest = generate(out, studies=STUDIES, years=YEARS, seed=SEED, today=TODAY)
    return out, manifest


@pytest.fixture(scope="package")
def datasets(sim):
    """Every generated file read back with pydicom: list of (path, dataset)."""
    from pydicom import dcmread

    out, _ = sim
    return [(p, dcmread(p)) for p in sorted((out / "studies").rglob("*.dcm"))]
