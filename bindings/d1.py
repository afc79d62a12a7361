"""D1 (``d1_databases``): ``env.DB.prepare().bind().first/all/run/raw``, ``batch``, ``exec``.

Local D1 under ``wrangler dev`` is workerd's D1 client (``cloudflare/internal/d1-api.ts``) over
Miniflare's ``D1DatabaseObject``, a SQLite database in Durable Object storage. This module is
the same pair in Python: results ``{results, success, meta}`` with attribute access, errors
``D1_ERROR: <sqlite message>: SQLITE_<CODE>``, ``D1_TYPE_ERROR``, ``D1_COLUMN_NOTFOUND`` and
``D1_EXEC_ERROR``, every call one transaction (``batch`` too), Durable Object SQL's rules
(no ``BEGIN``/``SAVEPOINT``/``ATTACH``, an allow-list of pragmas, foreign keys on, 100 bound
parameters, 100 kB statements, 2 MB strings/blobs).

Values cross as they do through Python Workers: ``bytes`` bind as BLOBs and come back as lists
of ints, ``bool`` binds as 1/0, a whole-number REAL comes back as ``int`` (JS numbers do).

The database is an ordinary SQLite file (``<persist>/v3/d1/miniflare-D1DatabaseObject/
<sha256(id)>.sqlite``) that ``flarelet d1 execute --local`` and ``sqlite3`` open directly.
"""

from __future__ import annotations

import math
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from flarelet.bindings import registry
from flarelet.bindings.jsobject import JsDict, JsException, check_rpc_value, merge_options
from flarelet.bindings.storage import paths
from flarelet.bindings.storage.config import StoragePlugin
from flarelet.bindings.storage.sqlite import SqliteStore, connect, shared_store, synchronous_mode

__all__ = [
    "D1Limits",
    "D1Database",
    "D1PreparedStatement",
    "D1Plugin",
    "plugin",
    "d1_database_path",
    "split_statements",
    "D1Engine",
]

TYPE_LABEL = "D1 Database"
OBJECT_CLASS = "miniflare-D1DatabaseObject"
SERVED_BY = "miniflare.db"
MAX_SAFE_INTEGER = 2**53 - 1


@dataclass(frozen=True)
class D1Limits:
    """Durable Object SQL / D1 limits (developers.cloudflare.com/d1/platform/limits)."""

    max_bound_parameters: int = 100
    max_sql_bytes: int = 100_000
    max_value_bytes: int = 2_000_000


#: pragmas Durable Object SQL lets a Worker run (workerd ``sqlite.c++`` allow-list, abridged)
ALLOWED_PRAGMAS = frozenset(
    {
        "data_version",
        "defer_foreign_keys",
        "foreign_key_check",
        "foreign_key_list",
        "foreign_keys",
        "index_info",
        "index_list",
        "index_xinfo",
        "integrity_check",
        "legacy_alter_table",
        "optimize",
        "quick_check",
        "recursive_triggers",
        "case_sensitive_like",
        "reverse_unordered_selects",
        "table_info",
        "table_list",
        "table_xinfo",
        "page_count",
        "page_size",
        "freelist_count",
        "collation_list",
        "function_list",
    }
)

TRANSACTION_MESSAGE = (
    "To execute a transaction, please use the state.storage.transaction() or "
    "state.storage.transactionSync() APIs instead of the SQL BEGIN TRANSACTION or SAVEPOINT "
    "statements. The JavaScript API is safer because it will automatically roll back on "
    "exceptions, and because it interacts correctly with Durable Objects' automatic atomic "
    "write coalescing."
)
WRONG_BINDINGS_MESSAGE = "Wrong number of parameter bindings for SQL query."
PRELUDE_BINDINGS_MESSAGE = (
    "When executing multiple SQL statements in a single call, only the last statement can have parameters."
)

#: SQLite primary result codes -> names (workerd appends ``: SQLITE_<NAME>`` to messages)
_RESULT_CODE_NAMES = {
    1: "SQLITE_ERROR",
    2: "SQLITE_INTERNAL",
    3: "SQLITE_PERM",
    4: "SQLITE_ABORT",
    5: "SQLITE_BUSY",
    6: "SQLITE_LOCKED",
    7: "SQLITE_NOMEM",
    8: "SQLITE_READONLY",
    9: "SQLITE_INTERRUPT",
    10: "SQLITE_IOERR",
    11: "SQLITE_CORRUPT",
    12: "SQLITE_NOTFOUND",
    13: "SQLITE_FULL",
    14: "SQLITE_CANTOPEN",
    15: "SQLITE_PROTOCOL",
    16: "SQLITE_EMPTY",
    17: "SQLITE_SCHEMA",
    18: "SQLITE_TOOBIG",
    19: "SQLITE_CONSTRAINT",
    20: "SQLITE_MISMATCH",
    21: "SQLITE_MISUSE",
    22: "SQLITE_NOLFS",
    23: "SQLITE_AUTH",
    24: "SQLITE_FORMAT",
    25: "SQLITE_RANGE",
    26: "SQLITE_NOTADB",
}


def d1_database_path(persist_root: Path, database_id: str) -> Path:
    return paths.object_db_path(persist_root, "d1", OBJECT_CLASS, database_id)


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
    return [s.strip() for s in statements if _has_code(s)]


def _has_code(sql: str) -> bool:
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


class D1Error(JsException):
    """A D1 failure as workerd throws it: ``Error`` whose message starts ``D1_...:``."""

    def __init__(self, message: str, cause: str | None = None) -> None:
        super().__init__("Error", message)
        self.cause = cause


# -- values ----------------------------------------------------------------------------------


def _js_string(value: Any) -> str:
    """``String(value)`` of what ``value`` becomes in JS, for ``D1_TYPE_ERROR`` messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, JsDict)):
        return "[object Object]"
    if isinstance(value, list):
        return ",".join("" if v is None else _js_string(v) for v in value)
    return str(value)


def _js_typeof(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "bigint" if abs(value) > MAX_SAFE_INTEGER else "number"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if callable(value):
        return "function"
    return "object"


def convert_bind_value(value: Any) -> Any:
    """A Python value bound to ``?`` as D1's ``bind()`` accepts it, else ``D1_TYPE_ERROR``."""
    check_rpc_value(value)
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return 1 if value else 0
    if isinstance(value, int) and abs(value) <= MAX_SAFE_INTEGER:
        return value
    if isinstance(value, float):
        return None if math.isnan(value) else value
    if isinstance(value, (bytes, memoryview)):
        return bytes(value)
    if isinstance(value, list) and all(isinstance(b, int) and not isinstance(b, bool) and 0 <= b < 256 for b in value):
        return bytes(value)
    kind, text = _js_typeof(value), _js_string(value)
    raise D1Error(
        f"D1_TYPE_ERROR: Type '{kind}' not supported for value '{text}'",
        f"Type '{kind}' not supported for value '{text}'",
    )


def _out_value(value: Any) -> Any:
    """A SQLite value as a Python Worker receives it (through a JS number / array)."""
    if isinstance(value, bytes):
        return list(value)
    if isinstance(value, float) and value.is_integer() and abs(value) <= MAX_SAFE_INTEGER:
        return int(value)
    return value


# -- engine (runs on the store's thread) -----------------------------------------------------


class _AuthState(threading.local):
    internal = False
    denied_transaction = False


class D1Engine:
    """Executes D1 queries on one connection; shared by the binding and ``flarelet d1``."""

    def __init__(self, limits: D1Limits = D1Limits()) -> None:
        self.limits = limits
        self._auth = _AuthState()

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
        self._auth.internal = True
        try:
            conn.execute(sql)
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
        """The text D1 puts after ``D1_ERROR:`` for a failure."""
        if isinstance(exc, D1Error):
            return exc.cause or exc.message
        if isinstance(exc, sqlite3.ProgrammingError) and "number of bindings" in str(exc):
            return WRONG_BINDINGS_MESSAGE
        if isinstance(exc, sqlite3.Error):
            message = str(exc)
            if self._auth.denied_transaction:
                self._auth.denied_transaction = False
                return TRANSACTION_MESSAGE
            code = getattr(exc, "sqlite_errorcode", None)
            name = _RESULT_CODE_NAMES.get(code & 0xFF) if isinstance(code, int) else None
            return f"{message}: {name}" if name else message
        return str(exc)

    # queries ---------------------------------------------------------------------------------

    def _size(self, conn: sqlite3.Connection) -> int:
        self._auth.internal = True
        try:
            pages = conn.execute("PRAGMA page_count").fetchone()[0]
            size = conn.execute("PRAGMA page_size").fetchone()[0]
        finally:
            self._auth.internal = False
        return int(pages) * int(size)

    def _last_row_id(self, conn: sqlite3.Connection) -> int:
        return int(conn.execute("SELECT last_insert_rowid()").fetchone()[0])

    def query(self, conn: sqlite3.Connection, sql: str, params: Sequence[Any] = ()) -> dict[str, Any]:
        """Run one query (possibly several statements); results of the last statement."""
        if not isinstance(sql, str):
            raise D1Error("D1_ERROR: Query must be a string", "Query must be a string")
        if len(sql.encode("utf-8", "surrogatepass")) > self.limits.max_sql_bytes:
            raise sqlite3.DataError("statement too long")
        statements = split_statements(sql)
        if not statements:
            raise D1Error("D1_ERROR: No SQL statements detected.", "No SQL statements detected.")
        started = time.perf_counter()
        size_before = self._size(conn)
        changes_before = conn.total_changes
        last_before = self._last_row_id(conn)
        columns: list[str] = []
        rows: list[tuple] = []
        for index, statement in enumerate(statements):
            last = index == len(statements) - 1
            try:
                self._auth.denied_transaction = False
                cursor = conn.execute(statement, tuple(params) if last else ())
            except sqlite3.ProgrammingError as exc:
                if "number of bindings" in str(exc) and not last:
                    raise D1Error(PRELUDE_BINDINGS_MESSAGE, PRELUDE_BINDINGS_MESSAGE) from None
                raise
            fetched = cursor.fetchall()
            if last:
                columns = [d[0] for d in cursor.description] if cursor.description else []
                rows = fetched
        changes = conn.total_changes - changes_before
        last_row_id = self._last_row_id(conn)
        size_after = self._size(conn)
        duration = (time.perf_counter() - started) * 1000
        return {
            "columns": columns,
            "rows": [[_out_value(v) for v in row] for row in rows],
            "meta": {
                "served_by": SERVED_BY,
                "duration": duration,
                "changes": changes,
                "last_row_id": last_row_id,
                "changed_db": changes != 0 or last_row_id != last_before or size_after != size_before,
                "size_after": size_after,
                # Python's sqlite3 does not expose SQLite's per-statement row counters: rows
                # returned stand in for rows read, rows changed for rows written.
                "rows_read": len(rows),
                "rows_written": changes,
            },
        }

    def transaction(self, conn: sqlite3.Connection, queries: Iterable[tuple[str, Sequence[Any]]]) -> list[dict]:
        """All ``queries`` in one transaction (Miniflare's ``transactionSync``)."""
        self._begin(conn)
        try:
            results = [self.query(conn, sql, params) for sql, params in queries]
        except BaseException:
            self._rollback(conn)
            raise
        self._commit(conn)
        return results


def _objects(result: dict) -> list[JsDict]:
    columns = result["columns"]
    return [JsDict(zip(columns, row)) for row in result["rows"]]


def _d1_result(result: dict, with_results: bool = True) -> JsDict:
    out = JsDict(success=True, meta=JsDict(result["meta"]))
    out["results"] = _objects(result) if with_results else []
    return out


# -- binding -------------------------------------------------------------------------------


class D1PreparedStatement:
    """A statement and its bound values; ``bind()`` returns a new statement, as in D1."""

    def __init__(self, database: D1Database, statement: str, params: Sequence[Any] = ()) -> None:
        self._database = database
        self.statement = statement
        self.params = list(params)

    def __repr__(self) -> str:
        return f"D1PreparedStatement({self.statement!r}, params={self.params!r})"

    def bind(self, *values: Any) -> D1PreparedStatement:
        return D1PreparedStatement(self._database, self.statement, [convert_bind_value(v) for v in values])

    async def _run(self) -> dict:
        return (await self._database._transaction([(self.statement, self.params)]))[0]

    async def first(self, colName: str | None = None, **kwargs: Any) -> Any:
        """The first row (a ``JsDict``), one column of it, or ``None`` when there are no rows."""
        if colName is None:
            colName = kwargs.pop("col_name", kwargs.pop("column", None))
        result = await self._run()
        rows = _objects(result)
        if not rows:
            return None
        if colName is None:
            return rows[0]
        if colName not in rows[0]:
            raise D1Error(f"D1_COLUMN_NOTFOUND: Column not found ({colName})", "Column not found")
        return rows[0][colName]

    async def all(self) -> JsDict:
        """``{results: [rows], success: True, meta: {...}}``."""
        return _d1_result(await self._run())

    async def run(self) -> JsDict:
        """Like :meth:`all` (local D1 returns the rows from ``run()`` too)."""
        return _d1_result(await self._run())

    async def raw(self, options: Any = None, **kwargs: Any) -> list[list[Any]]:
        """Rows as lists; with ``columnNames=True`` the first list holds the column names."""
        opts = merge_options(options, kwargs)
        result = await self._run()
        rows = [list(row) for row in result["rows"]]
        if opts.get("columnNames"):
            return [list(result["columns"]), *rows]
        return rows


class D1Database:
    """The object on ``env`` for one ``[[d1_databases]]`` entry."""

    def __init__(self, store: SqliteStore, engine: D1Engine, *, database_id: str = "") -> None:
        self._store = store
        self._engine = engine
        self.database_id = database_id

    @classmethod
    def in_memory(cls, database_id: str = "test", limits: D1Limits = D1Limits()) -> D1Database:
        engine = D1Engine(limits)
        return cls(SqliteStore(None, engine.setup, name="d1", cached_statements=0), engine, database_id=database_id)

    @classmethod
    def open(
        cls, persist_root: Path, database_id: str, *, synchronous: str | None = None, limits: D1Limits = D1Limits()
    ) -> D1Database:
        engine = D1Engine(limits)
        path = d1_database_path(persist_root, database_id)
        # no statement cache: the authorizer must see every statement a Worker prepares
        store = shared_store(
            path, engine.setup, synchronous=synchronous_mode(synchronous), name="d1", cached_statements=0
        )
        # a shared store keeps the engine it was opened with (its authorizer is installed)
        existing = getattr(store, "_d1_engine", None)
        if existing is None:
            store._d1_engine = engine  # type: ignore[attr-defined]
        else:
            engine = existing
        return cls(store, engine, database_id=database_id)

    def __repr__(self) -> str:
        return f"D1Database({self.database_id!r})"

    async def aclose(self) -> None:
        await self._store.aclose()

    async def _transaction(self, queries: list[tuple[str, Sequence[Any]]]) -> list[dict]:
        engine = self._engine

        def work(conn: sqlite3.Connection) -> list[dict] | BaseException:
            try:
                return engine.transaction(conn, queries)
            except (sqlite3.Error, D1Error) as exc:
                return D1Error(f"D1_ERROR: {engine.error_message(exc)}", engine.error_message(exc))

        outcome = await self._store.run(work)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def prepare(self, query: str) -> D1PreparedStatement:
        return D1PreparedStatement(self, query)

    async def batch(self, statements: Sequence[D1PreparedStatement]) -> list[JsDict]:
        """Run statements in one transaction: all succeed, or none is applied."""
        if not isinstance(statements, (list, tuple)) or not all(isinstance(s, D1PreparedStatement) for s in statements):
            raise JsException("TypeError", "D1 batch() expects a list of prepared statements")
        if not statements:
            raise D1Error("D1_ERROR: No SQL statements detected.", "No SQL statements detected.")
        results = await self._transaction([(s.statement, s.params) for s in statements])
        return [_d1_result(r) for r in results]

    async def exec(self, query: str) -> JsDict:
        """Run raw SQL, one statement list per line (as D1 does); ``{count, duration}``."""
        lines = query.strip().split("\n")
        queries = [line for line in lines if _has_code(line)]
        if not queries:
            detail = f"Error in line 1: {lines[0]}: No SQL statements detected."
            raise D1Error(f"D1_EXEC_ERROR: {detail}", detail)
        engine = self._engine

        def work(conn: sqlite3.Connection) -> list[dict] | BaseException:
            engine._begin(conn)
            results = []
            for line in queries:
                try:
                    results.append(engine.query(conn, line))
                except (sqlite3.Error, D1Error) as exc:
                    engine._rollback(conn)
                    number = lines.index(line) + 1
                    detail = f"Error in line {number}: {line}: {engine.error_message(exc)}"
                    return D1Error(f"D1_EXEC_ERROR: {detail}", detail)
                except BaseException:
                    engine._rollback(conn)
                    raise
            engine._commit(conn)
            return results

        outcome = await self._store.run(work)
        if isinstance(outcome, BaseException):
            raise outcome
        return JsDict(count=len(outcome), duration=sum(r["meta"]["duration"] for r in outcome))

    async def dump(self) -> bytes:
        """The database file's bytes (deprecated in D1, kept for old code)."""
        return await self._store.run(lambda conn: bytes(conn.serialize()))

    def withSession(self, constraintOrBookmark: str | None = None) -> D1DatabaseSession:
        return D1DatabaseSession(self, constraintOrBookmark)

    with_session = withSession


class D1DatabaseSession:
    """``withSession()``: locally there is one primary, so a session is the database itself."""

    def __init__(self, database: D1Database, constraint: str | None) -> None:
        self._database = database
        self._bookmark: str | None = (
            None if constraint in (None, "", "first-primary", "first-unconstrained") else constraint
        )

    def prepare(self, query: str) -> D1PreparedStatement:
        return self._database.prepare(query)

    async def batch(self, statements: Sequence[D1PreparedStatement]) -> list[JsDict]:
        return await self._database.batch(statements)

    def getBookmark(self) -> str | None:
        return self._bookmark

    get_bookmark = getBookmark


# -- plugin ----------------------------------------------------------------------------------


class D1DatabaseConfig(BaseModel):
    """One ``[[d1_databases]]`` entry."""

    model_config = ConfigDict(extra="allow")

    binding: str
    database_name: str | None = None
    database_id: str | None = None
    preview_database_id: str | None = None
    migrations_dir: str | None = None
    migrations_table: str | None = None
    remote: bool | None = None


def local_database_id(entry: D1DatabaseConfig) -> str:
    """The id wrangler's local mode keys the database by (``preview_database_id ?? database_id``)."""
    return entry.preview_database_id or entry.database_id or entry.database_name or entry.binding


def open_connection(
    persist_root: Path, database_id: str, limits: D1Limits = D1Limits()
) -> tuple[sqlite3.Connection, D1Engine]:
    """A plain connection + engine for command-line use (``flarelet d1``)."""
    engine = D1Engine(limits)
    conn = connect(d1_database_path(persist_root, database_id), synchronous_mode(None), cached_statements=0)
    engine.setup(conn)
    return conn, engine


class D1Plugin(StoragePlugin):
    """Owns ``d1_databases``: builds one :class:`D1Database` per entry."""

    key = "d1_databases"
    type_label = TYPE_LABEL
    entry_model = D1DatabaseConfig

    def open_store(self, entry: D1DatabaseConfig, ctx: registry.BindingContext) -> tuple[D1Database, str]:
        database_id = local_database_id(entry)
        resource = entry.database_name or database_id
        if ctx.persist_to is None:
            return D1Database.in_memory(database_id), resource
        synchronous = ctx.options.get("sqlite_synchronous")
        return D1Database.open(Path(ctx.persist_to), database_id, synchronous=synchronous), resource


plugin = D1Plugin()
