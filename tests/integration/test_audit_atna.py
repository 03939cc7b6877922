"""IHE ATNA against real receivers: Debian's rsyslog on loopback (TCP, RFC 6587 octet counting) gets every audit
row as an RFC 5424 message whose MSG is a DICOM Audit Message valid against the PS3.15 A.5.1 schema: rows of
the writer thread, of the command line, and of web calls through the research Orthanc with the plugin. TLS
(RFC 5425) against a Python TLS receiver with a certificate of its own CA (Debian's rsyslog has no TLS driver
without rsyslog-gnutls)."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import ipaddress
import re
import shutil
import socket
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
import yaml
from lxml import etree

from nmdose.audit import atna
from nmdose.audit.actions import build, record_action
from nmdose.audit.writer import AuditWriter
from nmdose.config import AuditSyslog
from nmdose.db import connect
from nmdose.stack import Stack, free_port
from tests.support import load, make_config_dir, make_tempdir

pytestmark = pytest.mark.integration
SCHEMA = etree.RelaxNG.from_rnc_string((Path(__file__).parents[1] / "dicom_audit_message.rnc").read_text())
LINE_RE = re.compile(
    rb"^<(\d+)>1 (\S+) (\S+) (\S+) (\S+) IHE\+RFC-3881 - \xef\xbb\xbf(<\?xml.*</AuditMessage>)$"
)


@pytest.fixture(scope="module")
def rsyslog():
    """rsyslogd in the foreground on a free loopback port, writing each message's raw text as one line."""
    rsyslogd = shutil.which("rsyslogd") or "/usr/sbin/rsyslogd"
    if not Path(rsyslogd).exists():
        pytest.fail("rsyslogd not installed (Debian package rsyslog, scripts/install-deps.sh)")
    root = make_tempdir("nmdose-rsyslog-")
    port = free_port()
    log = root / "atna.log"
    conf = root / "rsyslog.conf"
    conf.write_text(f"""
global(workDirectory="{root}" maxMessageSize="256k" parser.escapeControlCharactersOnReceive="off")
module(load="imtcp")
template(name="raw" type="string" string="%rawmsg%\\n")
ruleset(name="atna") {{ action(type="omfile" file="{log}" template="raw" flushOnTXEnd="on") }}
input(type="imtcp" port="{port}" address="127.0.0.1" ruleset="atna")
""")
    proc = subprocess.Popen([rsyslogd, "-n", "-f", str(conf), "-i", str(root / "rsyslogd.pid")],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
    deadline = time.monotonic() + 15
    while True:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            break
        if proc.poll() is not None or time.monotonic() > deadline:
            out = proc.stdout.read().decode(errors="replace") if proc.poll() is not None else ""
            proc.kill()
            pytest.fail(f"rsyslogd did not start: {out}")
        time.sleep(0.1)
    yield port, log
    proc.terminate()
    proc.wait(10)
    shutil.rmtree(root, ignore_errors=True)


def messages(log: Path, marker: str, n: int, timeout_s: float = 15) -> list[etree._Element]:
    """The schema-checked Audit Messages in rsyslog's file whose text holds `marker` (waits for n)."""
    deadline = time.monotonic() + timeout_s
    while True:
        lines = [
            ln for ln in (log.read_bytes().splitlines() if log.exists() else []) if marker.encode() in ln
        ]
        if len(lines) >= n or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    docs = []
    for line in lines:
        m = LINE_RE.match(line)
        assert m, line[:200]
        assert int(m[1]) in (84, 85)
        doc = etree.fromstring(m[6])
        assert SCHEMA.validate(doc), (SCHEMA.error_log, m[6][:500])
        docs.append(doc)
    return docs


def syslog_cfg(cfg, **settings):
    return dataclasses.replace(cfg, audit=cfg.audit.model_copy(update={"syslog": AuditSyslog(**settings)}))


def event_ids(docs) -> list[str]:
    return [d.find("EventIdentification/EventID").get("csd-code") for d in docs]


def test_writer_rows_arrive_at_rsyslog_as_valid_audit_messages(stack, rsyslog):
    port, log = rsyslog
    cfg = syslog_cfg(stack.cfg, host="127.0.0.1", port=port)
    marker = f"1.2.826.0.1.3680043.8.498.{int(time.time() * 1000)}"
    sink = atna.SyslogSink(cfg)
    w = AuditWriter(lambda: connect(cfg), sinks=[sink])
    events = [
        build("study forwarded", source="plugin", study_uids=[marker], rows=4),
        build("auto_delete purge", source="plugin", study_uids=[marker, marker + "1"], rows=120),
        build("dose ingest", source="plugin", study_uids=[marker], status=1),
    ]
    for e in events:
        w.submit(e)
    assert w.flush(20)
    docs = messages(log, marker, 3)
    assert event_ids(docs) == ["110104", "110105", "110107"] and sink.sent == 3
    assert docs[2].find("EventIdentification").get("EventOutcomeIndicator") == "4"
    w.stop()
    sink.close()


def test_command_line_rows_are_sent_too(stack, rsyslog):
    port, log = rsyslog
    cfg = syslog_cfg(stack.cfg, host="127.0.0.1", port=port)
    marker = f"1.2.826.0.1.3680043.8.498.{int(time.time() * 1000) + 7}"
    assert record_action(cfg, "forward protect", study_uids=[marker], params={"reason": "teaching"})
    (doc,) = messages(log, marker, 1)
    assert event_ids([doc]) == ["110113"]
    assert doc.find("EventIdentification/EventTypeCode").get("csd-code") == "110135"
    assert doc.find("AuditSourceIdentification/AuditSourceTypeCode").get("csd-code") == "4"


# ----- TLS (RFC 5425)


def _self_signed(root: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "arr.test")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    crt, pem = root / "arr.crt", root / "arr.key"
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pem.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))  # fmt: skip
    return crt, pem


class TlsReceiver:
    """A TLS syslog receiver (RFC 5425): reads octet-counted frames until the client closes."""

    def __init__(self, crt: Path, key: Path):
        self.ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ctx.load_cert_chain(crt, key)
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.frames: list[bytes] = []
        self.errors: list[str] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                raw, _ = self.sock.accept()
            except OSError:
                return
            try:
                with self.ctx.wrap_socket(raw, server_side=True) as conn:
                    buf = b""
                    while chunk := conn.recv(65536):
                        buf += chunk
                        while b" " in buf:
                            length, _, rest = buf.partition(b" ")
                            if len(rest) < int(length):
                                break
                            self.frames.append(rest[: int(length)])
                            buf = rest[int(length) :]
            except (ssl.SSLError, OSError) as exc:
                self.errors.append(str(exc))

    def close(self) -> None:
        self.sock.close()


def test_tls_repository_gets_valid_messages_and_an_untrusted_one_gets_none(stack, tmp_path):
    crt, key = _self_signed(tmp_path)
    receiver = TlsReceiver(crt, key)
    try:
        cfg = syslog_cfg(stack.cfg, host="127.0.0.1", port=receiver.port, tls=True, ca_certificates=str(crt))
        event = build("forward selective", source="cli", study_uids=["1.2.3.4.5"])
        atna.send(cfg, [event, event])
        deadline = time.monotonic() + 10
        while len(receiver.frames) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(receiver.frames) == 2
        for frame in receiver.frames:
            xml = frame.split(b"\xef\xbb\xbf", 1)[1]
            assert SCHEMA.validate(etree.fromstring(xml))
        (tmp_path / "other").mkdir()
        other_ca, _ = _self_signed(tmp_path / "other")
        untrusted = syslog_cfg(stack.cfg, host="127.0.0.1", port=receiver.port, tls=True,
                               ca_certificates=str(other_ca))  # fmt: skip
        with pytest.raises(ssl.SSLCertVerificationError):
            atna.send(untrusted, [event])
        time.sleep(0.3)
        assert len(receiver.frames) == 2
    finally:
        receiver.close()


# ----- web calls through the research Orthanc, with the repository configured


@pytest.fixture(scope="module")
def atna_stack(rsyslog):
    port, _log = rsyslog
    root = make_tempdir()
    config_dir = make_config_dir(root)
    (config_dir / "audit.yaml").write_text(yaml.safe_dump({"syslog": {"host": "127.0.0.1", "port": port}}))
    cfg = load(config_dir)
    stack = Stack(cfg, research_plugin=True)
    try:
        stack.up()
        yield cfg
    finally:
        try:
            stack.down()
        finally:
            shutil.rmtree(root, ignore_errors=True)


def test_web_calls_through_orthanc_arrive_as_audit_messages(atna_stack, rsyslog):
    _port, log = rsyslog
    cfg = atna_stack
    uid = f"1.2.826.0.1.3680043.8.498.{uuid.uuid4().int % 10**12}"
    client = f"198.51.100.{uuid.uuid4().int % 250 + 1}"
    base = cfg.research_node.http_url.rstrip("/") + "/nmdose"
    headers = {"User-Agent": f"atna-test-{uid}", "X-Forwarded-For": client}
    statuses = {}
    for path in (
        f"/api/dose/study/{uid}",
        "/api/research/failed?format=csv",
        f"/api/audit?study={uid}",
        "/health",
    ):
        req = urllib.request.Request(base + path, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                statuses[path] = r.status
        except urllib.error.HTTPError as exc:
            statuses[path] = exc.code
    assert list(statuses.values()) == [404, 200, 200, 200]
    docs = messages(log, f'NetworkAccessPointID="{client}"', 3, timeout_s=20)
    assert sorted(event_ids(docs)) == ["110101", "110103", "110106"]  # audit log used, accessed, export
    by_id = {d.find("EventIdentification/EventID").get("csd-code"): d for d in docs}
    accessed = by_id["110103"]
    assert accessed.find("EventIdentification").get("EventOutcomeIndicator") == "4"  # no dose record: 404
    assert accessed.find("ActiveParticipant").get("UserID") == "dev"
    assert uid in [p.get("ParticipantObjectID") for p in accessed.findall("ParticipantObjectIdentification")]
    assert by_id["110106"].find("EventIdentification").get("EventActionCode") == "R"
    # the database holds the same three rows (the public /health none)
    with contextlib.closing(connect(cfg)) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT action FROM audit.event WHERE detail->>'user_agent' = %s ORDER BY id",
            (f"atna-test-{uid}",),
        )
        assert [r[0] for r in cur.fetchall()] == [
            "/api/dose/study/{uid}",
            "/api/research/failed",
            "/api/audit",
        ]
