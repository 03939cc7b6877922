"""One typed configuration object, built once from the YAML files, `.env` and the secret store.

Every file is validated at load: an unknown key, a missing node, a bad port or an AE title longer than 16
characters fails with a :class:`ConfigError` naming the file, the key and what was expected.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from nmdose.envfile import read_env_file
from nmdose.errors import ConfigError

REQUIRED_NODES = ("clinicalPACS", "simulationPACS", "researchPACS", "dosePACS")
RunningMode = Literal["dev", "test", "prod"]
AuthMode = Literal["dev", "keycloak"]
# PS3.5 6.2: AE titles are up to 16 characters of the default repertoire, no backslash or control characters.
_AET_RE = re.compile(r"^[\x20-\x5b\x5d-\x7e]{1,16}$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


DICOM_SERVICES = ("find", "move", "get", "store")


class PeerGrant(_Strict):
    """A peer outside the pipeline that a node we run admits (e.g. a scanner sending RDSRs to the dose PACS):
    its AE title, the host it connects from, and the DIMSE services it may use (C-ECHO is open to all)."""

    aet: str
    host: str
    services: list[Literal["find", "move", "get", "store"]] = Field(min_length=1)
    port: int | None = Field(default=None, ge=1, le=65535)  # only needed as a C-MOVE destination
    tls: bool = False

    @field_validator("aet")
    @classmethod
    def _aet(cls, value: str) -> str:
        return Node._aet(value)


class Node(_Strict):
    """A DICOM node: AE title, address, optional Orthanc REST port."""

    name: str = ""
    aet: str
    host: str
    port: int = Field(ge=1, le=65535)
    http_port: int | None = Field(default=None, ge=1, le=65535)
    tls: bool = False
    find_limit: int | None = Field(default=None, ge=1)
    timeout_s: float = Field(default=30, gt=0, le=3600)
    # Retrieval: the most associations nmdose opens to this node at once (C-MOVE and the verification's C-FIND),
    # when the PACS allows fewer than retrieve_options.yaml's `concurrency`; null: `concurrency`.
    max_associations: int | None = Field(default=None, ge=1, le=64)
    local: bool = False
    # Census: "filter" (default) queries without ModalitiesInStudy and filters in nmdose, which never loses a
    # study; "check" tries the PACS's own ModalitiesInStudy matching on one range and uses it when it agrees
    # (fewer answers on a mixed PACS). Orthanc 1.10 with LimitFindResults drops studies under that matching
    # without any error, so "check" is only for PACSs known to match correctly.
    modality_matching: Literal["filter", "check"] = "filter"
    # Retrieval from this node waits for retrieve_options.yaml's time_window (protects a clinical PACS).
    use_time_window: bool = True
    # Extra Orthanc settings for a local node, merged last into its generated configuration
    # (e.g. {"StableAge": 60, "ConcurrentJobs": 4}).
    orthanc_settings: dict[str, Any] = {}
    # Peers beyond the pipeline's own that this node (when we run it) admits; see docs/security.md.
    allow: list[PeerGrant] = []

    @field_validator("aet")
    @classmethod
    def _aet(cls, value: str) -> str:
        if not _AET_RE.match(value) or value.strip() != value or not value.strip():
            raise ValueError(
                "an AE title of 1-16 printable characters, no backslash, no leading/trailing spaces"
            )
        return value

    @property
    def http_url(self) -> str | None:
        return f"http://{self.host}:{self.http_port}" if self.http_port else None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


class TlsIdentity(_Strict):
    """Where one identity's certificate and private key are (PEM). The key may instead come from the secret
    store (`private_key_secret`: the name of a secret holding the PEM), written 0600 under var/run at start."""

    certificate: str | None = None
    private_key: str | None = None
    private_key_secret: str | None = None


class TlsSettings(_Strict):
    """DICOM TLS (nodes with `tls: true`). Paths are absolute or relative to the configuration folder."""

    ca_certificates: str | None = None  # PEM bundle of the CAs peers' certificates must chain to
    certificates_dir: str | None = None  # <identity>.crt / <identity>.key (default: <var>/tls)
    remote_certificate_required: bool = True  # peers must present a certificate from a trusted CA
    identities: dict[str, TlsIdentity] = {}  # per node name, and "nmdose" for our own DCMTK tools


class NetworkFile(_Strict):
    local_aet: str = "NMDOSE_SCU"
    local_host: str = "127.0.0.1"  # the address nmdose's own DICOM tools connect from
    tls: TlsSettings = TlsSettings()
    nodes: dict[str, Node]

    @field_validator("local_aet")
    @classmethod
    def _local_aet(cls, value: str) -> str:
        return Node._aet(value)


class ModalityRule(_Strict):
    pattern: str
    modalities: list[str]

    @field_validator("pattern")
    @classmethod
    def _regex(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"a valid regular expression ({exc})") from None
        return value


class TimeWindow(_Strict):
    weekdays: str = "00:00-24:00"
    weekends: str = "00:00-24:00"

    @field_validator("weekdays", "weekends")
    @classmethod
    def _window(cls, value: str) -> str:
        m = re.fullmatch(r"(\d\d):(\d\d)-(\d\d):(\d\d)", value)
        if not m or int(m[1]) > 24 or int(m[3]) > 24 or int(m[2]) > 59 or int(m[4]) > 59:
            raise ValueError("a window 'HH:MM-HH:MM' (e.g. '19:00-07:00')")
        if (m[1], m[2]) == (m[3], m[4]):
            raise ValueError("a window that opens (start and end differ; '00:00-24:00' for all day)")
        return value


class Retry(_Strict):
    max_attempts: int = Field(default=5, ge=1, le=100)
    backoff_s: float = Field(default=30, ge=0)
    backoff_max_s: float = Field(default=3600, ge=0)


class Transfer(_Strict):
    strategy: Literal["full", "selective", "auto_delete"] = "full"
    retention_days: int = Field(default=30, ge=0)
    selective_destination: Literal["dosePACS", "researchPACS"] = "dosePACS"


class Forward(_Strict):
    only_retrieved: bool = True


class RetrieveOptions(_Strict):
    target_modalities: list[str]
    target_descriptions: list[str] = []
    modality_rules: list[ModalityRule] = []
    date_from: str | None = None
    date_to: str | None = None
    concurrency: int = Field(default=2, ge=1, le=32)
    time_window: TimeWindow = TimeWindow()
    retry: Retry = Retry()
    backend: Literal["orthanc", "dcmtk"] = "orthanc"
    transfer: Transfer = Transfer()
    forward: Forward = Forward()

    @field_validator("target_modalities")
    @classmethod
    def _modalities(cls, value: list[str]) -> list[str]:
        for m in value:
            if not re.fullmatch(r"[A-Z]{2,4}", m):
                raise ValueError(f"DICOM modality codes such as PT, NM, CT (got {m!r})")
        if not value:
            raise ValueError("at least one modality")
        return value

    @field_validator("date_from", "date_to")
    @classmethod
    def _date(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"\d{4}-?\d{2}-?\d{2}", str(value)):
            raise ValueError("a date YYYY-MM-DD or YYYYMMDD")
        return None if value is None else str(value).replace("-", "")


class PostgresSettings(_Strict):
    """config/postgresql.yaml. Least privilege (docs/architecture.md, "Database roles"): `user` is the bootstrap
    superuser (the local stack's initdb) that only creates roles and databases; migrations run as `owner_user`,
    the pipeline as `worker_user`, the pages as `web_user`, Orthanc's index as `orthanc_user`; none of them is a
    superuser. Each role's password is its own secret (`ROLE_SECRETS`)."""

    # role -> the secret holding its password (Vault in prod; generated into var/secrets.env locally)
    ROLE_SECRETS: ClassVar[dict[str, str]] = {
        "admin": "NMDOSE_DB_PASSWORD",
        "owner": "NMDOSE_DB_OWNER_PASSWORD",
        "worker": "NMDOSE_DB_WORKER_PASSWORD",
        "web": "NMDOSE_DB_WEB_PASSWORD",
        "orthanc": "NMDOSE_ORTHANC_DB_PASSWORD",
    }

    host: str = "127.0.0.1"
    port: int = Field(default=5433, ge=1, le=65535)
    database: str = "nmdose"
    orthanc_database: str = "orthanc_index"
    user: str = "nmdose"
    owner_user: str = "nmdose_owner"
    worker_user: str = "nmdose_worker"
    web_user: str = "nmdose_web"
    orthanc_user: str = "nmdose_orthanc"
    local: bool = True
    connect_timeout_s: float = Field(default=5, gt=0)
    # libpq sslmode / sslrootcert; prod requires verify-full when host is not loopback (nmdose.security.policy)
    sslmode: Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"] | None = None
    sslrootcert: str | None = None

    @field_validator("user", "owner_user", "worker_user", "web_user", "orthanc_user")
    @classmethod
    def _role_name(cls, value: str) -> str:
        if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", value):
            raise ValueError("a PostgreSQL role name: lower-case letters, digits and _, at most 63")
        return value

    def role_user(self, role: str) -> str:
        """The PostgreSQL role name of `role` (admin | owner | worker | web | orthanc)."""
        if role not in self.ROLE_SECRETS:
            raise ValueError(
                f"unknown database role {role!r}: expected one of {', '.join(self.ROLE_SECRETS)}"
            )
        return self.user if role == "admin" else getattr(self, f"{role}_user")


class Role(_Strict):
    permissions: list[str]


class Account(_Strict):
    username: str
    display_name: str = ""
    roles: list[str]


class KeycloakSettings(_Strict):
    issuer: str | None = None  # e.g. https://keycloak.hospital/realms/nmdose
    jwks_url: str | None = None  # default: {issuer}/protocol/openid-connect/certs
    audience: str | None = None  # checked against `aud` when set; required in prod running mode
    client_id: str = "nmdose"  # a token's `azp` must be client_id or web_client_id (null: the default)
    web_client_id: str = "nmdose-web"  # public client of the pages' browser login (Authorization Code + PKCE)
    scope: str = "openid"
    roles_claim: str = "realm_access.roles"
    role_map: dict[str, str] = {}
    # The token's group paths (Keycloak's group membership mapper; research projects: `/projects/<name>`).
    groups_claim: str = "groups"
    leeway_s: int = Field(default=30, ge=0, le=600)
    # The realm's key set is re-fetched this often: a key removed from the realm is refused within it.
    jwks_refresh_s: int = Field(default=300, ge=1, le=86400)

    @field_validator("client_id", mode="before")
    @classmethod
    def _default_client_id(cls, value: Any) -> Any:
        """`client_id: null` (older files) means the default, never "any client of the realm"."""
        return "nmdose" if value is None else value

    @field_validator("web_client_id", mode="before")
    @classmethod
    def _default_web_client_id(cls, value: Any) -> Any:
        return "nmdose-web" if value is None else value


class AccountsFile(_Strict):
    roles: dict[str, Role]
    accounts: list[Account] = []
    keycloak: KeycloakSettings = KeycloakSettings()


class SchemaDefinitions(_Strict):
    migrations_dir: str = "sql"
    schemas: dict[str, str]


class LevelMatch(_Strict):
    """What a reference level applies to: regular expressions matched case-insensitively anywhere in the value
    (PostgreSQL `~*`). Within a list any pattern may match; every list given must match."""

    protocols: list[str] = []  # CT acquisition protocol (TID 10013)
    descriptions: list[str] = []  # StudyDescription
    target_regions: list[str] = []  # CT target region (meaning, e.g. "Chest")
    agents: list[str] = []  # radiopharmaceutical agent (meaning, e.g. "Fluorodeoxyglucose F^18^")
    # the standard name of the study / event / administration (docs/standard_names.md), e.g. "^CT Chest$"
    standard_names: list[str] = []

    @field_validator("protocols", "descriptions", "target_regions", "agents", "standard_names")
    @classmethod
    def _patterns(cls, value: list[str]) -> list[str]:
        for pattern in value:
            if not pattern.strip():
                raise ValueError("non-empty regular expressions")
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"valid regular expressions ({exc} in {pattern!r})") from None
        return value


class AgeBand(_Strict):
    """Patient age in years: min inclusive, max exclusive."""

    min_years: float | None = Field(default=None, ge=0, le=150)
    max_years: float | None = Field(default=None, gt=0, le=150)


LEVEL_QUANTITIES = {
    "ctdivol_mgy": "mGy",
    "dlp_mgycm": "mGy·cm",
    "activity_mbq": "MBq",
    "activity_mbq_per_kg": "MBq/kg",
}


class ReferenceLevel(_Strict):
    """One diagnostic reference level (or a proposed or example one, as `status` says)."""

    name: str = Field(min_length=1, max_length=160)
    modality: Literal["CT", "NM", "PT"]
    match: LevelMatch
    quantity: Literal["ctdivol_mgy", "dlp_mgycm", "activity_mbq", "activity_mbq_per_kg"]
    # What one value is: a CT irradiation event, a whole CT examination (the study's total DLP), or an
    # administration. Default: event for CTDIvol, study for DLP (DRLs give DLP per complete examination).
    per: Literal["event", "study", "administration"] | None = Field(default=None, validate_default=True)
    value: float = Field(gt=0)
    source: str = Field(min_length=3)
    year: int = Field(ge=1990, le=2100)
    status: Literal["official", "proposed", "example"]
    age_band: AgeBand | None = None

    @field_validator("match")
    @classmethod
    def _match(cls, m: LevelMatch, info) -> LevelMatch:
        if not (m.protocols or m.descriptions or m.target_regions or m.agents or m.standard_names):
            raise ValueError(
                "at least one of protocols, descriptions, target_regions, agents, standard_names"
            )
        ct = info.data.get("modality") == "CT"
        if ct and m.agents:
            raise ValueError("no agents for a CT level (agents are for NM and PT levels)")
        if not ct and (m.protocols or m.target_regions):
            raise ValueError("no protocols or target_regions for an NM or PT level (they are CT fields)")
        return m

    @field_validator("quantity")
    @classmethod
    def _quantity(cls, value: str, info) -> str:
        modality = info.data.get("modality")
        allowed = (
            ("ctdivol_mgy", "dlp_mgycm") if modality == "CT" else ("activity_mbq", "activity_mbq_per_kg")
        )
        if modality and value not in allowed:
            raise ValueError(f"{' or '.join(allowed)} for modality {modality}")
        return value

    @field_validator("per")
    @classmethod
    def _per(cls, value: str | None, info) -> str | None:
        quantity = info.data.get("quantity")
        if quantity is None:
            return value
        if quantity in ("activity_mbq", "activity_mbq_per_kg"):
            allowed, default = ("administration",), "administration"
        elif quantity == "dlp_mgycm":
            allowed, default = ("study", "event"), "study"
        else:
            allowed, default = ("event",), "event"
        if value is None:
            return default
        if value not in allowed:
            raise ValueError(f"{' or '.join(allowed)} for quantity {quantity}")
        return value

    @field_validator("age_band")
    @classmethod
    def _age_band(cls, a: AgeBand | None) -> AgeBand | None:
        if a and a.min_years is not None and a.max_years is not None and a.min_years >= a.max_years:
            raise ValueError("min_years below max_years")
        return a

    @property
    def unit(self) -> str:
        return LEVEL_QUANTITIES[self.quantity]


class OutlierRules(_Strict):
    """How the dose page's outlier list flags one exam (web/sql_levels.py outliers): above `factor` × the reference
    level that applies (DRLs are for a facility's median, not for one patient), and above its group's 95th
    percentile only in groups of at least `p95_min_values` values."""

    factor: float = Field(default=2.0, ge=1, le=100)
    p95_min_values: int = Field(default=20, ge=3, le=1_000_000)


class ReferenceLevelsFile(_Strict):
    levels: list[ReferenceLevel] = []
    outliers: OutlierRules = OutlierRules()


class AuditSyslog(_Strict):
    """An IHE ATNA Audit Record Repository: every audit row also goes there as a DICOM Audit Message
    (PS3.15 A.5) in an RFC 5424 syslog message over TCP (RFC 6587 octet counting), TLS (RFC 5425) when `tls`."""

    host: str
    port: int = Field(default=6514, ge=1, le=65535)
    tls: bool = False
    ca_certificates: str | None = None  # PEM bundle the repository's certificate must chain to (tls)
    client_certificate: str | None = None  # our certificate and key when the repository asks for one (tls)
    client_private_key: str | None = None
    site_id: str | None = None  # AuditEnterpriseSiteID, e.g. the hospital's name
    app_name: str = "nmdose"
    timeout_s: float = Field(default=5, gt=0, le=120)


class AuditSettings(_Strict):
    """config/audit.yaml (optional): the audit trail of docs/audit.md."""

    retention_days: int = Field(default=1826, ge=730)  # 5 years; at least 2 years (Korean safety measures)
    purge_interval_h: float = Field(default=24, gt=0, le=24 * 31)
    max_study_uids: int = Field(default=1000, ge=0, le=100_000)  # per row; the total is kept beside them
    queue_max: int = Field(default=100_000, ge=100)  # web rows waiting for the writer thread
    syslog: AuditSyslog | None = None


DEFAULT_PATIENT_PATTERN = r"^#([0-9]+)-(.+)$"


class ImportSettings(_Strict):
    """config/import.yaml (optional): the watch-folder importer into the research PACS (docs/import.md).
    Folders: absolute, or relative to the var folder; null: <var>/import/{drop,archive,failed}."""

    enabled: bool = (
        False  # `stack up` starts `nmdose import watch` (unless watch: false); prod checks the folders
    )
    watch: bool = True
    drop_folder: str | None = None
    archive_folder: str | None = None
    failed_folder: str | None = None
    debounce_s: float = Field(default=180, ge=0, le=86400)
    # PatientID / PatientName from the folder name: group 1 and group 2; null or "" leaves the files unchanged.
    patient_pattern: str | None = DEFAULT_PATIENT_PATTERN
    workers: int = Field(default=1, ge=1, le=16)  # storescu associations to the research PACS at once
    # The importer's calling AE title: the research PACS admits it (C-STORE only) from `host` when `enabled`.
    aet: str = "NMDOSE_IMPORT"
    host: str | None = None  # the address the importer connects from; null: dicom_network_entities local_host

    @field_validator("aet")
    @classmethod
    def _aet(cls, value: str) -> str:
        return Node._aet(value)

    @field_validator("patient_pattern")
    @classmethod
    def _pattern(cls, value: str | None) -> str | None:
        if not value:
            return None
        try:
            compiled = re.compile(value)
        except re.error as exc:
            raise ValueError(f"a valid regular expression ({exc})") from None
        if compiled.groups < 2:
            raise ValueError("a regular expression with two groups: (PatientID) and (PatientName)")
        return value

    def folder(self, kind: Literal["drop", "archive", "failed"], var_dir: Path) -> Path:
        """The drop, archive or failed folder: as configured (relative: to the var folder), else <var>/import/<kind>."""
        value = getattr(self, f"{kind}_folder")
        path = Path(value) if value else Path("import") / kind
        return path if path.is_absolute() else var_dir / path


@dataclass(frozen=True)
class Config:
    """The effective configuration: files + .env + command-line modes."""

    config_dir: Path
    var_dir: Path
    running_mode: RunningMode
    auth_mode: AuthMode
    enable_simulation: bool
    local_aet: str
    nodes: dict[str, Node]
    retrieve: RetrieveOptions
    postgresql: PostgresSettings
    accounts: AccountsFile
    schemas: SchemaDefinitions
    reference_levels: ReferenceLevelsFile = field(default_factory=ReferenceLevelsFile)
    audit: AuditSettings = field(default_factory=AuditSettings)
    imports: ImportSettings = field(default_factory=ImportSettings)
    env: dict[str, str] = field(default_factory=dict, repr=False)
    local_host: str = "127.0.0.1"
    tls: TlsSettings = field(default_factory=TlsSettings)
    warnings: list[str] = field(default_factory=list)  # what prod would refuse, found in dev/test mode

    @property
    def source_node(self) -> Node:
        """The PACS studies are pulled from: the simulation PACS when ENABLE_SIMULATION=1."""
        return self.nodes["simulationPACS" if self.enable_simulation else "clinicalPACS"]

    @property
    def research_node(self) -> Node:
        return self.nodes["researchPACS"]

    @property
    def dose_node(self) -> Node:
        return self.nodes["dosePACS"]

    def active_nodes(self) -> dict[str, Node]:
        """The nodes in use in this mode (the clinical PACS is never contacted in simulation mode)."""
        skip = "clinicalPACS" if self.enable_simulation else "simulationPACS"
        return {name: node for name, node in self.nodes.items() if name != skip}

    @property
    def migrations_dir(self) -> Path:
        path = Path(self.schemas.migrations_dir)
        return path if path.is_absolute() else self.config_dir.parent / path

    @property
    def log_dir(self) -> Path:
        return self.var_dir / "log"

    @property
    def dose_spool(self) -> Path:
        """The dose spool the dose-PACS hooks write into and `nmdose dose worker` drains (nmdose.dose.spool):
        ``NMDOSE_DOSE_SPOOL`` from .env/environment, else ``<var>/spool/dose``."""
        configured = self.env.get("NMDOSE_DOSE_SPOOL")
        return Path(configured) if configured else self.var_dir / "spool" / "dose"

    @cached_property
    def secrets(self):
        """The secret store for this configuration (Vault or environment), see :mod:`nmdose.secrets`."""
        from nmdose.secrets import secret_store

        return secret_store(self)

    def dsn(self, database: str | None = None, password: str | None = None, *, role: str = "admin") -> str:
        """libpq connection string as `role` (admin: the bootstrap `user`; owner | worker | web | orthanc: see
        PostgresSettings); the password comes from that role's secret unless given."""
        pg = self.postgresql
        user = pg.role_user(role)
        if password is None:
            password = self.secrets.get(pg.ROLE_SECRETS[role])
        parts = {
            "host": pg.host,
            "port": str(pg.port),
            "dbname": database or pg.database,
            "user": user,
            "password": password,
            "connect_timeout": str(int(pg.connect_timeout_s)),
            "application_name": f"nmdose-{role}",
        }
        if pg.sslmode:
            parts["sslmode"] = pg.sslmode
        if pg.sslrootcert:
            parts["sslrootcert"] = pg.sslrootcert
        return " ".join(f"{k}={_libpq_quote(v)}" for k, v in parts.items())

    def as_dict(self, mask_secrets: bool = True) -> dict[str, Any]:
        """The effective configuration for `nmdose config check` (no secret values)."""
        env = {k: ("***" if _is_secret_name(k) and mask_secrets else v) for k, v in sorted(self.env.items())}
        return {
            "config_dir": str(self.config_dir),
            "var_dir": str(self.var_dir),
            "running_mode": self.running_mode,
            "auth_mode": self.auth_mode,
            "enable_simulation": self.enable_simulation,
            "source_node": self.source_node.name,
            "local_aet": self.local_aet,
            "local_host": self.local_host,
            "tls": self.tls.model_dump(),
            "nodes": {n: node.model_dump() for n, node in self.nodes.items()},
            "retrieve": self.retrieve.model_dump(),
            "postgresql": self.postgresql.model_dump(),
            "accounts": self.accounts.model_dump(),
            "schemas": self.schemas.model_dump(),
            "reference_levels": self.reference_levels.model_dump(),
            "env": env,
        }


def _libpq_quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _is_secret_name(name: str) -> bool:
    upper = name.upper()
    return any(w in upper for w in ("PASSWORD", "TOKEN")) or upper.endswith(("_KEY", "_SECRET"))


def _load_yaml(path: Path) -> Any:
    if not path.is_file():
        raise ConfigError(f"{path}: file not found (expected one of the nmdose configuration files)")
    try:
        with path.open(encoding="utf-8") as fh:
            data = yaml.safe_load(fh)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}{where}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of keys at the top level, got {type(data).__name__}")
    return data


def _validate(model: type[BaseModel], data: Any, path: Path) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_errors(path, exc)) from None


def _format_errors(path: Path, exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(top level)"
        if err["type"] == "extra_forbidden":
            what = "unknown key (not a setting nmdose knows; check spelling)"
        elif err["type"] == "missing":
            what = "missing (required)"
        else:
            msg = err["msg"].removeprefix("Value error, ")
            what = f"expected {msg[0].lower() + msg[1:]}, got {err.get('input')!r}"
        lines.append(f"{path}: {key}: {what}")
    return "; ".join(lines)


def _bool_env(name: str, value: str, source: str) -> bool:
    if value.strip().lower() in ("1", "true", "yes", "on"):
        return True
    if value.strip().lower() in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(f"{source}: {name}: expected 0 or 1, got {value!r}")


def load_config(
    config_dir: Path,
    *,
    running_mode: str | None = None,
    auth_mode: str | None = None,
    var_dir: Path | None = None,
    environ: dict[str, str] | None = None,
) -> Config:
    """Load and validate every configuration file in `config_dir`. Command-line modes win over `.env`."""
    config_dir = Path(config_dir).resolve()
    env_path = config_dir / ".env"
    env = read_env_file(env_path)
    process_env = dict(os.environ if environ is None else environ)
    # The process environment wins over .env (deployments set variables, developers edit .env).
    merged = {
        **env,
        **{k: v for k, v in process_env.items() if k in env or k.startswith(("NMDOSE_", "VAULT_"))},
    }
    if "ENABLE_SIMULATION" in process_env:
        merged["ENABLE_SIMULATION"] = process_env["ENABLE_SIMULATION"]

    mode = running_mode or merged.get("NMDOSE_RUNNING_MODE") or "dev"
    if mode not in ("dev", "test", "prod"):
        raise ConfigError(f"{env_path}: NMDOSE_RUNNING_MODE: expected dev, test or prod, got {mode!r}")
    auth = auth_mode or merged.get("NMDOSE_AUTH_MODE") or "dev"
    if auth not in ("dev", "keycloak"):
        raise ConfigError(f"{env_path}: NMDOSE_AUTH_MODE: expected dev or keycloak, got {auth!r}")
    if mode == "prod" and auth == "dev":
        raise ConfigError(f"{env_path}: NMDOSE_AUTH_MODE: expected keycloak in prod running mode, got 'dev'")
    if "ENABLE_SIMULATION" in merged:
        simulation = _bool_env("ENABLE_SIMULATION", merged["ENABLE_SIMULATION"], str(env_path))
    else:
        simulation = mode != "prod"

    net_path = config_dir / "dicom_network_entities.yaml"
    network = _validate(NetworkFile, _load_yaml(net_path), net_path)
    for required in REQUIRED_NODES:
        if required not in network.nodes:
            raise ConfigError(f"{net_path}: nodes.{required}: missing (required node)")
    nodes = {name: node.model_copy(update={"name": name}) for name, node in network.nodes.items()}
    _check_unique_local_ports(nodes, net_path)

    ret_path = config_dir / "retrieve_options.yaml"
    retrieve = _validate(RetrieveOptions, _load_yaml(ret_path), ret_path)
    pg_path = config_dir / "postgresql.yaml"
    postgresql = _validate(PostgresSettings, _load_yaml(pg_path), pg_path)
    acc_path = config_dir / "nmdose_accounts.yaml"
    accounts = _validate(AccountsFile, _load_yaml(acc_path), acc_path)
    for i, account in enumerate(accounts.accounts):
        for role in account.roles:
            if role not in accounts.roles:
                raise ConfigError(
                    f"{acc_path}: accounts.{i}.roles: expected one of {sorted(accounts.roles)}, got {role!r}"
                )
    for realm_role, role in accounts.keycloak.role_map.items():
        if role not in accounts.roles:
            raise ConfigError(
                f"{acc_path}: keycloak.role_map.{realm_role}: expected one of {sorted(accounts.roles)}, got {role!r}"
            )
    if auth == "keycloak" and not accounts.keycloak.issuer:
        raise ConfigError(f"{acc_path}: keycloak.issuer: missing (required with --auth-mode keycloak)")
    if auth == "keycloak" and mode == "prod" and not accounts.keycloak.audience:
        raise ConfigError(f"{acc_path}: keycloak.audience: missing (required in prod running mode)")
    sch_path = config_dir / "schema_definitions.yaml"
    schemas = _validate(SchemaDefinitions, _load_yaml(sch_path), sch_path)
    for required in ("rpacs", "dose", "jobs"):
        if required not in schemas.schemas:
            raise ConfigError(f"{sch_path}: schemas.{required}: missing (required schema)")

    # Optional: without it the dose page simply shows no reference levels.
    ref_path = config_dir / "reference_levels.yaml"
    reference_levels = (
        _validate(ReferenceLevelsFile, _load_yaml(ref_path), ref_path)
        if ref_path.is_file()
        else ReferenceLevelsFile()
    )
    seen_names: dict[str, int] = {}
    for i, level in enumerate(reference_levels.levels):
        if level.name in seen_names:
            raise ConfigError(
                f"{ref_path}: levels.{i}.name: expected a name no other level has, got {level.name!r} "
                f"(also levels.{seen_names[level.name]})"
            )
        seen_names[level.name] = i

    # Optional: the audit trail's retention and ATNA repository (defaults: docs/audit.md).
    audit_path = config_dir / "audit.yaml"
    audit = (
        _validate(AuditSettings, _load_yaml(audit_path), audit_path)
        if audit_path.is_file()
        else AuditSettings()
    )

    # Optional: the watch-folder importer (docs/import.md).
    imp_path = config_dir / "import.yaml"
    imports = (
        _validate(ImportSettings, _load_yaml(imp_path), imp_path) if imp_path.is_file() else ImportSettings()
    )

    if var_dir is None:
        var_dir = Path(merged.get("NMDOSE_VAR_DIR") or config_dir.parent / "var")
    cfg = Config(
        config_dir=config_dir,
        var_dir=Path(var_dir).resolve(),
        running_mode=mode,  # type: ignore[arg-type]
        auth_mode=auth,  # type: ignore[arg-type]
        enable_simulation=simulation,
        local_aet=network.local_aet,
        nodes=nodes,
        retrieve=retrieve,
        postgresql=postgresql,
        accounts=accounts,
        schemas=schemas,
        reference_levels=reference_levels,
        audit=audit,
        imports=imports,
        env=merged,
        local_host=network.local_host,
        tls=network.tls,
    )
    # Secure by default: prod refuses an open or plaintext setup, test and dev list the same findings.
    from nmdose.security.policy import enforce

    enforce(cfg)
    return cfg


def _check_unique_local_ports(nodes: dict[str, Node], path: Path) -> None:
    seen: dict[tuple[str, int], str] = {}
    for name, node in nodes.items():
        if not node.local:
            continue
        for kind, port in (("port", node.port), ("http_port", node.http_port)):
            if port is None:
                continue
            if (node.host, port) in seen:
                raise ConfigError(
                    f"{path}: nodes.{name}.{kind}: expected a port not used by another node, "
                    f"got {port} (also {seen[(node.host, port)]})"
                )
            seen[(node.host, port)] = f"{name}.{kind}"
