"""The outlier list's cache (issue 19 follow-up; web/dose_views.py `cached_outliers`, sql_levels.outlier_index,
sql_outliers.page_from_index) and the warm-up of the report page (web/report_views.py) against a real PostgreSQL:
synthetic studies through the real dose ingest. The list built from the cached index and the acknowledgements read
per request is the list the whole computation gives (every filter of the worklist, paging, the counts), also when
a page lies beyond the index; acknowledging a study shows at once and recomputes nothing; after an ingest the dose
worker's warm step leaves the report page's opening answers in the cache."""

from __future__ import annotations

import contextlib
import dataclasses
import json

import pytest
from pydicom.uid import generate_uid

from nmdose.config import ReferenceLevel, ReferenceLevelsFile
from nmdose.db import connect
from nmdose.dose.ingest import ingest_files
from nmdose.simulate import rdsr as R
from nmdose.web import cache, dose_views, report_views, sql_outliers
from tests.support import scratch_database

pytestmark = pytest.mark.integration

LEVEL = ReferenceLevel.model_validate(
    {"name": "abdomen event DLP", "modality": "CT", "per": "event", "match": {"protocols": ["^abdomen"]},
     "quantity": "dlp_mgycm", "value": 100, "source": "test", "year": 2024, "status": "official"}
)  # fmt: skip


def study(cfg, folder, name: str, dlps: list[float], protocol: str = "Abdomen") -> str:
    """One CT study (an event of `protocol` per DLP) through the real ingest: its StudyInstanceUID."""
    info = R.DoseStudyInfo(study_instance_uid=generate_uid(), study_description=f"CT cache {name}")
    events = [R.CtAcquisition(acquisition_protocol=protocol, dlp_mgycm=d, ctdivol_mgy=d / 40) for d in dlps]
    ds = R.ct_radiation_dose_sr(info, events, series_uid=generate_uid(), sop_uid=generate_uid())
    folder.mkdir(parents=True, exist_ok=True)
    assert ingest_files(cfg, [R.save(ds, folder / f"{name}.dcm")])[0]["status"] == "ingested"
    return info.study_instance_uid


@pytest.fixture(scope="module")
def data(stack, tmp_path_factory):
    """Six abdomen studies above 2 x the level (one with two hits), one below; a chest group of 21 whose top values
    are above its 95th percentile."""
    with scratch_database(stack.cfg, "outlier_cache") as scratch:
        cfg = dataclasses.replace(scratch, reference_levels=ReferenceLevelsFile(levels=[LEVEL]))
        folder = tmp_path_factory.mktemp("cache")
        high = [study(cfg, folder, f"high {i}", [250.0 + 60 * i]) for i in range(5)]
        high.append(study(cfg, folder, "two", [420.0, 610.0]))
        study(cfg, folder, "low", [50.0])
        chest = [study(cfg, folder, f"chest {i}", [10.0 + i], "Chest p95") for i in range(20)]
        chest += [study(cfg, folder, "chest top", [90.0], "Chest p95")]
        yield dataclasses.make_dataclass("D", ["cfg", "high", "chest"])(cfg, high, chest)


def plain(answer):
    return json.loads(cache.encode([answer]))[0]  # as the API writes it (dates as text)


def cache_rows(conn, prefix: str):
    with conn, conn.cursor() as cur:
        cur.execute(
            "SELECT key, computed_at FROM dose.web_cache WHERE key LIKE %s AND data_version = dose.data_version()",
            (prefix + ":%",),
        )
        return dict(cur.fetchall())


QUERIES = [
    {"acknowledged": ack, **reason, **page}
    for ack in ("no", "yes", "all")
    for reason in ({}, {"reason": "reference_level"}, {"reason": "p95"})
    for page in ({}, {"limit": 2}, {"limit": 2, "offset": 3}, {"limit": 50, "offset": 40})
] + [{}, {"levels": "all", "limit": 3}, {"protocol": "abdomen", "acknowledged": "all"}]


@pytest.mark.parametrize("top", [dose_views.INDEX_TOP, 2])
def test_the_list_from_the_index_is_the_computed_list(data, monkeypatch, top):
    """With acknowledgements of a study (any reason), of one reason, of a p95 hit: every worklist choice, reason,
    page and filter answers as the whole computation (top 2: most pages lie beyond the index, computed)."""
    monkeypatch.setattr(dose_views, "INDEX_TOP", top)
    cfg = data.cfg
    with contextlib.closing(connect(cfg)) as conn:
        sql_outliers.acknowledge(conn, data.high[0], None, "tester", "known")
        sql_outliers.acknowledge(conn, data.high[5], "reference_level", "tester", "two scans")
        sql_outliers.acknowledge(conn, data.chest[-1], "p95", "tester", "large patient")
        for f in QUERIES:
            computed = plain(dose_views.compute_dose_rows(conn, cfg, "outliers", f))
            assert plain(dose_views.cached_dose_rows(conn, cfg, "outliers", f)) == computed, f
            again = plain(dose_views.cached_dose_rows(conn, cfg, "outliers", f))  # from the cache
            assert again == computed, f
        every = plain(dose_views.cached_dose_rows(conn, cfg, "outliers", {"acknowledged": "all"}))
        # the outcome itself: 7 reference-level hits, the acknowledged ones carry who and why
        assert every["counts"]["reference_level"] == 7 and every["counts"]["p95"] >= 1
        # high 0, both hits of `two`, the chest top's two p95 hits (its DLP and its CTDIvol)
        assert every["ack_counts"]["yes"] == 1 + 2 + 2
        by_uid = {(r["study_instance_uid"], r["reason"]): r for r in every["rows"]}
        assert by_uid[(data.high[5], "reference_level")]["ack_comment"] == "two scans"
        assert by_uid[(data.high[1], "reference_level")]["acknowledged_by"] is None
        pending = plain(dose_views.cached_dose_rows(conn, cfg, "outliers", {}))
        assert data.high[0] not in {r["study_instance_uid"] for r in pending["rows"]}
        assert pending["total"] == every["total"] - 5
        with conn, conn.cursor() as cur:
            cur.execute("DELETE FROM dose.outlier_ack")  # (the log stays: the version only grows)


def test_acknowledging_shows_at_once_and_recomputes_nothing(data):
    cfg = data.cfg
    with contextlib.closing(connect(cfg)) as conn:
        first = dose_views.cached_dose_rows(conn, cfg, "outliers", {"limit": 50})
        uid = first["rows"][0]["study_instance_uid"]
        index, whole = cache_rows(conn, "outlier_index"), cache_rows(conn, "outliers")
        assert len(index) >= 1
        sql_outliers.acknowledge(conn, uid, None, "tester", "reviewed")
        after = dose_views.cached_dose_rows(conn, cfg, "outliers", {"limit": 50})
        assert uid not in {r["study_instance_uid"] for r in after["rows"]}
        assert after["total"] < first["total"] and after["ack_counts"]["yes"] > first["ack_counts"]["yes"]
        shown = dose_views.cached_dose_rows(conn, cfg, "outliers", {"limit": 50, "acknowledged": "yes"})
        assert {r["study_instance_uid"] for r in shown["rows"]} == {uid}
        assert shown["rows"][0]["ack_comment"] == "reviewed"
        # the index was not computed again, and no whole computation was needed (none more kept under `outliers:`)
        assert cache_rows(conn, "outlier_index") == index
        assert cache_rows(conn, "outliers") == whole
        with conn, conn.cursor() as cur:
            cur.execute("DELETE FROM dose.outlier_ack")


def test_the_worker_warms_the_report_page_opening_answers(data, tmp_path):
    from nmdose.dose.spool import Worker, enqueue

    cfg = data.cfg
    info = R.DoseStudyInfo(study_instance_uid=generate_uid(), study_description="CT warm report")
    event = R.CtAcquisition(acquisition_protocol="Abdomen warm", dlp_mgycm=300.0, ctdivol_mgy=7.5)
    ds = R.ct_radiation_dose_sr(info, [event], series_uid=generate_uid(), sop_uid=generate_uid())
    spool = tmp_path / "spool"
    (spool / "objects").mkdir(parents=True)
    enqueue(spool, R.save(ds, spool / "objects" / "ct.dcm"), source="warm", owned=True)
    assert Worker(cfg, spool, warm=dose_views.warm_default_views).run(once=True).ingested == 1
    with contextlib.closing(connect(cfg)) as conn:
        for route, f in report_views.opening_views():
            # kept for this version of the data (the worker ingested the study, then warmed)
            assert report_views.report_key(cfg, route, f) in cache_rows(conn, f"report_{route}"), route

            def fail(route=route):
                raise AssertionError(f"{route}: computed, not read from the cache")

            got = cache.cached_rows(conn, report_views.report_key(cfg, route, f), fail)
            assert plain(got) == plain(report_views.compute(conn, cfg, route, f)), route
        levels = cache.cached_rows(conn, report_views.report_key(cfg, "levels", {"measure": "ctdivol"}), list)
        assert "Abdomen warm" in {r["group"] for r in levels}  # the new study is in the warmed answer


def test_the_index_is_kept_decoded_in_the_process_for_its_version_only(data, tmp_path):
    cfg = data.cfg
    with contextlib.closing(connect(cfg)) as conn:
        first = dose_views.cached_index(conn, cfg, {"limit": 50})
        assert dose_views.cached_index(conn, cfg, {"acknowledged": "yes"}) is first  # not read again
        n = first["n"]["reference_level"]
        study(cfg, tmp_path, "new high", [900.0])  # a new version of the dose data: a new hit
        again = dose_views.cached_index(conn, cfg, {})
        assert again is not first and again["n"]["reference_level"] == n + 1
        assert again["top"][0]["value"] == 900.0  # the worst first
