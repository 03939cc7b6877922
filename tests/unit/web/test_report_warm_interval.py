"""The report page's opening answers are warmed at most once per REPORT_WARM_INTERVAL_S per database (the dose
page's after every ingest): web/report_views.py."""

from __future__ import annotations

from types import SimpleNamespace

from nmdose.web import report_views


def _cfg(port: int):
    return SimpleNamespace(postgresql=SimpleNamespace(host="127.0.0.1", port=port, database="nmdose"))


def test_the_report_views_are_warmed_at_most_once_per_interval_per_database(monkeypatch):
    warmed: list[str] = []
    monkeypatch.setattr(report_views, "opening_views", lambda: (("workload", {}), ("annual", {"year": 2025})))
    monkeypatch.setattr(report_views, "report_key", lambda cfg, route, f: f"{cfg.postgresql.port}:{route}")
    monkeypatch.setattr(
        report_views.cache, "cached_rows", lambda conn, key, work: warmed.append(key) or work()
    )
    monkeypatch.setattr(report_views, "compute", lambda conn, cfg, route, f: {"rows": []})
    monkeypatch.setattr(report_views, "_last_warm", {})
    interval = report_views.REPORT_WARM_INTERVAL_S

    assert report_views.warm_report_views(None, _cfg(1), now=1000.0) == 2
    assert report_views.warm_report_views(None, _cfg(1), now=1000.0 + interval - 1) == 0  # too soon
    assert report_views.warm_report_views(None, _cfg(2), now=1000.0 + 1) == 2  # another database: its own
    assert report_views.warm_report_views(None, _cfg(1), now=1000.0 + interval) == 2
    assert warmed == ["1:workload", "1:annual", "2:workload", "2:annual", "1:workload", "1:annual"]
