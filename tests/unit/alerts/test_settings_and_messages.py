"""config/alerts.yaml: defaults, clear refusals (file, key, expected), prod refuses plaintext SMTP; the messages
name studies by UID and patients by pseudonym only."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from nmdose.alerts import notify
from nmdose.alerts.settings import AlertSettings, load
from nmdose.errors import ConfigError


def cfg(tmp_path, text: str | None, mode: str = "dev"):
    if text is not None:
        (tmp_path / "alerts.yaml").write_text(text)
    return SimpleNamespace(config_dir=tmp_path, var_dir=tmp_path / "var", running_mode=mode)


def test_defaults_relative_ca_under_var_and_clear_refusals(tmp_path):
    assert load(cfg(tmp_path, None)).smtp.host is None  # no file: e-mail disabled
    s = load(cfg(tmp_path, "smtp: {host: mail.test, ca_file: alerts/ca.pem}\n"))
    assert (s.smtp.port, s.smtp.security, s.smtp.ca_file) == (
        587,
        "starttls",
        str(tmp_path / "var/alerts/ca.pem"),
    )
    with pytest.raises(ConfigError, match=r"alerts.yaml: smtp.prot: Extra inputs"):
        load(cfg(tmp_path, "smtp: {prot: 25}\n"))
    with pytest.raises(ConfigError, match=r"alerts.yaml: smtp.security: Input should be"):
        load(cfg(tmp_path, "smtp: {security: ssl3}\n"))
    plain = "smtp: {host: mail.test, port: 25, security: none}\n"
    assert load(cfg(tmp_path, plain, "dev")).smtp.security == "none"
    with pytest.raises(ConfigError) as err:
        load(cfg(tmp_path, plain, "prod"))
    assert str(err.value) == (f"{tmp_path / 'alerts.yaml'}: smtp.security: expected starttls or tls in prod running "
                              "mode, got 'none' (plaintext SMTP)")  # fmt: skip


def test_no_password_over_plaintext_and_no_host_is_a_clear_error():
    plain = AlertSettings.model_validate({"smtp": {"host": "127.0.0.1", "port": 1, "security": "none"}})
    with pytest.raises(ConfigError, match="never sent in clear"):
        notify.send_email(plain, ("u", "p"), ["a@b.c"], "s", "b", "<x@y>")
    with pytest.raises(ConfigError, match="smtp.host"):
        notify.send_email(AlertSettings(), None, ["a@b.c"], "s", "b", "<x@y>")


def test_the_message_names_the_study_and_the_pseudonym_and_who_proceeded():
    f = {"rule_name": "CT dose check", "study_instance_uid": "1.2.3", "study_date": "2024-05-10",
         "quantity": "dose_check", "measured": 100.0, "limit_value": 80.0, "level_name": None,
         "patient_pseudonym": "p1:" + "a" * 32,
         "details": {"events": [{"acquisition_protocol": "Head", "alert_person_name": "KIM^TECH",
                                 "alert_reason_for_proceeding": "trauma"}]}}  # fmt: skip
    text = notify.text_body([f], AlertSettings(page_url="https://x/nmdose/ui/alerts"))
    assert "[CT dose check] study 1.2.3 (2024-05-10): dose_check 100 > limit 80" in text
    assert "p1:" + "a" * 32 in text and "Head: proceeded by KIM^TECH: trauma" in text
    assert "https://x/nmdose/ui/alerts" in text
    assert notify.subject([f]) == "[nmdose alert] CT dose check: dose_check 100"
    assert notify.subject([f, f]) == "[nmdose alert digest] 2 alerts"
