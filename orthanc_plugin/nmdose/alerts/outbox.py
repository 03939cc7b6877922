"""The outbox of alert deliveries (dose.alert_delivery): claimed, sent and marked in small transactions, so a
delivery survives a crash of the sender, a server that is down, or a lost database, and is sent once.

One pass (:func:`drain`): (1) take back the deliveries whose lease ran out (their sender died while sending);
(2) claim the due immediate deliveries (`state` 'sending', a lease, an attempt counted; SKIP LOCKED, so two senders
never take the same one) and commit; send each; mark it 'sent', or back to 'pending' with the error and the next
attempt after a doubling back-off ('failed' after `sender.max_attempts`); (3) the same for each digest group
(channel, target) whose oldest pending delivery is `digest_interval_s` old: one message for the whole group."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from nmdose.alerts import notify
from nmdose.alerts.settings import AlertSettings, load, smtp_credentials, webhook_secret

log = logging.getLogger("nmdose.alerts")

FIRING_SELECT = """SELECT f.id, f.rule_id, r.name AS rule_name, r.kind, f.study_instance_uid, f.patient_pseudonym,
       f.study_date, f.quantity, f.measured, f.limit_value, f.level_name, f.level_source, f.details, f.fired_at
  FROM dose.alert_firing f JOIN dose.alert_rule r ON r.id = f.rule_id WHERE f.id = ANY(%s) ORDER BY f.id"""


@dataclass
class DrainStats:
    sent: int = 0
    failed: int = 0
    retried: int = 0
    reclaimed: int = 0
    errors: list[str] = field(default_factory=list)


def _rows(cur) -> list[dict[str, Any]]:
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


def reclaim(conn) -> int:
    with conn, conn.cursor() as cur:
        cur.execute(
            """UPDATE dose.alert_delivery SET state = 'pending', lease_until = NULL,
                   last_error = coalesce(last_error, 'the sender stopped while sending: sent again')
               WHERE state = 'sending' AND lease_until < now()"""
        )
        return cur.rowcount


def _claim(conn, settings: AlertSettings, limit: int) -> list[dict[str, Any]]:
    with conn, conn.cursor() as cur:
        cur.execute(
            """UPDATE dose.alert_delivery d SET state = 'sending', attempts = attempts + 1,
                   lease_until = now() + make_interval(secs => %s)
               WHERE id IN (SELECT id FROM dose.alert_delivery
                             WHERE state = 'pending' AND NOT digest AND next_attempt_at <= now()
                             ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED)
               RETURNING id, firing_id, channel, target, attempts""",
            (settings.sender.lease_s, limit),
        )
        return _rows(cur)


def _claim_digests(conn, settings: AlertSettings) -> list[list[dict[str, Any]]]:
    """Each due digest group's deliveries, claimed together."""
    with conn, conn.cursor() as cur:
        cur.execute(
            """SELECT channel, target FROM dose.alert_delivery
                WHERE state = 'pending' AND digest AND next_attempt_at <= now()
                GROUP BY channel, target
               HAVING min(created_at) <= now() - make_interval(secs => min(digest_interval_s))"""
        )
        groups = cur.fetchall()
        out = []
        for channel, target in groups:
            cur.execute(
                """UPDATE dose.alert_delivery SET state = 'sending', attempts = attempts + 1,
                       lease_until = now() + make_interval(secs => %s)
                   WHERE id IN (SELECT id FROM dose.alert_delivery
                                 WHERE state = 'pending' AND digest AND channel = %s AND target = %s
                                   AND next_attempt_at <= now() ORDER BY id FOR UPDATE SKIP LOCKED)
                   RETURNING id, firing_id, channel, target, attempts""",
                (settings.sender.lease_s, channel, target),
            )
            claimed = _rows(cur)
            if claimed:
                out.append(sorted(claimed, key=lambda d: d["id"]))
        return out


def _firings(conn, ids: list[int]) -> list[dict[str, Any]]:
    with conn, conn.cursor() as cur:
        cur.execute(FIRING_SELECT, (ids,))
        return _rows(cur)


def _finish(conn, settings: AlertSettings, deliveries: list[dict[str, Any]], error: str | None, key: str,
            stats: DrainStats) -> None:  # fmt: skip
    ids = [d["id"] for d in deliveries]
    with conn, conn.cursor() as cur:
        if error is None:
            cur.execute(
                """UPDATE dose.alert_delivery SET state = 'sent', sent_at = now(), lease_until = NULL,
                       batch_id = %s, last_error = NULL WHERE id = ANY(%s)""",
                (key, ids),
            )
            stats.sent += len(ids)
            return
        s = settings.sender
        cur.execute(
            """UPDATE dose.alert_delivery SET lease_until = NULL, last_error = %s,
                   state = CASE WHEN attempts >= %s THEN 'failed' ELSE 'pending' END,
                   next_attempt_at = now() + make_interval(secs => least(%s, %s * 2 ^ (attempts - 1)))
               WHERE id = ANY(%s) RETURNING state""",
            (error[:2000], s.max_attempts, s.retry_max_s, s.retry_base_s, ids),
        )
        states = [r[0] for r in cur.fetchall()]
        stats.failed += states.count("failed")
        stats.retried += states.count("pending")
        stats.errors.append(error)


def _send(
    cfg, settings: AlertSettings, channel: str, target: str, firings: list[dict[str, Any]], key: str
) -> None:
    if channel == "email":
        notify.send_email(settings, smtp_credentials(cfg), [target], notify.subject(firings),
                          notify.text_body(firings, settings), f"<{key}@nmdose>")  # fmt: skip
    else:
        notify.post_webhook(settings, target, notify.webhook_payload(firings, key), key, webhook_secret(cfg))


def _deliver(conn, cfg, settings: AlertSettings, group: list[dict[str, Any]], stats: DrainStats) -> None:
    first = group[0]
    key = f"nmdose-alert-{first['channel']}-{'-'.join(str(d['id']) for d in group[:20])}"
    if len(group) > 20:
        key += f"-n{len(group)}"
    try:
        firings = _firings(conn, [d["firing_id"] for d in group])
        _send(cfg, settings, first["channel"], first["target"], firings, key)
    except Exception as exc:  # noqa: BLE001 (whatever failed is the delivery's error, kept and retried)
        log.warning("alerts: %s to %s not sent (attempt %d): %s", first["channel"], first["target"],
                    first["attempts"], exc)  # fmt: skip
        _finish(conn, settings, group, str(exc), key, stats)
        return
    _finish(conn, settings, group, None, key, stats)
    log.info("alerts: %s sent to %s (%d alert(s), %s)", first["channel"], first["target"], len(firings), key)


def drain(conn, cfg, settings: AlertSettings | None = None, *, limit: int = 100) -> DrainStats:
    """One pass over the outbox (see the module's text). Database errors propagate (the caller reconnects)."""
    settings = settings or load(cfg)
    stats = DrainStats(reclaimed=reclaim(conn))
    for d in _claim(conn, settings, limit):
        _deliver(conn, cfg, settings, [d], stats)
    for group in _claim_digests(conn, settings):
        _deliver(conn, cfg, settings, group, stats)
    return stats


class Sender:
    """A thread draining the outbox every `sender.poll_s` (the dose worker runs one; `nmdose alerts send --loop`
    too). Never dies: a lost database is reconnected, a bug logged."""

    def __init__(self, cfg, settings: AlertSettings | None = None):
        self.cfg = cfg
        self.settings = settings or load(cfg)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._conn = None
        self.passes = 0

    def start(self) -> Sender:
        self._thread = threading.Thread(target=self._run, name="nmdose-alert-sender", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 10) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def step(self) -> DrainStats:
        from nmdose.db import connect

        try:
            if self._conn is None or self._conn.closed:
                self._conn = connect(self.cfg)
            return drain(self._conn, self.cfg, self.settings)
        except Exception as exc:  # the database away, or a bug: logged, the outbox keeps everything
            log.warning(
                "alerts: sender pass failed: %s", str(exc).strip().splitlines()[0] if str(exc) else exc
            )
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None
            return DrainStats(errors=[str(exc)])
        finally:
            self.passes += 1

    def _run(self) -> None:
        while not self._stop.is_set():
            start = time.monotonic()
            self.step()
            self._stop.wait(max(0.0, self.settings.sender.poll_s - (time.monotonic() - start)))
        with contextlib.suppress(Exception):
            if self._conn is not None:
                self._conn.close()
