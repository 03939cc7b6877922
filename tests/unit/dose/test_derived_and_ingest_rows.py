"""Derived values (ICRP 103 k, ICRP 128 coefficients, decay, per kg) and the rows the ingest stores (no database)."""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
from pathlib import Path

import pytest
from pydicom import dcmread

from nmdose.dose import derived as D
from nmdose.dose.ingest import iter_files, study_rows
from nmdose.dose.parse import merge_study, parse_file
from nmdose.dose.spool import enqueue, read_entry
from nmdose.simulate import rdsr as R
from tests.support import REPO

CHEST = "SCT:51185008"
HEAD = "SCT:69536005"
FDG = "SCT:35321007"


def test_ct_k_adult_by_region_with_source():
    k, note = D.ct_k(CHEST, 55.0)
    assert k == 0.0145 and "Deak" in note
    assert D.ct_k(HEAD, 40.0)[0] == 0.0019
    assert D.ct_k("SCT:416949008", 40.0)[0] == 0.0153  # abdomen-pelvis: the abdomen value, said so
    assert "abdomen value" in D.ct_k("SCT:416949008", 40.0)[1]


def test_ct_k_unknown_age_is_adult_and_said_so():
    k, note = D.ct_k(CHEST, None)
    assert k == 0.0145 and note.startswith("age unknown, adult assumed")


@pytest.mark.parametrize(
    ("age", "band", "k_chest"),
    [
        (0.2, 0, 0.0508),
        (2.0, 1, 0.0330),
        (6.0, 5, 0.0240),
        (11.0, 10, 0.0168),
        (16.0, 15, 0.0121),
    ],  # fmt: skip
)
def test_ct_k_paediatric_bands(age, band, k_chest):
    assert D.age_band(age) == band
    k, note = D.ct_k(CHEST, age)
    assert k == k_chest and "Lee" in note


def test_ct_k_is_none_rather_than_guessed():
    assert D.ct_k("SCT:45048000", 6.0)[0] is None  # neck: no paediatric ICRP 103 value in the table
    assert D.ct_k("SCT:66019005", 40.0)[0] is None  # extremity: not mapped
    assert D.ct_k(None, 40.0)[0] is None


def test_nm_coefficient_icrp128_adult_and_child():
    value, note = D.nm_coefficient(FDG, 50.0)
    assert value == 0.019 and note.endswith("ICRP Publication 128 (2015), 18F-FDG (ICRP 106 model)")
    assert D.nm_coefficient(FDG, 8.0)[0] == 0.037  # 10 y band, as for CT k
    assert D.nm_coefficient("SCT:96390006", 50.0)[0] == 0.0057  # MDP: ICRP 80 phosphonates
    assert D.nm_coefficient(None, 50.0)[0] is None  # more in test_icrp128.py


def test_decay_correction_one_half_life():
    t0 = dt.datetime(2024, 1, 1, 8, 0)
    assert D.decay_correct(400.0, t0, t0 + dt.timedelta(seconds=6586.2), 6586.2) == pytest.approx(200.0)


def _merged(files, *, age="055Y", weight=70.0, events=None, admin=None):
    study = R.DoseStudyInfo(patient_age=age, patient_weight_kg=weight)
    paths = [files.ct(events or [R.CtAcquisition(dlp_mgycm=400.0)], study=study),
             files.rrdsr(admin or R.RadiopharmaceuticalAdministration(activity_mbq=350.0), study=study)]  # fmt: skip
    parsed = [parse_file(p) for p in paths]
    return merge_study(parsed), parsed


def test_pet_ct_total_and_activity_per_kg(files):
    merged, _ = _merged(files)
    d = D.derive_study(merged)
    assert d["ct_effective_dose_msv"] == pytest.approx(400.0 * 0.0145)
    assert d["nm_effective_dose_msv"] == pytest.approx(350.0 * 0.019)
    assert d["total_effective_dose_msv"] == pytest.approx(400.0 * 0.0145 + 350.0 * 0.019)
    assert d["activity_per_kg_mbq"] == pytest.approx(5.0)


def test_total_is_empty_when_a_part_has_no_coefficient(files):
    merged, _ = _merged(files, admin=R.RadiopharmaceuticalAdministration("florbetaben", "F18", 300.0))
    d = D.derive_study(merged)
    assert d["ct_effective_dose_msv"] is not None and d["nm_effective_dose_msv"] is None
    assert d["total_effective_dose_msv"] is None and d["notes"]


def test_activity_measured_before_injection_is_decay_corrected(files):
    merged, _ = _merged(files)
    adm = merged["radiopharmaceutical"][0]
    adm["measured_datetime"] = "2024-03-15T07:10:13.8"  # one F-18 half-life before 09:00
    d = D.derive_study(merged)
    assert d["administrations"][0]["activity_at_injection_mbq"] == pytest.approx(175.0, rel=1e-3)
    assert "decay-corrected" in d["administrations"][0]["decay_correction"]


def test_study_rows_key_events_by_uid_and_denormalise_the_date(files):
    events = [R.CtAcquisition(dlp_mgycm=100.0, ctdivol_mgy=8.0),
              R.CtAcquisition(dlp_mgycm=50.0, ctdivol_mgy=12.0, target_region="head"),
              R.CtAcquisition(dlp_mgycm=0.0, ctdivol_mgy=None, acquisition_type="constant_angle")]  # fmt: skip
    merged, parsed = _merged(files, events=events)
    rows = study_rows(merged, D.derive_study(merged), parsed)
    assert rows["study"]["study_year"] == 2024 and rows["study"]["ct_event_count"] == 3
    assert [e["event_key"] for e in rows["ct_event"]] == [e.irradiation_event_uid for e in events]
    assert [e["k_msv_per_mgycm"] for e in rows["ct_event"]][:2] == [0.0145, 0.0019]
    assert rows["ct_event"][0]["kvp"] == 120.0 and rows["ct_event"][0]["study_date"] == dt.date(2024, 3, 15)
    (adm,) = rows["radiopharmaceutical"]
    assert adm["source"] == "rrdsr" and adm["start_datetime"] == dt.datetime(2024, 3, 15, 9, 0)
    assert len(rows["series_protocol"]) == 2


def test_event_without_uid_gets_a_positional_key(files):
    merged, parsed = _merged(files)
    merged["ct"]["events"][0]["irradiation_event_uid"] = None
    rows = study_rows(merged, D.derive_study(merged), parsed)
    assert rows["ct_event"][0]["event_key"] == "#0"


def test_spool_entry_is_written_atomically_and_read_back(tmp_path):
    entry = enqueue(tmp_path / "spool", "/x/y.dcm", source="orthanc", owned=True)
    assert entry.parent.name == "incoming" and entry.suffix == ".job"
    assert read_entry(entry) == {"file": "/x/y.dcm", "source": "orthanc", "owned": "1"}
    assert not list(entry.parent.glob(".*"))
    bad = entry.parent / "bad.job"
    bad.write_text("source=x\n")
    with pytest.raises(ValueError, match="without a file"):
        read_entry(bad)


def test_iter_files_walks_folders_in_order(tmp_path):
    (tmp_path / "b").mkdir()
    for name in ("b/2.dcm", "1.dcm", ".hidden"):
        (tmp_path / name).write_bytes(b"")
    assert [Path(f).name for f in iter_files([tmp_path])] == ["1.dcm", "2.dcm"]


@pytest.mark.skipif(shutil.which("lua5.1") is None, reason="lua5.1 not installed")
def test_conquest_script_ignores_other_objects_and_never_raises(tmp_path, files):
    script = REPO / "conquest" / "lua" / "nmdose_import.lua"
    spool = tmp_path / "spool"
    (spool / "incoming").mkdir(parents=True)  # objects/ missing: the write fails, the script must not raise
    pet = files.image("PT")
    ds = dcmread(pet, stop_before_pixels=True)
    for sop, modality, expect in [("1.2.840.10008.5.1.4.1.1.2", "CT", ""), (ds.SOPClassUID, "PT", "nmdose")]:
        prelude = (
            f"NMDOSE_SPOOL=[==[{spool}]==]; NMDOSE_STAGE='export'; NMDOSE_CALLING='ORTHANC'; "
            f"NMDOSE_ALLOWED_CALLING={{ORTHANC=true}}; Data={{SOPClassUID='{sop}', Modality='{modality}', "
            f"SOPInstanceUID='1.2.3'}}; function Data:Write(p) error('disk full') end"
        )
        proc = subprocess.run(
            ["lua5.1", "-e", prelude, str(script)], capture_output=True, text=True, timeout=30
        )
        assert proc.returncode == 0, proc.stderr
        assert (expect in proc.stdout) if expect else proc.stdout == ""
    assert not list((spool / "incoming").iterdir())
