"""Ingest: parse results into the ``dose`` schema (sql/003_dose.sql), idempotent and merged per study (issue 6).

Each object is stored once per SOP Instance UID (same bytes again: a no-op). Whenever a study gains or changes an
object, its merged rows (``dose.study``, ``ct_event``, ``radiopharmaceutical``, ``series_protocol``) are rebuilt
with :func:`merge_study` over *all* of its stored objects, in the same transaction, under a per-study advisory
lock: a cumulative or continued RDSR never double-counts and never loses events, and two workers never race.
A file that cannot be parsed or stored goes to ``dose.dead_letter`` with its error and never blocks the others.

The PatientID a parse result carries is replaced by its keyed pseudonym (``patient_pseudonym``,
:func:`nmdose.secrets.patient_pseudonym`) before anything is stored: the plain PatientID never reaches ``dose``.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import logging
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import psycopg2
from psycopg2.extras import Json, execute_values

from nmdose.alerts.rules import on_study
from nmdose.dose.derived import derive_study
from nmdose.dose.merge import merge_study
from nmdose.dose.parse import NOT_DOSE, parse_file
from nmdose.dose.scanners import resolve as resolve_scanner
from nmdose.dose.standard_names import apply_to_study as apply_standard_names
from nmdose.secrets import patient_pseudonym
from nmdose.secrets import pseudonym_key as _secret_key

log = logging.getLogger(__name__)

__all__ = ["ingest_files", "ingest_parsed", "record_dead_letter", "study_rows", "iter_files", "sha256_file"]


# ------------------------------------------------------------------------------------------------ helpers
def sha256_file(path: str | os.PathLike, opener: Callable[[str], BinaryIO] | None = None) -> str | None:
    """SHA-256 of a file's bytes, or None when it cannot be read (``opener``: how to open it, default open())."""
    h = hashlib.sha256()
    try:
        with opener(os.fspath(path)) if opener else open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    except OSError:
        return None
    return h.hexdigest()


def iter_files(paths: Iterable[str | os.PathLike]) -> Iterator[str]:
    """Files given, and every file under the folders given (sorted, hidden files skipped)."""
    for p in paths:
        path = Path(p)
        if path.is_dir():
            for root, dirs, names in os.walk(path):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for name in sorted(names):
                    if not name.startswith("."):
                        yield str(Path(root) / name)
        else:
            yield str(path)


def _clean(value: Any) -> Any:
    """Strip NUL characters (jsonb and text reject them) from every string of a parse result."""
    if isinstance(value, str):
        return value.replace("\x00", "") if "\x00" in value else value
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


# SQLSTATEs that mean the database (not the entry) is away or out of resources, so the batch waits and is retried:
# class 08 (connection), class 53 (disk full, out of memory, too many connections: no entry's fault, and
# dead-lettering every file while the disk is full would bury good data) and the shutdown/crash codes of 57P.
CONNECTION_FAILURE_CODES = frozenset({"57P01", "57P02", "57P03"})
TRANSIENT_CLASSES = ("08", "53")


def is_connection_failure(exc: BaseException, conn=None) -> bool:
    """True when ``exc`` means the database is unusable (retry the batch later), False when one entry's data
    caused it (dead-letter the entry). Decided by SQLSTATE, not by exception class: psycopg2 raises
    ``ProgramLimitExceeded`` (54000, an index row too large) as an ``OperationalError``."""
    if isinstance(exc, psycopg2.InterfaceError) or (conn is not None and getattr(conn, "closed", 0)):
        return True
    code = getattr(exc, "pgcode", None)
    if code is None:  # no answer from the server: the connection broke (a client-side error is the data's)
        return isinstance(exc, psycopg2.OperationalError)
    return code.startswith(TRANSIENT_CLASSES) or code in CONNECTION_FAILURE_CODES


def _lock_id(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big", signed=True)


def _date(value: str | None) -> _dt.date | None:
    try:
        return _dt.date.fromisoformat(value) if value else None
    except ValueError:
        return None


def _time(value: str | None) -> _dt.time | None:
    """HH:MM:SS of the parse result (StudyTime), or None."""
    try:
        return _dt.time.fromisoformat(value) if value else None
    except ValueError:
        return None


def _timestamp(value: str | None) -> _dt.datetime | None:
    """ISO date-time as wall-clock time (a zone offset, when recorded, is dropped; the text stays in details)."""
    try:
        return _dt.datetime.fromisoformat(value).replace(tzinfo=None) if value else None
    except ValueError:
        return None


def _pseudonymised(parsed: dict[str, Any], key: str | None) -> dict[str, Any]:
    """The parse result without its PatientID, with the keyed pseudonym instead (None: empty PatientID, or no
    key because the caller gave a bare connection and no ``pseudonym_key``)."""
    out = {k: v for k, v in parsed.items() if k != "patient_id"}
    out["patient_pseudonym"] = patient_pseudonym(key, parsed.get("patient_id")) if key else None
    return out


def _key_for(cfg_or_conn, given: str | None) -> str | None:
    """The pseudonym key: given, else from the configuration (a Config, or the one nmdose.db.connect attached
    to its connection); prod refuses a missing or short key (nmdose.secrets.pseudonym_key)."""
    if given:
        return given
    cfg = cfg_or_conn if not hasattr(cfg_or_conn, "cursor") else getattr(cfg_or_conn, "nmdose_cfg", None)
    if cfg is None:
        log.warning("dose ingest without a configuration: studies get no patient pseudonym")
        return None
    return _secret_key(cfg)


def _study_pseudonym(objects: list[dict[str, Any]]) -> tuple[str | None, list[str]]:
    """The study's pseudonym (its first object's that has one) and a warning when its objects name several."""
    found = list(dict.fromkeys(o["patient_pseudonym"] for o in objects if o.get("patient_pseudonym")))
    if len(found) > 1:
        return found[0], [f"patient: the objects of this study carry {len(found)} different PatientIDs; the "
                          "first object's is used"]  # fmt: skip
    return (found[0] if found else None), []


def _object_key(parsed: dict[str, Any], sha: str) -> str:
    return parsed.get("sop_instance_uid") or f"sha256:{sha}"


# ------------------------------------------------------------------------------------------ pure row building
def study_rows(
    merged: dict[str, Any], derived: dict[str, Any], objects: list[dict[str, Any]]
) -> dict[str, Any]:
    """The rows of one study, from ``merge_study`` + ``derive_study`` (pure; unit-tested without a database)."""
    uid = merged["study_instance_uid"]
    study_date = _date(merged.get("study_date"))
    year = study_date.year if study_date else None
    first = next((o for o in objects if o.get("manufacturer")), objects[0] if objects else {})
    ct = merged["ct"]
    patient = merged["patient"]
    pseudonym, pseudonym_warnings = _study_pseudonym(objects)
    study = {
        "study_instance_uid": uid,
        "study_date": study_date,
        "study_year": year,
        "study_time": _time(next((o["study_time"] for o in objects if o.get("study_time")), None)),
        "study_description": merged.get("study_description"),
        "accession_number": merged.get("accession_number"),
        "manufacturer": first.get("manufacturer"),
        "model_name": first.get("model_name"),
        "station_name": first.get("station_name"),
        "patient_pseudonym": pseudonym,
        "patient_age_years": patient.get("age_years"),
        "patient_sex": patient.get("sex"),
        "patient_weight_kg": patient.get("weight_kg"),
        "patient_height_m": patient.get("height_m"),
        "ct_source_kind": ct.get("source_kind"),
        "ct_event_count": ct.get("total_events") or 0,
        "ct_total_dlp_mgycm": ct.get("total_dlp_mgycm"),
        "ct_reported_total_dlp_mgycm": ct.get("reported_total_dlp_mgycm"),
        "ct_effective_dose_msv": derived["ct_effective_dose_msv"],
        "nm_total_activity_mbq": derived["nm_total_activity_mbq"],
        "nm_effective_dose_msv": derived["nm_effective_dose_msv"],
        "total_effective_dose_msv": derived["total_effective_dose_msv"],
        "activity_per_kg_mbq": derived["activity_per_kg_mbq"],
        "derived": Json({k: derived[k] for k in ("age_band_years", "sources", "notes")}),
        "sources": Json(merged["sources"]),
        "warnings": Json(
            merged["warnings"]
            + [n for n in derived["notes"] if n.startswith("plausibility: ")]
            + pseudonym_warnings
        ),
        "object_count": len(objects),
    }
    events = []
    for i, (event, d) in enumerate(zip(ct["events"], derived["events"], strict=True)):
        sources = event.get("sources") or []
        kvps = [s["kvp"] for s in sources if s.get("kvp") is not None]
        mas = [s["tube_current_ma"] for s in sources if s.get("tube_current_ma") is not None]
        check = event.get("dose_check") or {}
        events.append({
            "study_instance_uid": uid,
            "event_key": event.get("irradiation_event_uid") or f"#{i}",
            "irradiation_event_uid": event.get("irradiation_event_uid"),
            "ordinal": i,
            "study_date": study_date,
            "study_year": year,
            **{k: event.get(k) for k in EVENT_FIELDS},
            "kvp": max(kvps) if kvps else None,
            "tube_current_ma": max(mas) if mas else None,
            "source_count": len(sources),
            "sources": Json(sources),
            "dose_check": Json(check) if any(v is not None for v in check.values()) else None,
            "k_msv_per_mgycm": d["k_msv_per_mgycm"],
            "effective_dose_msv": d["effective_dose_msv"],
        })  # fmt: skip
    administrations = []
    seen_keys: set[str] = set()
    for i, (adm, d) in enumerate(zip(merged["radiopharmaceutical"], derived["administrations"], strict=True)):
        key = adm.get("administration_event_uid") or f"#{i}"
        if key in seen_keys:
            key = f"{key}#{i}"
        seen_keys.add(key)
        administrations.append({
            "study_instance_uid": uid,
            "administration_key": key,
            "ordinal": i,
            "study_date": study_date,
            "study_year": year,
            "source": adm.get("source") or "unknown",
            **{k: adm.get(k) for k in ADMIN_FIELDS},
            "start_datetime": _timestamp(adm.get("start_datetime")),
            "stop_datetime": _timestamp(adm.get("stop_datetime")),
            "header_start_datetime": _timestamp(adm.get("header_start_datetime")),
            "pre_measured_datetime": _timestamp(adm.get("pre_measured_datetime")),
            "post_measured_datetime": _timestamp(adm.get("post_measured_datetime")),
            "net_activity_mbq": d.get("net_activity_mbq"),
            "administered_activity_rule": d.get("administered_activity_rule"),
            "plausibility": d.get("plausibility"),
            "activity_at_injection_mbq": d["activity_at_injection_mbq"],
            "activity_per_kg_mbq": d["activity_per_kg_mbq"],
            "coefficient_msv_per_mbq": d["coefficient_msv_per_mbq"],
            "effective_dose_msv": d["effective_dose_msv"],
            "reported_effective_dose_msv": adm.get("effective_dose_msv"),
            "details": Json({**adm, "derived_note": d["note"], "decay_correction": d["decay_correction"],
                             "net_activity_note": d.get("net_activity_note")}),
        })  # fmt: skip
    protocols: dict[str, dict[str, Any]] = {}
    for p in merged["protocols"]:
        series = p.get("series_instance_uid")
        if not series:
            continue
        row = protocols.setdefault(series, {"study_instance_uid": uid, "series_instance_uid": series,
                                            "study_date": study_date, "study_year": year})  # fmt: skip
        for k in PROTOCOL_FIELDS:
            if row.get(k) is None:
                row[k] = p.get(k)
    return {"study": study, "ct_event": events, "radiopharmaceutical": administrations,
            "series_protocol": list(protocols.values())}  # fmt: skip


EVENT_FIELDS = ("acquisition_protocol", "target_region", "target_region_code", "acquisition_type", "ctdivol_mgy",
                "dlp_mgycm", "phantom", "scanning_length_mm", "exposure_time_s", "pitch",
                "nominal_total_collimation_mm", "nominal_single_collimation_mm", "ssde_mgy", "ssde_method",
                "ssde_method_code", "ssde_size_mm", "ssde_size_kind", "water_equivalent_diameter_mm",
                "water_equivalent_diameter_method", "water_equivalent_diameter_method_code", "effective_diameter_mm",
                "lateral_dimension_mm", "ap_dimension_mm")  # fmt: skip
ADMIN_FIELDS = ("agent", "agent_code", "radionuclide", "radionuclide_code", "activity_mbq", "activity_rule",
                "half_life_s", "route", "pre_measured_activity_mbq", "post_measured_activity_mbq",
                "header_activity_mbq", "injection_time_difference_s", "start_datetime_source")  # fmt: skip
PROTOCOL_FIELDS = ("modality", "protocol_name", "series_description", "requested_procedure", "performed_procedure",
                   "body_part")  # fmt: skip


def _insert(cur, table: str, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    columns = list(rows[0])
    sql = f"INSERT INTO dose.{table} ({', '.join(columns)}) VALUES %s"  # table and columns are ours
    execute_values(cur, sql, [tuple(r[c] for c in columns) for r in rows], page_size=500)


# ----------------------------------------------------------------------------------------------- database
def record_dead_letter(conn, file: str, error: str, *, sha: str | None = None, source: str = "cli") -> None:
    """Record (or count again) a file that could not be ingested; commits."""
    with conn, conn.cursor() as cur:
        _dead_letter(cur, file, error, sha, source)


def _text_safe(text: str, limit: int = 4000) -> str:
    """Text PostgreSQL accepts, whatever a forged spool entry named: NUL and undecodable bytes (surrogates)
    shown escaped, bounded."""
    if "\x00" in text:
        text = text.replace("\x00", "\\x00")
    if not text.isascii():
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text[:limit]


def _dead_letter(cur, file: str, error: str, sha: str | None, source: str) -> None:
    file, error, source = _text_safe(file), _text_safe(error), _text_safe(source, 200)
    key = f"sha256:{sha}" if sha else f"path:{file}"
    if len(key) > 1000:  # a unique index takes at most ~2,700 bytes
        key = "path-sha256:" + hashlib.sha256(key.encode(errors="replace")).hexdigest()
    cur.execute(
        """INSERT INTO dose.dead_letter (key, file_path, file_sha256, source, error)
           VALUES (%s, %s, %s, %s, %s)
           ON CONFLICT (key) DO UPDATE SET attempts = dose.dead_letter.attempts + 1, last_seen = now(),
               error = EXCLUDED.error, file_path = EXCLUDED.file_path, resolved_at = NULL""",
        (key, file, sha, source, error),
    )


def _recompute_study(cur, study_uid: str) -> None:
    cur.execute(
        """SELECT parsed FROM dose.object WHERE study_instance_uid = %s AND status = 'ok'
           ORDER BY first_seen, sop_instance_uid""",
        (study_uid,),
    )
    objects = [r[0] for r in cur.fetchall()]
    cur.execute("DELETE FROM dose.study WHERE study_instance_uid = %s", (study_uid,))
    if not objects:
        return
    merged = merge_study(objects)
    rows = study_rows(merged, derive_study(merged), objects)
    rows["study"]["scanner_id"] = resolve_scanner(cur, objects, rows["study"])  # docs/dose.md "Scanners"
    _insert(cur, "study", [rows["study"]])
    for table in ("ct_event", "radiopharmaceutical", "series_protocol"):
        _insert(cur, table, rows[table])
    apply_standard_names(cur, study_uid)  # the rules of sql/015 (docs/standard_names.md), before the alerts
    on_study(cur, study_uid)  # dose alerts: firings + deliveries, in this transaction (docs/alerts.md)


def _store_object(cur, parsed: dict[str, Any], sha: str, source: str) -> tuple[str, set[str], str | None]:
    """Upsert one object row; returns (outcome, studies whose merged rows must be rebuilt, dead-letter reason).

    A re-sent SOP instance that parses worse than the stored copy replaces nothing: it becomes a dead letter."""
    key = _object_key(parsed, sha)
    study = parsed.get("study_instance_uid")
    cur.execute(
        """SELECT file_sha256, study_instance_uid, status,
                  jsonb_array_length(coalesce(parsed->'ct'->'events', '[]'))
                  + jsonb_array_length(coalesce(parsed->'radiopharmaceutical', '[]'))
             FROM dose.object WHERE sop_instance_uid = %s FOR UPDATE""",
        (key,),
    )
    row = cur.fetchone()
    if row is not None and row[0] == sha:
        cur.execute(
            "UPDATE dose.object SET times_seen = times_seen + 1, last_seen = now() WHERE sop_instance_uid = %s",
            (key,),
        )
        return "unchanged", set(), None
    if row is not None and row[1] is not None and study != row[1]:
        # the same SOP instance under another study: moving it would take it (and its events) out of the first
        # study's rows on the word of one copy; it is refused and left for a person to decide
        named = f"Study Instance UID {study}" if study else "no Study Instance UID"
        error = (f"{parsed.get('file')}: SOP Instance UID {key} is stored under Study Instance UID {row[1]} and "
                 f"this copy names {named}: not moved; the stored copy and that study's dose rows are kept")  # fmt: skip
        _dead_letter(cur, parsed.get("file") or "?", error, sha, source)
        return "dead_letter", set(), error
    worse = _worse(parsed, row[2], row[3]) if row is not None else None
    if worse:
        error = (f"{parsed.get('file')}: re-sent SOP Instance UID {key} {worse}; "
                 "the stored copy and its dose rows are kept")  # fmt: skip
        _dead_letter(cur, parsed.get("file") or "?", error, sha, source)
        return "dead_letter", set(), error
    values = (
        study, parsed.get("series_instance_uid"), parsed.get("sop_class_uid"), parsed.get("modality"),
        parsed.get("kind") or "other", parsed["status"], sha, parsed.get("file"), source,
        Json(parsed.get("warnings") or []), Json(parsed),
    )  # fmt: skip
    if row is None:
        cur.execute(
            """INSERT INTO dose.object (study_instance_uid, series_instance_uid, sop_class_uid, modality, kind,
                   status, file_sha256, file_path, source, warnings, parsed, sop_instance_uid)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)""",
            (*values, key),
        )
        outcome = "ingested"
    else:
        cur.execute(
            """UPDATE dose.object SET study_instance_uid = %s, series_instance_uid = %s, sop_class_uid = %s,
                   modality = %s, kind = %s, status = %s, file_sha256 = %s, file_path = %s, source = %s,
                   warnings = %s, parsed = %s, revisions = revisions + 1, times_seen = times_seen + 1,
                   last_seen = now()
               WHERE sop_instance_uid = %s""",
            (*values, key),
        )
        outcome = "revised"
    cur.execute("UPDATE dose.dead_letter SET resolved_at = now() WHERE key = %s", (f"sha256:{sha}",))
    studies = {s for s in (study, row[1] if row else None) if s}
    if parsed["status"] != "ok" and row is None:
        studies = set()
    return outcome, studies, None


def _events(parsed: dict[str, Any]) -> int:
    return len((parsed.get("ct") or {}).get("events") or []) + len(parsed.get("radiopharmaceutical") or [])


def _worse(parsed: dict[str, Any], stored_status: str, stored_events: int) -> str | None:
    """Why a new parse of a stored SOP instance is worse than the stored one (None: it may replace it)."""
    if stored_status != "ok":
        return None
    if parsed["status"] != "ok":
        why = [w for w in parsed.get("warnings") or [] if f": {NOT_DOSE}: " in w]
        because = f" ({why[-1].split(f': {NOT_DOSE}: ', 1)[1]})" if why else ""
        return f"parses as {parsed['status']}{because} where the stored copy is a dose object"
    if _events(parsed) < stored_events:
        return f"has {_events(parsed)} events or administrations where the stored copy has {stored_events}"
    return None


def ingest_parsed(conn, parsed: dict[str, Any], *, sha256: str | None = None, source: str = "cli",
                  pseudonym_key: str | None = None) -> dict:  # fmt: skip
    """Store one ``parse_file`` result and rebuild its study, in one transaction; errors go to the dead letters."""
    key = _key_for(conn, pseudonym_key)
    return _ingest_group(conn, [(_pseudonymised(_clean(parsed), key), sha256)], source)[0]


def _outcome(parsed: dict[str, Any], status: str, error: str | None = None) -> dict[str, Any]:
    return {"file": parsed.get("file"), "status": status, "kind": parsed.get("kind"),
            "sop_instance_uid": parsed.get("sop_instance_uid"),
            "study_instance_uid": parsed.get("study_instance_uid"), "error": error}  # fmt: skip


def _ingest_group(conn, items: list[tuple[dict[str, Any], str | None]], source: str) -> list[dict[str, Any]]:
    """Objects of one study in one transaction; on a data error, one by one so only the culprit fails."""
    results: list[dict[str, Any] | None] = [None] * len(items)
    todo = []
    for i, (parsed, sha) in enumerate(items):
        if sha is None:
            sha = sha256_file(parsed["file"]) if parsed.get("file") else None
        if parsed.get("status") == "error" or sha is None:
            error = parsed.get("error") or f"{parsed.get('file')}: cannot be read"
            record_dead_letter(conn, parsed.get("file") or "?", error, sha=sha, source=source)
            results[i] = _outcome(parsed, "dead_letter", error)
        else:
            todo.append((i, parsed, sha))
    if todo:
        try:
            for i, outcome in _store_group(conn, todo, source):
                results[i] = outcome
        except (psycopg2.Error, ValueError) as exc:  # ValueError: a value psycopg2 cannot send
            if is_connection_failure(exc, conn):
                raise  # the database is gone: the caller retries later, nothing is lost
            if len(todo) == 1:
                i, parsed, sha = todo[0]
                reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                code = getattr(exc, "pgcode", None)
                sqlstate = f" (SQLSTATE {code})" if code else ""
                error = f"{parsed.get('file')}: cannot be stored{sqlstate}: {reason}"
                record_dead_letter(conn, parsed.get("file") or "?", error, sha=sha, source=source)
                results[i] = _outcome(parsed, "dead_letter", error)
            else:
                for i, parsed, sha in todo:
                    results[i] = _ingest_group(conn, [(parsed, sha)], source)[0]
    return [r for r in results if r is not None]


def _store_group(conn, todo: list[tuple[int, dict[str, Any], str]], source: str) -> list[tuple[int, dict]]:
    out = []
    with conn, conn.cursor() as cur:
        lock_keys = sorted({p.get("study_instance_uid") or _object_key(p, s) for _i, p, s in todo})
        for key in lock_keys:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (_lock_id("dose-study:" + key),))
        rebuild: set[str] = set()
        for i, parsed, sha in todo:
            outcome, studies, error = _store_object(cur, parsed, sha, source)
            rebuild |= studies
            if error is not None:  # a worse copy of a stored instance: recorded, nothing replaced
                out.append((i, _outcome(parsed, outcome, error)))
                continue
            status = outcome if parsed["status"] == "ok" or outcome == "unchanged" else "not_dose"
            out.append((i, _outcome(parsed, status)))
        for study in sorted(rebuild):
            if study not in lock_keys:
                cur.execute("SELECT pg_advisory_xact_lock(%s)", (_lock_id("dose-study:" + study),))
            _recompute_study(cur, study)
    return out


def _seen_again(conn, hashes: set[str]) -> dict[str, dict[str, Any]]:
    """Objects already stored with these exact bytes: count the sighting, return them by hash (commits)."""
    if not hashes:
        return {}
    with conn, conn.cursor() as cur:
        cur.execute(
            """UPDATE dose.object SET times_seen = times_seen + 1, last_seen = now()
               WHERE file_sha256 = ANY(%s)
               RETURNING file_sha256, kind, sop_instance_uid, study_instance_uid""",
            (sorted(hashes),),
        )
        return {
            sha: {"kind": kind, "sop_instance_uid": sop, "study_instance_uid": study}
            for sha, kind, sop, study in cur.fetchall()
        }


def ingest_files(cfg_or_conn, paths: Iterable[str | os.PathLike], *, source: str = "cli",
                 parsed: dict[str, dict[str, Any]] | None = None,
                 opener: Callable[[str], BinaryIO] | None = None,
                 pseudonym_key: str | None = None) -> list[dict[str, Any]]:  # fmt: skip
    """Parse and store files (folders are walked); one transaction per study; never stops on a bad file.

    ``cfg_or_conn`` is a :class:`Config` (a connection is opened and closed here) or an open connection.
    ``opener(path)``: how each file is opened (the spool worker's refuses symbolic links); with it, paths are
    files only (no folder is walked). Returns one outcome per file:
    ``ingested|revised|unchanged|not_dose|dead_letter`` with the error, if any. ``pseudonym_key``: the key of
    the patient pseudonyms (default: the secret store's, from the Config or the connection's configuration).
    """
    key = _key_for(cfg_or_conn, pseudonym_key)
    own = not hasattr(cfg_or_conn, "cursor")
    if own:
        from nmdose.db import connect

        conn = connect(cfg_or_conn)
    else:
        conn = cfg_or_conn
    try:
        files = [os.fspath(p) for p in paths] if opener else list(iter_files(paths))
        hashes = {file: sha256_file(file, opener) for file in files}
        known = _seen_again(conn, {h for h in hashes.values() if h})
        groups: dict[str, list[tuple[dict[str, Any], str | None]]] = {}
        order: list[str] = []
        outcomes: list[dict[str, Any]] = []
        for file in files:
            sha = hashes[file]
            if sha in known:  # the same bytes are stored already: a no-op, not even parsed
                outcomes.append({**known[sha], "file": file, "status": "unchanged", "error": None})
                continue
            result = (parsed or {}).get(file) or parse_file(file, opener=opener)
            result = _pseudonymised(_clean(result), key)
            group = result.get("study_instance_uid") or f"file:{file}"
            if group not in groups:
                groups[group] = []
                order.append(group)
            groups[group].append((result, sha))
        for group in order:
            outcomes.extend(_ingest_group(conn, groups[group], source))
        return outcomes
    finally:
        if own:
            conn.close()
