"""Benchmark: what the plugin's check costs a researcher reading the pseudoPACS through the HTTPS proxy.

A keycloak-mode stack (research PACS + pseudoPACS, tokens of the tests' local OIDC provider: real RS256 JWTs)
with `--studies` small pseudonymised-looking studies in the pseudoPACS, and Debian's nginx with the
configuration `nmdose proxy config` writes, plus, for this bench only, `/pseudo-open/`: the same upstream
without the `auth_request` check. The same requests (Orthanc Explorer's: the study list, a study, its series,
an instance file, a `/tools/find` search) go both ways over keep-alive HTTPS, interleaved over `--rounds`
(each way first in every other round), so load from other processes falls on both alike.

Prints per request `<name>_checked_ms_p50`, `<name>_open_ms_p50`, and overall `pseudo_check_ratio` (open p50 /
checked p50 summed over the requests: 1.0 = the check costs nothing) and `pseudo_check_overhead_ms_p50` (per
request), `audit_rows` (one per checked request).

    .venv/bin/python bench/pseudo_proxy.py [--studies 20] [--requests 40] [--rounds 5]
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.oidc_provider import OidcProvider  # noqa: E402
from tests.pseudo_site import pseudo_site  # noqa: E402
from tests.support import query  # noqa: E402

OPEN = """        location /pseudo-open/ {
            proxy_pass http://nmdose_pseudo/;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            proxy_buffering off;
        }
"""


def _instance(study_uid: str) -> bytes:
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    ds = pydicom.Dataset()
    ds.PatientName, ds.PatientID = "PSEUDO^BENCH", f"P-{study_uid[-8:]}"
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = study_uid, generate_uid(), generate_uid()
    ds.SOPClassUID, ds.Modality = "1.2.840.10008.5.1.4.1.1.7", "OT"
    ds.Rows = ds.Columns = 64
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.PixelData = bytes(64 * 64 * 2)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID, ds.file_meta.MediaStorageSOPInstanceUID = (
        ds.SOPClassUID,
        ds.SOPInstanceUID,
    )
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--studies", type=int, default=20)
    ap.add_argument("--requests", type=int, default=40, help="of each kind, each way, per round")
    ap.add_argument("--rounds", type=int, default=5)
    a = ap.parse_args()

    provider = OidcProvider(roles=("nmdose-researcher",), username="bench").start()
    anchor = "        location /pseudo/ {"
    try:
        with pseudo_site(provider, edit=lambda text: text.replace(anchor, OPEN + anchor, 1)) as site:
            return _run(a, provider, site)
    finally:
        provider.stop()


def _run(a, provider, site) -> int:
    from pydicom.uid import generate_uid

    cfg, base, ca = site.running.cfg, site.https, site.ca
    direct = cfg.nodes["pseudoPACS"].http_url.rstrip("/")
    for _ in range(a.studies - 1):
        requests.post(f"{direct}/instances", data=_instance(generate_uid()), timeout=20).raise_for_status()
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {provider.access_token()}"
    study = site.study_id
    instance = session.get(f"{base}/pseudo/studies/{study}/instances", verify=ca, timeout=10).json()[0]["ID"]
    kinds = {
        "study_list": ("GET", "/studies", None),
        "study": ("GET", f"/studies/{study}", None),
        "series": ("GET", f"/studies/{study}/series", None),
        "instance_file": ("GET", f"/instances/{instance}/file", None),
        "find": ("POST", "/tools/find", {"Level": "Study", "Query": {}, "Expand": True}),
    }
    times: dict[tuple[str, str], list[float]] = {(k, w): [] for k in kinds for w in ("checked", "open")}
    audit_before = query(cfg, "SELECT count(*) FROM audit.event WHERE action = '/api/pseudo/authorize'")[0][0]
    checked_requests = 0
    for rnd in range(a.rounds):
        ways = ("checked", "open") if rnd % 2 == 0 else ("open", "checked")
        for way in ways:
            root = f"{base}/pseudo" if way == "checked" else f"{base}/pseudo-open"
            for name, (method, path, body) in kinds.items():
                for _ in range(a.requests):
                    t0 = time.perf_counter()
                    r = session.request(method, root + path, json=body, verify=ca, timeout=20)
                    times[(name, way)].append((time.perf_counter() - t0) * 1000)
                    if r.status_code != 200:
                        raise SystemExit(f"{way} {method} {path}: HTTP {r.status_code} {r.text[:200]}")
                    checked_requests += way == "checked"
    sums = {"checked": 0.0, "open": 0.0}
    for name in kinds:
        for way in ("checked", "open"):
            p50 = statistics.median(times[(name, way)])
            sums[way] += p50
            print(f"{name}_{way}_ms_p50={p50:.2f}")
    print(f"pseudo_check_ratio={sums['open'] / sums['checked']:.3f}")
    print(f"pseudo_check_overhead_ms_p50={(sums['checked'] - sums['open']) / len(kinds):.2f}")
    time.sleep(3)  # the audit writer's batch
    rows = query(cfg, "SELECT count(*) FROM audit.event WHERE action = '/api/pseudo/authorize'")[0][0]
    print(f"audit_rows={rows - audit_before}")
    print(f"checked_requests={checked_requests}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
