"""The research PACS (Orthanc 1.10 + the nmdose plugin + PostgreSQL index, as configured by orthanc.json) serves
more than 100 DICOM associations open at the same time: 110 clients (the source PACS's AE title, from its
host, as the security profile requires for C-STORE) associate, wait until all 110 are established, then each
C-ECHOes and C-STOREs one small CT image and releases. Every store succeeds, every instance is in Orthanc once.
The bench behind it: bench/pacs_targets.py (docs/pacs_targets.md)."""

from __future__ import annotations

import time
from contextlib import closing

import pytest
import requests

from bench.lib.dicom_load import SUCCESS, concurrent_echo_store, ct_image
from nmdose.db import connect
from tests.support import RunningStack

pytestmark = pytest.mark.integration

CLIENTS = 110


@pytest.fixture(scope="module")
def research():
    # only PostgreSQL and the research PACS run: the source and dose PACS stay configured (the security
    # profile's peers) but are not started
    running = RunningStack(nodes={"simulationPACS": {"local": False}, "dosePACS": {"local": False}})
    yield running
    running.close()


def test_110_associations_open_at_once_each_store_one_instance(research):
    cfg = research.cfg
    node = cfg.research_node
    study_uid = "1.2.826.0.1.3680043.10.543.110." + str(int(time.time()))
    datasets = [
        ct_image(study_uid=study_uid, patient_id="PT-CONC", number=i + 1, description="CONCURRENCY")
        for i in range(CLIENTS)
    ]
    result = concurrent_echo_store(node, cfg.source_node.aet, datasets, timeout_s=45)

    assert result.errors == []
    assert result.established == CLIENTS
    assert result.concurrent_max == CLIENTS  # all 110 open together (nobody releases before the barrier)
    assert result.echo_ok == CLIENTS
    assert result.store_statuses == [SUCCESS] * CLIENTS
    assert result.seconds < 45

    # in Orthanc, each instance once (the study holds exactly the 110 SOP instances sent)
    base = node.http_url
    found = requests.post(f"{base}/tools/lookup", data=study_uid, timeout=10).json()
    assert [item["Type"] for item in found] == ["Study"]
    instances = requests.get(f"{base}/studies/{found[0]['ID']}/instances", timeout=30).json()
    sop_uids = [i["MainDicomTags"]["SOPInstanceUID"] for i in instances]
    assert sorted(sop_uids) == sorted(ds.SOPInstanceUID for ds in datasets)
    assert requests.get(f"{base}/statistics", timeout=10).json()["CountInstances"] == CLIENTS

    # the plugin records studies (not instances), and only those that came through the retrieval
    # (forward.only_retrieved): this direct store leaves no forward row, duplicated or not
    with closing(connect(cfg)) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM rpacs.forward_study WHERE study_instance_uid = %s", (study_uid,))
        assert cur.fetchone()[0] == 0


def test_an_unregistered_ae_title_gets_no_store_among_the_crowd(research):
    """The control: the same concurrent path refuses a caller the profile does not know (nothing stored)."""
    node = research.cfg.research_node
    datasets = [ct_image(patient_id="PT-INTR") for _ in range(3)]
    result = concurrent_echo_store(node, "INTRUDER", datasets, timeout_s=20)
    assert result.established == 3  # C-ECHO is open to all: the association is accepted
    assert result.echo_ok == 3
    assert SUCCESS not in result.store_statuses
    for ds in datasets:
        assert requests.post(f"{node.http_url}/tools/lookup", data=ds.SOPInstanceUID, timeout=10).json() == []
