"""The short variant of the fault campaign (`bench/faults.py`): ~40 studies, a few `kill -9` faults at random
moments into the research PACS, PostgreSQL, the dose PACS, the simulation PACS and the dose worker, each
restarted; the end state must equal a clean run of the same seed."""

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def run_bench(*args: str) -> dict[str, str]:
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / "faults.py"), *args],
        capture_output=True,
        text=True,
        timeout=1500,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    figures = dict(line.split("=", 1) for line in proc.stdout.splitlines() if "=" in line and line[0] != "#")
    figures["_report"] = proc.stdout[-4000:] + proc.stderr[-2000:]
    return figures


def test_a_short_fault_campaign_ends_like_the_clean_run():
    f = run_bench("--studies", "40", "--faults", "4", "--seed", "11", "--no-scenarios", "--deadline", "600")
    report = f["_report"]
    print(
        report
    )  # the whole report (faults, stuck jobs, missing studies) in the captured output of a failure
    assert int(f["faults"]) >= 3, report
    assert f["converged"] == "1", report
    assert int(f["studies_expected"]) > 20, report
    assert f["clean_studies_retrieved_complete"] == f["studies_expected"], report
    for key in (
        "studies_retrieved_complete",
        "studies_forwarded",
        "dose_studies",
        "ct_events",
        "administrations",
    ):
        assert f[key] == f[f"clean_{key}"], (key, report)
    assert f["duplicates"] == "0", report
    assert f["lost"] == "0", report
    assert f["mismatched"] == "0", report
    assert f["stuck_jobs"] == "0", report
    assert f["dead_letters"] == f["clean_dead_letters"], report
