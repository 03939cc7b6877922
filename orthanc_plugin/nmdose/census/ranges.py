"""Date and time ranges for C-FIND, and how they are split when a PACS caps its answers. Pure functions.

A capped range is split along the calendar (year -> months -> days), a capped day into StudyTime windows
(12 h -> 6 h -> 3 h -> 1.5 h -> 45 min); a window of an hour or less that is still capped is the finest split.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta

FINEST_MINUTES = 60  # a StudyTime window this short (or shorter) is not split further


def parse_date(value: str | date) -> date:
    """A DICOM DA (YYYYMMDD) or ISO date (YYYY-MM-DD)."""
    if isinstance(value, date):
        return value
    text = str(value).strip().replace("-", "")
    if len(text) != 8 or not text.isdigit():
        raise ValueError(f"a date YYYYMMDD or YYYY-MM-DD, got {value!r}")
    return date(int(text[:4]), int(text[4:6]), int(text[6:]))


def da(d: date) -> str:
    """A date as DICOM DA."""
    return d.strftime("%Y%m%d")


@dataclass(frozen=True, order=True)
class DateRange:
    """Inclusive range of StudyDates."""

    start: date
    end: date

    def __post_init__(self) -> None:
        if self.end < self.start:
            raise ValueError(f"empty date range {self.start}..{self.end}")

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    def dicom(self) -> str:
        return da(self.start) if self.start == self.end else f"{da(self.start)}-{da(self.end)}"

    def __str__(self) -> str:
        return self.dicom()


@dataclass(frozen=True, order=True)
class TimeRange:
    """StudyTime window [start, end) in minutes since midnight."""

    start: int = 0
    end: int = 24 * 60

    @property
    def minutes(self) -> int:
        return self.end - self.start

    @property
    def finest(self) -> bool:
        return self.minutes <= FINEST_MINUTES

    def dicom(self) -> str:
        """As a DICOM TM range; the end is the last second inside the window (e.g. 000000-115959)."""
        last = self.end * 60 - 1
        return f"{self.start // 60:02d}{self.start % 60:02d}00-{last // 3600:02d}{last // 60 % 60:02d}{last % 60:02d}"

    def split(self) -> list[TimeRange]:
        """Two halves (the finest window is returned as is)."""
        if self.finest:
            return [self]
        mid = self.start + self.minutes // 2
        return [TimeRange(self.start, mid), TimeRange(mid, self.end)]

    def __str__(self) -> str:
        return self.dicom()


def calendar_split(r: DateRange) -> list[DateRange]:
    """Split a capped range one calendar level down: across years -> years, a year -> months, a month -> days.
    A single day cannot be split by date (split its StudyTime instead)."""
    if r.days == 1:
        return [r]
    if r.start.year != r.end.year:
        level = "year"
    elif r.start.month != r.end.month:
        level = "month"
    else:
        level = "day"
    pieces: list[DateRange] = []
    cur = r.start
    while cur <= r.end:
        if level == "year":
            stop = date(cur.year, 12, 31)
        elif level == "month":
            stop = _month_end(cur)
        else:
            stop = cur
        pieces.append(DateRange(cur, min(stop, r.end)))
        cur = pieces[-1].end + timedelta(days=1)
    return pieces


def _month_end(d: date) -> date:
    nxt = date(d.year + (d.month == 12), d.month % 12 + 1, 1)
    return nxt - timedelta(days=1)


def next_window(
    start: date, last: date, density: float | None, target: float, max_days: int = 366
) -> DateRange:
    """The next range to query from `start`: long enough to expect about `target` answers at `density`
    (answers per day seen so far), at most `max_days` (a year), never past `last`."""
    if density is None or density <= 0:
        days = max_days
    else:
        days = int(max(1, min(max_days, math.floor(target / density))))
    return DateRange(start, min(last, start + timedelta(days=days - 1)))


def minimum_requests(answers: int, cap: int | None) -> int:
    """Fewest C-FIND requests that can return `answers` studies when `cap` answers mean "capped"."""
    if not cap:
        return 1
    per_request = max(1, cap - 1)
    return max(1, math.ceil(answers / per_request))


@dataclass(frozen=True)
class Probe:
    """Outcome of "any study in this range?": `earliest` is set when the answer was complete."""

    any: bool
    earliest: date | None = None


def find_earliest(probe: Callable[[DateRange], Probe], floor: date, ceiling: date) -> date | None:
    """Earliest StudyDate in [floor, ceiling] by binary search on "any study in [lo, mid]" (a PACS need not
    answer an open-ended query). A complete, non-empty answer gives the date at once. None: no study."""
    first = probe(DateRange(floor, ceiling))
    if not first.any:
        return None
    if first.earliest is not None:
        return first.earliest
    lo, hi = floor, ceiling  # the earliest date lies in [lo, hi]
    while lo < hi:
        mid = lo + timedelta(days=(hi - lo).days // 2)
        result = probe(DateRange(lo, mid))
        if result.earliest is not None:
            return result.earliest
        if result.any:
            hi = mid
        else:
            lo = mid + timedelta(days=1)
    return lo
