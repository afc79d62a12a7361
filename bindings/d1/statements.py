"""Splitting SQL text into statements as Durable Object SQL does."""

from __future__ import annotations

import re
import sqlite3
from typing import Any


def split_statements(sql: str) -> list[str]:
    """Split SQL text into complete statements (quotes, comments and triggers respected).

    Comment-only and empty pieces are dropped, as Durable Object SQL skips them.
    """
    statements: list[str] = []
    start = 0
    pos = sql.find(";")
    while pos != -1:
        piece = sql[start : pos + 1]
        if sqlite3.complete_statement(piece):
            statements.append(piece)
            start = pos + 1
        pos = sql.find(";", pos + 1)
    statements.append(sql[start:])
    return [s.strip() for s in statements if has_code(s)]


def has_code(sql: str) -> bool:
    """True unless ``sql`` is only whitespace, ``;`` and comments."""
    i, n = 0, len(sql)
    while i < n:
        ch = sql[i]
        if ch.isspace() or ch == ";":
            i += 1
        elif sql.startswith("--", i):
            nl = sql.find("\n", i)
            i = n if nl == -1 else nl + 1
        elif sql.startswith("/*", i):
            end = sql.find("*/", i + 2)
            i = n if end == -1 else end + 2
        else:
            return True
    return False


_INDENTED_COMMENT = re.compile(r"^\s+--.*", re.MULTILINE)


def is_blank_query(sql: Any) -> bool:
    """True for a query D1 drops before running a batch: empty once whitespace and *indented*
    ``--`` comment lines are removed (Miniflare's filter, which a comment at the very start of
    a line survives; such a query then fails with ``SQL code did not contain a statement.``)."""
    return isinstance(sql, str) and not _INDENTED_COMMENT.sub("", sql).strip()
