"""Computed dose-page answers, kept per version of the dose data (``dose.web_cache``, ``sql/007_web.sql``).

Percentiles cannot be kept as running sums, and on years of data one computation takes up to a second; the
dose page asks the same questions again and again between two ingests. Every statement that writes a dose table
adds one to an append-only counter in its own transaction, so ``dose.data_version()`` (the counter's sum) names
the committed dose data exactly. An answer is read back only for the version it was computed from, and stored
only when the version read before computing equals the version read after: then no dose write committed in
between, so the computation's snapshot saw that version. Exports (CSV, XLSX) are always computed.

A failure of the cache itself (a read-only standby, a full disk) never fails the request: the answer is
computed and returned, and the failure logged. A caller may also keep a big answer decoded in the process for
its version (`memo`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections import OrderedDict
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


# Decoded answers of the callers asking for it (`memo=True`), in this process: (database, key) -> (data version,
# answer), the newest MEMO_SIZE. For a big answer read on every request (the outlier list's index: megabytes of
# JSON, ~0.1 s to read and decode); a memo answer is shared, its callers never change it.
_memo: OrderedDict[tuple[Any, ...], tuple[int, Any]] = OrderedDict()
_memo_lock = threading.Lock()
MEMO_SIZE = 2


def _memo_key(conn, key: str) -> tuple[Any, ...]:
    info = conn.info
    return (info.host, info.port, info.dbname, key)


def _remember(key: tuple[Any, ...], version: int, answer: Any) -> None:
    with _memo_lock:
        _memo[key] = (version, answer)
        _memo.move_to_end(key)
        while len(_memo) > MEMO_SIZE:
            _memo.popitem(last=False)


def cached_rows(conn, key: str, compute: Callable[[], Rows], *, memo: bool = False) -> Rows:
    """The answer stored under `key` for the current dose data, else `compute()` (stored when exact). `memo`: the
    decoded answer is also kept in this process for its version, and then not read again while it holds."""
    mkey = _memo_key(conn, key) if memo else ()
    held = _memo.get(mkey) if memo else None
    try:
        with conn.cursor() as cur:
            cur.execute(
                """SELECT v, CASE WHEN v IS DISTINCT FROM %s
                                  THEN (SELECT body FROM dose.web_cache WHERE key = %s AND data_version = v) END
                     FROM dose.data_version() v""",
                (held[0] if held else None, key),
            )
            before, body = cur.fetchone()
        conn.rollback()
    except psycopg2.Error as exc:
        conn.rollback()
        log.warning("web cache not readable, computing: %s", exc)
        return compute()
    if held is not None and held[0] == before:
        return held[1]
    if body is not None:
        answer = json.loads(body)
        if memo:
            _remember(mkey, before, answer)
        return answer
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
                if memo:  # (exact: computed from this version)
                    _remember(mkey, before, rows)
        conn.commit()
    except psycopg2.Error as exc:
        conn.rollback()
        log.warning("web cache not writable, answer not kept: %s", exc)
    return rows
