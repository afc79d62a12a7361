"""``D1Engine``: runs queries on one SQLite connection with Durable Object SQL's rules."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from flarelet.bindings.d1.constants import (
    ALLOWED_PRAGMAS,
    COMMENTS_ONLY_MESSAGE,
    DEFAULT_LIMITS,
    NO_STATEMENTS_MESSAGE,
    OBJECT_CLASS,
    PRELUDE_BINDINGS_MESSAGE,
    RESULT_CODE_NAMES,
    SERVED_BY,
    TOO_LONG_MESSAGE,
    TRANSACTION_MESSAGE,
    WRONG_BINDINGS_MESSAGE,
    D1Limits,
)
from flarelet.bindings.d1.errors import D1Error
from flarelet.bindings.d1.offsets import error_offset
from flarelet.bindings.d1.rows import RowCounter
from flarelet.bindings.d1.statements import is_blank_query, split_statements
from flarelet.bindings.d1.values import out_value
from flarelet.bindings.storage import paths


def d1_database_path(persist_root: Path, database_id: str) -> Path:
    return paths.object_db_path(persist_root, "d1", OBJECT_CLASS, database_id)


# -- engine (runs on the store's thread) -----------------------------------------------------


class _AuthState(threading.local):
    internal = False
    denied_transaction = False


class D1Engine:
    """Executes D1 queries on one connection; shared by the binding and ``flarelet d1``."""

    def __init__(self, limits: D1Limits = DEFAULT_LIMITS) -> None:
        self.limits = limits
        self._auth = _AuthState()
        self.rows = RowCounter()

    # connection setup ---------------------------------------------------------------------

    def setup(self, conn: sqlite3.Connection) -> None:
        conn.execute("PRAGMA foreign_keys = ON")
        conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, self.limits.max_value_bytes)
        conn.setlimit(sqlite3.SQLITE_LIMIT_SQL_LENGTH, self.limits.max_sql_bytes)
        conn.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, self.limits.max_bound_parameters)
        conn.setlimit(sqlite3.SQLITE_LIMIT_ATTACHED, 0)
        conn.set_authorizer(self._authorize)

    def _authorize(self, action: int, arg1: str | None, arg2: str | None, _db: str | None, _src: str | None) -> int:
        if self._auth.internal:
            return sqlite3.SQLITE_OK
        if action in (sqlite3.SQLITE_TRANSACTION, sqlite3.SQLITE_SAVEPOINT):
            self._auth.denied_transaction = True
            return sqlite3.SQLITE_DENY
        if action in (sqlite3.SQLITE_ATTACH, sqlite3.SQLITE_DETACH):
            return sqlite3.SQLITE_DENY
        if action == sqlite3.SQLITE_PRAGMA:
            return sqlite3.SQLITE_OK if (arg1 or "").lower() in ALLOWED_PRAGMAS else sqlite3.SQLITE_DENY
        return sqlite3.SQLITE_OK

    def _internal(self, conn: sqlite3.Connection, sql: str) -> None:
        self._internal_rows(conn, sql)

    def _internal_rows(self, conn: sqlite3.Connection, sql: str) -> list[tuple]:
        self._auth.internal = True
        try:
            return conn.execute(sql).fetchall()
        finally:
            self._auth.internal = False

    def _begin(self, conn: sqlite3.Connection) -> None:
        self._internal(conn, "BEGIN IMMEDIATE")

    def _commit(self, conn: sqlite3.Connection) -> None:
        self._internal(conn, "COMMIT")

    def _rollback(self, conn: sqlite3.Connection) -> None:
        if conn.in_transaction:
            self._internal(conn, "ROLLBACK")

    # errors ----------------------------------------------------------------------------------

    def error_message(self, exc: BaseException) -> str:
        """The text D1 puts after ``D1_ERROR:`` for a failure.

        workerd's form: ``<sqlite message>[ at offset N]: SQLITE_<PRIMARY>[ (extended:
        SQLITE_<EXTENDED>)]``, the extended name only when it differs from the primary one
        (``UNIQUE constraint failed: t.k: SQLITE_CONSTRAINT (extended: SQLITE_CONSTRAINT_PRIMARYKEY)``).
        """
        if isinstance(exc, D1Error):
            return exc.cause or exc.message
        if isinstance(exc, sqlite3.ProgrammingError) and "number of bindings" in str(exc):
            return WRONG_BINDINGS_MESSAGE
        if isinstance(exc, sqlite3.Error):
            message = str(exc)
            if self._auth.denied_transaction:
                self._auth.denied_transaction = False
                return TRANSACTION_MESSAGE
            offset = getattr(exc, "d1_offset", None)
            if offset is not None:
                message = f"{message} at offset {offset}"
            code = getattr(exc, "sqlite_errorcode", None)
            if not isinstance(code, int):
                return message
            name = RESULT_CODE_NAMES.get(code & 0xFF)
            if name is None:
                return message
            extended = getattr(exc, "sqlite_errorname", None)
            if code > 0xFF and isinstance(extended, str) and extended != name:
                return f"{message}: {name} (extended: {extended})"
            return f"{message}: {name}"
        return str(exc)

    def _compile_only(self, conn: sqlite3.Connection, sql: str) -> None:
        """Compile ``sql`` without running it (``EXPLAIN``), for :func:`error_offset`.

        The authorizer stays on (a probe may not compile what the Worker may not run), and its
        record of a denied transaction is the failed statement's, not the probe's. PRAGMA
        statements are never probed: SQLite applies some pragmas while compiling them.
        """
        if sql.lstrip()[:6].upper() == "PRAGMA":
            raise sqlite3.OperationalError("not probed")
        denied = self._auth.denied_transaction
        try:
            conn.execute("EXPLAIN " + sql).fetchall()
        finally:
            self._auth.denied_transaction = denied

    def _locate(self, conn: sqlite3.Connection, exc: sqlite3.Error, statement: str, base: int) -> None:
        offset = error_offset(str(exc), statement, lambda sql: self._compile_only(conn, sql))
        if offset is not None:
            exc.d1_offset = base + offset  # type: ignore[attr-defined]

    # queries ---------------------------------------------------------------------------------

    def _state(self, conn: sqlite3.Connection) -> tuple[int, int]:
        """Database size in bytes and the last inserted rowid.

        The rowid comes with the page count: Python's cursor reads ``sqlite3_last_insert_rowid``
        after every statement, so it costs no query of its own.
        """
        self._auth.internal = True
        try:
            cursor = conn.execute("PRAGMA page_count")
            pages = cursor.fetchone()[0]
            size = conn.execute("PRAGMA page_size").fetchone()[0]
        finally:
            self._auth.internal = False
        return int(pages) * int(size), int(cursor.lastrowid or 0)

    def _schema_version(self, conn: sqlite3.Connection) -> int:
        return int(self._internal_rows(conn, "PRAGMA schema_version")[0][0])

    def query(
        self, conn: sqlite3.Connection, sql: str, params: Sequence[Any] = (), *, count_rows: bool = True
    ) -> dict[str, Any]:
        """Run one query (possibly several statements); results of the last statement.

        ``count_rows=False`` skips ``rows_read``/``rows_written`` (reported as 0): ``exec`` answers
        only ``{count, duration}``, and reading each line's program would slow it for nothing.
        """
        if not isinstance(sql, str):
            raise D1Error("D1_ERROR: Query must be a string", "Query must be a string")
        if len(sql.encode("utf-8", "surrogatepass")) > self.limits.max_sql_bytes:
            raise D1Error(f"D1_ERROR: {TOO_LONG_MESSAGE}", TOO_LONG_MESSAGE)
        statements = split_statements(sql)
        if not statements:
            raise D1Error(f"D1_ERROR: {COMMENTS_ONLY_MESSAGE}", COMMENTS_ONLY_MESSAGE)
        started = time.perf_counter()
        size_before, last_before = self._state(conn)
        changes_before = conn.total_changes
        columns: list[str] = []
        rows: list[tuple] = []
        estimate = None
        last_changes_before = changes_before
        for index, statement in enumerate(statements):
            last = index == len(statements) - 1
            if last and count_rows:
                # D1 reports the last statement's row counters; what they need is read before it runs
                estimate = self.rows.prepare(
                    conn, statement, params, self._schema_version(conn), lambda q: self._internal_rows(conn, q)
                )
                last_changes_before = conn.total_changes
            try:
                self._auth.denied_transaction = False
                cursor = conn.execute(statement, tuple(params) if last else ())
            except sqlite3.ProgrammingError as exc:
                if "number of bindings" in str(exc) and not last:
                    raise D1Error(PRELUDE_BINDINGS_MESSAGE, PRELUDE_BINDINGS_MESSAGE) from None
                raise
            except sqlite3.OperationalError as exc:
                # the first statement's offset counts the query's leading whitespace, later
                # statements' count from their first character (as workerd reports them)
                base = len(sql) - len(sql.lstrip()) if index == 0 else 0
                self._locate(conn, exc, statement, base)
                raise
            fetched = cursor.fetchall()
            if last:
                columns = [d[0] for d in cursor.description] if cursor.description else []
                rows = fetched
        changes = conn.total_changes - changes_before
        counts = estimate.counts(rows, conn.total_changes - last_changes_before) if estimate else None
        size_after, last_row_id = self._state(conn)
        duration = (time.perf_counter() - started) * 1000
        return {
            "columns": columns,
            "rows": [[out_value(v) for v in row] for row in rows],
            "meta": {
                "served_by": SERVED_BY,
                "duration": duration,
                "changes": changes,
                "last_row_id": last_row_id,
                # a DROP frees pages without shrinking the file or counting a change: D1 still
                # reports the database changed
                "changed_db": changes != 0
                or last_row_id != last_before
                or size_after != size_before
                or (estimate is not None and estimate.program.writes_schema),
                "size_after": size_after,
                # estimated from the statement's program (flarelet.bindings.d1.rows): Python's
                # sqlite3 has no row counters
                "rows_read": counts.read if counts else 0,
                "rows_written": counts.written if counts else 0,
            },
        }

    def transaction(self, conn: sqlite3.Connection, queries: Iterable[tuple[str, Sequence[Any]]]) -> list[dict]:
        """All ``queries`` in one transaction (Miniflare's ``transactionSync``).

        Blank queries are dropped first, and none left is ``No SQL statements detected.``
        """
        queries = [(sql, params) for sql, params in queries if not is_blank_query(sql)]
        if not queries:
            raise D1Error(f"D1_ERROR: {NO_STATEMENTS_MESSAGE}", NO_STATEMENTS_MESSAGE)
        self._begin(conn)
        try:
            results = [self.query(conn, sql, params) for sql, params in queries]
        except BaseException:
            self._rollback(conn)
            raise
        self._commit(conn)
        return results
