"""A local CA and one certificate per identity for dev and test DICOM TLS (`nmdose certs init`).

A hospital uses its own CA instead: point ``tls.ca_certificates`` and ``tls.identities`` in
dicom_network_entities.yaml at its files (docs/security.md). RSA 2048 keys: the DCMTK default TLS profile
(BCP 195 non-downgrading) negotiates ECDHE-RSA suites. Each certificate serves as TLS server and client.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from pathlib import Path
from typing import TYPE_CHECKING

from nmdose.security import tls

if TYPE_CHECKING:
    from nmdose.config import Config


def _key():
    from cryptography.hazmat.primitives.asymmetric import rsa

    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _write_key(path: Path, key) -> None:
    from cryptography.hazmat.primitives import serialization

    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)


def _write_cert(path: Path, cert) -> None:
    from cryptography.hazmat.primitives import serialization

    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    os.chmod(path, 0o600)  # public, but nothing under var/ is readable by other users


def make_ca(common_name: str, days: int):
    """A self-signed CA (key, certificate) that may sign end-entity certificates only."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    key = _key()
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "nmdose"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])  # fmt: skip
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),  # fmt: skip
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def make_leaf(ca_key, ca_cert, common_name: str, hosts: list[str], days: int):
    """An end-entity certificate for a DICOM node: TLS server and client, SAN = its host names/addresses."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = _key()
    sans: list[x509.GeneralName] = []
    for host in dict.fromkeys([*hosts, "localhost"]):
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            sans.append(x509.DNSName(host))
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "nmdose"),
                    x509.NameAttribute(NameOID.COMMON_NAME, common_name),
                ]
            )
        )  # fmt: skip
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=True,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),  # fmt: skip
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return key, cert


def init(cfg: Config, *, days: int = 825, ca_days: int = 3650, force: bool = False) -> dict[str, str]:
    """Make <dir>/ca.crt|key and <identity>.crt|key for every node we run, for nmdose's tools, and https.crt|key
    for the HTTPS proxy.
    Existing files are kept unless `force` (a CA is never replaced silently: its peers would stop trusting us)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    folder = tls.certificates_dir(cfg)
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    ca_crt, ca_key_path = folder / "ca.crt", folder / "ca.key"
    made: dict[str, str] = {}
    if force or not (ca_crt.exists() and ca_key_path.exists()):
        ca_key, ca_cert = make_ca("nmdose local DICOM CA", ca_days)
        _write_key(ca_key_path, ca_key)
        _write_cert(ca_crt, ca_cert)
        made["ca"] = str(ca_crt)
        force = True  # certificates of an older CA would no longer verify
    else:
        ca_key = serialization.load_pem_private_key(ca_key_path.read_bytes(), password=None)
        ca_cert = x509.load_pem_x509_certificate(ca_crt.read_bytes())
    identities = {name: (node.aet, node.host) for name, node in cfg.active_nodes().items() if node.local}
    identities[tls.SCU_IDENTITY] = (cfg.local_aet, cfg.local_host)
    identities["https"] = (
        "nmdose research PACS",
        cfg.research_node.host,
    )  # `nmdose proxy`: the pages over HTTPS
    for identity, (aet, host) in identities.items():
        crt, key_path = folder / f"{identity}.crt", folder / f"{identity}.key"
        if crt.exists() and key_path.exists() and not force:
            continue
        key, cert = make_leaf(ca_key, ca_cert, aet, [host], days)
        _write_key(key_path, key)
        _write_cert(crt, cert)
        made[identity] = str(crt)
    return made
