"""Alert rules: what a rule is (:data:`RULE_SCHEMA`, :func:`check_rule`), which rules one study makes fire
(:func:`evaluate`, pure, unit-tested with known answers) and the hook of the dose ingest (:func:`on_study`): inside
the ingest transaction, after a study's rows are rebuilt, its firings and their deliveries are written once
(UNIQUE (rule_id, dedup_key): a re-ingest fires nothing again).

Kinds (docs/alerts.md):
- ``ctdivol_above`` / ``dlp_above``: the study's highest event CTDIvol / its total DLP above ``threshold``;
- ``ctdivol_level`` / ``dlp_level``: a value above ``factor`` × the reference level that applies to it
  (config/reference_levels.yaml, matched like the dose page's outliers; ``level_status`` official or all);
- ``activity_band`` / ``activity_per_kg_band``: an administration outside [``band_low``, ``band_high``];
- ``effective_dose_above``: the study's total effective dose (mSv) above ``threshold``;
- ``dose_check``: the scanner's own dose-check alert (or notification) in the RDSR (TID 10015), with who
  proceeded and why;
- ``patient_studies`` / ``patient_dose``: one patient pseudonym with more than ``max_studies`` studies, or more
  than ``threshold`` mSv, in the ``window_days`` ending at this study (fires once per pseudonym and window end).
Scopes: ``standard_name``, ``scanner_id`` (equal) and ``agent`` (a regular expression, case-insensitive, on an
administration's agent); NULL: any.
"""

from __future__ import annotations

import datetime as _dt
import logging
import re
from collections.abc import Iterable, Mapping
from typing import Any

log = logging.getLogger("nmdose.alerts")

KINDS = ("ctdivol_above", "dlp_above", "ctdivol_level", "dlp_level", "activity_band", "activity_per_kg_band",
         "effective_dose_above", "dose_check", "patient_studies", "patient_dose")  # fmt: skip
# what each kind needs besides its name
REQUIRED = {
    "ctdivol_above": ("threshold",),
    "dlp_above": ("threshold",),
    "ctdivol_level": ("factor",),
    "dlp_level": ("factor",),
    "activity_band": (),
    "activity_per_kg_band": (),
    "effective_dose_above": ("threshold",),
    "dose_check": (),
    "patient_studies": ("max_studies", "window_days"),
    "patient_dose": ("threshold", "window_days"),
}
_NUM = {"type": ["number", "null"], "minimum": 0, "maximum": 1_000_000}
RULE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 200},
        "kind": {"type": "string", "enum": list(KINDS)},
        "standard_name": {"type": ["string", "null"], "maxLength": 200},
        "agent": {"type": ["string", "null"], "maxLength": 200},
        "scanner_id": {"type": ["integer", "null"], "minimum": 0, "maximum": 2_147_483_647},
        "threshold": _NUM,
        "factor": {"type": ["number", "null"], "minimum": 0.01, "maximum": 100},
        "band_low": _NUM,
        "band_high": _NUM,
        "max_studies": {"type": ["integer", "null"], "minimum": 0, "maximum": 100_000},
        "window_days": {"type": ["integer", "null"], "minimum": 1, "maximum": 36_600},
        "dose_check_which": {"type": "string", "enum": ["alert", "notification", "any"]},
        "level_status": {"type": "string", "enum": ["official", "all"]},
        "enabled": {"type": "boolean"},
        "email_to": {
            "type": "array",
            "items": {"type": "string", "minLength": 3, "maxLength": 254},
            "maxItems": 50,
        },
        "webhook_url": {"type": ["string", "null"], "maxLength": 2000},
        "digest": {"type": "boolean"},
        "digest_interval_s": {"type": "integer", "minimum": 60, "maximum": 604_800},
    },
    "required": ["name", "kind"],
    "additionalProperties": False,
}
COLUMNS = tuple(RULE_SCHEMA["properties"])
EMAIL_RE = re.compile(r"^[^@\s,;<>]+@[^@\s,;<>]+$")


class RuleError(ValueError):
    """A rule that cannot work; the message names the field."""


def check_rule(rule: Mapping[str, Any], *, prod: bool = False) -> dict[str, Any]:
    """The rule's fields with defaults, or RuleError naming what is missing or wrong (after the JSON schema)."""
    r = {k: rule.get(k) for k in COLUMNS}
    for k, v in r.items():  # PostgreSQL text takes no NUL character
        if "\x00" in str(v):
            raise RuleError(f"{k}: a NUL character is not allowed")
    kind = r["kind"]
    if kind not in KINDS:
        raise RuleError(f"kind: expected one of {', '.join(KINDS)}, got {kind!r}")
    if not isinstance(r["name"], str) or not r["name"].strip():
        raise RuleError("name: expected a non-empty text")
    for field in REQUIRED[kind]:
        if r[field] is None:
            raise RuleError(f"{field}: required for a {kind} rule")
    if kind in ("activity_band", "activity_per_kg_band"):
        if r["band_low"] is None and r["band_high"] is None:
            raise RuleError(f"band_low, band_high: at least one for a {kind} rule")
        if r["band_low"] is not None and r["band_high"] is not None and r["band_low"] > r["band_high"]:
            raise RuleError("band_low: expected at most band_high")
    if r["agent"]:
        try:
            re.compile(r["agent"])
        except re.error as exc:
            raise RuleError(f"agent: expected a regular expression ({exc})") from None
    r["email_to"] = list(r["email_to"] or [])
    for address in r["email_to"]:
        if not EMAIL_RE.match(address):
            raise RuleError(f"email_to: {address!r} is not an e-mail address")
    url = r["webhook_url"]
    if url:
        if not re.match(r"^https?://[^\s/]+", url):
            raise RuleError(f"webhook_url: expected an http(s) URL, got {url[:80]!r}")
        if prod and not url.startswith("https://"):
            raise RuleError(
                "webhook_url: expected https:// in prod running mode (the alert leaves the system)"
            )
    r["webhook_url"] = url or None
    r["dose_check_which"] = r["dose_check_which"] or "alert"
    r["level_status"] = r["level_status"] or "official"
    r["enabled"] = True if r["enabled"] is None else bool(r["enabled"])
    r["digest"] = bool(r["digest"])
    r["digest_interval_s"] = r["digest_interval_s"] or 3600
    return r


# ------------------------------------------------------------------------------------------ pure evaluation
def _search(pattern: str, value: Any) -> bool:
    return value is not None and re.search(pattern, str(value), re.IGNORECASE) is not None


def _level_applies(level: Any, *, protocol=None, description=None, region=None, agent=None, age=None) -> bool:
    """The dose page's matching (web/sql_levels.py) in Python: every pattern list given matches, age in band."""
    m = level.match
    for patterns, value in ((m.protocols, protocol), (m.descriptions, description),
                            (m.target_regions, region), (m.agents, agent)):  # fmt: skip
        if patterns and not any(_search(p, value) for p in patterns):
            return False
    band = level.age_band
    if band is not None and (band.min_years is not None or band.max_years is not None):
        if age is None:
            return False
        if band.min_years is not None and age < band.min_years:
            return False
        if band.max_years is not None and age >= band.max_years:
            return False
    return True


def _levels(levels: Iterable[Any], rule: Mapping[str, Any], quantity: str, per: str) -> list[Any]:
    return [lv for lv in levels if lv.modality == "CT" and lv.quantity == quantity and lv.per == per
            and (rule["level_status"] == "all" or lv.status == "official")]  # fmt: skip


def _in_scope(rule: Mapping[str, Any], study: Mapping[str, Any], admins: list[dict]) -> bool:
    if (
        rule.get("standard_name")
        and (study.get("standard_name") or "").casefold() != rule["standard_name"].casefold()
    ):
        return False
    # a scanner merged into another (the scanners page) counts as that one too
    scanners = (study.get("scanner_id"), study.get("scanner_merged_into"))
    if rule.get("scanner_id") is not None and rule["scanner_id"] not in scanners:
        return False
    if rule.get("agent") and rule["kind"] not in ("activity_band", "activity_per_kg_band"):
        return any(_search(rule["agent"], a.get("agent")) for a in admins)
    return True


def _firing(study: Mapping[str, Any], quantity: str, measured, limit, *, level=None, details=None,
            key: str | None = None) -> dict[str, Any]:  # fmt: skip
    return {
        "dedup_key": key or study["study_instance_uid"],
        "quantity": quantity,
        "measured": measured,
        "limit_value": limit,
        "level_name": getattr(level, "name", None),
        "level_source": getattr(level, "source", None),
        "details": details or {},
    }


def _over_level(study, values: list[tuple[float | None, dict]], levels, factor: float, quantity: str):
    """The worst (value / level) among values above factor × an applicable level, as a firing, or None."""
    worst = None
    for value, where in values:
        if value is None:
            continue
        for lv in levels:
            if not _level_applies(lv, protocol=where.get("acquisition_protocol"),
                                  description=study.get("study_description"), region=where.get("target_region"),
                                  age=study.get("patient_age_years")):  # fmt: skip
                continue
            limit = factor * lv.value
            if value > limit and (worst is None or value / lv.value > worst[0]):
                worst = (value / lv.value, value, limit, lv, where)
    if worst is None:
        return None
    ratio, value, limit, lv, where = worst
    details = {"ratio_to_level": round(ratio, 3), "factor": factor, "level_value": lv.value,
               "level_status": lv.status, **{k: v for k, v in where.items() if v is not None}}  # fmt: skip
    return _firing(study, quantity, value, limit, level=lv, details=details)


# TID 10015 pairs: (estimate, configured value) of an alert and of a notification
CHECK_PAIRS = {
    "alert": (("accumulated_dlp_forward_estimate", "dlp_alert_value"),
              ("accumulated_ctdivol_forward_estimate", "ctdivol_alert_value")),
    "notification": (("dlp_forward_estimate", "dlp_notification_value"),
                     ("ctdivol_forward_estimate", "ctdivol_notification_value")),
}  # fmt: skip
CHECK_WHO = {"alert": ("alert_reason_for_proceeding", "alert_person_name"),
             "notification": ("notification_reason_for_proceeding",)}  # fmt: skip


def _triggered(check: Mapping[str, Any] | None, which: str) -> list[tuple[float | None, float | None]]:
    """The (estimate, configured value) pairs showing that the scanner's alert or notification went off for one
    event: an estimate above its configured value, or someone who proceeded (a reason or a person recorded).
    Scanners write the configured values on every event (Siemens: a CTDIvol alert value of 1000 mGy) and some
    the forward estimates with nothing configured (Spectrum Dynamics): neither alone is an alert."""
    if not check:
        return []
    out = []
    for context in ("alert", "notification") if which == "any" else (which,):
        pairs = [(check.get(e), check.get(v)) for e, v in CHECK_PAIRS[context]]
        over = [(e, v) for e, v in pairs if e is not None and v is not None and e > v]
        if over:
            out += over
        elif any(check.get(k) for k in CHECK_WHO[context]):
            out += [next(((e, v) for e, v in pairs if e is not None or v is not None), (None, None))]
    return out


def _dose_check(rule, study, events):
    which = rule["dose_check_which"]
    hits, pairs = [], []
    for e in events:
        got = _triggered(e.get("dose_check"), which)
        if got:
            pairs += got
            items = {k: v for k, v in (e.get("dose_check") or {}).items() if v is not None}
            hits.append({"acquisition_protocol": e.get("acquisition_protocol"),
                         "irradiation_event_uid": e.get("irradiation_event_uid"), **items})  # fmt: skip
    if not hits:
        return None
    measured, limit = pairs[0]
    return _firing(study, "dose_check", measured, limit, details={"events": hits})


def _total_msv(s: Mapping[str, Any]) -> float | None:
    if s.get("total_effective_dose_msv") is not None:
        return s["total_effective_dose_msv"]
    parts = [s.get(k) for k in ("ct_effective_dose_msv", "nm_effective_dose_msv") if s.get(k) is not None]
    return sum(parts) if parts else None


def _patient(rule, study, history):
    pseudonym, date = study.get("patient_pseudonym"), study.get("study_date")
    if not pseudonym or not isinstance(date, _dt.date):
        return None
    start = date - _dt.timedelta(days=rule["window_days"])
    inside = [h for h in history if h.get("study_date") is not None and start < h["study_date"] <= date]
    key = f"{pseudonym}|{date.isoformat()}"
    details = {"window_days": rule["window_days"], "window_start": (start + _dt.timedelta(days=1)).isoformat(),
               "window_end": date.isoformat(), "studies": sorted(h["study_instance_uid"] for h in inside)}  # fmt: skip
    if rule["kind"] == "patient_studies":
        if len(inside) > rule["max_studies"]:
            return _firing(study, "studies", len(inside), rule["max_studies"], details=details, key=key)
        return None
    total = sum(_total_msv(h) or 0.0 for h in inside)
    details["studies_without_total"] = sum(1 for h in inside if _total_msv(h) is None)
    if total > rule["threshold"]:
        return _firing(
            study, "effective_dose_msv", round(total, 6), rule["threshold"], details=details, key=key
        )
    return None


def evaluate_rule(rule: Mapping[str, Any], study: Mapping[str, Any], events: list[dict], admins: list[dict],
                  levels: Iterable[Any] = (), history: list[dict] | None = None) -> dict[str, Any] | None:  # fmt: skip
    """The firing `rule` gives for one study (its dose.study row, CT events, administrations; `history`: the
    patient's studies for the patient rules), or None."""
    if not _in_scope(rule, study, admins):
        return None
    kind = rule["kind"]
    if kind == "ctdivol_above":
        values = [(e.get("ctdivol_mgy"), e) for e in events if e.get("ctdivol_mgy") is not None]
        if not values:
            return None
        value, e = max(values, key=lambda v: v[0])
        if value > rule["threshold"]:
            return _firing(study, "ctdivol_mgy", value, rule["threshold"],
                           details={"acquisition_protocol": e.get("acquisition_protocol")})  # fmt: skip
        return None
    if kind == "dlp_above":
        value = study.get("ct_total_dlp_mgycm")
        if value is not None and value > rule["threshold"]:
            return _firing(study, "dlp_mgycm", value, rule["threshold"])
        return None
    if kind == "ctdivol_level":
        levels_ = _levels(levels, rule, "ctdivol_mgy", "event")
        return _over_level(study, [(e.get("ctdivol_mgy"), _where(e)) for e in events], levels_, rule["factor"],
                           "ctdivol_mgy")  # fmt: skip
    if kind == "dlp_level":
        per_study = _levels(levels, rule, "dlp_mgycm", "study")
        # a per-study level with protocol or region patterns applies when any event matches them
        firing = None
        if study.get("ct_total_dlp_mgycm") is not None:
            for where in [_where(e) for e in events] or [{}]:
                f = _over_level(
                    study, [(study["ct_total_dlp_mgycm"], where)], per_study, rule["factor"], "dlp_mgycm"
                )
                if f and (
                    firing is None or f["details"]["ratio_to_level"] > firing["details"]["ratio_to_level"]
                ):
                    firing = f
            if firing:
                for k in ("acquisition_protocol", "target_region"):
                    firing["details"].pop(k, None)
        per_event = _over_level(study, [(e.get("dlp_mgycm"), _where(e)) for e in events],
                                _levels(levels, rule, "dlp_mgycm", "event"), rule["factor"], "dlp_mgycm")  # fmt: skip
        if per_event and (
            firing is None or per_event["details"]["ratio_to_level"] > firing["details"]["ratio_to_level"]
        ):
            firing = per_event
        return firing
    if kind in ("activity_band", "activity_per_kg_band"):
        field = "activity_mbq" if kind == "activity_band" else "activity_per_kg_mbq"
        low, high = rule.get("band_low"), rule.get("band_high")
        for a in admins:
            if rule.get("agent") and not _search(rule["agent"], a.get("agent")):
                continue
            value = a.get(field)
            if value is None:
                continue
            if (low is not None and value < low) or (high is not None and value > high):
                limit = low if low is not None and value < low else high
                return _firing(study, field, value, limit, details={"agent": a.get("agent"), "band_low": low,
                                                                     "band_high": high})  # fmt: skip
        return None
    if kind == "effective_dose_above":
        value = _total_msv(study)
        if value is not None and value > rule["threshold"]:
            return _firing(study, "effective_dose_msv", value, rule["threshold"])
        return None
    if kind == "dose_check":
        return _dose_check(rule, study, events)
    if kind in ("patient_studies", "patient_dose"):
        return _patient(rule, study, history or [])
    return None


def _where(e: Mapping[str, Any]) -> dict[str, Any]:
    return {"acquisition_protocol": e.get("acquisition_protocol"), "target_region": e.get("target_region")}


def evaluate(rules: Iterable[Mapping[str, Any]], study, events, admins, levels=(), history=None):
    """[(rule, firing)] for every enabled rule that fires on the study."""
    out = []
    for rule in rules:
        if not rule.get("enabled", True):
            continue
        firing = evaluate_rule(rule, study, events, admins, levels, history)
        if firing is not None:
            out.append((rule, firing))
    return out


# ------------------------------------------------------------------------------------------ the ingest hook
RULE_SELECT = "SELECT id, " + ", ".join(COLUMNS) + " FROM dose.alert_rule WHERE enabled ORDER BY id"


def _dicts(cur) -> list[dict[str, Any]]:
    names = [d[0] for d in cur.description]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def on_study(cur, study_uid: str, levels: Iterable[Any] | None = None) -> list[int]:
    """Evaluate the enabled rules on one study, inside the caller's (ingest) transaction; store new firings and
    their deliveries. Returns the ids of the new firings. Never raises for an alert problem: it is logged and
    rolled back to a savepoint, so the dose rows are stored whatever the alerts do."""
    cur.execute(RULE_SELECT)
    rules = _dicts(cur)
    if not rules:
        return []
    if levels is None:
        cfg = getattr(cur.connection, "nmdose_cfg", None)
        levels = list(cfg.reference_levels.levels) if cfg is not None else []
    cur.execute("SAVEPOINT nmdose_alerts")
    try:
        ids = _store_firings(cur, study_uid, rules, levels)
    except Exception as exc:  # an alert bug or bad rule must never lose a dose record
        cur.execute("ROLLBACK TO SAVEPOINT nmdose_alerts")
        log.warning("alerts: study %s not evaluated: %s", study_uid, str(exc).strip().splitlines()[0])
        return []
    cur.execute("RELEASE SAVEPOINT nmdose_alerts")
    return ids


def study_inputs(cur, study_uid: str, *, patient_history: bool) -> tuple[dict | None, list, list, list]:
    """(study row, events, administrations, the patient's studies) as evaluate() takes them."""
    cur.execute(
        """SELECT study_instance_uid, study_date, study_description, standard_name, scanner_id, patient_pseudonym,
                  patient_age_years, ct_total_dlp_mgycm, ct_effective_dose_msv, nm_effective_dose_msv,
                  total_effective_dose_msv,
                  (SELECT sc.merged_into FROM dose.scanner sc WHERE sc.scanner_id = s.scanner_id)
                      AS scanner_merged_into
             FROM dose.study s WHERE study_instance_uid = %s""",
        (study_uid,),
    )
    rows = _dicts(cur)
    if not rows:
        return None, [], [], []
    study = rows[0]
    cur.execute(
        """SELECT irradiation_event_uid, acquisition_protocol, target_region, ctdivol_mgy, dlp_mgycm, dose_check
             FROM dose.ct_event WHERE study_instance_uid = %s ORDER BY ordinal""",
        (study_uid,),
    )
    events = _dicts(cur)
    cur.execute(
        """SELECT agent, coalesce(activity_at_injection_mbq, activity_mbq) AS activity_mbq, activity_per_kg_mbq
             FROM dose.radiopharmaceutical WHERE study_instance_uid = %s ORDER BY ordinal""",
        (study_uid,),
    )
    admins = _dicts(cur)
    history: list[dict] = []
    if patient_history and study["patient_pseudonym"] and study["study_date"]:
        cur.execute(
            """SELECT study_instance_uid, study_date, ct_effective_dose_msv, nm_effective_dose_msv,
                      total_effective_dose_msv
                 FROM dose.study WHERE patient_pseudonym = %s AND study_date <= %s""",
            (study["patient_pseudonym"], study["study_date"]),
        )
        history = _dicts(cur)
    return study, events, admins, history


def _store_firings(cur, study_uid: str, rules: list[dict], levels) -> list[int]:
    from psycopg2.extras import Json

    patient = any(r["kind"] in ("patient_studies", "patient_dose") for r in rules)
    study, events, admins, history = study_inputs(cur, study_uid, patient_history=patient)
    if study is None:
        return []
    ids = []
    for rule, f in evaluate(rules, study, events, admins, levels, history):
        cur.execute(
            """INSERT INTO dose.alert_firing (rule_id, dedup_key, study_instance_uid, patient_pseudonym, study_date,
                   quantity, measured, limit_value, level_name, level_source, details)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
               ON CONFLICT (rule_id, dedup_key) DO NOTHING RETURNING id""",
            (rule["id"], f["dedup_key"], study_uid, study["patient_pseudonym"], study["study_date"],
             f["quantity"], f["measured"], f["limit_value"], f["level_name"], f["level_source"],
             Json(f["details"], dumps=_dumps)),
        )  # fmt: skip
        row = cur.fetchone()
        if row is None:
            continue  # fired before (a re-ingest): nothing again
        ids.append(row[0])
        targets = [("email", a) for a in rule["email_to"] or []]
        targets += [("webhook", rule["webhook_url"])] if rule["webhook_url"] else []
        for channel, target in targets:
            cur.execute(
                """INSERT INTO dose.alert_delivery (firing_id, channel, target, digest, digest_interval_s)
                   VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING""",
                (row[0], channel, target, rule["digest"], rule["digest_interval_s"]),
            )
        log.info("alerts: rule %s fired on study %s (%s %s > %s)", rule["name"], study_uid, f["quantity"],
                 f["measured"], f["limit_value"])  # fmt: skip
    return ids


def _dumps(value: Any) -> str:
    import json

    return json.dumps(value, default=str)
