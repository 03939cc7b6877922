"""Sending alerts: e-mail over SMTP (STARTTLS or implicit TLS, AUTH with credentials from the secret store) and
webhooks (a JSON POST with a timeout, signed with HMAC-SHA256 when `NMDOSE_ALERT_WEBHOOK_SECRET` is set).

Messages name the study by its StudyInstanceUID and the patient only by the keyed pseudonym; no name, no PatientID.
Each message carries a stable id (`Message-ID` / `Idempotency-Key`): the outbox sends a delivery once, and should a
crash fall between the server's acceptance and the outbox's bookkeeping, the copy sent again has the same id."""

from __future__ import annotations

import hashlib
import hmac
import json
import smtplib
import ssl
import urllib.error
import urllib.request
from email.message import EmailMessage
from email.utils import formatdate
from typing import Any

from nmdose.alerts.settings import AlertSettings
from nmdose.errors import ConfigError, NmdoseError


class SendError(NmdoseError):
    """A delivery failed (the server refused or was unreachable): retried later."""


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def firing_line(f: dict[str, Any]) -> str:
    level = f" (level {f['level_name']}: {f['level_source']})" if f.get("level_name") else ""
    return (f"[{f['rule_name']}] study {f['study_instance_uid']} ({f.get('study_date') or 'no date'}): "
            f"{f['quantity']} {_fmt(f.get('measured'))} > limit {_fmt(f.get('limit_value'))}{level}")  # fmt: skip


def text_body(firings: list[dict[str, Any]], settings: AlertSettings) -> str:
    lines = [f"nmdose dose alert{'s' if len(firings) > 1 else ''}: {len(firings)}", ""]
    for f in firings:
        lines.append(firing_line(f))
        if f.get("patient_pseudonym"):
            lines.append(f"  patient (pseudonym): {f['patient_pseudonym']}")
        if f["quantity"] == "dose_check":
            for e in (f.get("details") or {}).get("events", []):
                who = e.get("alert_person_name") or "-"
                why = (
                    e.get("alert_reason_for_proceeding") or e.get("notification_reason_for_proceeding") or "-"
                )
                lines.append(
                    f"  dose check: {e.get('acquisition_protocol') or 'event'}: proceeded by {who}: {why}"
                )
    if settings.page_url:
        lines += ["", f"Acknowledge: {settings.page_url}"]
    return "\n".join(lines) + "\n"


def subject(firings: list[dict[str, Any]]) -> str:
    if len(firings) == 1:
        f = firings[0]
        return f"[nmdose alert] {f['rule_name']}: {f['quantity']} {_fmt(f.get('measured'))}"
    return f"[nmdose alert digest] {len(firings)} alerts"


def send_email(settings: AlertSettings, credentials: tuple[str, str] | None, to: list[str], subj: str, body: str,
               message_id: str) -> None:  # fmt: skip
    """One message to `to`; SendError when the server does not accept it (ConfigError: not configured)."""
    smtp = settings.smtp
    if not smtp.host:
        raise ConfigError(
            "config/alerts.yaml: smtp.host: expected the SMTP server, not set (e-mail disabled)"
        )
    if credentials and smtp.security == "none":
        raise ConfigError("config/alerts.yaml: smtp.security: expected starttls or tls with SMTP credentials "
                          "(a password is never sent in clear), got 'none'")  # fmt: skip
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = smtp.sender, ", ".join(to), subj
    msg["Date"], msg["Message-ID"] = formatdate(localtime=True), message_id
    msg.set_content(body)
    try:
        context = ssl.create_default_context(cafile=smtp.ca_file) if smtp.security != "none" else None
        if smtp.security == "tls":
            client: smtplib.SMTP = smtplib.SMTP_SSL(
                smtp.host, smtp.port, timeout=smtp.timeout_s, context=context
            )
        else:
            client = smtplib.SMTP(smtp.host, smtp.port, timeout=smtp.timeout_s)
        with client:
            client.ehlo()
            if smtp.security == "starttls":
                if not client.has_extn("starttls"):
                    raise SendError(
                        f"SMTP {smtp.host}:{smtp.port}: no STARTTLS offered; refused to send in clear"
                    )
                client.starttls(context=context)
                client.ehlo()
            if credentials:
                client.login(*credentials)
            refused = client.send_message(msg)
        if refused:
            raise SendError(f"SMTP {smtp.host}:{smtp.port}: recipients refused: {sorted(refused)}")
    except (smtplib.SMTPException, OSError, ssl.SSLError) as exc:
        raise SendError(
            f"SMTP {smtp.host}:{smtp.port}: {type(exc).__name__}: {str(exc).strip()[:300]}"
        ) from None


def post_webhook(settings: AlertSettings, url: str, payload: dict[str, Any], key: str,
                 secret: str | None = None) -> int:  # fmt: skip
    """POST the JSON payload; the HTTP status (2xx), else SendError."""
    body = json.dumps(payload, default=str, ensure_ascii=False).encode()
    headers = {"Content-Type": "application/json", "Idempotency-Key": key, "User-Agent": "nmdose-alerts"}
    if secret:
        headers["X-Nmdose-Signature"] = (
            "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        )
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        context = (
            ssl.create_default_context(cafile=settings.webhook.ca_file) if url.startswith("https:") else None
        )
        with urllib.request.urlopen(request, timeout=settings.webhook.timeout_s, context=context) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        raise SendError(f"webhook {url}: HTTP {exc.code}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise SendError(f"webhook {url}: {type(exc).__name__}: {reason}") from None


def webhook_payload(firings: list[dict[str, Any]], key: str) -> dict[str, Any]:
    keep = ("id", "rule_id", "rule_name", "kind", "study_instance_uid", "patient_pseudonym", "study_date",
            "quantity", "measured", "limit_value", "level_name", "level_source", "details", "fired_at")  # fmt: skip
    return {"source": "nmdose", "id": key, "alerts": [{k: f.get(k) for k in keep} for f in firings]}
