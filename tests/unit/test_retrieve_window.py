"""Retrieval time window: nights on weekdays, all day on weekends, by clock time of each day."""

from datetime import datetime

import pytest
from pydantic import ValidationError

from nmdose.config import TimeWindow
from nmdose.retrieve.window import allows, in_window, next_open

NIGHTS = TimeWindow(weekdays="19:00-07:00", weekends="00:00-24:00")


@pytest.mark.parametrize(
    "when, expected",
    [
        ("2026-11-23 12:00", False),  # Monday noon
        ("2026-11-23 18:59", False),
        ("2026-11-23 19:00", True),
        ("2026-11-24 03:00", True),  # Tuesday night
        ("2026-11-24 07:00", False),
        ("2026-11-28 12:00", True),  # Saturday noon
        ("2026-11-29 23:59", True),  # Sunday
        ("2026-11-30 03:00", True),  # Monday 03:00: a weekday night
        ("2026-11-30 09:00", False),
    ],
)
def test_nights_on_weekdays_all_day_on_weekends(when, expected):
    assert in_window(datetime.fromisoformat(when), NIGHTS) is expected


def test_window_edges():
    assert allows("00:00-24:00", 0) and allows("00:00-24:00", 24 * 60 - 1)
    assert allows("08:00-17:00", 8 * 60) and not allows("08:00-17:00", 17 * 60)
    assert not allows("10:00-10:00", 10 * 60)


def test_next_open_waits_for_the_evening():
    assert next_open(datetime(2026, 11, 23, 12, 30, 15), NIGHTS) == datetime(2026, 11, 23, 19, 0)
    inside = datetime(2026, 11, 28, 12, 30, 15)
    assert next_open(inside, NIGHTS) == inside


def test_window_that_never_opens_is_refused_by_the_configuration():
    with pytest.raises(ValidationError, match="a window that opens"):
        TimeWindow(weekdays="10:00-10:00", weekends="00:00-24:00")
