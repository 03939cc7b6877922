"""Timing loops and percentiles shared by the benches (milliseconds, wall clock)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def p95(samples: list[float]) -> float:
    """95th percentile (inclusive method; the one sample when there is one)."""
    return statistics.quantiles(samples, n=20, method="inclusive")[18] if len(samples) > 1 else samples[0]


def time_ms(fn: Callable[[], T], n: int) -> tuple[list[float], T | None]:
    """Call ``fn`` n times in a row: the milliseconds of each call and the last call's result."""
    out: list[float] = []
    result = None
    for _ in range(n):
        start = time.perf_counter()
        result = fn()
        out.append((time.perf_counter() - start) * 1000)
    return out, result
