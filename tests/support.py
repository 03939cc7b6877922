"""Test helpers: configuration folders on free ports in temporary directories, and the local stack."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from nmdose.config import Config, load_config
from nmdose.stack import Stack, free_port

REPO = Path(__file__).resolve().parents[1]


def make_tempdir(prefix: str = "nmdose-test-") -> Path:
    """A temporary folder the `postgres` system user can traverse (pytest's tmp_path is 0700)."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    os.chmod(path, 0o755)
    return path


def make_config_dir(
    root: Path,
    *,
    nodes: dict[str, dict[str, Any]] | None = None,
    retrieve: dict[str, Any] | None = None,
    env: dict[str, str] | None = None,
    keycloak: dict[str, Any] | None = None,
    free_ports: bool = True,
) -> Path:
    """Copy config/*.yaml into root/config with every local port moved to a free one (``keycloak`` updates the
    accounts file's keycloak section)."""
    cfg_dir = root / "config"
    cfg_dir.mkdir(parents=True, exist_ok=True)
    for f in (REPO / "config").glob("*.yaml"):
        shutil.copy(f, cfg_dir / f.name)
    net = yaml.safe_load((cfg_dir / "dicom_network_entities.yaml").read_text())
    if "pseudoPACS" not in (nodes or {}):  # an Orthanc more per stack: only where a test asks for it
        net["nodes"].pop("pseudoPACS", None)
    for name, node in net["nodes"].items():
        if free_ports and node.get("local"):
            node["port"] = free_port()
            node["http_port"] = free_port()
        node.update((nodes or {}).get(name, {}))
    (cfg_dir / "dicom_network_entities.yaml").write_text(yaml.safe_dump(net, sort_keys=False))
    pg = yaml.safe_load((cfg_dir / "postgresql.yaml").read_text())
    if free_ports:
        pg["port"] = free_port()
    (cfg_dir / "postgresql.yaml").write_text(yaml.safe_dump(pg, sort_keys=False))
    if retrieve:
        ret = yaml.safe_load((cfg_dir / "retrieve_options.yaml").read_text())
        ret.update(retrieve)
        (cfg_dir / "retrieve_options.yaml").write_text(
            yaml.safe_dump(ret, sort_keys=False, allow_unicode=True)
        )
    if keycloak:
        acc = yaml.safe_load((cfg_dir / "nmdose_accounts.yaml").read_text())
        acc["keycloak"].update(keycloak)
        (cfg_dir / "nmdose_accounts.yaml").write_text(yaml.safe_dump(acc, sort_keys=False))
    sch = yaml.safe_load((cfg_dir / "schema_definitions.yaml").read_text())
    sch["migrations_dir"] = str(REPO / "sql")
    (cfg_dir / "schema_definitions.yaml").write_text(yaml.safe_dump(sch, sort_keys=False))
    lines = {
        "ENABLE_SIMULATION": "1",
        "NMDOSE_RUNNING_MODE": "test",
        "NMDOSE_AUTH_MODE": "dev",
        "NMDOSE_SECRETS_BACKEND": "env",
        **(env or {}),
    }
    (cfg_dir / ".env").write_text("".join(f"{k}={v}\n" for k, v in lines.items()))
    return cfg_dir


def make_prod_config_dir(root: Path, *, env: dict[str, str] | None = None, **kw) -> Path:
    """A configuration `--running-mode prod` accepts: keycloak over https, Vault over https, no simulation,
    DICOM TLS wherever traffic leaves the machine. Tests loosen one thing at a time to see each refusal."""
    nodes = kw.pop("nodes", {})
    for name in ("clinicalPACS", "researchPACS", "dosePACS"):  # the dose PACS: the selective transfer
        nodes.setdefault(name, {}).setdefault("tls", True)
    cfg_dir = make_config_dir(
        root,
        free_ports=False,
        nodes=nodes,
        keycloak={
            "issuer": "https://keycloak.hospital.example/realms/nmdose",
            "audience": "nmdose-api",
            **kw.pop("keycloak", {}),
        },
        env={
            "NMDOSE_RUNNING_MODE": "prod",
            "NMDOSE_AUTH_MODE": "keycloak",
            "ENABLE_SIMULATION": "0",
            "NMDOSE_SECRETS_BACKEND": "vault",
            "VAULT_ADDR": "https://vault.hospital.example:8200",
            "VAULT_TOKEN": "test-token-not-a-secret",
            **(env or {}),
        },
        **kw,
    )
    return cfg_dir


@contextlib.contextmanager
def scratch_database(cfg: Config, prefix: str) -> Iterator[Config]:
    """A freshly migrated database of its own on the stack's PostgreSQL (dropped afterwards): the
    configuration pointing at it."""
    from nmdose.db import connect
    from nmdose.db.migrate import migrate

    name = f"{prefix}_{int(time.time() * 1000)}"
    with contextlib.closing(connect(cfg, "postgres", autocommit=True)) as admin, admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    scratch = dataclasses.replace(cfg, postgresql=cfg.postgresql.model_copy(update={"database": name}))
    try:
        with contextlib.closing(connect(scratch)) as conn:
            migrate(conn, REPO / "sql")
        yield scratch
    finally:
        with contextlib.closing(connect(cfg, "postgres", autocommit=True)) as admin, admin.cursor() as cur:
            cur.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def load(cfg_dir: Path) -> Config:
    """Load a test configuration, ignoring the developer's own environment variables."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("NMDOSE_", "VAULT_", "ENABLE_"))}
    return load_config(cfg_dir, var_dir=cfg_dir.parent / "var", environ=environ)


class RunningStack:
    """A started local stack in a temporary folder; `close()` stops it and removes the folder."""

    def __init__(self, *, research_plugin: bool = True, tls: bool = False, **config_kw):
        """``tls``: every node with ``tls: true`` and a local CA made by ``nmdose certs init`` first."""
        self.root = make_tempdir()
        if tls:
            nodes = config_kw.setdefault("nodes", {})
            for name in ("simulationPACS", "researchPACS", "dosePACS"):
                nodes.setdefault(name, {})["tls"] = True
        self.config_dir = make_config_dir(self.root, **config_kw)
        self.cfg = load(self.config_dir)
        self.stack = Stack(self.cfg, research_plugin=research_plugin)
        try:
            if tls:
                from nmdose.security.certs import init

                init(self.cfg)
            self.stack.up()
        except BaseException:
            self.close()
            raise

    def cli_args(self) -> list[str]:
        return ["--config-dir", str(self.config_dir), "--var-dir", str(self.cfg.var_dir)]

    def close(self, keep: bool = False) -> None:
        try:
            self.stack.down()
        finally:
            if not keep:
                shutil.rmtree(self.root, ignore_errors=True)


def wait_for(predicate, timeout_s: float = 20.0, step_s: float = 0.1):
    """Poll `predicate` until it returns something true (returned) or `timeout_s` passes (its last answer)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step_s)
    return predicate()


def query(cfg: Config, sql: str, params: tuple = ()) -> list[tuple]:
    """The rows of one statement, on a connection of its own."""
    from nmdose.db import connect

    with contextlib.closing(connect(cfg)) as conn, conn.cursor() as cur:
        cur.execute(sql, params)
        return cur.fetchall()


def pet_ct_dose_study(
    folder: Path,
    *,
    events: int = 2,
    description: str = "PET-CT WB nmdose-test",
    dose_check=None,
    **study_fields,
):
    """A synthetic PET-CT study's dose objects in `folder`: CT RDSR (`events` events, each but the first with
    `dose_check`, a TID 10015 DoseCheck), radiopharmaceutical RDSR, one PET image header; `study_fields` for
    DoseStudyInfo (patient_id, patient_name, study_date…). Returns (DoseStudyInfo, [ct.dcm, rrdsr.dcm, pet.dcm])."""
    import datetime as dt

    from pydicom.uid import generate_uid

    from nmdose.simulate import rdsr as R

    folder.mkdir(parents=True, exist_ok=True)
    study = R.DoseStudyInfo(study_instance_uid=generate_uid(), study_description=description, **study_fields)
    ct_events = [
        R.CtAcquisition(
            acquisition_protocol=f"WB {i}", dlp_mgycm=100.0 + i, dose_check=dose_check if i else None
        )
        for i in range(events)
    ]
    admin = R.RadiopharmaceuticalAdministration(start_datetime=dt.datetime(2024, 3, 15, 9, 0))
    files = [
        R.save(R.ct_radiation_dose_sr(study, ct_events, series_uid=generate_uid(), sop_uid=generate_uid()),
               folder / "ct.dcm"),
        R.save(R.radiopharmaceutical_dose_sr(study, admin, series_uid=generate_uid(), sop_uid=generate_uid()),
               folder / "rrdsr.dcm"),
        R.save(R.pet_nm_image_header(study, admin, modality="PT", series_uid=generate_uid(), sop_uid=generate_uid()),
               folder / "pet.dcm"),
    ]  # fmt: skip
    return study, files
