"""Dose alerts (issue 16 item 3, docs/alerts.md): rules evaluated on each study inside the ingest transaction
(rules.py), firings stored once per study and rule with an outbox of deliveries (outbox.py), sent by e-mail (SMTP
with STARTTLS) and webhooks (notify.py) by a sender thread of the dose worker or `nmdose alerts send`."""
