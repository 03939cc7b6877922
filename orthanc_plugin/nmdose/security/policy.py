"""What `--running-mode prod` refuses: an open or plaintext setup. Each finding is one line naming the file, the
key and what is expected; prod raises the first (and counts the rest), test mode logs them as warnings, and
`nmdose config check` lists them in every mode.

Refused in prod:
- DICOM traffic that crosses the network in plaintext: when either end of an association our profile sets up is
  not on loopback, the called node must have ``tls: true``;
- a node's ``orthanc_settings`` loosening the security profile (any ``DicomAlwaysAllow*`` but Echo, the called-AE
  or host check off, its own ``DicomModalities``, modalities in the database, TLS off on a TLS node);
- ``tls.remote_certificate_required: false``;
- ``ENABLE_SIMULATION=1``;
- http (not https) URLs for the Keycloak issuer and JWKS, and for Vault;
- with the importer enabled (import.yaml), a drop, archive or failed folder that is missing, writable by every
  user, or on another filesystem than the drop folder (the archive step is a rename).
"""

from __future__ import annotations

import ipaddress
import logging
import os
import stat
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nmdose.errors import ConfigError
from nmdose.security.profile import LOCKED_SETTINGS, SCU_NAME, peers

if TYPE_CHECKING:
    from nmdose.config import Config

log = logging.getLogger(__name__)
_warned: set[str] = set()  # each test-mode warning once per process (the CLI and plugin load config often)


@dataclass(frozen=True)
class Finding:
    file: str
    key: str
    expected: str
    got: Any

    def line(self) -> str:
        return f"{self.file}: {self.key}: expected {self.expected} in prod running mode, got {self.got!r}"


def is_loopback(host: str) -> bool:
    if host in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _tls_findings(cfg: Config) -> list[Finding]:
    """Every (client -> server) association of the profile that leaves the machine must reach a TLS port."""
    net = str(cfg.config_dir / "dicom_network_entities.yaml")
    nodes = cfg.active_nodes()
    found: dict[str, Finding] = {}

    def need(server: str, key: str, tls: bool, reason: str) -> None:
        if not tls and key not in found:
            found[key] = Finding(net, key, f"true ({reason})", False)

    for name, node in nodes.items():
        if not is_loopback(node.host):
            need(name, f"nodes.{name}.tls", node.tls, f"{node.host} is reached over the network")
        for i, grant in enumerate(node.allow):
            if not is_loopback(grant.host):
                need(name, f"nodes.{name}.tls", node.tls, f"allow.{i} {grant.aet} connects from {grant.host}")
                if grant.port:
                    need(
                        grant.aet,
                        f"nodes.{name}.allow.{i}.tls",
                        grant.tls,
                        f"{grant.host} is called over the network",
                    )
        for peer in peers(cfg, name):
            if peer.name == SCU_NAME or not peer.services or peer.name not in nodes:
                continue
            if not is_loopback(peer.host):
                need(
                    name,
                    f"nodes.{name}.tls",
                    node.tls,
                    f"{peer.name} at {peer.host} connects to it: {peer.why}",
                )
    return list(found.values())


def _import_findings(cfg: Config) -> list[Finding]:
    """The importer's folders hold patient data: they exist, not every user may write them, one filesystem."""
    if not cfg.imports.enabled:
        return []
    imp = str(cfg.config_dir / "import.yaml")
    result: list[Finding] = []
    drop_dev = None
    for kind in ("drop", "archive", "failed"):
        path = cfg.imports.folder(kind, cfg.var_dir)  # type: ignore[arg-type]
        key = f"{kind}_folder"
        try:
            st = os.stat(path)
        except OSError:
            result.append(Finding(imp, key, "an existing folder", str(path)))
            continue
        if not stat.S_ISDIR(st.st_mode):
            result.append(Finding(imp, key, "a folder", str(path)))
        elif st.st_mode & stat.S_IWOTH:
            result.append(Finding(imp, key, "a folder not writable by every user (chmod o-w)",
                                  f"{path} mode {stat.S_IMODE(st.st_mode):o}"))  # fmt: skip
        elif kind == "drop":
            drop_dev = st.st_dev
        elif drop_dev is not None and st.st_dev != drop_dev:
            result.append(Finding(imp, key, "a folder on the drop folder's filesystem (the archive step is a "
                                  "rename)", str(path)))  # fmt: skip
    return result


def findings(cfg: Config) -> list[Finding]:
    """Everything prod refuses in this configuration (empty: nothing open, nothing plaintext)."""
    net = str(cfg.config_dir / "dicom_network_entities.yaml")
    env = str(cfg.config_dir / ".env")
    acc = str(cfg.config_dir / "nmdose_accounts.yaml")
    result: list[Finding] = []
    if cfg.enable_simulation:
        result.append(Finding(env, "ENABLE_SIMULATION", "0 (the simulation PACS is a stand-in)", "1"))
    result += _tls_findings(cfg)
    if not cfg.tls.remote_certificate_required:
        result.append(
            Finding(net, "tls.remote_certificate_required", "true (peers present a certificate)", False)
        )
    for name, node in cfg.active_nodes().items():
        overrides = node.orthanc_settings
        for key, value in LOCKED_SETTINGS.items():
            if key in overrides and overrides[key] != value:
                result.append(
                    Finding(net, f"nodes.{name}.orthanc_settings.{key}", str(value).lower(), overrides[key])
                )
        if "DicomModalities" in overrides:
            result.append(Finding(net, f"nodes.{name}.orthanc_settings.DicomModalities",
                                  "no override (the security profile registers the peers; use allow:)", "set"))  # fmt: skip
        if node.tls and overrides.get("DicomTlsEnabled") is False:
            result.append(
                Finding(net, f"nodes.{name}.orthanc_settings.DicomTlsEnabled", "true (tls: true)", False)
            )
        if overrides.get("RemoteAccessAllowed") is True and cfg.auth_mode != "keycloak":
            result.append(Finding(net, f"nodes.{name}.orthanc_settings.RemoteAccessAllowed",
                                  "false unless --auth-mode keycloak (the gate authenticates Orthanc's API)", True))  # fmt: skip
        if overrides.get("DicomTlsRemoteCertificateRequired") is False:
            result.append(Finding(net, f"nodes.{name}.orthanc_settings.DicomTlsRemoteCertificateRequired",
                                  "true", False))  # fmt: skip
    kc = cfg.accounts.keycloak
    for key, url in (("keycloak.issuer", kc.issuer), ("keycloak.jwks_url", kc.jwks_url)):
        if url and not url.lower().startswith("https://"):
            result.append(Finding(acc, key, "an https:// URL", url))
    if cfg.env.get("NMDOSE_SECRETS_BACKEND", "env") == "vault":
        addr = cfg.env.get("VAULT_ADDR", "")
        if addr and not addr.lower().startswith("https://"):
            result.append(Finding(env, "VAULT_ADDR", "an https:// URL", addr))
    pg = cfg.postgresql
    if not is_loopback(pg.host) and pg.sslmode != "verify-full":
        result.append(Finding(str(cfg.config_dir / "postgresql.yaml"), "sslmode",
                              f"verify-full (database host {pg.host} is not loopback)", pg.sslmode))  # fmt: skip
    result += _import_findings(cfg)
    return result


def enforce(cfg: Config) -> None:
    """Prod: raise the first finding as one line. Test: log each as a warning. Every mode: cfg.warnings."""
    found = findings(cfg)
    cfg.warnings[:] = [
        f"{f.file}: {f.key}: prod running mode expects {f.expected}, got {f.got!r}" for f in found
    ]
    if not found:
        return
    if cfg.running_mode == "prod":
        more = f" (and {len(found) - 1} more: `nmdose --running-mode test config check` lists them)"
        raise ConfigError(found[0].line() + (more if len(found) > 1 else ""))
    if cfg.running_mode == "test":
        for line in cfg.warnings:
            if line not in _warned:
                _warned.add(line)
                log.warning("%s", line)
