"""Range splitting and earliest-date probing (pure functions)."""

from datetime import date

import pytest

from nmdose.census.ranges import (
    DateRange,
    Probe,
    TimeRange,
    calendar_split,
    find_earliest,
    minimum_requests,
    next_window,
)


def test_a_range_across_years_splits_into_years_then_months_then_days():
    years = calendar_split(DateRange(date(2018, 4, 25), date(2019, 4, 24)))
    assert years == [
        DateRange(date(2018, 4, 25), date(2018, 12, 31)),
        DateRange(date(2019, 1, 1), date(2019, 4, 24)),
    ]
    months = calendar_split(DateRange(date(2020, 1, 1), date(2020, 12, 31)))
    assert len(months) == 12 and months[1] == DateRange(date(2020, 2, 1), date(2020, 2, 29))
    days = calendar_split(months[1])
    assert len(days) == 29 and all(d.days == 1 for d in days)
    assert calendar_split(days[0]) == [days[0]]


def test_a_capped_day_splits_by_study_time_down_to_an_hour():
    day = TimeRange()
    assert day.dicom() == "000000-235959"
    halves = day.split()
    assert [h.dicom() for h in halves] == ["000000-115959", "120000-235959"]
    tr = halves[0]
    while not tr.finest:
        tr = tr.split()[0]
    assert tr.minutes <= 60 and tr.split() == [tr]


def test_window_is_sized_from_density_and_never_passes_the_end():
    start, end = date(2020, 1, 1), date(2030, 1, 1)
    assert next_window(start, end, None, 15).days == 366
    assert next_window(start, end, 1.0, 15).days == 15
    assert next_window(start, end, 100.0, 15).days == 1
    assert next_window(start, date(2020, 1, 10), None, 15).end == date(2020, 1, 10)


def test_minimum_requests_for_a_cap():
    assert minimum_requests(150, 25) == 7  # 24 answers per complete request
    assert minimum_requests(20000, None) == 1
    assert minimum_requests(0, 25) == 1


def _probe_of(dates, cap):
    calls = []

    def probe(r: DateRange) -> Probe:
        calls.append(r)
        inside = [d for d in dates if r.start <= d <= r.end]
        if len(inside) >= cap:
            return Probe(True)
        return Probe(bool(inside), min(inside) if inside else None)

    return probe, calls


def test_earliest_date_is_found_by_binary_search_when_answers_are_capped():
    dates = [date(2018, 4, 25)] + [date(2021, 1, 1 + i % 28) for i in range(100)]
    probe, calls = _probe_of(dates, cap=25)
    assert find_earliest(probe, date(1985, 1, 1), date(2024, 6, 30)) == date(2018, 4, 25)
    assert len(calls) < 20


def test_earliest_date_comes_at_once_from_a_complete_answer_and_none_when_empty():
    probe, calls = _probe_of([date(2019, 5, 5), date(2020, 1, 1)], cap=25)
    assert find_earliest(probe, date(1985, 1, 1), date(2024, 6, 30)) == date(2019, 5, 5)
    assert len(calls) == 1
    probe, _ = _probe_of([], cap=25)
    assert find_earliest(probe, date(1985, 1, 1), date(2024, 6, 30)) is None


def test_an_empty_range_is_refused():
    with pytest.raises(ValueError):
        DateRange(date(2020, 1, 2), date(2020, 1, 1))
