"""The rows of rpacs.import_run (sql/012_imports.sql): one per import of one dropped folder.

No row names a patient: the folder (whose name holds the patient's name and number) is `folder_hash`, studies
are their StudyInstanceUIDs. Every write is its own short transaction; a database that is down never stops an
import (the importer logs it and goes on: the folder, Orthanc and the archive are what make it lossless).
"""

from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nmdose.config import Config

log = logging.getLogger(__name__)

COLUMNS = ("id", "folder_hash", "started_at", "finished_at", "outcome", "trigger", "pattern_matched", "files",
           "dicom_files", "skipped_files", "bad_files", "stored_files", "already_stored", "studies", "study_uids",
           "bytes", "seconds", "destination", "log_file", "error")  # fmt: skip
FINAL = ("archived", "failed", "retry", "interrupted")


def _connect(cfg: Config):
    from nmdose.db import connect

    return connect(cfg, role="worker")


def start(cfg: Config, folder_hash: str, content_key: str, trigger: str, log_file: str) -> int | None:
    """A `running` row for this import (earlier `running` rows of the same folder are `interrupted`: this
    process holds the folder's lock, so whoever wrote them died). None when the database is unreachable."""
    try:
        with contextlib.closing(_connect(cfg)) as conn, conn, conn.cursor() as cur:
            cur.execute(
                "UPDATE rpacs.import_run SET outcome = 'interrupted', finished_at = now(),"
                " error = coalesce(error, 'the importing process ended before it finished')"
                " WHERE folder_hash = %s AND outcome = 'running'",
                (folder_hash,),
            )
            cur.execute(
                "INSERT INTO rpacs.import_run (folder_hash, content_key, trigger, log_file)"
                " VALUES (%s, %s, %s, %s) RETURNING id",
                (folder_hash, content_key, trigger, log_file),
            )
            return int(cur.fetchone()[0])
    except Exception as exc:  # noqa: BLE001 - bookkeeping only: the import goes on without its row
        log.warning("import row not written (%s)", exc)
        return None


def finish(cfg: Config, run_id: int | None, **values: Any) -> None:
    """Set the counts and the outcome of row `run_id`."""
    if run_id is None:
        return
    allowed = set(COLUMNS) - {"id", "folder_hash", "started_at", "finished_at", "trigger"}
    unknown = set(values) - allowed
    if unknown:
        raise ValueError(f"unknown import_run columns {sorted(unknown)}")
    sets = ", ".join(f"{k} = %s" for k in values)
    final = ", finished_at = now()" if values.get("outcome") in FINAL else ""
    try:
        with contextlib.closing(_connect(cfg)) as conn, conn, conn.cursor() as cur:
            cur.execute(
                f"UPDATE rpacs.import_run SET {sets}{final} WHERE id = %s", (*values.values(), run_id)
            )
    except Exception as exc:  # noqa: BLE001
        log.warning("import row %s not updated (%s)", run_id, exc)


def recent(conn, limit: int = 50) -> list[dict[str, Any]]:
    """The newest imports first, as dicts (the research page's table; `conn` may be the web role's)."""
    with conn.cursor() as cur:
        cur.execute(
            f"SELECT {', '.join(COLUMNS)} FROM rpacs.import_run ORDER BY started_at DESC, id DESC LIMIT %s",
            (int(limit),),
        )
        return [dict(zip(COLUMNS, row, strict=True)) for row in cur.fetchall()]


def reconcile(cfg: Config, is_locked) -> int:
    """`running` rows whose folder nobody imports now (`is_locked(folder_hash)` false: the process died, e.g.
    after the folder's rename and before its row was written) become `interrupted`. Returns how many."""
    try:
        with contextlib.closing(_connect(cfg)) as conn, conn, conn.cursor() as cur:
            cur.execute("SELECT id, folder_hash FROM rpacs.import_run WHERE outcome = 'running'")
            stale = [run_id for run_id, fhash in cur.fetchall() if not is_locked(fhash)]
            if stale:
                cur.execute(
                    "UPDATE rpacs.import_run SET outcome = 'interrupted', finished_at = now(),"
                    " error = coalesce(error, 'the importing process ended before it finished')"
                    " WHERE id = ANY(%s) AND outcome = 'running'",
                    (stale,),
                )
            return len(stale)
    except Exception as exc:  # noqa: BLE001
        log.warning("import rows not reconciled (%s)", exc)
        return 0
