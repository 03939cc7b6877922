"""C-MOVE backends against real Orthancs: simulation PACS -> research PACS, verified per series."""

from datetime import date
from pathlib import Path

import pytest

from nmdose.pacs.orthanc_http import OrthancHttp
from nmdose.retrieve.mover import MovescuMover, OrthancMover, received_series, verify
from nmdose.simulate import generate
from nmdose.simulate.upload import upload

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def filled(stack, tmp_path_factory):
    """Six synthetic studies stored in the simulation PACS of the session stack."""
    out = Path(tmp_path_factory.mktemp("movers"))
    manifest = generate(out, studies=6, years=2, seed=11, today=date(2026, 6, 30))
    upload(out, stack.cfg.nodes["simulationPACS"], cfg=stack.cfg)
    rest = OrthancHttp(stack.cfg.research_node.http_url, name="researchPACS")
    return stack, manifest, rest


def test_orthanc_backend_moves_a_whole_study_and_verification_agrees(filled):
    stack, manifest, rest = filled
    study = manifest.studies[0]
    mover = OrthancMover(rest, stack.cfg.source_node, stack.cfg.research_node.aet)
    result = mover.move(study.study_uid)
    assert result.ok, result.error
    assert result.status == "0x0000"
    check = verify(rest, stack.cfg.source_node, study.study_uid)
    assert check.complete and check.received == study.instances == check.expected
    # moving again never duplicates an instance
    assert mover.move(study.study_uid).ok
    assert sum(received_series(rest, study.study_uid).values()) == study.instances


def test_dcmtk_backend_moves_a_study_and_writes_its_log(filled, tmp_path):
    stack, manifest, rest = filled
    study = manifest.studies[1]
    mover = MovescuMover(stack.cfg, stack.cfg.source_node, stack.cfg.research_node.aet, log_root=tmp_path)
    result = mover.move(study.study_uid)
    assert result.ok, result.error
    assert result.completed == study.instances and result.failed == 0
    log = Path(result.log_path).read_text()
    assert study.study_uid in log and "movescu" in log
    assert verify(rest, stack.cfg.source_node, study.study_uid).complete


def test_moving_selected_series_only(filled):
    stack, manifest, rest = filled
    study = max(manifest.studies[2:], key=lambda s: len(s.series))
    first = study.series[0]
    mover = OrthancMover(rest, stack.cfg.source_node, stack.cfg.research_node.aet)
    assert mover.move(study.study_uid, series_uids=[first.series_uid]).ok
    got = received_series(rest, study.study_uid)
    assert got == {first.series_uid: first.instances}
    check = verify(rest, stack.cfg.source_node, study.study_uid)
    assert not check.complete and first.series_uid not in check.missing_series
    assert len(check.missing_series) == len(study.series) - 1


@pytest.mark.parametrize("backend", ["orthanc", "dcmtk"])
def test_unknown_study_fails_with_a_reason(filled, tmp_path, backend):
    stack, _, rest = filled
    if backend == "orthanc":
        mover = OrthancMover(rest, stack.cfg.source_node, stack.cfg.research_node.aet)
    else:
        mover = MovescuMover(stack.cfg, stack.cfg.source_node, stack.cfg.research_node.aet, log_root=tmp_path)
    result = mover.move("1.2.826.0.1.3680043.10.1234.999999.1")
    if backend == "orthanc":
        assert not result.ok and result.status == "not-found" and "no study" in result.error
    else:  # a C-MOVE of nothing succeeds with 0 sub-operations: verification is what catches it
        assert result.completed in (0, None)
        assert verify(rest, stack.cfg.source_node, "1.2.826.0.1.3680043.10.1234.999999.1").expected is None


def test_source_down_is_reported_not_raised(filled):
    stack, manifest, rest = filled
    stack.stack.orthanc_down("simulationPACS")
    try:
        result = OrthancMover(rest, stack.cfg.source_node, stack.cfg.research_node.aet).move(
            manifest.studies[3].study_uid
        )
        assert not result.ok and result.error
    finally:
        stack.stack.orthanc_up("simulationPACS")


def test_csv_rows_resolve_by_cfind_to_one_none_or_several_studies(filled, tmp_path):
    from nmdose.retrieve.csv_input import read_csv, resolve

    stack, manifest, rest = filled
    a, b = manifest.studies[0], manifest.studies[1]
    by_patient = [s for s in manifest.studies if s.patient_id == a.patient_id]
    path = tmp_path / "list.csv"
    path.write_text(f"AccessionNumber\n{a.accession}\nNOPE999\n\n{b.accession}\n")
    rows, problems = read_csv(path)
    assert problems == []
    outcomes = {
        r.row.value: (r.outcome, [s["StudyInstanceUID"] for s in r.studies])
        for r in resolve(rows, rest, stack.cfg.source_node.name)
    }
    assert outcomes == {
        a.accession: ("one study", [a.study_uid]),
        "NOPE999": ("no match", []),
        b.accession: ("one study", [b.study_uid]),
    }
    path.write_text(f"PatientID\n{a.patient_id}\n")
    (res,) = resolve(read_csv(path)[0], rest, stack.cfg.source_node.name)
    assert sorted(s["StudyInstanceUID"] for s in res.studies) == sorted(s.study_uid for s in by_patient)
