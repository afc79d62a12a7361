"""Log output of ``flarelet dev``: ``[flarelet:<level>] message`` lines, wrangler's levels.

wrangler's ``--log-level`` takes ``debug``, ``info``, ``log``, ``warn``, ``error`` or ``none``;
request lines are ``info``. Tracebacks of worker errors are ``error`` and always shown unless
``none``.
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO

LEVELS: dict[str, int] = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "log": logging.INFO,
    "warn": logging.WARNING,
    "error": logging.ERROR,
    "none": logging.CRITICAL + 10,
}
#: the ``--log-level`` choices of every flarelet server command, wrangler's
LOG_LEVELS: tuple[str, ...] = tuple(LEVELS)

_NAMES = {
    logging.DEBUG: "debug",
    logging.INFO: "info",
    logging.WARNING: "warn",
    logging.ERROR: "error",
    logging.CRITICAL: "error",
}


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        return f"[flarelet:{_NAMES.get(record.levelno, record.levelname.lower())}] {text}"


def setup_logging(level: str = "info", stream: TextIO | None = None) -> int:
    """Send the ``flarelet`` and ``uvicorn`` loggers to ``stream`` (stdout); returns the numeric level."""
    numeric = LEVELS[level]
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(_Formatter("%(message)s"))
    for name, floor in (("flarelet", numeric), ("uvicorn", max(numeric, logging.WARNING)), ("py.warnings", numeric)):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(floor)
        logger.propagate = False
    return numeric
