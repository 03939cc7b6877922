"""Configuration: validated at load, one clear line naming file, key and what was expected."""

from pathlib import Path

import pytest
import yaml

from nmdose.cli import main
from nmdose.envfile import read_env_file
from nmdose.errors import ConfigError
from tests.support import load, make_config_dir


@pytest.fixture
def cfg_dir(tmp_path: Path) -> Path:
    return make_config_dir(tmp_path, free_ports=False)


def edit(path: Path, fn) -> None:
    data = yaml.safe_load(path.read_text())
    fn(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))


def test_default_configuration_loads_with_the_node_table(cfg_dir):
    cfg = load(cfg_dir)
    assert (
        cfg.nodes["clinicalPACS"].aet == "NMPACS"
        and cfg.nodes["clinicalPACS"].address == "172.17.111.214:104"
    )
    assert cfg.nodes["simulationPACS"].aet == "NMFULLDATA" and cfg.nodes["simulationPACS"].port == 5680
    assert (
        cfg.nodes["researchPACS"].aet == "ORTHANC"
        and cfg.nodes["researchPACS"].http_url == "http://127.0.0.1:8042"
    )
    assert cfg.nodes["dosePACS"].aet == "NMDOSE" and cfg.nodes["dosePACS"].port == 5678
    assert cfg.retrieve.target_modalities == ["PT", "NM", "CT"]


def test_enable_simulation_picks_the_source_node(cfg_dir):
    assert load(cfg_dir).source_node.name == "simulationPACS"
    (cfg_dir / ".env").write_text("ENABLE_SIMULATION=0\nNMDOSE_RUNNING_MODE=test\n")
    cfg = load(cfg_dir)
    assert cfg.source_node.name == "clinicalPACS"
    assert "simulationPACS" not in cfg.active_nodes()


def test_simulation_mode_never_lists_the_clinical_pacs_as_active(cfg_dir):
    assert "clinicalPACS" not in load(cfg_dir).active_nodes()


def test_unknown_key_names_file_and_key(cfg_dir):
    edit(cfg_dir / "dicom_network_entities.yaml", lambda d: d["nodes"]["dosePACS"].update(hostname="x"))
    with pytest.raises(ConfigError) as exc:
        load(cfg_dir)
    msg = str(exc.value)
    assert "dicom_network_entities.yaml" in msg and "nodes.dosePACS.hostname" in msg and "unknown key" in msg


def test_missing_node_is_an_error(cfg_dir):
    edit(cfg_dir / "dicom_network_entities.yaml", lambda d: d["nodes"].pop("dosePACS"))
    with pytest.raises(ConfigError, match=r"nodes\.dosePACS: missing"):
        load(cfg_dir)


@pytest.mark.parametrize("port", [0, 70000, "abc"])
def test_bad_port_is_an_error(cfg_dir, port):
    edit(cfg_dir / "dicom_network_entities.yaml", lambda d: d["nodes"]["researchPACS"].update(port=port))
    with pytest.raises(
        ConfigError, match=r"dicom_network_entities\.yaml: nodes\.researchPACS\.port: expected"
    ):
        load(cfg_dir)


def test_ae_title_longer_than_16_characters_is_an_error(cfg_dir):
    edit(cfg_dir / "dicom_network_entities.yaml", lambda d: d["nodes"]["dosePACS"].update(aet="A" * 17))
    with pytest.raises(ConfigError, match=r"nodes\.dosePACS\.aet: expected an AE title of 1-16"):
        load(cfg_dir)


def test_two_local_nodes_on_one_port_is_an_error(cfg_dir):
    edit(cfg_dir / "dicom_network_entities.yaml", lambda d: d["nodes"]["dosePACS"].update(port=4242))
    with pytest.raises(ConfigError, match=r"nodes\.dosePACS\.port: expected a port not used by another node"):
        load(cfg_dir)


def test_bad_transfer_strategy_is_an_error(cfg_dir):
    edit(cfg_dir / "retrieve_options.yaml", lambda d: d["transfer"].update(strategy="everything"))
    with pytest.raises(ConfigError, match=r"retrieve_options\.yaml: transfer\.strategy: expected"):
        load(cfg_dir)


def test_bad_regex_in_modality_rule_is_an_error(cfg_dir):
    edit(
        cfg_dir / "retrieve_options.yaml",
        lambda d: d["modality_rules"].append({"pattern": "(", "modalities": ["PT"]}),
    )
    with pytest.raises(ConfigError, match=r"modality_rules\.2\.pattern: expected a valid regular expression"):
        load(cfg_dir)


def test_account_with_unknown_role_is_an_error(cfg_dir):
    edit(cfg_dir / "nmdose_accounts.yaml", lambda d: d["accounts"][0].update(roles=["wizard"]))
    with pytest.raises(ConfigError, match=r"nmdose_accounts\.yaml: accounts\.0\.roles"):
        load(cfg_dir)


def test_invalid_yaml_names_the_line(cfg_dir):
    (cfg_dir / "postgresql.yaml").write_text("host: [unclosed\nport: 5\n")
    with pytest.raises(ConfigError, match=r"postgresql\.yaml:\d+: not valid YAML"):
        load(cfg_dir)


def test_bad_enable_simulation_value(cfg_dir):
    (cfg_dir / ".env").write_text("ENABLE_SIMULATION=maybe\n")
    with pytest.raises(ConfigError, match="ENABLE_SIMULATION: expected 0 or 1, got 'maybe'"):
        load(cfg_dir)


def test_prod_mode_refuses_dev_auth(cfg_dir):
    (cfg_dir / ".env").write_text("NMDOSE_RUNNING_MODE=prod\nNMDOSE_AUTH_MODE=dev\n")
    with pytest.raises(ConfigError, match="expected keycloak in prod"):
        load(cfg_dir)


def test_env_file_parsing(tmp_path):
    f = tmp_path / ".env"
    f.write_text("# c\nA=1\nexport B='two words'\nC=x # trailing\n\nD=\"q\"\n")
    assert read_env_file(f) == {"A": "1", "B": "two words", "C": "x", "D": "q"}
    f.write_text("not a pair\n")
    with pytest.raises(ConfigError, match=r"\.env:1: expected KEY=VALUE"):
        read_env_file(f)


def test_config_check_cli_masks_secrets_and_fails_with_one_line(cfg_dir, capsys):
    with (cfg_dir / ".env").open("a") as fh:
        fh.write("NMDOSE_DB_PASSWORD=hunter2secret\n")
    assert main(["--config-dir", str(cfg_dir), "config", "check", "--json"]) == 0
    out = capsys.readouterr().out
    assert "hunter2secret" not in out and '"NMDOSE_DB_PASSWORD": "***"' in out
    edit(cfg_dir / "dicom_network_entities.yaml", lambda d: d["nodes"]["dosePACS"].update(port=-1))
    assert main(["--config-dir", str(cfg_dir), "config", "check"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("nmdose: error:") and "nodes.dosePACS.port" in err[0]


def test_config_check_reads_alerts_yaml_too_and_names_its_bad_key(cfg_dir, capsys):
    (cfg_dir / "alerts.yaml").write_text("smtp:\n  host: mail.example\n  port: 2525\n  security: starttls\n")
    assert main(["--config-dir", str(cfg_dir), "config", "check"]) == 0
    assert "alerts e-mail: mail.example:2525 (starttls)" in capsys.readouterr().out
    (cfg_dir / "alerts.yaml").write_text("smtp:\n  host: mail.example\n  port: 99999\n")
    assert main(["--config-dir", str(cfg_dir), "config", "check"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "alerts.yaml: smtp.port:" in err[0], err


def test_running_mode_option_wins_over_env(cfg_dir, capsys):
    assert main(["--config-dir", str(cfg_dir), "--running-mode", "dev", "config", "check", "--json"]) == 0
    assert '"running_mode": "dev"' in capsys.readouterr().out


def test_keycloak_mode_requires_an_issuer(cfg_dir):
    (cfg_dir / ".env").write_text("NMDOSE_AUTH_MODE=keycloak\n")
    with pytest.raises(ConfigError, match=r"nmdose_accounts\.yaml: keycloak\.issuer: missing"):
        load(cfg_dir)
    edit(cfg_dir / "nmdose_accounts.yaml", lambda d: d["keycloak"].update(issuer="https://kc/realms/nmdose"))
    assert load(cfg_dir).auth_mode == "keycloak"


def test_role_map_to_unknown_role_is_an_error(cfg_dir):
    edit(cfg_dir / "nmdose_accounts.yaml", lambda d: d["keycloak"]["role_map"].update({"x": "wizard"}))
    with pytest.raises(ConfigError, match=r"keycloak\.role_map\.x: expected one of"):
        load(cfg_dir)
