"""config/alerts.yaml: how alerts are sent (SMTP server, webhook timeout, the sender's pace). The rules themselves
live in the database (dose.alert_rule: the alerts page and `nmdose alerts rule`).

SMTP credentials never sit in the file: `NMDOSE_SMTP_USERNAME` / `NMDOSE_SMTP_PASSWORD` come from the secret store
(environment/.env in dev, Vault KV v2 in prod; nmdose.secrets). Prod running mode refuses plaintext SMTP and plain
http webhooks with one line naming the file, the key and what is expected."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from nmdose.errors import ConfigError, SecretError

if TYPE_CHECKING:
    from nmdose.config import Config

FILE = "alerts.yaml"
SMTP_USERNAME = "NMDOSE_SMTP_USERNAME"
SMTP_PASSWORD = "NMDOSE_SMTP_PASSWORD"
WEBHOOK_SECRET = "NMDOSE_ALERT_WEBHOOK_SECRET"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Smtp(_Strict):
    host: str | None = None  # None: e-mail disabled (deliveries wait, counted as failures with the reason)
    port: int = Field(default=587, ge=1, le=65535)
    security: Literal["starttls", "tls", "none"] = "starttls"  # none: refused in prod
    ca_file: str | None = None  # CA bundle verifying the server (default: the system's); relative: under var/
    sender: str = Field(default="nmdose@localhost", min_length=3)
    timeout_s: float = Field(default=10, gt=0, le=120)


class Webhook(_Strict):
    timeout_s: float = Field(default=5, gt=0, le=60)
    ca_file: str | None = None


class Sender(_Strict):
    poll_s: float = Field(default=1.0, gt=0, le=60)
    max_attempts: int = Field(default=10, ge=1, le=1000)
    lease_s: float = Field(default=120, ge=5, le=3600)
    retry_base_s: float = Field(default=30, gt=0, le=3600)  # doubled per attempt, at most retry_max_s
    retry_max_s: float = Field(default=3600, gt=0, le=86400)


class AlertSettings(_Strict):
    smtp: Smtp = Smtp()
    webhook: Webhook = Webhook()
    sender: Sender = Sender()
    page_url: str | None = None  # link put in the messages, e.g. https://rpacs.hospital/nmdose/ui/alerts


def load(cfg: Config) -> AlertSettings:
    """config/alerts.yaml (absent: defaults, e-mail disabled); ConfigError naming the file and the key."""
    path = Path(cfg.config_dir) / FILE
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) if path.exists() else {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    try:
        settings = AlertSettings.model_validate(raw or {})
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(p) for p in err["loc"])
        raise ConfigError(f"{path}: {key}: {err['msg']}") from None
    for part in (settings.smtp, settings.webhook):  # a relative CA file is under the var folder
        if part.ca_file and not Path(part.ca_file).is_absolute():
            part.ca_file = str(Path(cfg.var_dir) / part.ca_file)
    if cfg.running_mode == "prod" and settings.smtp.host and settings.smtp.security == "none":
        raise ConfigError(
            f"{path}: smtp.security: expected starttls or tls in prod running mode, got 'none' (plaintext SMTP)"
        )
    return settings


def smtp_credentials(cfg: Config) -> tuple[str, str] | None:
    """(username, password) from the secret store, or None when no username is set (no AUTH)."""
    try:
        user = cfg.secrets.get(SMTP_USERNAME)
    except SecretError:
        return None
    try:
        return user, cfg.secrets.get(SMTP_PASSWORD)
    except SecretError:
        raise ConfigError(
            f"secret store: {SMTP_PASSWORD}: expected with {SMTP_USERNAME} set, missing"
        ) from None


def webhook_secret(cfg: Config) -> str | None:
    """The key of the webhooks' HMAC-SHA256 signature header, if one is set."""
    try:
        return cfg.secrets.get(WEBHOOK_SECRET)
    except SecretError:
        return None
