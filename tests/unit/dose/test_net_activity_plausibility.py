"""Net administered activity from pre/post measurements, the rule that gave the activity, and its plausibility for
the agent (issue 16 item 5)."""

from __future__ import annotations

import datetime as dt
import glob
import math
import shutil
import subprocess
from pathlib import Path

import pytest

from nmdose.dose import derived as D
from nmdose.dose.ingest import study_rows
from nmdose.dose.parse import merge_study, parse_file
from nmdose.simulate import rdsr as R

F18 = 6586.2  # s, codes.RADIONUCLIDES
INJECTION = dt.datetime(2024, 3, 15, 9, 0)
REALFILES = Path(__file__).resolve().parents[3].parent / "shared" / "realfiles"


def _pre_post(**kw) -> R.RadiopharmaceuticalAdministration:
    values = dict(activity_mbq=None, start_datetime=INJECTION, pre_measured_activity_mbq=400.0,
                  pre_measured_datetime=dt.datetime(2024, 3, 15, 8, 40), post_measured_activity_mbq=20.0,
                  post_measured_datetime=dt.datetime(2024, 3, 15, 9, 10))  # fmt: skip
    values.update(kw)
    return R.RadiopharmaceuticalAdministration(**values)


def _expected_net() -> float:
    return 400.0 * math.pow(2, -1200 / F18) - 20.0 * math.pow(2, 600 / F18)


def _derive(files, *paths_or_adms, study=None):
    study = study or R.DoseStudyInfo()
    paths = [p if isinstance(p, Path) else files.rrdsr(p, study=study) for p in paths_or_adms]
    parsed = [parse_file(p) for p in paths]
    merged = merge_study(parsed)
    return merged, D.derive_study(merged), parsed


def test_measurement_times_are_read_from_the_items_observation_datetime(files):
    result = parse_file(files.rrdsr(_pre_post()))
    (a,) = result["radiopharmaceutical"]
    assert a["pre_measured_datetime"] == "2024-03-15T08:40:00"
    assert a["post_measured_datetime"] == "2024-03-15T09:10:00"
    assert [w.split(": ", 1)[1] for w in result["warnings"]] == [
        "Administered activity (113507, DCM): absent or unusable"
    ]


def test_net_activity_is_pre_minus_post_both_decay_corrected_to_the_injection(files):
    merged, d, _ = _derive(files, _pre_post())
    (a,) = d["administrations"]
    assert a["net_activity_mbq"] == pytest.approx(_expected_net(), rel=1e-9)
    assert a["administered_activity_rule"] == "rrdsr_net_pre_post"
    assert a["activity_at_injection_mbq"] == pytest.approx(_expected_net(), rel=1e-9)  # used for E and per kg
    assert a["effective_dose_msv"] == pytest.approx(_expected_net() * 0.019, rel=1e-6)
    assert "T1/2 6586.2 s (report)" in a["net_activity_note"]


def test_an_administered_activity_is_kept_and_the_net_stored_beside_it(files):
    merged, d, parsed = _derive(files, _pre_post(activity_mbq=370.0))
    (a,) = d["administrations"]
    assert a["administered_activity_rule"] == "rrdsr_administered"
    assert a["activity_at_injection_mbq"] == 370.0
    assert a["net_activity_mbq"] == pytest.approx(_expected_net(), rel=1e-9)
    (row,) = study_rows(merged, d, parsed)["radiopharmaceutical"]
    assert row["activity_mbq"] == 370.0 and row["net_activity_mbq"] == pytest.approx(_expected_net())
    assert row["administered_activity_rule"] == "rrdsr_administered"
    assert row["pre_measured_datetime"] == dt.datetime(2024, 3, 15, 8, 40)
    assert row["post_measured_datetime"] == dt.datetime(2024, 3, 15, 9, 10)
    assert row["start_datetime_source"] == "rrdsr"


def test_without_measurement_times_there_is_no_net_and_a_note_says_why(files):
    merged, d, _ = _derive(
        files, _pre_post(activity_mbq=370.0, pre_measured_datetime=None, post_measured_datetime=None)
    )
    (a,) = d["administrations"]
    assert a["net_activity_mbq"] is None and a["administered_activity_rule"] == "rrdsr_administered"
    assert "net activity not computed: no its measurement time" in a["net_activity_note"]


def test_measurements_out_of_order_give_no_net(files):
    _merged, d, _ = _derive(files, _pre_post(pre_measured_datetime=dt.datetime(2024, 3, 15, 9, 30)))
    (a,) = d["administrations"]
    assert a["net_activity_mbq"] is None and a["administered_activity_rule"] is None
    assert "out of order" in a["net_activity_note"]


def test_the_pet_headers_half_life_wins_for_the_net(files):
    study = R.DoseStudyInfo()
    header = R.RadiopharmaceuticalAdministration(activity_mbq=370.0, half_life_s=6600.0)
    image = files.image("PT", header, study=study)
    _merged, d, _ = _derive(files, _pre_post(), image, study=study)
    (a,) = d["administrations"]
    expected = 400.0 * math.pow(2, -1200 / 6600.0) - 20.0 * math.pow(2, 600 / 6600.0)
    assert a["net_activity_mbq"] == pytest.approx(expected, rel=1e-9)
    assert "T1/2 6600 s (header)" in a["net_activity_note"]


@pytest.mark.parametrize(
    ("start_time_only", "rule", "source"),
    [(False, "pet_header_start_datetime", "header_start_datetime"),
     (True, "pet_header_start_time", "header_start_time+StudyDate")],
)  # fmt: skip
def test_pet_header_only_uses_the_headers_dose_at_its_start_time(files, start_time_only, rule, source):
    image = files.image(
        "PT", R.RadiopharmaceuticalAdministration(activity_mbq=370.0), start_time_only=start_time_only
    )
    merged, d, parsed = _derive(files, image)
    (a,) = d["administrations"]
    assert a["administered_activity_rule"] == rule and a["activity_at_injection_mbq"] == pytest.approx(370.0)
    (row,) = study_rows(merged, d, parsed)["radiopharmaceutical"]
    assert row["start_datetime_source"] == source and row["administered_activity_rule"] == rule


@pytest.mark.parametrize(
    ("agent", "nuclide", "mbq", "words"),
    [("fdg", "F18", 2000.0, "outside 20-1500 MBq plausible for FDG"),
     ("fdg", "F18", 5.0, "outside 20-1500 MBq"),
     ("mdp", "Tc99m", 2500.0, "outside 10-2000 MBq plausible for Tc99m agents"),
     ("psma11", "Ga68", 30000.0, "outside 0.1-20000 MBq plausible for any agent")],
)  # fmt: skip
def test_implausible_activity_is_stored_with_a_warning(files, agent, nuclide, mbq, words):
    merged, d, parsed = _derive(files, R.RadiopharmaceuticalAdministration(agent, nuclide, mbq))
    (a,) = d["administrations"]
    assert a["activity_at_injection_mbq"] == pytest.approx(mbq)  # kept, not silently dropped
    assert words in a["plausibility"]
    rows = study_rows(merged, d, parsed)
    assert rows["radiopharmaceutical"][0]["plausibility"] == a["plausibility"]
    assert rows["radiopharmaceutical"][0]["activity_mbq"] == pytest.approx(mbq)
    assert any(w.startswith("plausibility: ") and words in w for w in rows["study"]["warnings"].adapted)


@pytest.mark.parametrize(("agent", "nuclide", "mbq"), [("fdg", "F18", 370.0), ("mdp", "Tc99m", 700.0),
                                                       ("psma11", "Ga68", 150.0)])  # fmt: skip
def test_plausible_activity_has_no_warning(files, agent, nuclide, mbq):
    merged, d, parsed = _derive(files, R.RadiopharmaceuticalAdministration(agent, nuclide, mbq))
    assert d["administrations"][0]["plausibility"] is None
    assert not any(
        w.startswith("plausibility") for w in study_rows(merged, d, parsed)["study"]["warnings"].adapted
    )


def test_an_activity_in_bq_stored_as_mbq_is_named_and_not_stored(files):
    path = files.rrdsr(R.RadiopharmaceuticalAdministration(activity_mbq=3.7e8))
    result = parse_file(path)
    (a,) = result["radiopharmaceutical"]
    assert a["activity_mbq"] is None
    assert "likely Bq stored as MBq (370 MBq if read as Bq)" in a["plausibility"]
    merged, d, parsed = _derive(files, path)
    rows = study_rows(merged, d, parsed)
    assert "likely Bq" in rows["radiopharmaceutical"][0]["plausibility"]
    assert any("likely Bq" in w for w in rows["study"]["warnings"].adapted)


@pytest.mark.skipif(shutil.which("dsrdump") is None, reason="DCMTK dsrdump not installed")
def test_pre_post_rrdsr_passes_dsrdump(files):
    proc = subprocess.run(["dsrdump", str(files.rrdsr(_pre_post(activity_mbq=370.0)))], capture_output=True,
                          text=True, timeout=30)  # fmt: skip
    assert proc.returncode == 0 and proc.stderr.strip() == "", proc.stderr


def test_real_vendor_files_keep_their_activities_and_get_their_rules():
    """Siemens RRDSRs (OpenREM asserts 250 and 394 MBq FDG) and the PET/NM image headers: activities as before,
    the rule that fired, no plausibility warning."""
    files = sorted(glob.glob(str(REALFILES / "openrem-develop" / "NM-*.dcm")))
    assert files, f"real vendor files missing under {REALFILES}"
    for path in files:
        parsed = parse_file(path)
        if not parsed["radiopharmaceutical"]:
            continue
        d = D.derive_study(merge_study([parsed]))
        for adm, derived in zip(parsed["radiopharmaceutical"], d["administrations"], strict=True):
            assert derived["plausibility"] is None, (path, derived["plausibility"])
            if parsed["kind"] == "radiopharmaceutical_rdsr":
                assert derived["administered_activity_rule"] == "rrdsr_administered"
                assert derived["activity_at_injection_mbq"] == adm["activity_mbq"]
            else:
                assert derived["administered_activity_rule"].startswith(("pet_header_", "nm_header_")), path
    activities = {
        Path(p).name: parse_file(p)["radiopharmaceutical"][0]["activity_mbq"] for p in files if "RRDSR" in p
    }
    assert activities == {"NM-RRDSR-Siemens-Extended.dcm": 250.0, "NM-RRDSR-Siemens.dcm": 394.0}
    extended = parse_file(str(REALFILES / "openrem-develop" / "NM-RRDSR-Siemens-Extended.dcm"))
    (adm,) = extended["radiopharmaceutical"]
    assert (adm["pre_measured_activity_mbq"], adm["post_measured_activity_mbq"]) == (11.0, 12.0)
    note = D.derive_study(merge_study([extended]))["administrations"][0]["net_activity_note"]
    assert note.startswith("net activity not computed: no its measurement time")
