"""docker-compose.yml (production) stays consistent with the native stack's configuration."""

import re

import yaml

from tests.support import REPO, load


def compose():
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


def test_compose_uses_the_configured_postgresql_port_and_databases():
    cfg = load(REPO / "config")
    pg = compose()["services"]["postgres"]
    assert f"port={cfg.postgresql.port}" in pg["command"]
    assert pg["environment"]["POSTGRES_USER"] == cfg.postgresql.user
    assert pg["environment"]["POSTGRES_DB"] == cfg.postgresql.database
    init = (REPO / "docker" / "postgres-init.sql").read_text()
    assert f"CREATE DATABASE {cfg.postgresql.orthanc_database} " in init


def test_compose_runs_the_research_pacs_through_the_same_launcher():
    svc = compose()["services"]["research-pacs"]
    assert svc["command"][-3:] == ["stack", "run", "researchPACS"]
    assert svc["network_mode"] == "host" and svc["environment"]["TCP_NODELAY"] == "1"
    assert svc["environment"]["NMDOSE_SECRETS_BACKEND"] == "vault"  # prod mode requires Vault
    assert "./config:/opt/nmdose/config:ro" in svc["volumes"]


def test_image_installs_the_same_debian_packages_as_make_deps():
    dockerfile = (REPO / "docker" / "Dockerfile").read_text()
    assert "FROM debian:bookworm" in dockerfile and "bash scripts/install-deps.sh" in dockerfile
    packages = re.search(r"APT_PACKAGES=\(([^)]*)\)", (REPO / "scripts" / "install-deps.sh").read_text())[1]
    for needed in ("orthanc", "orthanc-python", "orthanc-postgresql", "dcmtk", "postgresql", "lua5.1"):
        assert needed in packages.split()


def test_no_secret_value_in_compose():
    text = (REPO / "docker-compose.yml").read_text()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if re.search(r"(?i)(password|token|secret_key|client_secret)$", key.strip()):
            assert not value.strip(), f"secret value in docker-compose.yml: {line.strip()}"


def test_compose_research_pacs_is_prod_with_tls_files_and_https_vault():
    svc = compose()["services"]["research-pacs"]
    assert svc["command"][:4] == ["--running-mode", "prod", "--auth-mode", "keycloak"]
    assert svc["environment"]["VAULT_ADDR"].split(":-", 1)[-1].startswith("https://")
    assert "./tls:/etc/nmdose/tls:ro" in svc["volumes"]


def test_compose_generates_the_same_security_profile_as_the_native_stack(monkeypatch):
    """`stack run researchPACS` in the container writes the configuration the tests exercise: the profile's
    locked settings come after orthanc.json, so nothing in the image's base file can loosen them."""
    from nmdose.security.profile import LOCKED_SETTINGS
    from nmdose.stack import Stack

    monkeypatch.setenv("NMDOSE_DB_PASSWORD", "not-a-real-one")
    cfg = load(REPO / "config")
    conf = Stack(cfg, research_plugin=False).orthanc_config("researchPACS")
    assert {k: conf[k] for k in LOCKED_SETTINGS} == LOCKED_SETTINGS
    base = (REPO / "orthanc.json").read_text()
    assert "DicomAlwaysAllow" not in base and "DicomCheck" not in base


def test_compose_serves_the_research_pacs_through_the_https_proxy():
    svc = compose()["services"]["proxy"]
    assert svc["command"][-8:-6] == ["proxy", "run"] and "--listen" in svc["command"]
    assert svc["command"][svc["command"].index("--listen") + 1] == "443"
    assert "https_key" in svc["secrets"] and svc["network_mode"] == "host"
    research = compose()["services"]["research-pacs"]
    assert (
        "RemoteAccessAllowed" not in (REPO / "orthanc.json").read_text()
        or '"RemoteAccessAllowed": false' in (REPO / "orthanc.json").read_text()
    )
    assert "ports" not in research  # host networking; Orthanc's HTTP stays on loopback behind the proxy


def test_compose_runs_the_importer_as_the_native_stack_does_and_only_when_asked():
    from nmdose.stack import IMPORT_WATCH  # noqa: F401 - the native stack's service of the same command

    svc = compose()["services"]["importer"]
    assert svc["command"][-2:] == ["import", "watch"] and svc["command"][:2] == ["--running-mode", "prod"]
    assert svc["profiles"] == ["import"]  # off by default, as `enabled: false` in config/import.yaml
    assert svc["network_mode"] == "host" and "./config:/opt/nmdose/config:ro" in svc["volumes"]
    assert svc["environment"]["NMDOSE_SECRETS_BACKEND"] == "vault"
    assert load(REPO / "config").imports.enabled is False


def test_compose_runs_the_pseudo_pacs_through_the_same_launcher_only_when_asked():
    svc = compose()["services"]["pseudo-pacs"]
    assert svc["command"][-3:] == ["stack", "run", "pseudoPACS"] and svc["profiles"] == ["pseudo"]
    assert "pseudoPACS" in load(REPO / "config").nodes  # the node it runs is configured
    assert "orthanc-pseudo" in compose()["volumes"]
