"""The pipeline end to end on the real stack: simulate -> census -> retrieve (CLI) -> research PACS."""

import shutil
from datetime import date

import pytest

from nmdose.cli import main
from nmdose.pacs.orthanc_http import OrthancHttp
from nmdose.simulate import generate
from nmdose.simulate.upload import upload
from tests.support import RunningStack, make_tempdir

pytestmark = pytest.mark.integration

TODAY = date(2026, 6, 30)


@pytest.fixture(scope="module")
def pipeline():
    running = RunningStack(
        nodes={"simulationPACS": {"find_limit": 30}},
        retrieve={
            "time_window": {"weekdays": "00:00-24:00", "weekends": "00:00-24:00"},
            "retry": {"max_attempts": 3, "backoff_s": 0.2, "backoff_max_s": 1},
        },
    )
    out = make_tempdir("nmdose-pipeline-")
    manifest = generate(out, studies=40, years=4, seed=99, today=TODAY)
    upload(out, running.cfg.nodes["simulationPACS"], cfg=running.cfg)
    yield running, manifest
    running.close()
    shutil.rmtree(out, ignore_errors=True)


def test_census_then_retrieve_brings_exactly_the_target_studies_complete(pipeline, capsys):
    running, manifest = pipeline
    args = running.cli_args()
    assert main([*args, "census", "run", "--to", TODAY.isoformat()]) == 0
    assert main([*args, "retrieve", "run"]) == 0
    out = capsys.readouterr().out
    assert "census target studies" in out
    targets = manifest.target_studies(
        tuple(running.cfg.retrieve.target_modalities), running.cfg.retrieve.target_descriptions
    )
    assert targets and len(targets) < len(manifest.studies)  # the left-out descriptions are not retrieved
    rest = OrthancHttp(running.cfg.research_node.http_url)
    held = {s["MainDicomTags"]["StudyInstanceUID"]: s for s in rest.get("/studies", params={"expand": ""})}
    assert set(held) == {s.study_uid for s in targets}
    for s in targets:
        stats = rest.get(f"/studies/{held[s.study_uid]['ID']}/statistics")
        assert stats["CountInstances"] == s.instances
    # re-running queues nothing new and moves nothing
    assert main([*args, "retrieve", "run", "--json"]) == 0
    assert '"studies_done_this_run": 0' in capsys.readouterr().out
