"""Computed dose-page answers, kept per version of the dose data (``dose.web_cache``, ``sql/007_web.sql``).

Percentiles cannot be kept as running sums, and on years of data one computation takes up to a second; the
dose page asks the same questions again and again between two ingests. Every statement that writes a dose table
adds one to an append-only counter in its own transaction, so ``dose.data_version()`` (the counter's sum) names
the committed dose data exactly. An answer is read back only for the version it was computed from, and stored
only when the version read before computing equals the version read after: then no dose write committed in
between, so the computation's snapshot saw that version. Exports (CSV, XLSX) are always computed.

A failure of the cache itself (a read-only standby, a full disk) never fails the request: the answer is
computed and returned, and the failure logged.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from typing import Any

import psycopg2

log = logging.getLogger("nmdose.web.cache")

Rows = list[dict[str, Any]]


def cache_key(route: str, params: dict[str, Any], *extra: Any) -> str:
    """The route and its validated parameters (and e.g. the reference levels' JSON), as one stable text."""
    text = json.dumps([route, sorted(params.items()), *extra], ensure_ascii=False, default=str)
    return route + ":" + hashlib.sha256(text.encode()).hexdigest()


def encode(rows: Rows) -> str:
    """Rows as the JSON the API answers (dates as text, as `Response.json` writes them)."""
    return json.dumps(rows, ensure_ascii=False, default=str)


def cached_rows(conn, key: str, compute: Callable[[], Rows]) -> Rows:
    """The answer stored under `key` for the current dose data, else `compute()` (stored when exact)."""
    try:
        with conn.cursor() as cur:
            cur.execute(
                """SELECT v, (SELECT body FROM dose.web_cache WHERE key = %s AND data_version = v)
                     FROM dose.data_version() v""",
                (key,),
            )
            before, body = cur.fetchone()
        conn.rollback()
    except psycopg2.Error as exc:
        conn.rollback()
        log.warning("web cache not readable, computing: %s", exc)
        return compute()
    if body is not None:
        return json.loads(body)
    start = time.perf_counter()
    rows = compute()
    compute_ms = (time.perf_counter() - start) * 1000
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT dose.data_version()")
            if cur.fetchone()[0] == before:
                # Older answers go, by one request at a time (two purges locking each other's rows could
                # deadlock; an insert waits at most for one purge).
                cur.execute("SELECT pg_try_advisory_xact_lock(28269, 704)")
                if cur.fetchone()[0]:
                    cur.execute("DELETE FROM dose.web_cache WHERE data_version < %s", (before,))
                cur.execute(
                    """INSERT INTO dose.web_cache (key, data_version, body, compute_ms) VALUES (%s, %s, %s, %s)
                       ON CONFLICT (key) DO UPDATE SET data_version = EXCLUDED.data_version, body = EXCLUDED.body,
                           computed_at = now(), compute_ms = EXCLUDED.compute_ms
                        WHERE dose.web_cache.data_version < EXCLUDED.data_version""",
                    (key, before, encode(rows), compute_ms),
                )
        conn.commit()
    except psycopg2.Error as exc:
        conn.rollback()
        log.warning("web cache not writable, answer not kept: %s", exc)
    return rows
