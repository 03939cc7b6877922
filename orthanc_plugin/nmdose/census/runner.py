"""The census: earliest date by probing, then every date range until each is complete, into `rpacs`.

Ranges are sized from the answer density seen so far (about 60 % of the node's cap per request); a capped range is
split along the calendar (year -> month -> day) and a capped day along StudyTime, down to an hour; an hour still
capped is reported, never silently truncated. Every query is recorded in `rpacs.census_query`, and
`census_run.resume_from` advances after each complete range, so a stopped census continues where it stopped.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from psycopg2.extras import Json

from nmdose import logfiles
from nmdose.census import descriptions, store
from nmdose.census.finder import PROBE_KEYS, RETURN_KEYS, FindResult, StudyFinder
from nmdose.census.modalities import split_modalities
from nmdose.census.ranges import (
    DateRange,
    Probe,
    TimeRange,
    calendar_split,
    find_earliest,
    minimum_requests,
    next_window,
    parse_date,
)
from nmdose.config import Config
from nmdose.errors import NmdoseError, PacsError

log = logging.getLogger("nmdose.census")

FLOOR = date(1985, 1, 1)  # before ACR-NEMA 1.0: no PACS holds older studies
LOCK_KEY = 0x6E6D6365  # pg advisory lock: one census at a time per database
UNCAPPED_TARGET = 2000  # answers per request aimed at when the node has no cap


class CensusError(NmdoseError):
    """The census could not finish (names the node, the range and how to resume)."""


class CensusBusy(CensusError):
    """Another census is running."""


@dataclass
class Progress:
    days_done: int
    days_total: int
    studies: int
    requests: int
    window: str


@dataclass
class CensusSummary:
    run_id: int
    state: str
    source_node: str
    earliest_date: str | None
    date_to: str
    resumed: bool
    requests: int
    requests_min: int
    find_limit: int | None
    modality_matching: str | None
    studies_seen: int
    studies_new: int
    studies_changed: int
    studies_total: int
    targets: int
    by_modality: dict[str, int]
    corrections: int
    new_descriptions: list[dict[str, Any]]
    capped_days: list[dict[str, Any]]
    seconds: float
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def attach_log_file(cfg: Config) -> Path:
    """Send the census loggers to var/log/census.log."""
    return logfiles.attach_log_file(cfg, "census.log", log, store.study_log)


@dataclass
class _Run:
    id: int
    date_from: date | None
    date_to: date
    earliest: date | None
    resume_from: date | None
    matching: str | None
    capped_days: list[dict[str, Any]] = field(default_factory=list)


class Census:
    """One census of `finder`'s PACS into the database behind `conn` (a psycopg2 connection it owns for the
    run: it holds the advisory lock on it)."""

    def __init__(
        self,
        cfg: Config,
        conn,
        finder: StudyFinder,
        *,
        progress: Callable[[Progress], None] | None = None,
        on_query: Callable[[int, FindResult | None], None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        today: date | None = None,
    ):
        self.cfg = cfg
        self.conn = conn
        self.finder = finder
        self.progress = progress
        self.on_query = on_query
        self.sleep = sleep
        self.today = today or date.today()
        self.targets = tuple(cfg.retrieve.target_modalities)
        self.limit = finder.limit
        self.requests = 0
        self.seen = 0
        self.total_requests = 0  # this process, across saves
        self.total_seen = 0
        self.new = 0
        self.changed = 0
        self.run: _Run | None = None
        self.checked = False

    # ------------------------------------------------------------------------------------------ run
    def execute(
        self,
        date_from: str | date | None = None,
        date_to: str | date | None = None,
        *,
        started_by: str | None = None,
    ) -> CensusSummary:
        """Run (or resume) the census and return its summary. Raises CensusError when the PACS keeps failing."""
        attach_log_file(self.cfg)
        started = time.monotonic()
        with self.conn.cursor() as cur:
            cur.execute("SELECT pg_try_advisory_lock(%s)", (LOCK_KEY,))
            if not cur.fetchone()[0]:
                self.conn.rollback()
                raise CensusBusy("a census is already running (see `nmdose census status`)")
        self.conn.commit()
        try:
            resumed = self._open_run(date_from, date_to, started_by)
            try:
                self._census()
            except BaseException as exc:
                self.conn.rollback()
                message = str(exc) if isinstance(exc, NmdoseError) else f"{type(exc).__name__}: {exc}"
                self._finish("failed", message)
                log.error("census run %s failed: %s", self.run.id, message)
                raise
            self._finish("done", None)
            summary = self.summary(time.monotonic() - started, resumed)
            log.info(
                "census run %s done: %d studies (%d new, %d changed), %d requests (minimum %d), %d corrections",
                summary.run_id,
                summary.studies_seen,
                summary.studies_new,
                summary.studies_changed,
                summary.requests,
                summary.requests_min,
                summary.corrections,
            )
            return summary
        finally:
            with self.conn.cursor() as cur:
                cur.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))
            self.conn.commit()

    def _open_run(self, date_from, date_to, started_by) -> bool:
        node = self.finder.name
        frm = parse_date(date_from) if date_from else None
        if frm is None and self.cfg.retrieve.date_from:
            frm = parse_date(self.cfg.retrieve.date_from)
        to_given = parse_date(date_to) if date_to else None
        if to_given is None and self.cfg.retrieve.date_to:
            to_given = parse_date(self.cfg.retrieve.date_to)
        with self.conn.cursor() as cur:
            cur.execute(
                """SELECT id, state, date_from, date_to, earliest_date, resume_from, modality_matching, capped_days
                     FROM rpacs.census_run WHERE source_node = %s ORDER BY id DESC LIMIT 1""",
                (node,),
            )
            prev = cur.fetchone()
            if (
                prev
                and prev[1] in ("running", "failed")  # 'running' while we hold the lock: its process died
                and prev[2] == frm
                and (to_given is None or to_given == prev[3])
            ):
                cur.execute(
                    """UPDATE rpacs.census_run SET state = 'running', error = NULL, finished_at = NULL,
                              updated_at = now() WHERE id = %s""",
                    (prev[0],),
                )
                self.run = _Run(prev[0], prev[2], prev[3], prev[4], prev[5], prev[6], list(prev[7] or []))
                self.checked = prev[6] is not None
                log.info("census run %s resumed from %s", prev[0], prev[5])
                resumed = True
            else:
                to = to_given or self.today
                cur.execute(
                    """INSERT INTO rpacs.census_run (source_node, date_from, date_to, started_by)
                       VALUES (%s, %s, %s, %s) RETURNING id""",
                    (node, frm, to, started_by),
                )
                self.run = _Run(cur.fetchone()[0], frm, to, None, None, None)
                log.info("census run %s started on %s (%s..%s)", self.run.id, node, frm or "earliest", to)
                resumed = False
            descriptions.sync_config_targets(self.conn, self.cfg)
        self.conn.commit()
        return resumed

    def _census(self) -> None:
        run = self.run
        if run.earliest is None:
            run.earliest = run.date_from or self._probe_earliest()
            if run.earliest is None:
                log.warning("census run %s: no study on %s up to %s", run.id, self.finder.name, run.date_to)
                return
            run.resume_from = run.earliest
            self._save_run(earliest_date=run.earliest, resume_from=run.resume_from)
            log.info("census run %s: earliest StudyDate %s", run.id, run.earliest)
        cursor = run.resume_from or run.earliest
        total_days = max(1, (run.date_to - run.earliest).days + 1)
        target = max(1, int(0.6 * self.limit)) if self.limit else UNCAPPED_TARGET
        density: float | None = None
        window: DateRange | None = None
        while cursor <= run.date_to:
            if window is None:
                window = next_window(cursor, run.date_to, density, target)
            result = self._query_window(window)
            if result is None:  # capped: one calendar level down
                window = calendar_split(window)[0]
                continue
            answers, counted = result
            density = counted / window.days if counted else None
            self._store(window, answers)
            cursor = window.end + timedelta(days=1)
            self._save_run(resume_from=cursor)
            if self.progress:
                done = (min(cursor, run.date_to + timedelta(days=1)) - run.earliest).days
                self.progress(
                    Progress(done, total_days, self.total_seen, self.total_requests, window.dicom())
                )
            window = None

    def _finish(self, state: str, error: str | None) -> None:
        run = self.run
        self._save_run()
        with self.conn.cursor() as cur:
            if state == "done":
                store.set_targets(self.conn, descriptions.target_descriptions(self.conn, self.cfg))
                store.apply_corrections(self.conn, self.finder.name, self.cfg.retrieve.modality_rules)
            cur.execute(
                """UPDATE rpacs.census_run SET state = %s, error = %s, finished_at = now(), updated_at = now()
                    WHERE id = %s""",
                (state, error, run.id),
            )
        self.conn.commit()

    def _save_run(self, **columns: Any) -> None:
        """Update run columns and add the counters gathered since the last save (then reset them)."""
        sets = "".join(f"{k} = %s, " for k in columns)
        with self.conn.cursor() as cur:
            cur.execute(
                f"""UPDATE rpacs.census_run SET {sets}requests = requests + %s, studies_seen = studies_seen + %s,
                           studies_new = studies_new + %s, studies_changed = studies_changed + %s,
                           capped_days = %s, updated_at = now() WHERE id = %s""",
                (
                    *columns.values(),
                    self.requests,
                    self.seen,
                    self.new,
                    self.changed,
                    Json(self.run.capped_days),
                    self.run.id,
                ),
            )
        self.conn.commit()
        self.total_requests += self.requests
        self.total_seen += self.seen
        self.requests = self.seen = self.new = self.changed = 0

    # --------------------------------------------------------------------------------------- queries
    def _find(
        self,
        dates: DateRange,
        times: TimeRange | None = None,
        *,
        purpose: str = "range",
        modalities: tuple[str, ...] = (),
        keys: tuple[str, ...] = RETURN_KEYS,
    ) -> FindResult:
        """One C-FIND with retries and back-off; every attempt is recorded."""
        retry = self.cfg.retrieve.retry
        attempt = 0
        while True:
            attempt += 1
            self.requests += 1
            started = time.monotonic()
            try:
                result = self.finder.find_studies(dates, times, modalities, keys)
            except PacsError as exc:
                self._record(
                    purpose,
                    dates,
                    times,
                    modalities,
                    "failed",
                    0,
                    time.monotonic() - started,
                    attempt,
                    str(exc),
                )
                if self.on_query:
                    self.on_query(self.total_requests + self.requests, None)
                if attempt >= retry.max_attempts:
                    raise CensusError(
                        f"{self.finder.name}: C-FIND {dates}{' ' + times.dicom() if times else ''} failed "
                        f"{attempt} times, last: {exc}. Every day before "
                        f"{self.run.resume_from or dates.start} is done; run `nmdose census run` again to resume"
                    ) from None
                delay = min(retry.backoff_max_s, retry.backoff_s * 2 ** (attempt - 1))
                log.warning(
                    "C-FIND %s attempt %d failed (%s); retrying in %.1f s", dates, attempt, exc, delay
                )
                self.sleep(delay)
                continue
            status = "capped" if result.capped else "complete"
            if result.capped and times is not None and times.finest:
                status = "capped_at_finest"
            self._record(
                purpose, dates, times, modalities, status, len(result.answers), result.seconds, attempt, None
            )
            if self.on_query:
                self.on_query(self.total_requests + self.requests, result)
            return result

    def _record(self, purpose, dates, times, modalities, status, answers, seconds, attempt, error) -> None:
        with self.conn.cursor() as cur:
            cur.execute(
                """INSERT INTO rpacs.census_query (run_id, purpose, date_from, date_to, time_range, modalities,
                          status, answers, seconds, attempt, error) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)""",
                (
                    self.run.id,
                    purpose,
                    dates.start,
                    dates.end,
                    times.dicom() if times else None,
                    "\\".join(modalities) or None,
                    status,
                    answers,
                    seconds,
                    attempt,
                    error,
                ),
            )
        self.conn.commit()

    def _probe_earliest(self) -> date | None:
        def probe(r: DateRange) -> Probe:
            result = self._find(r, purpose="probe", keys=PROBE_KEYS)
            dates = sorted(a["StudyDate"] for a in result.answers if a.get("StudyDate"))
            if result.capped:
                return Probe(True)
            return Probe(bool(result.answers), parse_date(dates[0]) if dates else None)

        return find_earliest(probe, FLOOR, self.run.date_to)

    def _matching(self) -> tuple[str, ...]:
        return self.targets if self.run.matching == "native" else ()

    def _query_window(self, window: DateRange) -> tuple[list[dict[str, str]], int] | None:
        """(target answers, answers counted against the cap) of a complete window; None when capped and the
        window can still be split by date."""
        result = self._find(window, modalities=self._matching())
        if result.capped and window.days > 1:
            return None
        answers = list(result.answers)
        if result.capped:  # one day: split by StudyTime
            answers = self._query_day(window)
        counted = len(answers)
        kept = self._filter(window, answers)
        if kept is None:  # the PACS ignored ModalitiesInStudy: fall back and redo the window
            return self._query_window(window)
        if not self.checked and self._may_check() and len(kept) >= self._check_min():
            self._check_matching(window, kept)
        return kept, counted

    def _query_day(self, day: DateRange) -> list[dict[str, str]]:
        answers: list[dict[str, str]] = []
        pending = TimeRange().split()
        while pending:
            tr = pending.pop(0)
            result = self._find(day, tr, modalities=self._matching())
            if not result.capped:
                answers += result.answers
            elif tr.finest:
                answers += result.answers
                self.run.capped_days.append(
                    {"date": day.start.isoformat(), "time": tr.dicom(), "answers": len(result.answers)}
                )
                log.error(
                    "%s: %s %s still capped at the finest split (%d answers kept): studies may be missing",
                    self.finder.name,
                    day,
                    tr.dicom(),
                    len(result.answers),
                )
            else:
                pending[0:0] = tr.split()
        return answers

    def _filter(self, window: DateRange, answers: list[dict[str, str]]) -> list[dict[str, str]] | None:
        """Answers that carry a target modality (series-level query for an empty ModalitiesInStudy).
        None: native matching let through a non-target study, so it is switched off."""
        kept = []
        for a in answers:
            mods = split_modalities(a.get("ModalitiesInStudy"))
            if not mods and a.get("StudyInstanceUID"):
                self.requests += 1
                mods = self.finder.series_modalities(a["StudyInstanceUID"])
                a["ModalitiesInStudy"] = "\\".join(mods)
            if set(mods) & set(self.targets):
                kept.append(a)
            elif self.run.matching == "native":
                self._set_matching(
                    "filter",
                    f"answer {a.get('StudyInstanceUID')} in {window} carries {mods or 'no modality'}",
                )
                return None
        return kept

    def _may_check(self) -> bool:
        node = self.cfg.nodes.get(self.finder.name)
        return node is not None and node.modality_matching == "check"

    def _check_min(self) -> int:
        return max(3, (self.limit or 0) // 4)

    def _check_matching(self, window: DateRange, kept: list[dict[str, str]]) -> None:
        """Compare ModalitiesInStudy matching on the PACS with filtering here, on a window just completed."""
        self.checked = True
        if self.run.matching == "native":
            return
        result = self._find(window, purpose="check", modalities=self.targets)
        want = {a["StudyInstanceUID"] for a in kept}
        got = {a["StudyInstanceUID"] for a in result.answers}
        if not result.capped and got == want:
            self._set_matching("native", f"{len(got)} of {len(want)} studies in {window} agree")
        else:
            self._set_matching(
                "filter",
                f"matching on ModalitiesInStudy returned {len(got)} studies in {window}"
                f"{' (capped)' if result.capped else ''}, filtering found {len(want)}",
            )

    def _set_matching(self, mode: str, why: str) -> None:
        self.run.matching = mode
        self.checked = True
        self._save_run(modality_matching=mode)
        if mode == "native":
            log.info("%s matches ModalitiesInStudy correctly (%s): querying with it", self.finder.name, why)
        else:
            log.warning(
                "%s does not match ModalitiesInStudy reliably (%s): querying without it and filtering",
                self.finder.name,
                why,
            )

    def _store(self, window: DateRange, answers: list[dict[str, str]]) -> None:
        rows = [store.to_row(a) for a in answers if a.get("StudyInstanceUID")]
        new, changed = store.upsert(self.conn, rows, source_node=self.finder.name, run_id=self.run.id)
        self.seen += len(rows)
        self.new += new
        self.changed += changed

    # --------------------------------------------------------------------------------------- summary
    def summary(self, seconds: float, resumed: bool) -> CensusSummary:
        return build_summary(self.conn, self.cfg, self.run.id, seconds=seconds, resumed=resumed)


def build_summary(
    conn, cfg: Config, run_id: int, *, seconds: float = 0.0, resumed: bool = False
) -> CensusSummary:
    """The summary of a census run from the database."""
    with conn.cursor() as cur:
        cur.execute(
            """SELECT source_node, state, earliest_date, date_to, requests, modality_matching, studies_seen,
                      studies_new, studies_changed, capped_days, error FROM rpacs.census_run WHERE id = %s""",
            (run_id,),
        )
        node, state, earliest, to, requests, matching, seen, new, changed, capped, error = cur.fetchone()
        cur.execute(
            """SELECT coalesce(sum(answers), 0) FROM rpacs.census_query
                WHERE run_id = %s AND purpose = 'range' AND status <> 'failed' AND status <> 'capped'""",
            (run_id,),
        )
        answered = int(cur.fetchone()[0])
        # Totals and per-modality counts from the tally of sql/007_web.sql, not a scan of rpacs.study.
        cur.execute(
            """SELECT coalesce(sum(studies), 0)::bigint, coalesce(sum(studies) FILTER (WHERE is_target), 0)::bigint,
                      coalesce(sum(studies) FILTER (WHERE modalities_corrected IS NOT NULL), 0)::bigint
                 FROM rpacs.study_tally WHERE source_node = %s""",
            (node,),
        )
        total, targets, corrections = cur.fetchone()
        cur.execute(
            """SELECT m, sum(studies)::bigint FROM rpacs.study_tally,
                      unnest(coalesce(modalities_corrected, modalities_found)) m
                WHERE source_node = %s GROUP BY m HAVING sum(studies) <> 0 ORDER BY m""",
            (node,),
        )
        by_modality = dict(cur.fetchall())
    limit = cfg.nodes[node].find_limit if node in cfg.nodes else None
    return CensusSummary(
        run_id=run_id,
        state=state,
        source_node=node,
        earliest_date=earliest.isoformat() if earliest else None,
        date_to=to.isoformat(),
        resumed=resumed,
        requests=requests,
        requests_min=minimum_requests(answered, limit),
        find_limit=limit,
        modality_matching=matching,
        studies_seen=seen,
        studies_new=new,
        studies_changed=changed,
        studies_total=total,
        targets=targets,
        by_modality=by_modality,
        corrections=corrections,
        new_descriptions=[
            {k: d[k] for k in ("description", "studies", "first_date", "last_date", "modality_sets")}
            for d in descriptions.list_descriptions(conn, cfg, only_new=True)
        ],
        capped_days=list(capped or []),
        seconds=round(seconds, 3),
        error=error,
    )


def status(conn, cfg: Config) -> dict[str, Any]:
    """Progress of the latest census of the source node: state, ranges done/left, studies found."""
    node = cfg.source_node.name
    with conn.cursor() as cur:
        cur.execute(
            """SELECT id, state, earliest_date, resume_from, date_to, started_at, updated_at, finished_at, error
                 FROM rpacs.census_run WHERE source_node = %s ORDER BY id DESC LIMIT 1""",
            (node,),
        )
        row = cur.fetchone()
        if row is None:
            return {"source_node": node, "state": "never_run", "studies": 0}
        run_id, state, earliest, resume_from, to, started, updated, finished, error = row
        cur.execute(
            """SELECT count(*) FILTER (WHERE status = 'complete' AND purpose = 'range'),
                      count(*) FILTER (WHERE status = 'failed') FROM rpacs.census_query WHERE run_id = %s""",
            (run_id,),
        )
        ranges_done, failed = cur.fetchone()
        cur.execute("SELECT pg_try_advisory_lock(%s)", (LOCK_KEY,))
        free = cur.fetchone()[0]
        if free:
            cur.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))
    conn.commit()
    summary = build_summary(conn, cfg, run_id)
    days_total = (to - earliest).days + 1 if earliest else None
    days_done = (min(resume_from, to + timedelta(days=1)) - earliest).days if earliest and resume_from else 0
    if state == "running" and free:
        state = "interrupted"  # no process holds the census lock: it died; the next run resumes
    return {
        "run_id": run_id,
        "source_node": node,
        "state": state,
        "started_at": started.isoformat(),
        "updated_at": updated.isoformat(),
        "finished_at": finished.isoformat() if finished else None,
        "earliest_date": earliest.isoformat() if earliest else None,
        "resume_from": resume_from.isoformat() if resume_from else None,
        "date_to": to.isoformat(),
        "days_done": days_done,
        "days_left": (days_total - days_done) if days_total else None,
        "progress": round(days_done / days_total, 4) if days_total else 0.0,
        "ranges_done": ranges_done,
        "failed_queries": failed,
        "requests": summary.requests,
        "requests_min": summary.requests_min,
        "modality_matching": summary.modality_matching,
        "studies": summary.studies_total,
        "targets": summary.targets,
        "by_modality": summary.by_modality,
        "corrections": summary.corrections,
        "new_descriptions": len(summary.new_descriptions),
        "capped_days": summary.capped_days,
        "error": error,
    }


def make_finder(cfg: Config, rest=None) -> StudyFinder:
    """The production finder: C-FIND through the research PACS (its REST API knows the source as a modality)."""
    from nmdose.census.finder import OrthancFinder
    from nmdose.pacs.orthanc_http import OrthancHttp

    node = cfg.source_node
    if rest is None:
        research = cfg.research_node
        if not research.http_url:
            raise CensusError("researchPACS has no http_port: the census queries through its REST API")
        rest = OrthancHttp.for_node(cfg, research.name, timeout_s=node.timeout_s + 30)
    return OrthancFinder(rest, node)


def run_census(
    cfg: Config,
    *,
    date_from: str | None = None,
    date_to: str | None = None,
    started_by: str | None = None,
    finder: StudyFinder | None = None,
    progress: Callable[[Progress], None] | None = None,
    on_query: Callable[[int, FindResult | None], None] | None = None,
) -> CensusSummary:
    """Open a connection, run (or resume) the census of the source node, close."""
    from contextlib import closing

    from nmdose.db import connect

    with closing(connect(cfg)) as conn:
        census = Census(cfg, conn, finder or make_finder(cfg), progress=progress, on_query=on_query)
        return census.execute(date_from, date_to, started_by=started_by)
