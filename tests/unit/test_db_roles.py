"""Least privilege, the parts that need no server: which role a connection uses and its secret, the prod refusal
of a remote database without verify-full, and the production compose / init script agreeing with
config/postgresql.yaml (the roles themselves are exercised in tests/integration/test_least_privilege.py)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from nmdose.config import PostgresSettings
from nmdose.db import default_role
from nmdose.errors import ConfigError
from nmdose.security.policy import findings
from tests.support import REPO, load, make_config_dir, make_prod_config_dir


def edit_pg(cfg_dir: Path, **changes) -> None:
    path = cfg_dir / "postgresql.yaml"
    data = yaml.safe_load(path.read_text())
    data.update(changes)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def test_each_role_has_its_own_user_and_secret(tmp_path):
    env = {name: f"pw-{role}" for role, name in PostgresSettings.ROLE_SECRETS.items()}
    cfg = load(make_config_dir(tmp_path, env=env))
    pg = cfg.postgresql
    users = {role: pg.role_user(role) for role in pg.ROLE_SECRETS}
    assert users == {"admin": "nmdose", "owner": "nmdose_owner", "worker": "nmdose_worker", "web": "nmdose_web",
                     "orthanc": "nmdose_orthanc"}  # fmt: skip
    for role in pg.ROLE_SECRETS:
        dsn = cfg.dsn(role=role)
        assert f"user='{users[role]}'" in dsn and f"password='pw-{role}'" in dsn
        assert f"application_name='nmdose-{role}'" in dsn
    assert "user='nmdose'" in cfg.dsn()  # without a role: the bootstrap superuser (the local stack only)
    with pytest.raises(ValueError, match="unknown database role"):
        pg.role_user("root")


def test_the_code_picks_its_role():
    assert default_role(None) == "worker"  # the plugin's workers, the CLI, the dose worker
    assert default_role("nmdose") == "worker"
    assert default_role("postgres") == "admin"  # creating databases: the local stack, tests
    pages = (Path(__file__).resolve().parents[2] / "orthanc_plugin/nmdose/web/pages.py").read_text()
    assert 'connect(plugin.cfg, role="web")' in pages  # the pages read as the web role


def test_sslmode_and_root_certificate_reach_libpq(tmp_path):
    cfg_dir = make_config_dir(tmp_path, env={"NMDOSE_DB_WORKER_PASSWORD": "x"})
    edit_pg(cfg_dir, sslmode="verify-full", sslrootcert="/etc/nmdose/tls/db-ca.pem")
    dsn = load(cfg_dir).dsn(role="worker")
    assert "sslmode='verify-full'" in dsn and "sslrootcert='/etc/nmdose/tls/db-ca.pem'" in dsn
    assert "sslmode" not in load(
        make_config_dir(tmp_path / "plain", env={"NMDOSE_DB_WORKER_PASSWORD": "x"})
    ).dsn(role="worker")


def test_a_bad_role_name_or_sslmode_is_refused_naming_the_key(tmp_path):
    cfg_dir = make_config_dir(tmp_path)
    edit_pg(cfg_dir, web_user="Web-User")
    with pytest.raises(ConfigError, match=r"postgresql.yaml.*web_user"):
        load(cfg_dir)
    edit_pg(cfg_dir, web_user="nmdose_web", sslmode="verify")
    with pytest.raises(ConfigError, match=r"postgresql.yaml.*sslmode"):
        load(cfg_dir)


def _sslmode_findings(cfg):
    return [f for f in findings(cfg) if f.key == "sslmode"]


def test_prod_refuses_a_remote_database_without_verify_full(tmp_path):
    cfg_dir = make_prod_config_dir(tmp_path)
    edit_pg(cfg_dir, host="10.1.2.3", local=False)
    with pytest.raises(ConfigError) as exc:
        load(cfg_dir)
    assert "postgresql.yaml: sslmode: expected verify-full (database host 10.1.2.3 is not loopback)" in str(
        exc.value
    )
    edit_pg(cfg_dir, sslmode="require")
    with pytest.raises(ConfigError, match="got 'require'"):
        load(cfg_dir)
    edit_pg(cfg_dir, sslmode="verify-full", sslrootcert="/etc/nmdose/tls/db-ca.pem")
    assert _sslmode_findings(load(cfg_dir)) == []


def test_a_loopback_database_needs_no_tls_and_test_mode_only_warns(tmp_path):
    assert _sslmode_findings(load(make_config_dir(tmp_path / "a"))) == []
    cfg_dir = make_config_dir(tmp_path / "b")
    edit_pg(cfg_dir, host="db.hospital.example", local=False)
    cfg = load(cfg_dir)  # test running mode: loads, and lists what prod would refuse
    assert any("sslmode" in w and "db.hospital.example" in w for w in cfg.warnings)


# ----- production deployment
def compose() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


def test_compose_gives_the_database_every_role_password_as_a_secret_file():
    pg_service = compose()["services"]["postgres"]
    expected = {name.lower() for name in PostgresSettings.ROLE_SECRETS.values()}
    assert set(pg_service["secrets"]) == expected
    assert expected <= set(compose()["secrets"])
    assert pg_service["environment"]["POSTGRES_PASSWORD_FILE"] == "/run/secrets/nmdose_db_password"
    assert "./docker/postgres-init.sql:/docker-entrypoint-initdb.d/10-roles.sql:ro" in pg_service["volumes"]


def test_the_init_script_makes_the_configured_roles_none_a_superuser():
    cfg = load(REPO / "config")
    pg = cfg.postgresql
    init = (REPO / "docker" / "postgres-init.sql").read_text()
    for role in ("owner", "worker", "web", "orthanc"):
        user = pg.role_user(role)
        secret = PostgresSettings.ROLE_SECRETS[role].lower()
        line = next(x for x in init.splitlines() if x.startswith(f"CREATE ROLE {user} "))
        assert "NOSUPERUSER NOCREATEDB NOCREATEROLE" in line and "PASSWORD :'" in line
        var = re.search(r"PASSWORD :'(\w+)'", line)[1]
        assert f"\\set {var} `cat /run/secrets/{secret}`" in init
    assert f"ALTER DATABASE {pg.database} OWNER TO {pg.owner_user};" in init
    assert f"CREATE DATABASE {pg.orthanc_database} OWNER {pg.orthanc_user} " in init
    assert f"REVOKE ALL ON DATABASE {pg.database} FROM PUBLIC;" in init
    assert f"REVOKE ALL ON DATABASE {pg.orthanc_database} FROM PUBLIC;" in init
    assert not re.search(r"PASSWORD\s+'", init)  # never a password literal


def test_the_generated_research_configuration_holds_no_database_password(monkeypatch):
    from nmdose.stack import ORTHANC_DB_PASSWORD_ENV, Stack

    for name in PostgresSettings.ROLE_SECRETS.values():
        monkeypatch.setenv(name, f"secret-{name}")
    cfg = load(REPO / "config")
    conf = Stack(cfg, research_plugin=False).orthanc_config("researchPACS")
    assert conf["PostgreSQL"]["Username"] == cfg.postgresql.orthanc_user
    assert conf["PostgreSQL"]["Password"] == "${" + ORTHANC_DB_PASSWORD_ENV + "}"
    assert "secret-" not in str(conf)
    env = Stack(cfg).orthanc_env("researchPACS")
    assert env[ORTHANC_DB_PASSWORD_ENV] == "secret-NMDOSE_ORTHANC_DB_PASSWORD"
    assert ORTHANC_DB_PASSWORD_ENV not in Stack(cfg).orthanc_env("dosePACS")
