"""Builders for synthetic dose objects written to tmp_path (no patient data, nothing committed)."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from pydicom.uid import generate_uid

from nmdose.simulate import rdsr as R


class Files:
    """Writes built objects into one temporary folder."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.counter = itertools.count()

    def path(self, name: str = "obj") -> Path:
        return self.folder / f"{next(self.counter):04d}-{name}.dcm"

    def uids(self) -> dict:
        return {"series_uid": generate_uid(), "sop_uid": generate_uid()}

    def ct(self, events=None, study=None, name="ct", **kw) -> Path:
        study = study or R.DoseStudyInfo()
        events = events if events is not None else [R.CtAcquisition()]
        return R.save(R.ct_radiation_dose_sr(study, events, **self.uids(), **kw), self.path(name))

    def rrdsr(self, administration=None, study=None, name="rrdsr", **kw) -> Path:
        study = study or R.DoseStudyInfo()
        administration = administration or R.RadiopharmaceuticalAdministration()
        return R.save(
            R.radiopharmaceutical_dose_sr(study, administration, **self.uids(), **kw), self.path(name)
        )

    def image(self, modality="PT", administration=None, study=None, name="img", **kw) -> Path:
        study = study or R.DoseStudyInfo()
        administration = administration or R.RadiopharmaceuticalAdministration()
        ds = R.pet_nm_image_header(study, administration, modality=modality, **self.uids(), **kw)
        return R.save(ds, self.path(name))


@pytest.fixture
def files(tmp_path: Path) -> Files:
    return Files(tmp_path)


@pytest.fixture(autouse=True)
def _fast_and_plain_walks_agree(request):
    """After every test that wrote files: the single-pass walk equals the plain pydicom walk on each of them."""
    folder = request.getfixturevalue("tmp_path") if "tmp_path" in request.fixturenames else None
    yield
    if folder is None:
        return
    from tests.unit.dose.walks import fast_walk_agrees

    for path in sorted(folder.rglob("*.dcm")):
        if path.is_file():  # not the named pipes some tests make
            fast_walk_agrees(path)
