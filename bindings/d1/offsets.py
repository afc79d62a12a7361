"""Where in a statement SQLite failed: the `` at offset N`` of D1's error messages.

workerd appends ``sqlite3_error_offset()`` to a failure's message when SQLite knows the token it
failed at (``near "SELEC": syntax error at offset 0``, ``no such column: x at offset 7``).
Python's ``sqlite3`` does not expose that function, so the offset is found again here from the
token SQLite names: for a syntax error, the first occurrence at which the statement's prefix
fails to compile (asked of SQLite itself, compiling only, with ``EXPLAIN``); for the other
errors, the first occurrence of the name as a whole token. Offsets count UTF-8 bytes, as
SQLite's do.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable, Iterator

_NEAR = re.compile(r'^near "(?P<token>.+)": syntax error$', re.S)
_NAMED = re.compile(r"^(?:no such column|no such function|unrecognized token): (?P<token>.+)$", re.S)

#: compiles SQL without running it; raises ``sqlite3.Error`` as preparing it would
Compile = Callable[[str], None]


def _occurrences(statement: str, token: str) -> Iterator[int]:
    wordlike = token[:1].isalnum() or token[:1] == "_"
    start = statement.find(token)
    while start != -1:
        before = statement[start - 1] if start else " "
        after = statement[start + len(token)] if start + len(token) < len(statement) else " "
        if not wordlike or not (before.isalnum() or before == "_" or after.isalnum() or after == "_"):
            yield start
        start = statement.find(token, start + 1)


def error_offset(message: str, statement: str, compile_sql: Compile) -> int | None:
    """The byte offset in ``statement`` of the token ``message`` names, or ``None``."""
    near = _NEAR.match(message)
    if near is not None:
        token = near.group("token")
        for start in _occurrences(statement, token):
            try:
                compile_sql(statement[: start + len(token)])
            except sqlite3.Error as exc:
                if str(exc) == message:
                    return len(statement[:start].encode("utf-8", "surrogatepass"))
        return None
    named = _NAMED.match(message)
    if named is None:
        return None
    token = named.group("token").strip('"')
    for start in _occurrences(statement, token):
        return len(statement[:start].encode("utf-8", "surrogatepass"))
    return None
