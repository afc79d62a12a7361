"""Running ``[triggers] crons`` on schedule, as Cloudflare does (UTC, 5-field cron syntax).

``wrangler dev`` only runs cron triggers when asked (``/__scheduled``); flarelet also runs them
at their times so a worker's periodic work can be watched locally. Each firing calls the
worker's ``scheduled`` handler with ``controller.cron`` and ``controller.scheduledTime`` (ms) and
logs ``[flarelet:info] scheduled "*/5 * * * *" ok (3ms)``. A failing handler is logged, and the
schedule carries on.

``clock`` is injectable (epoch seconds) so tests can start just before a minute boundary instead
of waiting for one.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

log = logging.getLogger("flarelet")

Runner = Callable[[str, float], Awaitable[dict[str, Any]]]


class CronScheduler:
    def __init__(self, crons: Sequence[str], run: Runner, *, clock: Callable[[], float] = time.time) -> None:
        self.crons = list(crons)
        self._run = run
        self._clock = clock
        self._task: asyncio.Task[None] | None = None
        self.fired = 0

    def next_times(self, after: float) -> list[tuple[float, str]]:
        from croniter import croniter

        start = datetime.fromtimestamp(after, UTC)
        return sorted((croniter(expr, start).get_next(float), expr) for expr in self.crons)

    def start(self) -> None:
        if self.crons and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop(), name="flarelet-cron")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass

    async def _loop(self) -> None:
        now = self._clock()
        while True:
            upcoming = self.next_times(now)
            when = upcoming[0][0]
            delay = when - self._clock()
            if delay > 0:
                await asyncio.sleep(delay)
            due = [expr for t, expr in upcoming if t <= when]
            for expr in due:
                asyncio.get_running_loop().create_task(self._fire(expr, when))
            now = when

    async def _fire(self, expr: str, when: float) -> None:
        started = time.perf_counter()
        try:
            result = await self._run(expr, when * 1000.0)
        except Exception:  # noqa: BLE001 - the schedule must survive anything
            log.exception('scheduled "%s" failed', expr)
            return
        self.fired += 1
        log.info('scheduled "%s" %s (%dms)', expr, result.get("outcome"), (time.perf_counter() - started) * 1000)
