"""Workflow durations: milliseconds, or ``"10 seconds"``, ``"1 minute"``, ``"2 hours"``... (Cloudflare's forms)."""

from __future__ import annotations

import re

_UNITS_MS = {
    "millisecond": 1,
    "ms": 1,
    "second": 1000,
    "sec": 1000,
    "s": 1000,
    "minute": 60_000,
    "min": 60_000,
    "m": 60_000,
    "hour": 3_600_000,
    "hr": 3_600_000,
    "h": 3_600_000,
    "day": 86_400_000,
    "d": 86_400_000,
    "week": 7 * 86_400_000,
    "w": 7 * 86_400_000,
    "month": 30 * 86_400_000,
    "year": 365 * 86_400_000,
    "y": 365 * 86_400_000,
}
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]+)?\s*$")


def duration_ms(value: object, what: str = "duration") -> float:
    """A duration in milliseconds; raises ``ValueError`` naming ``what`` for anything else."""
    if isinstance(value, bool):
        raise ValueError(f"{what} must be a number of milliseconds or a string like '10 seconds', got {value!r}")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError(f"{what} must not be negative, got {value!r}")
        return float(value)
    if isinstance(value, str):
        match = _PATTERN.match(value)
        if match:
            number = float(match.group(1))
            unit = (match.group(2) or "ms").lower()
            factor = _UNITS_MS.get(unit) or _UNITS_MS.get(unit.rstrip("s"))
            if factor is not None:
                return number * factor
    raise ValueError(f"{what} must be a number of milliseconds or a string like '10 seconds', got {value!r}")
