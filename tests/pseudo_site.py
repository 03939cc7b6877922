"""A keycloak-mode stack with a pseudoPACS behind Debian's nginx (`nmdose proxy`'s configuration), for the tests
of the researchers' access to the pseudonymised copies (tests/integration/test_pseudo_proxy.py, the browser test
tests/e2e/test_pseudo_explorer_browser.py)."""

from __future__ import annotations

import contextlib
import io
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pydicom
import requests
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from tests.support import RunningStack


def instance(study_uid: str | None = None) -> bytes:
    """A small synthetic secondary-capture instance, as a pseudonymised copy would look (no real data)."""
    ds = pydicom.Dataset()
    ds.PatientName, ds.PatientID = "PSEUDO^A1B2", "P-A1B2C3"
    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.SeriesInstanceUID, ds.SOPInstanceUID = generate_uid(), generate_uid()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.Modality, ds.StudyDescription = "OT", "pseudo proxy test"
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


@dataclass
class Site:
    running: RunningStack
    https: str  # https://127.0.0.1:<port>
    ca: str  # the local CA's PEM file
    study_id: str  # the Orthanc ID of the study stored into the pseudoPACS


@contextlib.contextmanager
def pseudo_site(provider) -> Iterator[Site]:
    """Research PACS + pseudoPACS in keycloak mode (tokens of `provider`), one study in the pseudoPACS, nginx on a
    free port; everything stopped and removed at the end."""
    from nmdose.security import certs, tls
    from nmdose.stack import free_port
    from nmdose.web import proxy as P

    running = RunningStack(
        env={"NMDOSE_AUTH_MODE": "keycloak"},
        keycloak={"issuer": provider.issuer, "client_id": "nmdose-cli"},
        nodes={"simulationPACS": {"local": False}, "dosePACS": {"local": False}, "pseudoPACS": {}},
    )
    proc = None
    try:
        cfg = running.cfg
        pseudo = cfg.nodes["pseudoPACS"].http_url.rstrip("/")
        r = requests.post(f"{pseudo}/instances", data=instance(), timeout=20)
        assert r.status_code == 200, r.text
        study_id = r.json()["ParentStudy"]
        certs.init(cfg)
        port = free_port()
        folder = tls.certificates_dir(cfg)
        prefix = running.root / "proxy"
        conf = P.write(cfg, prefix, listen=f"127.0.0.1:{port}", certificate=folder / "https.crt",
                       private_key=folder / "https.key")  # fmt: skip
        proc = subprocess.Popen(P.nginx_argv(conf, prefix), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        ca = str(tls.ca_file(cfg))
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            with contextlib.suppress(requests.RequestException):
                requests.get(f"https://127.0.0.1:{port}/nmdose/health", verify=ca, timeout=2)
                break
            time.sleep(0.1)
        yield Site(running, f"https://127.0.0.1:{port}", ca, study_id)
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=15)
        running.close()
