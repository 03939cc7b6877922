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
from pathlib import Path

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
def https_proxy(running: RunningStack, edit=None) -> Iterator[tuple[str, str, Path]]:
    """Debian's nginx with `nmdose proxy`'s configuration for `running` on a free port, with a certificate of a
    local CA (`nmdose certs init`): yields (https base URL, CA file, nginx prefix folder). `edit(text) -> text`
    may change the configuration first (a bench's extra location). Stopped at the end."""
    from nmdose.security import certs, tls
    from nmdose.stack import free_port
    from nmdose.web import proxy as P

    cfg = running.cfg
    certs.init(cfg)
    port = free_port()
    folder = tls.certificates_dir(cfg)
    prefix = running.root / "proxy"
    conf = P.write(cfg, prefix, listen=f"127.0.0.1:{port}", certificate=folder / "https.crt",
                   private_key=folder / "https.key")  # fmt: skip
    if edit is not None:
        conf.write_text(edit(conf.read_text()))
    proc = subprocess.Popen(P.nginx_argv(conf, prefix), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        ca = str(tls.ca_file(cfg))
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            with contextlib.suppress(requests.RequestException):
                requests.get(f"https://127.0.0.1:{port}/nmdose/health", verify=ca, timeout=2)
                break
            time.sleep(0.1)
        yield f"https://127.0.0.1:{port}", ca, prefix
    finally:
        proc.terminate()
        proc.wait(timeout=15)


@contextlib.contextmanager
def pseudo_site(provider, edit=None) -> Iterator[Site]:
    """Research PACS + pseudoPACS in keycloak mode (tokens of `provider`), one study in the pseudoPACS, nginx on a
    free port (`edit`: see https_proxy); everything stopped and removed at the end."""
    running = RunningStack(
        env={"NMDOSE_AUTH_MODE": "keycloak"},
        keycloak={"issuer": provider.issuer, "client_id": "nmdose-cli"},
        nodes={"simulationPACS": {"local": False}, "dosePACS": {"local": False}, "pseudoPACS": {}},
    )
    try:
        pseudo = running.cfg.nodes["pseudoPACS"].http_url.rstrip("/")
        r = requests.post(f"{pseudo}/instances", data=instance(), timeout=20)
        assert r.status_code == 200, r.text
        with https_proxy(running, edit) as (https, ca, _):
            yield Site(running, https, ca, r.json()["ParentStudy"])
    finally:
        running.close()
