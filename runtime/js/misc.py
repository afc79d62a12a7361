"""``Date``, ``Math``, ``console``, ``setTimeout``/``clearTimeout`` and ``Error``: small JS globals
worker code reaches for."""

from __future__ import annotations

import asyncio
import itertools
import math
import random
import sys
import time
from datetime import UTC, datetime
from typing import Any

from .errors import JsException, JsProxy


class Date(JsProxy):
    """A JS ``Date`` (UTC; Workers run in UTC): ``Date.now()`` in ms, ``Date.new(ms|iso)``, getters, formats."""

    __slots__ = ("_ms",)

    def __init__(self, value: float | str | None = None) -> None:
        if value is None:
            self._ms = float(int(time.time() * 1000))
        elif isinstance(value, str):
            text = value.replace("Z", "+00:00")
            try:
                parsed = datetime.fromisoformat(text)
            except ValueError:
                self._ms = math.nan
            else:
                if parsed.tzinfo is None:
                    parsed = parsed.replace(tzinfo=UTC)
                self._ms = parsed.timestamp() * 1000
        elif isinstance(value, Date):
            self._ms = value._ms
        else:
            self._ms = float(value)

    @classmethod
    def new(cls, value: float | str | None = None) -> Date:
        return cls(value)

    @staticmethod
    def now() -> int:
        return int(time.time() * 1000)

    def _dt(self) -> datetime:
        return datetime.fromtimestamp(self._ms / 1000, UTC)

    def getTime(self) -> float:  # noqa: N802 - JS names below
        return self._ms

    valueOf = getTime

    def toISOString(self) -> str:  # noqa: N802
        return self._dt().strftime("%Y-%m-%dT%H:%M:%S.") + f"{int(self._ms % 1000):03d}Z"

    toJSON = toISOString

    def toUTCString(self) -> str:  # noqa: N802
        return self._dt().strftime("%a, %d %b %Y %H:%M:%S GMT")

    def toString(self) -> str:  # noqa: N802
        return self._dt().strftime("%a %b %d %Y %H:%M:%S GMT+0000 (Coordinated Universal Time)")

    def getFullYear(self) -> int:  # noqa: N802
        return self._dt().year

    getUTCFullYear = getFullYear

    def getMonth(self) -> int:  # noqa: N802
        return self._dt().month - 1

    getUTCMonth = getMonth

    def getDate(self) -> int:  # noqa: N802
        return self._dt().day

    getUTCDate = getDate

    def getDay(self) -> int:  # noqa: N802
        return (self._dt().weekday() + 1) % 7

    def getHours(self) -> int:  # noqa: N802
        return self._dt().hour

    getUTCHours = getHours

    def getMinutes(self) -> int:  # noqa: N802
        return self._dt().minute

    def getSeconds(self) -> int:  # noqa: N802
        return self._dt().second

    def __str__(self) -> str:
        return self.toString()

    def __repr__(self) -> str:
        return f"Date({self.toISOString()})"


class Math:  # noqa: N801 - JS name
    floor = staticmethod(math.floor)
    ceil = staticmethod(math.ceil)
    trunc = staticmethod(math.trunc)
    sqrt = staticmethod(math.sqrt)
    abs = staticmethod(abs)
    min = staticmethod(min)
    max = staticmethod(max)
    PI = math.pi
    E = math.e

    @staticmethod
    def random() -> float:
        return random.random()

    @staticmethod
    def round(x: float) -> int:
        return math.floor(x + 0.5)

    @staticmethod
    def pow(x: float, y: float) -> float:
        return math.pow(x, y)


def _fmt(value: Any) -> str:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    return str(value)


class console:  # noqa: N801 - JS name
    """``console.log`` and friends print to the dev server's output, as wrangler dev shows them."""

    @staticmethod
    def log(*args: Any) -> None:
        print(*(_fmt(a) for a in args), flush=True)

    info = log
    debug = log
    trace = log

    @staticmethod
    def warn(*args: Any) -> None:
        print(*(_fmt(a) for a in args), file=sys.stderr, flush=True)

    error = warn


_timers: dict[int, asyncio.TimerHandle] = {}
_timer_ids = itertools.count(1)


def setTimeout(callback: Any, delay: float = 0, *args: Any) -> int:  # noqa: N802 - JS name
    """Run ``callback(*args)`` after ``delay`` ms on the running event loop; returns the timer id."""
    loop = asyncio.get_running_loop()
    timer_id = next(_timer_ids)

    def fire() -> None:
        _timers.pop(timer_id, None)
        result = callback(*args)
        if asyncio.iscoroutine(result):
            loop.create_task(result)

    _timers[timer_id] = loop.call_later(max(0.0, float(delay or 0)) / 1000.0, fire)
    return timer_id


def clearTimeout(timer_id: int | None) -> None:  # noqa: N802 - JS name
    handle = _timers.pop(timer_id, None) if timer_id is not None else None
    if handle is not None:
        handle.cancel()


class Error(JsProxy):  # noqa: N818 - JS name
    """``Error.new(message)``: a ``JsException`` named ``Error`` (to raise or return)."""

    __slots__ = ()

    @staticmethod
    def new(message: str = "") -> JsException:
        return JsException("Error", str(message))
