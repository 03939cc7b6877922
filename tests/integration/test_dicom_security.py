"""The DICOM security profile against real Orthanc processes: foreign AE titles, known AE titles from another
host and wrong called AE titles are refused by the research PACS, the dose-PACS stand-in and the simulation PACS;
a forged RDSR never reaches dose.*; the pipeline's own peers still get through (each refusal has its control)."""

from __future__ import annotations

import time
from contextlib import closing
from pathlib import Path

import pytest
import requests
from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from pynetdicom import AE
from pynetdicom.sop_class import (
    CTImageStorage,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
    XRayRadiationDoseSRStorage,
)

from nmdose.db import connect
from nmdose.simulate import rdsr as R
from tests.support import RunningStack

pytestmark = pytest.mark.integration

OTHER_HOST = "127.0.0.2"  # a loopback address no peer of the profile is registered at


def _ae(calling: str) -> AE:
    ae = AE(ae_title=calling)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 10
    for context in (
        Verification,
        StudyRootQueryRetrieveInformationModelFind,
        StudyRootQueryRetrieveInformationModelMove,
        StudyRootQueryRetrieveInformationModelGet,
        XRayRadiationDoseSRStorage,
        CTImageStorage,
    ):
        ae.add_requested_context(context)
    return ae


def _associate(node, calling: str, *, called: str | None = None, host: str = "127.0.0.1"):
    return _ae(calling).associate(node.host, node.port, ae_title=called or node.aet, bind_address=(host, 0))


def _status(value) -> int | None:
    return int(value.Status) if value is not None and "Status" in value else None


def request(node, calling: str, service: str, *, host: str = "127.0.0.1", called: str | None = None,
            dataset: Dataset | None = None, move_to: str = "") -> str:  # fmt: skip
    """'ok', 'refused (…)' or 'no association (…)' for one DIMSE request."""
    assoc = _associate(node, calling, called=called, host=host)
    if not assoc.is_established:
        return "no association (rejected)" if assoc.is_rejected else "no association (aborted)"
    try:
        if service == "echo":
            status = _status(assoc.send_c_echo())
            return "ok" if status == 0 else f"refused ({status})"
        if service == "store":
            status = _status(assoc.send_c_store(dataset))
            return "ok" if status == 0 else f"refused ({status if status is None else hex(status)})"
        query = Dataset()
        query.QueryRetrieveLevel = "STUDY"
        query.StudyInstanceUID = "" if service == "find" else "1.2.3.4.5.6"
        if service == "find":
            responses = assoc.send_c_find(query, StudyRootQueryRetrieveInformationModelFind)
        elif service == "move":
            responses = assoc.send_c_move(query, move_to, StudyRootQueryRetrieveInformationModelMove)
        else:
            responses = assoc.send_c_get(query, StudyRootQueryRetrieveInformationModelGet)
        statuses = [_status(s) for s, _ in responses]
        final = statuses[-1] if statuses else None
        return "ok" if final == 0 else f"refused ({final if final is None else hex(final)})"
    finally:
        if assoc.is_established:
            assoc.release()


def forged_rdsr(folder: Path, study_uid: str) -> Dataset:
    """An X-Ray Radiation Dose SR claiming an absurd DLP under a known study's UID."""
    study = R.DoseStudyInfo(study_instance_uid=study_uid, study_description="forged")
    events = [R.CtAcquisition(acquisition_protocol="forged", dlp_mgycm=99999.0)]
    path = R.save(R.ct_radiation_dose_sr(study, events, series_uid=generate_uid(), sop_uid=generate_uid()),
                  folder / f"forged-{generate_uid()}.dcm")  # fmt: skip
    return dcmread(path)


def ct_image(study_uid: str) -> Dataset:
    """A tiny CT image (no dose object) for the control that ordinary images still pass an opened node."""
    ds = Dataset()
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = generate_uid()
    ds.PatientID = "SEC-TEST"
    ds.PatientName = "Security^Test"
    ds.Modality = "CT"
    ds.Rows = ds.Columns = 2
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
    ds.SamplesPerPixel, ds.PixelRepresentation = 1, 0
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.PixelData = b"\0" * 8
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return ds


def held(node, sop_uid: str) -> bool:
    """The Orthanc node stores this SOP instance (REST lookup)."""
    found = requests.post(f"{node.http_url}/tools/lookup", data=sop_uid, timeout=10).json()
    return any(item["Type"] == "Instance" for item in found)


def dose_rows(cfg, study_uid: str) -> int:
    with closing(connect(cfg)) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM dose.object WHERE study_instance_uid = %s", (study_uid,))
        return cur.fetchone()[0]


def wait_rows(cfg, study_uid: str, timeout_s: float = 15) -> int:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not dose_rows(cfg, study_uid):
        time.sleep(0.2)
    return dose_rows(cfg, study_uid)


# ----- the session stack (the shipped profile)
@pytest.mark.parametrize("node_name", ["researchPACS", "dosePACS", "simulationPACS"])
def test_a_foreign_ae_title_gets_echo_only(stack, node_name, tmp_path):
    node = stack.cfg.nodes[node_name]
    assert request(node, "INTRUDER", "echo") == "ok"  # C-ECHO stays open to all
    for service in ("find", "move", "get"):
        outcome = request(node, "INTRUDER", service, move_to="INTRUDER")
        assert outcome != "ok", (node_name, service, outcome)
    forged = forged_rdsr(tmp_path, generate_uid())
    assert request(node, "INTRUDER", "store", dataset=forged) != "ok"


def test_known_ae_titles_from_an_unregistered_host_are_refused(stack):
    sim, research, dose = (stack.cfg.nodes[n] for n in ("simulationPACS", "researchPACS", "dosePACS"))
    # the research PACS may C-FIND on the simulation PACS from 127.0.0.1, not from another address
    assert request(sim, research.aet, "find") == "ok"
    assert request(sim, research.aet, "find", host=OTHER_HOST) != "ok"
    assert request(sim, stack.cfg.local_aet, "move", host=OTHER_HOST, move_to=research.aet) != "ok"
    assert request(dose, research.aet, "find") == "ok"
    assert request(dose, research.aet, "find", host=OTHER_HOST) != "ok"


def test_a_wrong_called_ae_title_is_rejected(stack):
    research = stack.cfg.research_node
    assert request(research, "INTRUDER", "echo", called="NOT_ORTHANC").startswith("no association")


def test_peers_get_only_the_services_the_pipeline_needs(stack):
    sim, research, dose = (stack.cfg.nodes[n] for n in ("simulationPACS", "researchPACS", "dosePACS"))
    assert request(research, sim.aet, "find") != "ok"  # the source may only C-STORE into the research PACS
    assert request(research, stack.cfg.local_aet, "find") != "ok"  # our tools need nothing of it
    assert request(dose, research.aet, "move", move_to=research.aet) != "ok"  # store and find only
    assert request(sim, dose.aet, "find") != "ok"  # the dose PACS is at most a C-MOVE destination


def test_a_forged_rdsr_from_a_foreign_ae_never_reaches_dose_tables(stack, tmp_path):
    dose, research = stack.cfg.dose_node, stack.cfg.research_node
    uid = generate_uid()
    forged = forged_rdsr(tmp_path, uid)
    assert request(research, "INTRUDER", "store", dataset=forged) != "ok"
    assert request(dose, "INTRUDER", "store", dataset=forged) != "ok"
    assert request(dose, research.aet, "store", dataset=forged, host=OTHER_HOST) != "ok"
    time.sleep(2)
    assert dose_rows(stack.cfg, uid) == 0
    # control: the same object from the research PACS's own address is taken and ingested
    assert request(dose, research.aet, "store", dataset=forged) == "ok"
    assert wait_rows(stack.cfg, uid) == 1


# ----- a stack whose operator opened C-STORE to everyone: the plugin's and the Lua hook's own filters hold
@pytest.fixture(scope="module")
def opened():
    loose = {"orthanc_settings": {"DicomAlwaysAllowStore": True}}
    running = RunningStack(nodes={"researchPACS": dict(loose), "dosePACS": dict(loose)})
    yield running
    running.close()


def test_opened_nodes_still_refuse_dose_objects_from_unknown_senders(opened, tmp_path):
    cfg = opened.cfg
    research, dose = cfg.research_node, cfg.dose_node
    assert any("DicomAlwaysAllowStore" in w for w in cfg.warnings)  # test mode warns where prod refuses
    uid = generate_uid()
    forged = forged_rdsr(tmp_path, uid)
    assert request(research, "INTRUDER", "store", dataset=forged) == "refused (0x124)"  # the plugin's filter
    assert request(dose, "INTRUDER", "store", dataset=forged) == "refused (0x124)"  # the stand-in's filter
    assert request(research, "INTRUDER", "store", dataset=ct_image(uid)) == "ok"  # images: what was opened
    time.sleep(2)
    assert not held(dose, forged.SOPInstanceUID) and not held(research, forged.SOPInstanceUID)
    assert dose_rows(cfg, uid) == 0
    assert request(dose, research.aet, "store", dataset=forged) == "ok"
    assert wait_rows(cfg, uid) == 1


def test_generated_orthanc_configurations_carry_the_profile(stack):
    for name in ("simulationPACS", "researchPACS", "dosePACS"):
        conf = stack.stack.orthanc_config(name)
        assert conf["DicomCheckCalledAet"] is True and conf["DicomCheckModalityHost"] is True
        assert conf["DicomAlwaysAllowEcho"] is True
        assert not any(conf[k] for k in ("DicomAlwaysAllowFind", "DicomAlwaysAllowMove", "DicomAlwaysAllowStore",
                                         "DicomAlwaysAllowGet"))  # fmt: skip
        for peer in conf["DicomModalities"].values():
            assert peer["AllowGet"] is False and peer["AllowStorageCommitment"] is False
    research = stack.stack.orthanc_config("researchPACS")["DicomModalities"]
    assert research["simulationPACS"]["AllowStore"] and not research["simulationPACS"]["AllowFind"]
    assert not any(research["dosePACS"][k] for k in ("AllowStore", "AllowFind", "AllowMove"))


def test_a_3000_level_sr_from_an_unknown_sender_is_refused_and_the_research_pacs_stays_up(opened, tmp_path):
    """The filter reads the first elements only: Orthanc's JSON of this SR is ~190 MB and too deep to load."""
    import subprocess

    from nmdose.pacs.dcmtk import dicom_env
    from tests.integration.test_dose_standin import deep_sr

    research = opened.cfg.research_node
    path = tmp_path / "deep.dcm"
    sop = deep_sr(path)
    before = requests.get(f"{research.http_url}/system", timeout=10).json()
    proc = subprocess.run(
        [
            "storescu",
            "-v",
            "-aet",
            "INTRUDER",
            "-aec",
            research.aet,
            "127.0.0.1",
            str(research.port),
            str(path),
        ],
        env=dicom_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "Received Store Response (Unknown Status: 0x124)" in proc.stderr, proc.stderr[-500:]
    assert requests.get(f"{research.http_url}/system", timeout=10).json() == before  # the same Orthanc, up
    assert not held(research, sop)


def test_a_site_peer_at_an_ip_address_is_admitted_and_orthanc_starts(tmp_path):
    """`allow:` names its Orthanc modality after the AE title and host: the dots of an IP address made Orthanc
    1.10 refuse to start ("Only alphanumeric, dash characters and underscores are allowed in the names of
    modalities"). The peer stores from its address; the same AE title from another address does not."""
    grant = {"aet": "CT_SCANNER1", "host": "127.0.0.1", "services": ["store"]}
    running = RunningStack(nodes={"dosePACS": {"allow": [grant]}})
    try:
        dose = running.cfg.dose_node
        names = running.stack.orthanc_config("dosePACS")["DicomModalities"]
        assert "allow-CT_SCANNER1-127_0_0_1" in names
        uid = generate_uid()
        rdsr = forged_rdsr(tmp_path, uid)
        assert request(dose, "CT_SCANNER1", "store", dataset=rdsr) == "ok"
        assert held(dose, rdsr.SOPInstanceUID)
        other = forged_rdsr(tmp_path, uid)
        assert request(dose, "CT_SCANNER1", "store", dataset=other, host=OTHER_HOST) != "ok"
        time.sleep(1)
        assert not held(dose, other.SOPInstanceUID)
    finally:
        running.close()
