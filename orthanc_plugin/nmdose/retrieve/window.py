"""The retrieval time window: outside it, retrieval jobs wait.

Each calendar day uses its own rule by clock time: with `weekdays: "19:00-07:00"` a weekday allows 00:00–07:00
and 19:00–24:00 (so Monday 03:00 is allowed: a quiet night for the clinical PACS); `weekends: "00:00-24:00"`
allows all of Saturday and Sunday.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from nmdose.config import TimeWindow


def _minutes(hhmm: str) -> int:
    h, m = (int(x) for x in hhmm.split(":"))
    return h * 60 + m


def allows(spec: str, minute_of_day: int) -> bool:
    """Whether 'HH:MM-HH:MM' allows this minute of the day (a window whose end is before its start wraps)."""
    start, end = (_minutes(p) for p in spec.split("-"))
    if start == end:
        return False
    if start < end:
        return start <= minute_of_day < end
    return minute_of_day >= start or minute_of_day < end


def in_window(now: datetime, window: TimeWindow) -> bool:
    spec = window.weekends if now.weekday() >= 5 else window.weekdays
    return allows(spec, now.hour * 60 + now.minute)


def next_open(now: datetime, window: TimeWindow) -> datetime:
    """`now` if inside the window, else the first minute after it that is (within 8 days)."""
    if in_window(now, window):
        return now
    t = now.replace(second=0, microsecond=0)
    for _ in range(8 * 24 * 60):
        t += timedelta(minutes=1)
        if in_window(t, window):
            return t
    raise ValueError(f"time window {window.weekdays} / {window.weekends} never opens")
