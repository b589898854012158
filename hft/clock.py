"""Clocks, injectable so live runs and simulations share the engine code."""

from __future__ import annotations

import time


class Clock:
    """Wall time for records (ns since epoch) and monotonic time for latencies (ns)."""

    __slots__ = ()

    def now_ns(self) -> int:
        return time.time_ns()

    def mono_ns(self) -> int:
        return time.perf_counter_ns()


class ManualClock(Clock):
    """A clock advanced by hand (tests, backtests)."""

    __slots__ = ("_now",)

    def __init__(self, start_ns: int = 1_700_000_000_000_000_000) -> None:
        self._now = start_ns

    def now_ns(self) -> int:
        return self._now

    def mono_ns(self) -> int:
        return self._now

    def advance(self, ns: int) -> None:
        self._now += ns
