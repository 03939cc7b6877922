"""`nmdose certs init`: a local CA and a certificate per identity; expiry facts and the 30-day warning; keys from
the secret store are written 0600; a missing certificate is one clear line."""

from __future__ import annotations

import datetime as dt
import stat

import pytest
from cryptography import x509

from nmdose.cli import main
from nmdose.errors import ConfigError
from nmdose.security import certs, tls
from tests.support import load, make_config_dir


@pytest.fixture
def cfg(tmp_path):
    return load(make_config_dir(tmp_path, free_ports=False, nodes={n: {"tls": True} for n in
                                                                     ("simulationPACS", "researchPACS", "dosePACS")}))  # fmt: skip


def test_init_makes_a_ca_and_one_certificate_per_identity(cfg):
    made = certs.init(cfg)
    assert set(made) == {"ca", "simulationPACS", "researchPACS", "dosePACS", "nmdose", "https"}
    folder = tls.certificates_dir(cfg)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    ca = x509.load_pem_x509_certificate((folder / "ca.crt").read_bytes())
    leaf = x509.load_pem_x509_certificate((folder / "researchPACS.crt").read_bytes())
    assert leaf.issuer == ca.subject and leaf.subject.rfc4514_string() == "CN=ORTHANC,O=nmdose"
    leaf.verify_directly_issued_by(ca)
    usages = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert {u.dotted_string for u in usages} == {"1.3.6.1.5.5.7.3.1", "1.3.6.1.5.5.7.3.2"}  # server + client
    for identity in ("ca", "researchPACS", "nmdose"):
        assert stat.S_IMODE((folder / f"{identity}.key").stat().st_mode) == 0o600
    assert certs.init(cfg) == {}  # kept when present


def test_orthanc_and_dcmtk_options_point_at_the_files(cfg):
    certs.init(cfg)
    conf = tls.orthanc_settings(cfg, "dosePACS")
    assert conf["DicomTlsEnabled"] is True and conf["DicomTlsRemoteCertificateRequired"] is True
    assert conf["DicomTlsCertificate"].endswith("dosePACS.crt") and conf["DicomTlsPrivateKey"].endswith(
        "dosePACS.key"
    )
    args = tls.dcmtk_args(cfg, cfg.dose_node)
    assert args[0] == "+tls" and args[1].endswith("nmdose.key") and args[2].endswith("nmdose.crt")
    assert "-rc" in args and args[args.index("+cf") + 1].endswith("ca.crt")
    assert tls.dcmtk_args(cfg, cfg.nodes["clinicalPACS"].model_copy(update={"tls": False})) == []


def test_a_missing_certificate_is_one_line_naming_the_key(cfg):
    with pytest.raises(ConfigError) as exc:
        tls.orthanc_settings(cfg, "researchPACS")
    assert "dicom_network_entities.yaml: tls: researchPACS certificate" in str(exc.value)
    assert "nmdose certs init" in str(exc.value)


def test_expiry_within_30_days_is_a_warning(cfg, tmp_path):
    ca_key, ca_cert = certs.make_ca("test CA", 365)
    _, soon = certs.make_leaf(ca_key, ca_cert, "SOON", ["127.0.0.1"], 10)
    certs._write_cert(tmp_path / "soon.crt", soon)
    info = tls.read_certificate(tmp_path / "soon.crt")
    assert 8 <= info.days_left <= 10 and "expires in" in info.warning
    _, fine = certs.make_leaf(ca_key, ca_cert, "FINE", ["127.0.0.1"], 400)
    certs._write_cert(tmp_path / "fine.crt", fine)
    assert tls.read_certificate(tmp_path / "fine.crt").warning is None
    past = tls._info("CN=X", "CN=CA", dt.datetime.now(dt.UTC) - dt.timedelta(days=2))
    assert past.warning.startswith("certificate expired")


def test_certs_status_reports_each_identity(cfg, capsys, tmp_path):
    args = ["--config-dir", str(cfg.config_dir), "--var-dir", str(cfg.var_dir)]
    assert main([*args, "certs", "init"]) == 0
    assert main([*args, "certs", "status"]) == 0
    out = capsys.readouterr().out
    for identity in ("researchPACS", "dosePACS", "nmdose", "ca"):
        assert identity in out
    assert "CN=NMDOSE,O=nmdose" in out


def test_a_private_key_from_the_secret_store_is_written_0600(tmp_path):
    cfg_dir = make_config_dir(tmp_path, free_ports=False)
    key, _ = certs.make_ca("k", 30)
    from cryptography.hazmat.primitives import serialization

    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()  # fmt: skip
    net = cfg_dir / "dicom_network_entities.yaml"
    net.write_text(
        net.read_text()
        + "tls:\n  identities:\n    researchPACS:\n      private_key_secret: NMDOSE_TLS_KEY_RESEARCH\n"
    )
    cfg = load(cfg_dir)
    cfg.secrets.env["NMDOSE_TLS_KEY_RESEARCH"] = pem  # as Vault or the environment would give it
    path = tls.private_key_file(cfg, "researchPACS")
    assert path == cfg.var_dir / "run" / "tls" / "researchPACS.key"
    assert path.read_text().strip() == pem.strip()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
