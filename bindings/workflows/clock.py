"""Time for Workflows: the wall clock, or a clock that tests move forward.

Everything in the engine that waits -- ``step.sleep``, ``sleep_until``, retry back-off, step
timeouts, ``wait_for_event`` timeouts -- waits on a :class:`Clock`, never on ``asyncio.sleep``
directly, so a test can give the engine a :class:`ManualClock` and move time on
(``await clock.advance(3600)``) instead of waiting an hour. Times are seconds since the epoch.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Awaitable, Callable
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the epoch."""
        ...

    async def sleep_until(self, when: float) -> None:
        """Return once ``now() >= when``."""
        ...


class SystemClock:
    """Real time (``time.time``, ``asyncio.sleep``)."""

    def now(self) -> float:
        return time.time()

    async def sleep_until(self, when: float) -> None:
        while True:
            remaining = when - time.time()
            if remaining <= 0:
                return
            await asyncio.sleep(min(remaining, 3600.0))


class ManualClock:
    """A clock that only moves when told (``advance``/``advance_to``); sleepers wake in time order.

    Moving time steps from one wake-up to the next: at each, the woken tasks run until every
    engine using this clock is idle again (its registered settlers return), so a workflow that
    sleeps twice inside the advanced span wakes twice, as it would in real time.
    """

    def __init__(self, start: float | None = None) -> None:
        self._now = time.time() if start is None else float(start)
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._counter = itertools.count()
        self._settlers: list[Callable[[], Awaitable[None]]] = []

    def now(self) -> float:
        return self._now

    def add_settler(self, settle: Callable[[], Awaitable[None]]) -> None:
        """Register ``await settle()`` (returns once an engine is idle) to run after each wake-up."""
        self._settlers.append(settle)

    def remove_settler(self, settle: Callable[[], Awaitable[None]]) -> None:
        if settle in self._settlers:
            self._settlers.remove(settle)

    async def sleep_until(self, when: float) -> None:
        if when <= self._now:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (when, next(self._counter), future))
        await future

    def next_wake(self) -> float | None:
        """When the earliest sleeper wakes (``None`` if nobody sleeps)."""
        while self._sleepers and self._sleepers[0][2].done():
            heapq.heappop(self._sleepers)
        return self._sleepers[0][0] if self._sleepers else None

    async def settle(self) -> None:
        """Wait until every registered engine is idle (blocked on this clock or an event, or done)."""
        await asyncio.sleep(0)
        for settle in list(self._settlers):
            await settle()

    async def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds``, waking sleepers in order and letting them run."""
        await self.advance_to(self._now + float(seconds))

    async def advance_to(self, when: float) -> None:
        if when < self._now:
            raise ValueError("a ManualClock only moves forward")
        await self.settle()
        while True:
            wake = self.next_wake()
            if wake is None or wake > when:
                break
            self._now = max(self._now, wake)
            while self._sleepers and self._sleepers[0][0] <= self._now:
                _, _, future = heapq.heappop(self._sleepers)
                if not future.done():
                    future.set_result(None)
            await self.settle()
        self._now = when
