"""Log output of ``flarelet dev``: ``[flarelet:<level>] message`` lines, wrangler's levels.

wrangler's ``--log-level`` takes ``debug``, ``info``, ``log``, ``warn``, ``error`` or ``none``;
request lines are ``info``. Tracebacks of worker errors are ``error`` and always shown unless
``none``.

Anything a client or a worker controls can reach a log line (a URL, an exception message), so
every line is escaped on its way out: control characters become ``\\n``, ``\\x1b``, ... (no
forged ``[flarelet:info]`` lines, no terminal escape sequences), and the continuation lines of a
multi-line message (tracebacks) are indented, so only flarelet starts a line with ``[flarelet:``.
"""

from __future__ import annotations

import logging
import re
import sys
from typing import TextIO

#: C0 and C1 controls, DEL, Unicode line/paragraph separators and bidirectional overrides
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_CONTROL_BUT_NEWLINE = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape_one(match: re.Match[str]) -> str:
    char = match.group()
    named = _NAMED.get(char)
    if named is not None:
        return named
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape_controls(text: str) -> str:
    """``text`` on one line with its control characters escaped (``\\n``, ``\\x1b``, ``\\u202e``)."""
    if text.isprintable():  # fast path: no Cc/Cf/Zl/Zp character at all
        return text
    return _CONTROL.sub(_escape_one, text)


def escape_record(text: str) -> str:
    """A formatted log record, safe to print: controls escaped, continuation lines indented."""
    if _CONTROL_BUT_NEWLINE.search(text) is not None:
        text = _CONTROL_BUT_NEWLINE.sub(_escape_one, text)
    if "\n" in text:
        first, *rest = text.split("\n")
        text = "\n".join([first, *(line if line[:1] in (" ", "") else "  " + line for line in rest)])
    return text


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
        text = escape_record(super().format(record))
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
