"""Retrying a call that fails for a moment (a database file another process holds briefly).

:func:`retry` calls a function again after each wait of a schedule while the failure is one the caller
names as passing; :class:`Backoff` is the usual schedule (exponential waits, capped, within a time budget).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TypeVar

__all__ = ["Backoff", "retry"]

T = TypeVar("T")


@dataclass(frozen=True)
class Backoff:
    """Exponential waits between tries: ``first_s``, then each ``factor`` times the previous, at most ``max_s``;
    no wait that would end more than ``total_s`` after the schedule started (i.e. the first try)."""

    first_s: float = 0.05  # seconds to wait after the first failure
    factor: float = 2.0  # each further wait is this many times the previous one ...
    max_s: float = 0.5  # ... up to this many seconds
    total_s: float = 3.0  # no retry that would start later than this many seconds after the first try

    def waits(self) -> Iterator[float]:
        """The schedule, timed from now (call it just before the first try)."""
        deadline = time.monotonic() + self.total_s

        def gen() -> Iterator[float]:
            delay, waited = self.first_s, 0.0
            # the waits alone, and the time since the start (the tries too), stay within the budget
            while waited + delay <= self.total_s and time.monotonic() + delay <= deadline:
                yield delay
                waited += delay
                delay = min(delay * self.factor, self.max_s)

        return gen()


def retry(
    fn: Callable[[], T],
    passing: Callable[[Exception], bool],
    waits: Iterable[float],
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """``fn()``; when it raises an exception for which ``passing(exc)`` is true, sleep the next of ``waits``
    and call it again. An exception that is not passing, or the one of the last try once ``waits`` is used up,
    propagates. ``waits`` is read lazily, one wait per failure, so it may consult the clock."""
    it = iter(waits)
    while True:
        try:
            return fn()
        except Exception as exc:
            if not passing(exc):
                raise
            delay = next(it, None)
            if delay is None:
                raise
        sleep(delay)
