"""DICOM TLS end to end on real Orthanc and DCMTK processes: every node with `tls: true` and certificates from
`nmdose certs init`. Census, retrieval (both backends), forwarding, dose ingest and echo run over TLS; plaintext
and a certificate from another CA are refused; the bytes on the wire carry no DICOM UID in clear."""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import threading
import time
from datetime import date
from pathlib import Path

import pytest
import requests

from nmdose.census.finder import FindscuFinder
from nmdose.census.ranges import DateRange
from nmdose.cli import main
from nmdose.echo import echo_nodes
from nmdose.pacs.dcmtk import echoscu
from nmdose.pacs.orthanc_http import OrthancHttp
from nmdose.retrieve.mover import MovescuMover, verify
from nmdose.security import certs, tls
from nmdose.simulate import generate
from nmdose.simulate.upload import upload
from nmdose.stack import dicom_env, free_port
from tests.support import RunningStack, make_tempdir
from tests.support import query as _query

pytestmark = pytest.mark.integration

TODAY = date(2026, 6, 30)
UID_ROOT = b"1.2.840.10008"  # every transfer syntax and SOP class UID starts with it


@pytest.fixture(scope="module")
def tls_stack():
    running = RunningStack(
        tls=True,
        nodes={"researchPACS": {"orthanc_settings": {"StableAge": 3}}},
        retrieve={
            "time_window": {"weekdays": "00:00-24:00", "weekends": "00:00-24:00"},
            "retry": {"max_attempts": 3, "backoff_s": 0.2, "backoff_max_s": 1},
        },
    )
    out = make_tempdir("nmdose-tls-")
    try:
        manifest = generate(out, studies=12, years=2, seed=5, today=TODAY)
        upload(out, running.cfg.nodes["simulationPACS"], cfg=running.cfg)  # storescu over TLS
        yield running, manifest
    finally:
        running.close()
        shutil.rmtree(out, ignore_errors=True)


def test_pipeline_runs_over_tls_end_to_end(tls_stack, capsys):
    running, manifest = tls_stack
    cfg = running.cfg
    args = running.cli_args()
    assert all(node.tls for node in cfg.active_nodes().values())
    assert main([*args, "census", "run", "--to", TODAY.isoformat()]) == 0  # C-FIND by the research PACS
    assert main([*args, "retrieve", "run"]) == 0  # C-MOVE through Orthanc (UseDicomTls)
    capsys.readouterr()
    targets = manifest.target_studies(tuple(cfg.retrieve.target_modalities), cfg.retrieve.target_descriptions)
    uids = [s.study_uid for s in targets]
    deadline = time.monotonic() + 60  # the plugin's own workers may still hold a few of the queued jobs
    while time.monotonic() < deadline:
        states = dict(_query(cfg, "SELECT study_instance_uid, state FROM rpacs.retrieval "
                                  "WHERE study_instance_uid = ANY(%s)", (uids,)))  # fmt: skip
        if len(states) == len(uids) and set(states.values()) == {"done"}:
            break
        time.sleep(0.3)
    assert len(states) == len(uids) and set(states.values()) == {"done"}, states
    # forwarded on stable over TLS, then ingested from the dose PACS stand-in
    with_dose = [s for s in targets if s.dose_objects]
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        rows = _query(cfg, "SELECT count(DISTINCT study_instance_uid) FROM dose.object WHERE study_instance_uid = ANY(%s)",
                      ([s.study_uid for s in with_dose],))  # fmt: skip
        if rows[0][0] == len(with_dose):
            break
        time.sleep(0.5)
    assert rows[0][0] == len(with_dose) > 0


def test_dcmtk_backend_moves_over_a_tls_tunnel(tls_stack, tmp_path):
    """DCMTK 3.6.7's movescu has no TLS option: the mover carries its association through a TLS tunnel."""
    running, manifest = tls_stack
    cfg = running.cfg
    study = manifest.studies[-1]
    rest = OrthancHttp(cfg.research_node.http_url, name="researchPACS")
    result = MovescuMover(cfg, cfg.source_node, cfg.research_node.aet, log_root=tmp_path).move(
        study.study_uid
    )
    assert result.ok, result.error
    assert result.completed == study.instances and result.failed == 0
    assert verify(rest, cfg.source_node, study.study_uid).complete
    assert "127.0.0.1" in Path(result.log_path).read_text()  # movescu spoke to the local tunnel end


def test_findscu_census_backend_runs_over_tls(tls_stack):
    running, manifest = tls_stack
    cfg = running.cfg
    finder = FindscuFinder(cfg.source_node, cfg.local_aet, tls.dcmtk_args(cfg, cfg.source_node))
    found = finder.find_studies(DateRange(date(2000, 1, 1), TODAY), None, ["PT", "NM", "CT"])
    assert {a["StudyInstanceUID"] for a in found.answers} == {s.study_uid for s in manifest.studies}


def test_echo_reports_tls_and_the_peer_certificate(tls_stack, capsys):
    running, _ = tls_stack
    results = echo_nodes(running.cfg)
    assert results and all(r.ok and r.tls for r in results), results
    by_node = {r.node: r for r in results}
    assert by_node["dosePACS"].peer_certificate["subject"] == f"CN={running.cfg.dose_node.aet},O=nmdose"
    assert by_node["dosePACS"].peer_certificate["days_left"] > 700
    assert main([*running.cli_args(), "echo", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert all(r["tls"] and r["peer_certificate"]["not_after"] for r in shown)
    health = requests.get(f"{running.cfg.research_node.http_url}/nmdose/health", timeout=10).json()
    assert health["dicom_tls"]["researchPACS"] is True
    assert health["certificates"]["researchPACS"]["subject"] == "CN=ORTHANC,O=nmdose"
    assert health["peer_certificates"]["dosePACS"]["subject"] == f"CN={running.cfg.dose_node.aet},O=nmdose"


def test_a_plaintext_association_to_a_tls_port_fails(tls_stack):
    running, _ = tls_stack
    cfg = running.cfg
    for node in (cfg.research_node, cfg.dose_node, cfg.source_node):
        plain = echoscu(cfg.local_aet, node.aet, node.host, node.port, timeout_s=5)
        assert not plain.ok, node.name
        assert echoscu(cfg.local_aet, node.aet, node.host, node.port, timeout_s=5,
                       tls_args=tls.dcmtk_args(cfg, node)).ok  # fmt: skip


def test_a_client_certificate_from_another_ca_is_refused(tls_stack, tmp_path):
    running, _ = tls_stack
    cfg = running.cfg
    ca_key, ca_cert = certs.make_ca("another CA", 365)
    key, cert = certs.make_leaf(ca_key, ca_cert, cfg.local_aet, ["127.0.0.1"], 365)
    certs._write_key(tmp_path / "other.key", key)
    certs._write_cert(tmp_path / "other.crt", cert)
    node = cfg.research_node
    ours = str(tls.ca_file(cfg))  # the client trusts the server: only its own certificate is foreign
    args = ["+tls", str(tmp_path / "other.key"), str(tmp_path / "other.crt"), "-pw", "+cf", ours, "-rc"]
    assert not echoscu(cfg.local_aet, node.aet, node.host, node.port, timeout_s=5, tls_args=args).ok
    # and a server whose certificate the client cannot chain to our CA is refused by our tools
    other_ca = tmp_path / "other-ca.crt"
    certs._write_cert(other_ca, ca_cert)
    cert_path, key_path, _ = tls.require_files(cfg, tls.SCU_IDENTITY)
    args = ["+tls", str(key_path), str(cert_path), "-pw", "+cf", str(other_ca), "-rc"]
    assert not echoscu(cfg.local_aet, node.aet, node.host, node.port, timeout_s=5, tls_args=args).ok


class Relay:
    """A TCP relay on loopback that records every byte in both directions (the byte-level capture)."""

    def __init__(self, host: str, port: int):
        self.target = (host, port)
        self.port = free_port()
        self.captured = bytearray()
        self._server = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                client, _ = self._server.accept()
                upstream = socket.create_connection(self.target)
                for a, b in ((client, upstream), (upstream, client)):
                    threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                self.captured += data
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self._server.close()


def _storescu(cfg, node, port: int, files: list[Path], tls_args: list[str]) -> subprocess.CompletedProcess:
    argv = [shutil.which("storescu"), "-R", "-aet", cfg.research_node.aet, "-aec", node.aet, *tls_args,
            "127.0.0.1", str(port), *map(str, files)]  # fmt: skip
    return subprocess.run(argv, env=dicom_env(), capture_output=True, text=True, timeout=60)


def test_the_traffic_is_encrypted_on_the_wire(tls_stack, stack):
    """A dose report C-STOREd through the relay: over TLS no UID crosses in clear; the same relay in front of
    the plaintext stack sees them (so the check can fail)."""
    from tests.integration.test_dose_ingest import _pet_ct_study

    folder = make_tempdir("nmdose-wire-")
    try:
        study, files = _pet_ct_study(folder, events=1)
        for running_cfg, use_tls in ((tls_stack[0].cfg, True), (stack.cfg, False)):
            node = running_cfg.dose_node
            relay = Relay(node.host, node.port)
            try:
                args = tls.dcmtk_args(running_cfg, node) if use_tls else []
                proc = _storescu(running_cfg, node, relay.port, files[:1], args)
                assert proc.returncode == 0, proc.stderr
            finally:
                relay.close()
            assert len(relay.captured) > 1000
            assert (UID_ROOT in relay.captured) is (not use_tls)
            assert (study.study_instance_uid.encode() in relay.captured) is (not use_tls)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_the_tls_tunnel_carries_every_association(tls_stack):
    """20 associations in a row through fresh tunnels: none may stall. (A blocking read of the TLS 1.3 session
    ticket that arrives after the handshake once stalled one association in six until DCMTK's timeout.)"""
    running, _ = tls_stack
    cfg = running.cfg
    node = cfg.source_node
    started = time.monotonic()
    for _ in range(20):
        with tls.Tunnel(cfg, node) as tunnel:
            assert echoscu(cfg.local_aet, node.aet, "127.0.0.1", tunnel.port, timeout_s=5).ok
    assert time.monotonic() - started < 20
