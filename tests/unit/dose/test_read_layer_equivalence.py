"""The fast paths give what pydicom gives: the single-pass content-tree walk equals the plain pydicom walk, and the
header shortcuts (plain-ASCII text, raw sequences split into items) equal ``Dataset.get``, on the real vendor
files (``../shared/realfiles``, see its README) and on synthetic objects in every encoding and character set.
(Every file the other dose tests write is checked too: ``conftest._fast_and_plain_walks_agree``.)"""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
from pydicom import dcmread

from nmdose.dicom_file import read_header
from nmdose.dicom_sr import walk, walk_fast, walk_plain
from nmdose.dose import dose_screen, parse, pet_image_header, protocol
from nmdose.dose.header import get_value
from nmdose.dose.parse import parse_file
from nmdose.simulate import rdsr as R
from tests.unit.dose.walks import fast_walk_agrees

REALFILES = Path(__file__).resolve().parents[4] / "shared" / "realfiles"
REAL = sorted(REALFILES.glob("*/*.dcm"))
# pydicom parses a top-level sequence of undefined length while reading, so no raw content tree is left for the
# single-pass walk; the implicit-VR file goes to the plain walk as well.
PLAIN_ONLY = {"CT-RDSR-Philips_BigBore4DCT.dcm", "NM-CT-RDSR-Siemens.dcm", "CT-RDSR-SpectrumDynamics.dcm"}


def test_the_real_files_are_there():
    assert len(REAL) >= 28, f"the vendor files are missing from {REALFILES} (see the project README)"


@pytest.mark.parametrize("path", REAL, ids=lambda p: p.name)
def test_single_pass_walk_equals_plain_walk_on_real_files(path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = read_header(path)
        if "ContentSequence" not in ds:
            assert walk_fast(ds) is None
            return
        agrees = fast_walk_agrees(path)
        if path.name in PLAIN_ONLY:
            assert agrees is None
        else:
            assert agrees, f"{path.name}: the single-pass walk did not run"


def _synthetic(tmp_path: Path) -> list[Path]:
    out = []
    events = [R.CtAcquisition(acquisition_protocol="Tête", target_region="head", phantom="head16"),
              R.CtAcquisition(sources=[R.XraySource("A"), R.XraySource("B", kvp=100.0)]),
              R.CtAcquisition(acquisition_type="constant_angle", ctdivol_mgy=None, dlp_mgycm=None)]  # fmt: skip
    for i, charset in enumerate(["ISO_IR 100", "ISO_IR 192", None]):
        study = R.DoseStudyInfo(specific_character_set=charset)
        uids = {"series_uid": f"1.2.9.{i}.1", "sop_uid": f"1.2.9.{i}.2"}
        if charset is None:
            events = [R.CtAcquisition()]
        out.append(R.save(R.ct_radiation_dose_sr(study, events, **uids), tmp_path / f"ct{i}.dcm"))
        out.append(
            R.save(
                R.ct_radiation_dose_sr(study, events, sop_class="enhanced_sr", **uids),
                tmp_path / f"esr{i}.dcm",
            )
        )
        admin = R.RadiopharmaceuticalAdministration()
        out.append(R.save(R.radiopharmaceutical_dose_sr(study, admin, **uids), tmp_path / f"rrdsr{i}.dcm"))
    study = R.DoseStudyInfo(study_description="頭部", specific_character_set="\\ISO 2022 IR 87")
    jp = R.ct_radiation_dose_sr(
        study, [R.CtAcquisition(acquisition_protocol="頭部")], series_uid="1.2.9.9.1", sop_uid="1.2.9.9.2"
    )
    out.append(R.save(jp, tmp_path / "jp.dcm"))
    return out


def test_single_pass_walk_equals_plain_walk_on_synthetic_reports(tmp_path):
    for path in _synthetic(tmp_path):
        assert fast_walk_agrees(path), path.name
        assert walk_plain(dcmread(path)) == walk_plain(read_header(path))


def _plain_pydicom(monkeypatch):
    """The readers on pydicom alone: ``Dataset.get`` for every attribute, the plain walk for the content tree."""

    def get(ds, keyword):
        try:
            return ds.get(keyword)
        except Exception:
            return None

    for module in (parse, pet_image_header, dose_screen, protocol):
        monkeypatch.setattr(module, "get_value", get)
    monkeypatch.setattr(parse, "get_values", lambda ds, keywords: [get(ds, k) for k in keywords])
    monkeypatch.setattr(parse, "walk", walk_plain)
    monkeypatch.setattr(parse, "sequence_items", lambda ds, tag: ds[tag].value if tag in ds else None)
    monkeypatch.setattr(parse, "document_encodings", lambda ds: None)  # no template cache: pydicom every time
    monkeypatch.setattr(dose_screen, "_private_tag", lambda ds, group, creator, offset: ds.private_block(
        group, creator).get_tag(offset))  # fmt: skip


def test_the_shortcuts_give_the_results_pydicom_gives(tmp_path, monkeypatch):
    paths = [*REAL, *_synthetic(tmp_path)]
    for modality in ("PT", "NM"):
        ds = R.pet_nm_image_header(R.DoseStudyInfo(specific_character_set="ISO_IR 192", study_description="PET 전신"),
                                   R.RadiopharmaceuticalAdministration(), modality=modality,
                                   series_uid=f"1.2.8.{modality == 'PT'}.1", sop_uid=f"1.2.8.{modality == 'PT'}.2")  # fmt: skip
        paths.append(R.save(ds, tmp_path / f"{modality}.dcm"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fast = [parse_file(p) for p in paths]
        with monkeypatch.context() as m:
            _plain_pydicom(m)
            plain = [parse_file(p) for p in paths]
    for path, a, b in zip(paths, fast, plain, strict=True):
        assert a == b, path.name
    assert sum(r["status"] == "ok" for r in fast) >= len(REAL) - 2


@pytest.mark.parametrize("outer_undefined", [False, True])
def test_items_inherit_the_files_character_set(tmp_path, outer_undefined):
    """A nested raw sequence is split with the file's character set only where the file's dataset is its
    parent; inside items pydicom built (an outer sequence of undefined length is parsed while reading),
    pydicom converts it with the character set it passed down."""
    ds = R.pet_nm_image_header(
        R.DoseStudyInfo(specific_character_set="ISO_IR 192"), R.RadiopharmaceuticalAdministration(),
        modality="PT", series_uid="1.2.7.1", sop_uid="1.2.7.2",
    )  # fmt: skip
    info = ds.RadiopharmaceuticalInformationSequence
    info[0].Radiopharmaceutical = "Fluorodésoxyglucose"
    info[0].RadiopharmaceuticalCodeSequence[0].CodeMeaning = "Fluorodésoxyglucose ¹⁸F"
    if outer_undefined:
        ds["RadiopharmaceuticalInformationSequence"].is_undefined_length = True
    path = R.save(ds, tmp_path / "pt.dcm")
    header = read_header(path)
    item = get_value(header, "RadiopharmaceuticalInformationSequence")[0]
    assert get_value(item, "Radiopharmaceutical") == "Fluorodésoxyglucose"
    code = get_value(item, "RadiopharmaceuticalCodeSequence")[0]
    assert get_value(code, "CodeMeaning") == "Fluorodésoxyglucose ¹⁸F"


def test_leaf_cache_never_mixes_character_sets(tmp_path):
    event = R.CtAcquisition(acquisition_protocol="Tête")
    for i, charset in enumerate(("ISO_IR 100", "ISO_IR 192", "ISO_IR 100")):
        ds = R.ct_radiation_dose_sr(
            R.DoseStudyInfo(specific_character_set=charset),
            [event],
            series_uid=f"1.2.5.{i}",
            sop_uid=f"1.2.6.{i}",
        )
        result = parse_file(R.save(ds, tmp_path / f"{i}.dcm"))
        assert _events_of(result)[0]["acquisition_protocol"] == "Tête", charset


def _events_of(result: dict) -> list[dict]:
    return (result.get("ct") or {}).get("events") or []


def test_a_content_tree_the_single_pass_walk_does_not_read_goes_to_pydicom(tmp_path):
    ds = R.ct_radiation_dose_sr(
        R.DoseStudyInfo(), [R.CtAcquisition()], series_uid="1.2.5.9", sop_uid="1.2.6.9"
    )
    path = R.save(ds, tmp_path / "sr.dcm")
    data = bytearray(path.read_bytes())
    at = data.index(b"\x40\x00\x30\xa7SQ") + 12  # the first item of the ContentSequence
    assert data[at : at + 4] == b"\xfe\xff\x00\xe0"
    data[at : at + 4] = b"\xfe\xff\x0d\xe0"  # an item delimiter where an item starts
    path.write_bytes(bytes(data))
    header = read_header(path)
    assert walk_fast(header) is None

    def outcome(fn):
        try:
            return fn()
        except Exception as exc:
            return type(exc)

    assert outcome(lambda: walk(header)) == outcome(lambda: walk_plain(dcmread(path)))
    # pydicom skips the broken item (with a logged warning) and reads the rest; so does the parser
    assert parse_file(path)["status"] in ("ok", "error", "not_dose")
