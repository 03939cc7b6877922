"""Spool entries are not trusted (issue 14 item 5), and a file that holds no dose says why (item 10): no database.

The worker-level behaviour (failed/, dead letters, the batch going on, crashes) is tested against PostgreSQL in
tests/integration/test_dose_spool_faults.py."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import generate_uid

from nmdose.dose.parse import NOT_DOSE, parse_file
from nmdose.dose.spool import BadEntry, enqueue, ensure, locate, read_entry
from nmdose.simulate import rdsr as R


@pytest.fixture
def spool(tmp_path: Path) -> Path:
    return ensure(tmp_path / "spool")


def _dicom(path: Path) -> Path:
    return R.save(R.ct_radiation_dose_sr(R.DoseStudyInfo(), [R.CtAcquisition()], series_uid=generate_uid(),
                                         sop_uid=generate_uid()), path)  # fmt: skip


def test_an_entry_is_read_only_when_it_is_a_regular_file(spool, tmp_path):
    target = tmp_path / "elsewhere.job"
    target.write_text("file=/etc/passwd\n")
    os.symlink(target, spool / "incoming" / "link.job")
    with pytest.raises(BadEntry, match="symbolic link; not followed"):
        read_entry(spool / "incoming" / "link.job")
    (spool / "incoming" / "dir.job").mkdir()
    with pytest.raises(BadEntry, match="a directory, not a regular file"):
        read_entry(spool / "incoming" / "dir.job")
    big = spool / "incoming" / "big.job"
    big.write_text("file=/x\n" + "#" * 70000)
    with pytest.raises(BadEntry, match="more than 65536"):
        read_entry(big)
    entry = enqueue(spool, spool / "objects" / "a.dcm", source="orthanc", owned=True)
    assert read_entry(entry) == {"file": str(spool / "objects" / "a.dcm"), "source": "orthanc", "owned": "1"}


@pytest.mark.parametrize(
    ("file", "reason"),
    [
        ("{objects}/a.dcm\x00.x", "NUL or control character"),
        ("{objects}/a\n.dcm", "NUL or control character"),
        ("a.dcm", "not an absolute path"),
        ("{objects}/../objects/a.dcm", "contains '..'"),
        ("{objects}/sub/a.dcm", "outside the spool"),
        ("/etc/passwd", "outside the spool"),
        ("{objects}", "outside the spool"),
    ],
)
def test_an_entry_may_name_only_a_file_directly_in_objects(spool, file, reason):
    with pytest.raises(BadEntry, match=reason):
        locate(spool, {"file": file.format(objects=spool / "objects"), "owned": "1"})


def test_a_file_in_objects_is_opened_only_when_it_is_a_regular_file_of_its_own(spool, tmp_path):
    objects = spool / "objects"
    good = _dicom(objects / "good.dcm")
    located = locate(spool, {"file": str(good), "owned": "1"})
    assert located.in_objects and located.check() is None
    with located.open() as fh:
        assert fh.read() == good.read_bytes()
    # the objects folder spelled another way (a link to it) is still the objects folder
    os.symlink(objects, tmp_path / "alias")
    assert locate(spool, {"file": str(tmp_path / "alias" / "good.dcm")}).check() is None
    secret = tmp_path / "secret.dcm"
    secret.write_bytes(good.read_bytes())
    os.symlink(secret, objects / "link.dcm")
    (objects / "dir.dcm").mkdir()
    os.mkfifo(objects / "fifo.dcm")
    os.link(secret, objects / "hard.dcm")
    for name, why in [("link.dcm", "a symbolic link; not followed"), ("dir.dcm", "a directory"),
                      ("fifo.dcm", "a named pipe"), ("hard.dcm", "2 hard links"), ("none.dcm", "no such file")]:  # fmt: skip
        assert why in (locate(spool, {"file": str(objects / name)}).check() or ""), name


def test_a_storage_root_is_read_only_and_walked_without_following_links(spool, tmp_path):
    root = tmp_path / "archive"
    stored = _dicom((root / "PAT").mkdir(parents=True) or root / "PAT" / "1.dcm")
    located = locate(spool, {"file": str(stored), "owned": "0"}, [root])
    assert not located.in_objects and located.parts == ("PAT", "1.dcm") and located.check() is None
    with pytest.raises(BadEntry, match="owned=1 .* never deletes there"):
        locate(spool, {"file": str(stored), "owned": "1"}, [root])
    with pytest.raises(BadEntry, match="outside the spool"):
        locate(spool, {"file": str(stored), "owned": "0"}, [])
    os.symlink(tmp_path, root / "LINK")
    linked = locate(spool, {"file": str(root / "LINK" / "archive" / "PAT" / "1.dcm")}, [root])
    assert "'LINK' is a symbolic link" in linked.check()


# ------------------------------------------------------------------------- item 10: what was wrong, said
def _ct(tmp_path: Path, edit, name: str = "x.dcm") -> dict:
    ds = R.ct_radiation_dose_sr(R.DoseStudyInfo(), [R.CtAcquisition()], series_uid=generate_uid(),
                                sop_uid=generate_uid())  # fmt: skip
    edit(ds)
    result = parse_file(R.save(ds, tmp_path / name))
    assert result["status"] == "not_dose", result
    (why,) = [w for w in result["warnings"] if f": {NOT_DOSE}: " in w]
    return why


def test_an_x_ray_dose_report_without_content_says_so(tmp_path):
    why = _ct(tmp_path, lambda ds: setattr(ds, "ContentSequence", Sequence([])))
    assert "without any content item (ContentSequence (0040,A730) missing or empty)" in why
    assert "projection" not in why


def test_an_x_ray_dose_report_with_unreadable_root_items_says_where(tmp_path):
    def garbage(ds):
        junk = Dataset()
        junk.RelationshipType = "CONTAINS"
        observer = [i for i in ds.ContentSequence if i.ConceptNameCodeSequence[0].CodeValue == "121005"]
        ds.ContentSequence = Sequence([*observer[:1], junk])  # an Observer Type item, then a junk one

    why = _ct(tmp_path, garbage)
    assert "content tree unreadable at root item 2 of 2" in why and "concept name missing" in why, why
    assert "projection" not in why


def test_a_genuine_projection_report_is_still_called_one(tmp_path):
    def projection(ds):
        items = [i for i in ds.ContentSequence if i.ConceptNameCodeSequence[0].CodeValue == "121058"]
        items[0].ConceptCodeSequence[0].CodeValue = "113704"
        items[0].ConceptCodeSequence[0].CodingSchemeDesignator = "DCM"
        items[0].ConceptCodeSequence[0].CodeMeaning = "Projection X-Ray"
        ds.ContentSequence = Sequence(items)

    assert "projection X-ray report (TID 10001, not CT)" in _ct(tmp_path, projection)


def test_an_x_ray_dose_sr_without_a_title_says_why(tmp_path):
    why = _ct(tmp_path, lambda ds: delattr(ds, "ConceptNameCodeSequence"))
    assert "X-Ray Radiation Dose SR without a dose template root" in why
    assert "no ConceptNameCodeSequence (0040,A043) at the root" in why
