"""`--running-mode prod` refuses an open or plaintext setup with one line naming the file, the key and what is
expected; test mode lists the same findings as warnings. Each refusal starts from a configuration prod accepts
(tests.support.make_prod_config_dir) and loosens one thing."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from nmdose.cli import main
from nmdose.errors import ConfigError
from nmdose.security import profile
from nmdose.security.policy import is_loopback
from tests.support import load, make_config_dir, make_prod_config_dir

NET = "dicom_network_entities.yaml"


def edit_yaml(path: Path, fn) -> None:
    data = yaml.safe_load(path.read_text())
    fn(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def refusal(cfg_dir: Path) -> str:
    with pytest.raises(ConfigError) as exc:
        load(cfg_dir)
    line = str(exc.value)
    assert "\n" not in line
    return line


def test_the_prod_baseline_is_accepted(tmp_path):
    cfg = load(make_prod_config_dir(tmp_path))
    assert cfg.running_mode == "prod" and cfg.warnings == []
    assert cfg.source_node.name == "clinicalPACS"


def test_a_clinical_pacs_over_the_network_without_tls_is_refused(tmp_path):
    line = refusal(make_prod_config_dir(tmp_path, nodes={"clinicalPACS": {"tls": False}}))
    assert f"{NET}: nodes.clinicalPACS.tls: expected true" in line
    assert "172.17.111.214 is reached over the network" in line and "got False" in line


def test_the_research_pacs_must_speak_tls_when_a_remote_pacs_connects_to_it(tmp_path):
    line = refusal(make_prod_config_dir(tmp_path, nodes={"researchPACS": {"tls": False}}))
    assert f"{NET}: nodes.researchPACS.tls: expected true" in line
    assert "clinicalPACS at 172.17.111.214 connects to it" in line


def test_a_site_peer_from_another_host_needs_tls_on_the_node_it_calls(tmp_path):
    grant = {"aet": "CT_SCANNER1", "host": "10.20.30.40", "services": ["store"]}
    transfer = {"strategy": "full", "selective_destination": "researchPACS"}  # only the site peer reaches it
    cfg_dir = make_prod_config_dir(tmp_path, nodes={"dosePACS": {"tls": False, "allow": [grant]}},
                                   retrieve={"transfer": transfer})  # fmt: skip
    line = refusal(cfg_dir)
    assert f"{NET}: nodes.dosePACS.tls: expected true (allow.0 CT_SCANNER1 connects from 10.20.30.40)" in line


@pytest.mark.parametrize(
    "key, value",
    [
        ("DicomAlwaysAllowStore", True),
        ("DicomAlwaysAllowFind", True),
        ("DicomAlwaysAllowMove", True),
        ("DicomAlwaysAllowGet", True),
        ("DicomCheckCalledAet", False),
        ("DicomCheckModalityHost", False),
        ("DicomModalitiesInDatabase", True),
    ],
)
def test_orthanc_settings_that_loosen_the_profile_are_refused(tmp_path, key, value):
    line = refusal(make_prod_config_dir(tmp_path, nodes={"researchPACS": {"orthanc_settings": {key: value}}}))
    assert f"{NET}: nodes.researchPACS.orthanc_settings.{key}: expected {str(not value).lower()}" in line
    assert f"got {value!r}" in line


def test_echo_may_stay_open_and_harmless_overrides_pass(tmp_path):
    settings = {"DicomAlwaysAllowEcho": True, "StableAge": 60}
    assert load(make_prod_config_dir(tmp_path, nodes={"researchPACS": {"orthanc_settings": settings}}))


def test_a_peer_list_of_its_own_is_refused(tmp_path):
    settings = {"DicomModalities": {"x": ["X", "10.0.0.1", 104]}}
    line = refusal(make_prod_config_dir(tmp_path, nodes={"dosePACS": {"orthanc_settings": settings}}))
    assert "nodes.dosePACS.orthanc_settings.DicomModalities: expected no override" in line


def test_tls_without_peer_certificates_is_refused(tmp_path):
    cfg_dir = make_prod_config_dir(tmp_path)
    edit_yaml(cfg_dir / NET, lambda d: d.update(tls={"remote_certificate_required": False}))
    assert f"{NET}: tls.remote_certificate_required: expected true" in refusal(cfg_dir)


def test_simulation_is_refused_in_prod(tmp_path):
    line = refusal(make_prod_config_dir(tmp_path, env={"ENABLE_SIMULATION": "1"}))
    assert ".env: ENABLE_SIMULATION: expected 0" in line and "got '1'" in line


@pytest.mark.parametrize("key", ["issuer", "jwks_url"])
def test_plain_http_keycloak_urls_are_refused(tmp_path, key):
    url = "http://keycloak.hospital.example/realms/nmdose"
    line = refusal(make_prod_config_dir(tmp_path, keycloak={key: url}))
    assert f"nmdose_accounts.yaml: keycloak.{key}: expected an https:// URL" in line and url in line


def test_plain_http_vault_is_refused(tmp_path):
    line = refusal(make_prod_config_dir(tmp_path, env={"VAULT_ADDR": "http://127.0.0.1:8200"}))
    assert (
        ".env: VAULT_ADDR: expected an https:// URL in prod running mode, got 'http://127.0.0.1:8200'" in line
    )


def test_several_findings_give_one_line_that_counts_the_rest(tmp_path):
    cfg_dir = make_prod_config_dir(
        tmp_path, nodes={"clinicalPACS": {"tls": False}}, env={"VAULT_ADDR": "http://v:8200"}
    )
    line = refusal(cfg_dir)
    assert "(and 1 more: `nmdose --running-mode test config check` lists them)" in line


def test_test_mode_warns_where_prod_refuses(tmp_path, caplog):
    cfg_dir = make_prod_config_dir(tmp_path, nodes={"clinicalPACS": {"tls": False}},
                                   env={"NMDOSE_RUNNING_MODE": "test"})  # fmt: skip
    cfg = load(cfg_dir)
    assert [w for w in cfg.warnings if "nodes.clinicalPACS.tls: prod running mode expects true" in w]
    assert any("nodes.clinicalPACS.tls" in r.getMessage() for r in caplog.records if r.levelname == "WARNING")


def test_config_check_lists_the_findings(tmp_path, capsys):
    cfg_dir = make_config_dir(tmp_path, free_ports=False)
    assert main(["--config-dir", str(cfg_dir), "security", "profile"]) == 0
    out = capsys.readouterr().out
    assert "warning:" in out and "ENABLE_SIMULATION: prod running mode expects 0" in out


def test_the_profile_gives_each_peer_only_what_the_pipeline_needs(tmp_path):
    cfg = load(make_config_dir(tmp_path, free_ports=False))
    services = {(r["node"], r["peer"]): r["services"] for r in profile.table(cfg)}
    assert services == {
        ("simulationPACS", "researchPACS"): "C-FIND, C-MOVE",
        ("simulationPACS", "nmdose"): "C-FIND, C-MOVE, C-STORE",
        ("researchPACS", "simulationPACS"): "C-STORE",
        ("researchPACS", "dosePACS"): "none (C-ECHO only)",
        ("dosePACS", "researchPACS"): "C-FIND, C-STORE",
        ("simulationPACS", "dosePACS"): "none (C-ECHO only)",  # the selective transfer's C-MOVE destination
        ("dosePACS", "simulationPACS"): "C-STORE",
    }


def test_selective_transfer_lets_the_source_store_into_the_dose_pacs(tmp_path):
    transfer = {"strategy": "selective", "selective_destination": "dosePACS"}
    cfg = load(make_config_dir(tmp_path, free_ports=False, retrieve={"transfer": transfer}))
    assert profile.store_senders(cfg, "dosePACS") == {"ORTHANC": {"127.0.0.1"}, "NMFULLDATA": {"127.0.0.1"}}
    dest = profile.orthanc_modalities(cfg, "simulationPACS")["dosePACS"]
    assert not any(
        dest[k] for k in ("AllowFind", "AllowMove", "AllowStore", "AllowGet")
    )  # a destination only


def _enable_import(cfg_dir: Path, **values) -> None:
    settings = yaml.safe_load((Path(__file__).resolve().parents[2] / "config" / "import.yaml").read_text())
    settings.update({"enabled": True, **values})
    (cfg_dir / "import.yaml").write_text(yaml.safe_dump(settings))


def test_the_research_pacs_admits_the_importer_only_when_it_is_enabled(tmp_path):
    cfg_dir = make_config_dir(tmp_path, free_ports=False)
    cfg = load(cfg_dir)
    assert cfg.imports.aet == "NMDOSE_IMPORT"
    assert not any(p.name == profile.IMPORT_NAME for n in cfg.active_nodes() for p in profile.peers(cfg, n))
    assert "NMDOSE_IMPORT" not in profile.store_senders(cfg, "researchPACS")

    _enable_import(cfg_dir)
    cfg = load(cfg_dir)
    [peer] = [p for p in profile.peers(cfg, "researchPACS") if p.name == profile.IMPORT_NAME]
    assert (peer.aet, peer.host, peer.services, peer.port) == (
        "NMDOSE_IMPORT",
        cfg.local_host,
        ("store",),
        None,
    )
    assert peer.why == "watch-folder import: C-STOREs dropped folders"
    # the plugin's C-STORE filter takes its dose candidates (a CD may hold RDSRs): it is a store sender
    assert profile.store_senders(cfg, "researchPACS")["NMDOSE_IMPORT"] == {cfg.local_host}
    entry = profile.orthanc_modalities(cfg, "researchPACS")[profile.IMPORT_NAME]
    assert entry["AET"] == "NMDOSE_IMPORT" and entry["AllowStore"]
    assert not any(entry[k] for k in ("AllowFind", "AllowMove", "AllowGet"))
    for other in ("simulationPACS", "dosePACS"):  # nowhere else
        assert "NMDOSE_IMPORT" not in {p.aet for p in profile.peers(cfg, other)}

    _enable_import(cfg_dir, aet="CD_IMPORT", host="10.1.2.3")
    cfg = load(cfg_dir)
    assert profile.store_senders(cfg, "researchPACS")["CD_IMPORT"] == {"10.1.2.3"}

    _enable_import(cfg_dir, aet="A\\B")
    with pytest.raises(ConfigError, match=r"import.yaml: aet"):
        load(cfg_dir)


def test_docs_security_lists_the_importer_row(tmp_path):
    cfg_dir = make_config_dir(tmp_path, free_ports=False)
    _enable_import(cfg_dir)
    cfg = load(cfg_dir)
    [row] = [r for r in profile.table(cfg) if r["peer"] == profile.IMPORT_NAME]
    line = (f"| {row['node']} | {row['peer']} ({row['aet']} @ {row['host']}) | {row['services']} | {row['tls']} "
            f"| {row['where']} | {row['why']} |")  # fmt: skip
    docs = (Path(__file__).resolve().parents[2] / "docs" / "security.md").read_text()
    assert line in docs, f"docs/security.md: add the importer's row {line}"


def test_docs_table_matches_the_profile(tmp_path, capsys):
    cfg_dir = make_config_dir(tmp_path, free_ports=False)
    assert main(["--config-dir", str(cfg_dir), "security", "profile", "--markdown"]) == 0
    table = capsys.readouterr().out.strip()
    docs = (Path(__file__).resolve().parents[2] / "docs" / "security.md").read_text()
    assert table in docs, "docs/security.md: paste `nmdose security profile --markdown` into it"


@pytest.mark.parametrize(
    "host, loop",
    [
        ("127.0.0.1", True),
        ("127.5.5.5", True),
        ("::1", True),
        ("localhost", True),
        ("172.17.111.214", False),
        ("pacs.hospital", False),
    ],  # fmt: skip
)
def test_loopback_is_recognised(host, loop):
    assert is_loopback(host) is loop


def test_the_selective_transfer_over_the_network_needs_tls_on_the_dose_pacs(tmp_path):
    line = refusal(make_prod_config_dir(tmp_path, nodes={"dosePACS": {"tls": False}}))
    assert "nodes.dosePACS.tls: expected true (clinicalPACS at 172.17.111.214 connects to it" in line
    assert "selective_destination: researchPACS avoids it" in line
    transfer = {"strategy": "full", "selective_destination": "researchPACS"}
    assert load(
        make_prod_config_dir(
            tmp_path / "r", nodes={"dosePACS": {"tls": False}}, retrieve={"transfer": transfer}
        )
    )


def test_remote_http_access_without_authentication_is_a_finding(tmp_path):
    cfg_dir = make_config_dir(tmp_path, free_ports=False,
                              nodes={"researchPACS": {"orthanc_settings": {"RemoteAccessAllowed": True}}})  # fmt: skip
    cfg = load(cfg_dir)
    assert [
        w
        for w in cfg.warnings
        if "orthanc_settings.RemoteAccessAllowed: prod running mode expects false" in w
    ]
