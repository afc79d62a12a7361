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

import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from flarelet.bindings.d1.constants import DEFAULT_LIMITS, DUMP_GONE_MESSAGE, NO_STATEMENTS_MESSAGE, D1Limits
from flarelet.bindings.d1.engine import D1Engine, d1_database_path
from flarelet.bindings.d1.errors import D1Error
from flarelet.bindings.d1.statements import is_blank_query
from flarelet.bindings.d1.values import convert_bind_value
from flarelet.bindings.jsobject import JsDict, JsException, merge_options
from flarelet.bindings.storage.sqlite import SqliteStore, shared_store, synchronous_mode


def result_objects(result: dict) -> list[JsDict]:
    columns = result["columns"]
    return [JsDict(zip(columns, row, strict=True)) for row in result["rows"]]


def d1_result(result: dict, with_results: bool = True) -> JsDict:
    out = JsDict(success=True, meta=JsDict(result["meta"]))
    out["results"] = result_objects(result) if with_results else []
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
        rows = result_objects(result)
        if not rows:
            return None
        if colName is None:
            return rows[0]
        if colName not in rows[0]:
            raise D1Error(f"D1_COLUMN_NOTFOUND: Column not found ({colName})", "Column not found")
        return rows[0][colName]

    async def all(self) -> JsDict:
        """``{results: [rows], success: True, meta: {...}}``."""
        return d1_result(await self._run())

    async def run(self) -> JsDict:
        """Like :meth:`all` (local D1 returns the rows from ``run()`` too)."""
        return d1_result(await self._run())

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
    def in_memory(cls, database_id: str = "test", limits: D1Limits = DEFAULT_LIMITS) -> D1Database:
        engine = D1Engine(limits)
        return cls(SqliteStore(None, engine.setup, name="d1", cached_statements=0), engine, database_id=database_id)

    @classmethod
    def open(
        cls, persist_root: Path, database_id: str, *, synchronous: str | None = None, limits: D1Limits = DEFAULT_LIMITS
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
        return [d1_result(r) for r in results]

    async def exec(self, query: str) -> JsDict:
        """Run raw SQL, each line one query, all in one transaction; ``{count, duration}``.

        As workerd's D1 client does: the text is trimmed and split at newlines (blank lines
        are dropped, a statement cannot span lines), and a failure is reported as
        ``Error in line 1: <first line>: <message>`` whichever line failed -- the client numbers
        the database's single error as line 1.
        """
        lines = str(query).strip().split("\n")
        queries = [line for line in lines if not is_blank_query(line)]
        engine = self._engine

        def fail(message: str) -> D1Error:
            detail = f"Error in line 1: {lines[0]}: {message}"
            return D1Error(f"D1_EXEC_ERROR: {detail}", detail)

        if not queries:
            raise fail(NO_STATEMENTS_MESSAGE)

        def work(conn: sqlite3.Connection) -> list[dict] | BaseException:
            engine._begin(conn)
            results = []
            for line in queries:
                try:
                    results.append(engine.query(conn, line, count_rows=False))
                except (sqlite3.Error, D1Error) as exc:
                    engine._rollback(conn)
                    return fail(engine.error_message(exc))
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
        """Deprecated and no longer served by D1: always ``D1_DUMP_ERROR`` (as under ``wrangler dev``).

        Export with ``flarelet d1 execute`` or open the SQLite file instead.
        """
        raise D1Error(f"D1_DUMP_ERROR: {DUMP_GONE_MESSAGE}", DUMP_GONE_MESSAGE)

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
