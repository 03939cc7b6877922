"""`nmdose echo` asks the dose PACS whether it accepts each dose SR class (issue 14 item 1): an association
negotiation, nothing sent. Against the Orthanc stand-in (accepts all) and against DCMTK's storescp with a
configuration profile that lists no Radiopharmaceutical Radiation Dose SR, as a stock Conquest's dgatesop.lst,
in plaintext and over DICOM TLS."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from nmdose.cli import main
from nmdose.echo import DOSE_SR_CLASSES, associate_rq, parse_associate_ac
from nmdose.security import tls
from nmdose.stack import dicom_env, free_port, port_in_use
from tests.support import RunningStack

pytestmark = pytest.mark.integration

STORESCP = shutil.which("storescp")
RRDSR = "1.2.840.10008.5.1.4.1.1.88.68"
XRAY_RDSR = "1.2.840.10008.5.1.4.1.1.88.67"
ENHANCED_XRAY_RDSR = "1.2.840.10008.5.1.4.1.1.88.76"

# A DCMTK storescp association profile per case (PS3.8 negotiation as a stock Conquest 1.5.0e does it: a class
# missing from dgatesop.lst is "abstract syntax not supported").
PROFILES = {
    "StockConquest": ["VerificationSOPClass", XRAY_RDSR, ENHANCED_XRAY_RDSR],
    "AllDoseClasses": ["VerificationSOPClass", XRAY_RDSR, RRDSR, ENHANCED_XRAY_RDSR],
    "EchoOnly": ["VerificationSOPClass"],
}


def _storescp_config(path: Path) -> Path:
    lines = ["[[TransferSyntaxes]]", "[Uncompressed]", "TransferSyntax1 = LocalEndianExplicit",
             "TransferSyntax2 = OppositeEndianExplicit", "TransferSyntax3 = LittleEndianImplicit", "",
             "[[PresentationContexts]]"]  # fmt: skip
    for name, classes in PROFILES.items():
        lines.append(f"[{name}]")
        lines += [f"PresentationContext{i} = {uid}\\Uncompressed" for i, uid in enumerate(classes, 1)]
    lines += ["", "[[Profiles]]"]
    for name in PROFILES:
        lines += [f"[{name}]", f"PresentationContexts = {name}"]
    path.write_text("\n".join(lines) + "\n")
    return path


class Storescp:
    """A storescp standing in for the dose PACS at the configured dose node's address (nothing is stored)."""

    def __init__(self, running: RunningStack, *, tls_on: bool = False):
        self.cfg = running.cfg
        self.node = self.cfg.dose_node
        self.config = _storescp_config(running.root / "storescp.cfg")
        self.tls_args: list[str] = []
        if tls_on:  # any certificate of the local CA: the clients verify the chain, not a name
            cert, key, ca = tls.require_files(self.cfg, "simulationPACS")
            self.tls_args = ["+tls", str(key), str(cert), "-pw", "+cf", str(ca)]
        self.proc: subprocess.Popen | None = None

    def start(self, profile: str) -> None:
        self.stop()
        argv = [STORESCP, "-xf", str(self.config), profile, "-aet", self.node.aet, "--ignore", *self.tls_args,
                str(self.node.port)]  # fmt: skip
        self.proc = subprocess.Popen(argv, env=dicom_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        while not port_in_use("127.0.0.1", self.node.port):
            assert self.proc.poll() is None, self.proc.stderr.read().decode()
            assert time.monotonic() < deadline, "storescp did not listen"
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None


def _echo_dose(running: RunningStack, capsys) -> tuple[int, dict, str]:
    code = main([*running.cli_args(), "echo", "dosePACS", "--json"])
    (row,) = json.loads(capsys.readouterr().out)
    main([*running.cli_args(), "echo", "dosePACS"])
    captured = capsys.readouterr()
    return code, row, captured.out + captured.err


def _classes(row: dict) -> dict[str, dict]:
    return {c["uid"]: c for c in row["dose_sr_classes"]}


def test_the_association_request_and_answer_are_read_as_ps3_8_says():
    pdu = associate_rq("NMDOSE_SCU", "NMDOSE", [uid for uid, _ in DOSE_SR_CLASSES])
    assert pdu[0] == 0x01 and int.from_bytes(pdu[2:6], "big") == len(pdu) - 6
    assert pdu[10:26] == b"NMDOSE          " and pdu[26:42] == b"NMDOSE_SCU      "
    assert all(uid.encode() in pdu for uid, _ in DOSE_SR_CLASSES)
    # an A-ASSOCIATE-AC body: header (68 bytes), then context 1 accepted (explicit VR LE), context 3 refused (3)
    ts = b"1.2.840.10008.1.2.1\0"
    accepted = bytes([0x21, 0, 0, 8 + len(ts), 1, 0, 0, 0, 0x40, 0, 0, len(ts)]) + ts
    refused = bytes([0x21, 0, 0, 8, 3, 0, 3, 0, 0x40, 0, 0, 0])
    assert parse_associate_ac(bytes(68) + accepted + refused) == {1: (0, "1.2.840.10008.1.2.1"), 3: (3, None)}


def test_echo_shows_the_stand_in_accepts_every_dose_sr_class(stack, capsys):
    code, row, text = _echo_dose(stack, capsys)
    assert code == 0 and row["ok"], row
    assert [(c["uid"], c["name"], c["accepted"]) for c in row["dose_sr_classes"]] == [
        (uid, name, True) for uid, name in DOSE_SR_CLASSES
    ]
    assert "dosePACS (NMDOSE@" in text and "Radiopharmaceutical Radiation Dose SR Storage" in text
    assert "NO:" not in text


@pytest.fixture(scope="module")
def plain_dose_pacs():
    port = free_port()
    running = RunningStack(nodes={"dosePACS": {"local": False, "port": port, "http_port": None}})
    scp = Storescp(running)
    yield running, scp
    scp.stop()
    running.close()


@pytest.mark.skipif(STORESCP is None, reason="DCMTK storescp not installed")
def test_echo_fails_naming_the_class_a_stock_conquest_refuses(plain_dose_pacs, capsys):
    running, scp = plain_dose_pacs
    scp.start("StockConquest")
    code, row, text = _echo_dose(running, capsys)
    assert code == 1 and not row["ok"]
    assert row["echoscu"] == "ok" and row["orthanc"] == "ok"  # C-ECHO alone would have said all is well
    classes = _classes(row)
    assert classes[XRAY_RDSR]["accepted"] and classes[ENHANCED_XRAY_RDSR]["accepted"]
    assert classes[RRDSR] == {"uid": RRDSR, "name": "Radiopharmaceutical Radiation Dose SR Storage",
                              "accepted": False, "result": "refused (abstract syntax not supported)",
                              "transfer_syntax": None}  # fmt: skip
    assert (
        "nmdose: error: dosePACS refused (abstract syntax not supported) Radiopharmaceutical Radiation Dose SR "
        f"Storage ({RRDSR})" in text
    )
    # the lines added to its list (conquest/dgatesop.nmdose.lst): all accepted, exit 0
    scp.start("AllDoseClasses")
    code, row, _text = _echo_dose(running, capsys)
    assert code == 0 and row["ok"] and all(c["accepted"] for c in row["dose_sr_classes"])


@pytest.mark.skipif(STORESCP is None, reason="DCMTK storescp not installed")
def test_echo_reports_every_class_of_a_dose_pacs_that_accepts_none(plain_dose_pacs, capsys):
    running, scp = plain_dose_pacs
    scp.start("EchoOnly")
    code, row, text = _echo_dose(running, capsys)
    assert code == 1 and row["echoscu"] == "ok"
    assert [c["accepted"] for c in row["dose_sr_classes"]] == [False] * len(DOSE_SR_CLASSES)
    assert all(c["result"].startswith("refused (") for c in row["dose_sr_classes"])
    scp.stop()
    code, row, _text = _echo_dose(running, capsys)  # down: one error, no class list, no crash
    assert code == 1 and row["dose_sr_classes"] is None and "not checked" in row["dose_sr_error"]


@pytest.mark.skipif(STORESCP is None, reason="DCMTK storescp not installed")
def test_echo_negotiates_the_dose_sr_classes_over_dicom_tls(capsys):
    port = free_port()
    running = RunningStack(tls=True, nodes={"dosePACS": {"local": False, "port": port, "http_port": None}})
    scp = Storescp(running, tls_on=True)
    try:
        scp.start("StockConquest")
        code, row, _text = _echo_dose(running, capsys)
        assert row["tls"] and row["echoscu"] == "ok" and not row["tls_error"], row
        classes = _classes(row)
        assert code == 1 and not classes[RRDSR]["accepted"] and classes[XRAY_RDSR]["accepted"]
        scp.start("AllDoseClasses")
        code, row, _text = _echo_dose(running, capsys)
        assert code == 0 and row["ok"], row
    finally:
        scp.stop()
        running.close()


@pytest.mark.skipif(STORESCP is None, reason="DCMTK storescp not installed")
def test_health_says_the_dose_pacs_refuses_a_dose_sr_class(plain_dose_pacs, capsys):
    running, scp = plain_dose_pacs
    scp.start("StockConquest")
    code = main([*running.cli_args(), "health", "--wait", "60"])
    data = json.loads(capsys.readouterr().out)
    assert data["status"] == "ok" and code == 1, data
    dose = data["dose_pacs"]
    assert dose["status"] == "refuses dose SR classes" and len(dose["refused"]) == 1
    assert dose["refused"][0].startswith(f"Radiopharmaceutical Radiation Dose SR Storage ({RRDSR})")
    scp.start("AllDoseClasses")
    assert main([*running.cli_args(), "health", "--wait", "60"]) == 0
    assert json.loads(capsys.readouterr().out)["dose_pacs"]["status"] == "ok"
    scp.stop()  # an outage is reported, not a configuration defect
    assert main([*running.cli_args(), "health", "--wait", "60"]) == 0
    assert json.loads(capsys.readouterr().out)["dose_pacs"]["status"] == "unreachable"


def test_health_of_the_stand_in_is_ok(stack, capsys):
    assert main([*stack.cli_args(), "health", "--wait", "60"]) == 0
    dose = json.loads(capsys.readouterr().out)["dose_pacs"]
    assert dose["status"] == "ok" and all(c["accepted"] for c in dose["dose_sr_classes"])
