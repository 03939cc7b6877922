"""DICOM TLS: whose certificate and key each identity uses, the DCMTK and Orthanc options, certificate facts.

Identities are the nodes we run (their Orthanc is TLS server and client with one certificate) and ``nmdose``,
the certificate of our own DCMTK tools. Files are PEM. By default they live in ``<var>/tls/<identity>.crt|key``
with the CA bundle ``<var>/tls/ca.crt`` (`nmdose certs init` makes them for dev and test); a site points
``tls:`` in dicom_network_entities.yaml at its own CA's files, and in prod takes the private keys from the secret
store (``private_key_secret``), written 0600 under ``<var>/run/tls/`` when a process needs them.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import select
import socket
import ssl
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nmdose.errors import ConfigError

if TYPE_CHECKING:
    from nmdose.config import Config, Node

SCU_IDENTITY = "nmdose"
EXPIRY_WARNING_DAYS = 30


def _resolve(cfg: Config, value: str | None, default: Path) -> Path:
    if not value:
        return default
    path = Path(value)
    return path if path.is_absolute() else cfg.config_dir / path


def certificates_dir(cfg: Config) -> Path:
    return _resolve(cfg, cfg.tls.certificates_dir, cfg.var_dir / "tls")


def ca_file(cfg: Config) -> Path:
    return _resolve(cfg, cfg.tls.ca_certificates, certificates_dir(cfg) / "ca.crt")


def certificate_file(cfg: Config, identity: str) -> Path:
    ident = cfg.tls.identities.get(identity)
    return _resolve(cfg, ident.certificate if ident else None, certificates_dir(cfg) / f"{identity}.crt")


def private_key_file(cfg: Config, identity: str) -> Path:
    """The identity's private key as a file a process can read: the configured file, or the secret-store key
    written 0600 under <var>/run/tls/ (rewritten when the secret changed, so a rotated key takes effect)."""
    ident = cfg.tls.identities.get(identity)
    if ident and ident.private_key_secret:
        pem = cfg.secrets.get(ident.private_key_secret)
        folder = cfg.var_dir / "run" / "tls"
        folder.mkdir(parents=True, exist_ok=True)
        os.chmod(folder, 0o700)
        path = folder / f"{identity}.key"
        text = pem if pem.endswith("\n") else pem + "\n"
        with contextlib.suppress(OSError):
            if path.read_text(encoding="utf-8") == text:
                return path
        # tmp + rename: a DCMTK tool reading the key meanwhile sees the old file or the new one, never half
        tmp = folder / f".{identity}.key.{os.getpid()}.{threading.get_ident()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
        return path
    return _resolve(cfg, ident.private_key if ident else None, certificates_dir(cfg) / f"{identity}.key")


def uses_tls(cfg: Config, identity: str) -> bool:
    """True when the identity needs its certificate: a TLS node, or a client of one."""
    nodes = cfg.active_nodes()
    if identity in nodes and nodes[identity].tls:
        return True
    return any(node.tls for name, node in nodes.items() if name != identity)


def require_files(cfg: Config, identity: str) -> tuple[Path, Path, Path]:
    """(certificate, private key, CA bundle) of an identity, each checked to exist; else one clear line."""
    net = cfg.config_dir / "dicom_network_entities.yaml"
    cert, ca = certificate_file(cfg, identity), ca_file(cfg)
    for what, path in (("certificate", cert), ("ca_certificates", ca)):
        if not path.is_file():
            raise ConfigError(
                f"{net}: tls: {identity} {what} {path} not found (expected a PEM file: run `nmdose certs init` "
                "for a local CA, or set tls.identities / tls.ca_certificates to your hospital CA's files)"
            )
    key = private_key_file(cfg, identity)
    if not key.is_file():
        raise ConfigError(
            f"{net}: tls.identities.{identity}.private_key: {key} not found (expected a PEM key)"
        )
    return cert, key, ca


def dcmtk_args(cfg: Config, node: Node) -> list[str]:
    """DCMTK client options for an association to `node`: nothing for a plaintext node, else mutual TLS
    (our certificate and key, the trusted CAs, the peer's certificate verified)."""
    if not node.tls:
        return []
    cert, key, ca = require_files(cfg, SCU_IDENTITY)
    return ["+tls", str(key), str(cert), "-pw", "+cf", str(ca), "-rc"]


def orthanc_settings(cfg: Config, name: str) -> dict[str, Any]:
    """Orthanc's DicomTls* options for node `name` (server when it has tls: true; client of TLS peers)."""
    if not uses_tls(cfg, name):
        return {"DicomTlsEnabled": False}
    cert, key, ca = require_files(cfg, name)
    return {
        "DicomTlsEnabled": bool(cfg.nodes[name].tls),
        "DicomTlsCertificate": str(cert),
        "DicomTlsPrivateKey": str(key),
        "DicomTlsTrustedCertificates": str(ca),
        "DicomTlsRemoteCertificateRequired": cfg.tls.remote_certificate_required,
    }


# ----- certificate facts (echo, health, `nmdose certs status`)
@dataclass
class CertInfo:
    subject: str
    issuer: str
    not_after: str  # ISO date-time, UTC
    days_left: int
    warning: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _info(subject: str, issuer: str, not_after: dt.datetime) -> CertInfo:
    left = (not_after - dt.datetime.now(dt.UTC)).days
    warning = None
    if left < 0:
        warning = f"certificate expired on {not_after.date()}"
    elif left < EXPIRY_WARNING_DAYS:
        warning = f"certificate expires in {left} days ({not_after.date()})"
    return CertInfo(subject, issuer, not_after.strftime("%Y-%m-%dT%H:%M:%SZ"), left, warning)


def read_certificate(path: Path) -> CertInfo:
    """Subject, issuer and expiry of the first certificate in a PEM file."""
    from cryptography import x509

    cert = x509.load_pem_x509_certificate(path.read_bytes())
    return _info(cert.subject.rfc4514_string(), cert.issuer.rfc4514_string(), cert.not_valid_after_utc)


def identity_report(cfg: Config) -> dict[str, Any]:
    """For each identity that needs TLS: its certificate facts, or why they cannot be read."""
    report: dict[str, Any] = {}
    names = [n for n, node in cfg.active_nodes().items() if node.local] + [SCU_IDENTITY]
    wanted = [n for n in names if uses_tls(cfg, n)]
    paths = {n: certificate_file(cfg, n) for n in wanted} | ({"ca": ca_file(cfg)} if wanted else {})
    for identity, path in paths.items():
        try:
            report[identity] = read_certificate(path).as_dict()
        except (OSError, ValueError) as exc:
            report[identity] = {"error": f"{path}: {exc.__class__.__name__}: {exc}"[:300]}
    return report


def client_context(cfg: Config) -> ssl.SSLContext:
    """The TLS client context of our own tools: our certificate, the trusted CAs, the peer verified."""
    cert, key, ca = require_files(cfg, SCU_IDENTITY)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = False  # DICOM peers are identified by AE title and host check, not DNS names
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(cafile=str(ca))
    ctx.load_cert_chain(str(cert), str(key))
    return ctx


class Tunnel:
    """A TLS client tunnel for a DCMTK tool without TLS options (movescu, getscu in DCMTK 3.6.7), as stunnel
    would do: the tool connects in plaintext to 127.0.0.1:<port> inside this machine, the tunnel carries the
    association to the node over mutual TLS. One tunnel per call; closed with the `with` block."""

    def __init__(self, cfg: Config, node: Node, *, timeout_s: float = 30):
        self.context = client_context(cfg)
        self.target = (node.host, node.port)
        self.timeout_s = timeout_s
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self._threads: list[threading.Thread] = []

    def __enter__(self) -> Tunnel:
        thread = threading.Thread(target=self._accept, name="nmdose-tls-tunnel", daemon=True)
        thread.start()
        self._threads.append(thread)
        return self

    def __exit__(self, *exc) -> None:
        self._server.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            try:
                raw = socket.create_connection(self.target, timeout=self.timeout_s)
                upstream = self.context.wrap_socket(raw)
                upstream.settimeout(None)
            except (OSError, ssl.SSLError):
                client.close()  # the tool sees the association fail, as it would over TLS
                continue
            threading.Thread(target=_bridge, args=(client, upstream), daemon=True).start()


def _bridge(client: socket.socket, upstream: ssl.SSLSocket) -> None:
    """Carry bytes both ways on one thread (an SSL object must not be used by two threads at once). The TLS side
    is non-blocking: TLS 1.3 sends session tickets after the handshake, records that make the socket readable
    without carrying data; a blocking recv() would then wait for data while the tool's request waits for us."""
    upstream.setblocking(False)
    with contextlib.suppress(OSError):
        while True:
            # decrypted bytes may wait inside the SSL object, where select() cannot see them
            ready = [upstream] if upstream.pending() else select.select([client, upstream], [], [])[0]
            if upstream in ready:
                try:
                    data = upstream.recv(65536)
                except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                    data = None  # a record without application data (e.g. a session ticket)
                if data == b"":
                    break
                if data:
                    client.sendall(data)
            if client in ready:
                data = client.recv(65536)
                if not data:
                    break
                _send_all(upstream, data)
    for sock in (client, upstream):
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        sock.close()


def _send_all(sock: ssl.SSLSocket, data: bytes, timeout_s: float = 60) -> None:
    view = memoryview(data)
    while view:
        try:
            view = view[sock.send(view) :]
        except (ssl.SSLWantWriteError, ssl.SSLWantReadError):
            if not any(select.select([sock], [sock], [], timeout_s)):
                raise TimeoutError("TLS tunnel: the peer takes no data") from None


def probe(cfg: Config, node: Node, *, timeout_s: float = 5) -> CertInfo:
    """Open a TLS connection to the node's DICOM port as our tools do (mutual TLS, peer verified against the
    trusted CAs) and return the peer certificate's facts. Raises ssl.SSLError / OSError when it fails."""
    ctx = client_context(cfg)
    with (
        socket.create_connection((node.host, node.port), timeout=timeout_s) as raw,
        ctx.wrap_socket(raw) as conn,
    ):
        der = conn.getpeercert(binary_form=True)
    from cryptography import x509

    peer = x509.load_der_x509_certificate(der)
    return _info(peer.subject.rfc4514_string(), peer.issuer.rfc4514_string(), peer.not_valid_after_utc)
