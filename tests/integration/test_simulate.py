"""The simulation in a real Orthanc 1.10: what the PACS holds equals the manifest."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from collections import defaultdict
from datetime import date
from pathlib import Path

import pytest
import requests

from nmdose.orthanc_ids import orthanc_study_id
from nmdose.simulate import Manifest, generate
from nmdose.simulate import model as M
from nmdose.simulate.upload import UploadError, upload

pytestmark = pytest.mark.integration

ORTHANC = shutil.which("Orthanc") or "/usr/sbin/Orthanc"


def _free_port() -> int:
    from nmdose.ports import free_port

    return free_port()


class ThrowawayOrthanc:
    """An Orthanc 1.10 with SQLite index and storage in a temporary folder, on free ports."""

    def __init__(self, aet: str = "NMFULLDATA"):
        self.root = Path(tempfile.mkdtemp(prefix="nmdose-sim-orthanc-"))
        self.aet, self.port, self.http_port = aet, _free_port(), _free_port()
        self.url = f"http://127.0.0.1:{self.http_port}"
        config = {
            "Name": "nmdose-test-simulation",
            "DicomAet": aet,
            "DicomPort": self.port,
            "HttpPort": self.http_port,
            "StorageDirectory": str(self.root / "db"),
            "IndexDirectory": str(self.root / "db"),
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "Plugins": [],
            "DicomCheckCalledAet": True,
            "SyncStorageArea": False,
        }
        (self.root / "orthanc.json").write_text(json.dumps(config))
        self.log = (self.root / "orthanc.log").open("wb")
        self.proc = subprocess.Popen(
            [ORTHANC, str(self.root / "orthanc.json")],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "TCP_NODELAY": "1"},
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.stop()
                raise RuntimeError(
                    f"Orthanc exited at start: {(self.root / 'orthanc.log').read_text()[-2000:]}"
                )
            try:
                requests.get(f"{self.url}/system", timeout=1).raise_for_status()
                return
            except requests.RequestException:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError("Orthanc did not answer within 30 s")

    @property
    def node(self):
        return type(
            "Node",
            (),
            {
                "aet": self.aet,
                "host": "127.0.0.1",
                "port": self.port,
                "http_url": self.url,
                "name": "simulationPACS",
            },
        )()

    def get(self, path: str):
        r = requests.get(f"{self.url}{path}", timeout=30)
        r.raise_for_status()
        return r.json()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.log.close()
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="module")
def orthanc():
    server = ThrowawayOrthanc()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def simulation(tmp_path_factory) -> tuple[Path, Manifest]:
    out = tmp_path_factory.mktemp("simulation") / "seed11"
    return out, generate(out, studies=30, years=6, seed=11, today=date(2025, 3, 1))


def _pacs_counts(orthanc: ThrowawayOrthanc) -> dict[str, dict[str, int]]:
    counts: dict[str, dict] = defaultdict(lambda: {"studies": set(), "series": 0, "instances": 0})
    for series in orthanc.get("/series?expand"):
        entry = counts[series["MainDicomTags"]["Modality"]]
        entry["studies"].add(series["ParentStudy"])
        entry["series"] += 1
        entry["instances"] += len(series["Instances"])
    return {
        m: {"studies": len(e["studies"]), "series": e["series"], "instances": e["instances"]}
        for m, e in sorted(counts.items())
    }


def test_storescu_upload_fills_the_pacs_exactly_as_the_manifest_says(orthanc, simulation):
    out, manifest = simulation
    result = upload(out, orthanc.node)
    assert result.method == "storescu" and result.files == manifest.summary["instances"]
    assert result.studies_checked == len(manifest.studies) and not result.missing

    stats = orthanc.get("/statistics")
    assert stats["CountStudies"] == manifest.summary["studies"]
    assert stats["CountSeries"] == manifest.summary["series"]
    assert stats["CountInstances"] == manifest.summary["instances"]
    assert _pacs_counts(orthanc) == manifest.summary["by_modality"]

    for record in manifest.studies:
        study = orthanc.get(f"/studies/{orthanc_study_id(record.patient_id, record.study_uid)}")
        tags = study["MainDicomTags"]
        assert tags["StudyInstanceUID"] == record.study_uid
        assert tags["StudyDescription"] == record.description  # Korean survives ISO_IR 192
        assert tags["StudyDate"] == record.date and tags["AccessionNumber"] == record.accession
        modalities = sorted(
            {orthanc.get(f"/series/{s}")["MainDicomTags"]["Modality"] for s in study["Series"]}
        )
        assert modalities == record.modalities


def test_pt_images_in_the_pacs_carry_the_radiopharmaceutical_sequence(orthanc, simulation):
    _, manifest = simulation
    pet_series = [s for s in orthanc.get("/series?expand") if s["MainDicomTags"]["Modality"] == "PT"]
    assert pet_series
    for series in pet_series:
        tags = orthanc.get(f"/instances/{series['Instances'][0]}/simplified-tags")
        item = tags["RadiopharmaceuticalInformationSequence"][0]
        assert float(item["RadionuclideTotalDose"]) > 0 and item["RadiopharmaceuticalStartDateTime"]
        assert item["RadionuclideCodeSequence"][0]["CodeValue"]
        record = manifest.study(tags["StudyInstanceUID"])
        assert record.radiopharmaceutical["agent"]


def test_mislabelled_pet_ct_arrives_without_pt(orthanc, simulation):
    _, manifest = simulation
    pet_descriptions = {s.description for s in manifest.studies if "PT" in s.expected_modalities}
    mislabelled = [manifest.study(uid) for uid in manifest.mess[M.MESS_MISLABELLED]]
    pet_ct = [r for r in mislabelled if r.description in pet_descriptions]
    assert pet_ct, "the simulation made no mislabelled PET-CT study: this test would check nothing"
    for record in pet_ct:
        study = orthanc.get(f"/studies/{orthanc_study_id(record.patient_id, record.study_uid)}")
        modalities = {orthanc.get(f"/series/{s}")["MainDicomTags"]["Modality"] for s in study["Series"]}
        assert "PT" not in modalities and "CT" in modalities, (record.study_uid, modalities)


def test_rest_upload_of_the_same_files_is_accepted_and_verified(orthanc, simulation):
    out, manifest = simulation
    result = upload(out, orthanc.node, method="rest")
    assert result.method == "rest" and not result.missing
    assert orthanc.get("/statistics")["CountInstances"] == manifest.summary["instances"]


def test_upload_with_a_wrong_called_aet_is_reported(orthanc, simulation):
    out, _ = simulation
    node = type(
        "Node",
        (),
        {
            "aet": "NOTTHEPACS",
            "host": "127.0.0.1",
            "port": orthanc.port,
            "http_url": orthanc.url,
            "name": "simulationPACS",
        },
    )()
    with pytest.raises(UploadError, match="simulationPACS"):
        upload(out, node)
