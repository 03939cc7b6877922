"""Secrets: environment/.env in development, HashiCorp Vault KV v2 (spoken over real HTTP) in production."""

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from nmdose.errors import ConfigError, SecretError
from nmdose.secrets import EnvSecretStore, VaultSecretStore
from tests.support import load, make_config_dir, make_prod_config_dir


class _Vault(BaseHTTPRequestHandler):
    """The part of Vault's HTTP API that hvac uses to read a KV v2 secret."""

    token = "s.test-token"
    data = {"NMDOSE_DB_PASSWORD": "from-vault"}

    def do_GET(self):  # noqa: N802
        if self.headers.get("X-Vault-Token") != self.token:
            self._send(403, {"errors": ["permission denied"]})
        elif self.path.startswith("/v1/secret/data/nmdose"):
            self._send(200, {"data": {"data": self.data, "metadata": {"version": 1, "deletion_time": ""}}})
        else:
            self._send(404, {"errors": []})

    def _send(self, code, body):
        raw = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, *args):
        pass


@pytest.fixture
def vault():
    server = HTTPServer(("127.0.0.1", 0), _Vault)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def test_vault_backend_reads_kv2_secret(tmp_path, vault):
    cfg_dir = make_config_dir(
        tmp_path,
        free_ports=False,
        env={"NMDOSE_SECRETS_BACKEND": "vault", "VAULT_ADDR": vault, "VAULT_TOKEN": _Vault.token},
    )
    cfg = load(cfg_dir)
    assert isinstance(cfg.secrets, VaultSecretStore)
    assert cfg.secrets.get("NMDOSE_DB_PASSWORD") == "from-vault"
    assert "password='from-vault'" in cfg.dsn()


def test_vault_wrong_token_is_a_clear_error(tmp_path, vault):
    cfg_dir = make_config_dir(
        tmp_path,
        free_ports=False,
        env={"NMDOSE_SECRETS_BACKEND": "vault", "VAULT_ADDR": vault, "VAULT_TOKEN": "wrong"},
    )
    with pytest.raises(SecretError, match=r"Vault at http://127\.0\.0\.1:\d+: cannot read secret/nmdose"):
        load(cfg_dir).secrets.get("NMDOSE_DB_PASSWORD")


def test_vault_missing_key_is_a_clear_error(tmp_path, vault):
    cfg_dir = make_config_dir(
        tmp_path,
        free_ports=False,
        env={"NMDOSE_SECRETS_BACKEND": "vault", "VAULT_ADDR": vault, "VAULT_TOKEN": _Vault.token},
    )
    with pytest.raises(SecretError, match="has no key KEYCLOAK_CLIENT_SECRET"):
        load(cfg_dir).secrets.get("KEYCLOAK_CLIENT_SECRET")


def test_vault_unreachable_is_a_clear_error(tmp_path):
    cfg_dir = make_config_dir(
        tmp_path,
        free_ports=False,
        env={"NMDOSE_SECRETS_BACKEND": "vault", "VAULT_ADDR": "http://127.0.0.1:9", "VAULT_TOKEN": "t"},
    )
    with pytest.raises(SecretError, match="cannot read"):
        load(cfg_dir).secrets.get("NMDOSE_DB_PASSWORD")


def test_vault_backend_without_address_is_a_config_error(tmp_path):
    cfg_dir = make_config_dir(tmp_path, free_ports=False, env={"NMDOSE_SECRETS_BACKEND": "vault"})
    with pytest.raises(ConfigError, match="VAULT_ADDR and VAULT_TOKEN"):
        _ = load(cfg_dir).secrets


def test_prod_mode_requires_vault(tmp_path):
    cfg_dir = make_prod_config_dir(tmp_path, env={"NMDOSE_SECRETS_BACKEND": "env"})
    with pytest.raises(ConfigError, match="expected vault in prod"):
        _ = load(cfg_dir).secrets


def test_env_store_generates_a_local_secret_once(tmp_path):
    store = EnvSecretStore({}, tmp_path / "var" / "secrets.env")
    with pytest.raises(SecretError, match="NMDOSE_DB_PASSWORD not set"):
        store.get("NMDOSE_DB_PASSWORD")
    first = store.ensure("NMDOSE_DB_PASSWORD")
    assert len(first) >= 24 and store.ensure("NMDOSE_DB_PASSWORD") == first
    assert (tmp_path / "var" / "secrets.env").stat().st_mode & 0o077 == 0


# ---------------------------------------------------------------------------------- the patient pseudonym key
def test_the_pseudonym_is_keyed_versioned_and_empty_for_no_patient_id():
    from nmdose.secrets import patient_pseudonym

    key = "k" * 32
    first = patient_pseudonym(key, "PID123")
    assert first is not None and first.startswith("p1:") and len(first) == 3 + 32
    assert patient_pseudonym(key, "PID123 ") == first  # DICOM padding
    assert patient_pseudonym(key, "PID124") != first
    assert patient_pseudonym("x" * 32, "PID123") != first  # another key, another pseudonym
    assert patient_pseudonym(key, "") is None and patient_pseudonym(key, None) is None
    assert "PID123" not in first


def test_the_local_store_generates_the_pseudonym_key_once(tmp_path):
    from nmdose.secrets import PSEUDONYM_KEY, pseudonym_key

    cfg = load(make_config_dir(tmp_path, free_ports=False))
    key = pseudonym_key(cfg)
    assert len(key) >= 32
    assert pseudonym_key(cfg) == key
    assert f"{PSEUDONYM_KEY}={key}" in (cfg.var_dir / "secrets.env").read_text()


@pytest.mark.parametrize("data, got", [({}, "missing"), ({"NMDOSE_PSEUDONYM_KEY": "short"}, "5 characters")])
def test_prod_refuses_a_missing_or_short_pseudonym_key(tmp_path, vault, monkeypatch, data, got):
    from nmdose.secrets import pseudonym_key

    monkeypatch.setattr(_Vault, "data", data)
    cfg = load(make_prod_config_dir(tmp_path))
    # the test Vault speaks plain http, which prod's configuration check refuses: the store is set afterwards
    cfg.__dict__["secrets"] = VaultSecretStore(vault, _Vault.token, "secret", "nmdose")
    with pytest.raises(ConfigError) as err:
        pseudonym_key(cfg)
    line = str(err.value)
    assert "\n" not in line
    assert line == (
        f"Vault {vault} secret/nmdose: NMDOSE_PSEUDONYM_KEY: expected a random secret of at least 32 characters "
        f"in prod running mode, got {got}"
    )
    monkeypatch.setattr(_Vault, "data", {"NMDOSE_PSEUDONYM_KEY": "s" * 32})
    cfg.secrets._cache = None
    assert pseudonym_key(cfg) == "s" * 32
