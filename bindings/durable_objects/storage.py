"""``ctx.storage``: a Durable Object's key-value and SQL storage, one SQLite file per object.

Why synchronous SQLite on the event loop thread: on Cloudflare the storage lives with the object
(``sql.exec`` is synchronous; ``get``/``put`` resolve without letting another event in, which is
what the *input gate* promises). A ``get`` or ``put`` here never suspends, so no other event of the
object can interleave with it, exactly like the input gate; only real I/O (``fetch``, another
object) lets events interleave.

Writes are coalesced as Cloudflare coalesces them: every write of one turn of the event loop joins
one implicit transaction, committed when the turn ends (``loop.call_soon``) or, at the latest,
before the event's result leaves the object (:meth:`ObjectStorage.flush`, the *output gate*).
So a caller never sees an answer whose writes are not committed, and the commit runs with the
``synchronous`` level of the other stores (``FULL`` by default: fsync at commit), which makes an
acknowledged write survive SIGKILL.

Key-value pairs live in ``_cf_KV`` (as in workerd's SQLite-backed objects), the alarm and the id
in ``_cf_METADATA``; user SQL may not touch ``_cf_`` tables, nor ``BEGIN``/``SAVEPOINT``, ``ATTACH``
or pragmas outside the allow-list (the D1 rules: :mod:`flarelet.bindings.d1`).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flarelet.bindings.d1.constants import ALLOWED_PRAGMAS, RESULT_CODE_NAMES, TRANSACTION_MESSAGE
from flarelet.bindings.d1.statements import split_statements
from flarelet.bindings.jsobject import JsDict, JsException, JsRangeError, JsTypeError, js_date_millis, merge_options
from flarelet.bindings.storage.sqlite import connect

from . import clone


@dataclass(frozen=True)
class DurableObjectLimits:
    """Cloudflare's Durable Object storage limits (developers.cloudflare.com/durable-objects/platform/limits)."""

    max_key_bytes: int = 2048
    #: per value: SQLite-backed classes
    max_value_bytes: int = 2 * 1024 * 1024
    #: per value: key-value-backed classes (``new_classes``)
    max_kv_value_bytes: int = 128 * 1024
    #: keys in one ``get``/``put``/``delete`` call
    max_keys_per_call: int = 128
    #: bound parameters per SQL statement
    max_sql_params: int = 100
    #: one ``serializeAttachment`` value
    max_attachment_bytes: int = 2048


_SCHEMA = """
CREATE TABLE IF NOT EXISTS _cf_KV (key TEXT PRIMARY KEY, value BLOB) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS _cf_METADATA (key TEXT PRIMARY KEY, value) WITHOUT ROWID;
"""


class SqlError(JsException):
    """What ``sql.exec`` throws: ``Error: <sqlite message>: SQLITE_<CODE>``."""

    def __init__(self, message: str) -> None:
        super().__init__("Error", message)


class ObjectDatabase:
    """The SQLite file of one object, opened on first use and used only from the event loop thread."""

    def __init__(self, path: Path | None, synchronous: str, max_sql_params: int = 100) -> None:
        self.path = path
        self.max_sql_params = max_sql_params
        self._synchronous = synchronous
        self._conn: sqlite3.Connection | None = None
        self._internal = False
        self._denied_transaction = False
        self._commit_scheduled = False
        #: open ``transaction()`` savepoints; commits wait until they are released
        self.savepoints = 0

    @property
    def conn(self) -> sqlite3.Connection:
        conn = self._conn
        if conn is None:
            if self.path is not None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = connect(self.path, self._synchronous, cached_statements=256)
            conn.executescript(_SCHEMA)
            conn.execute("PRAGMA foreign_keys = ON")
            conn.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, self.max_sql_params)
            conn.set_authorizer(self._authorize)
            self._conn = conn
        return conn

    def _authorize(self, action: int, arg1: str | None, arg2: str | None, _db: str | None, _src: str | None) -> int:
        if self._internal:
            return sqlite3.SQLITE_OK
        if action in (sqlite3.SQLITE_TRANSACTION, sqlite3.SQLITE_SAVEPOINT):
            self._denied_transaction = True
            return sqlite3.SQLITE_DENY
        if action in (sqlite3.SQLITE_ATTACH, sqlite3.SQLITE_DETACH):
            return sqlite3.SQLITE_DENY
        if action == sqlite3.SQLITE_PRAGMA:
            return sqlite3.SQLITE_OK if (arg1 or "").lower() in ALLOWED_PRAGMAS else sqlite3.SQLITE_DENY
        if action == sqlite3.SQLITE_FUNCTION:
            return sqlite3.SQLITE_OK
        for name in (arg1, arg2):
            if name and name.lower().startswith("_cf_"):
                return sqlite3.SQLITE_DENY
        return sqlite3.SQLITE_OK

    def internal(self, sql: str, params: Any = ()) -> sqlite3.Cursor:
        self._internal = True
        try:
            return self.conn.execute(sql, params)
        finally:
            self._internal = False

    def begin(self) -> None:
        """Join (or open) this turn's implicit write transaction."""
        conn = self.conn
        if not conn.in_transaction:
            self.internal("BEGIN")
        if not self._commit_scheduled:
            self._commit_scheduled = True
            try:
                asyncio.get_running_loop().call_soon(self.flush)
            except RuntimeError:  # no loop (a synchronous tool): commit at the next flush
                self._commit_scheduled = False

    def flush(self) -> None:
        """Commit the pending writes (the output gate); a no-op when nothing is pending."""
        self._commit_scheduled = False
        conn = self._conn
        if conn is None or not conn.in_transaction:
            return
        if self.savepoints:
            return  # the open transaction() commits when it is released
        self.internal("COMMIT")

    def rollback(self) -> None:
        conn = self._conn
        if conn is not None and conn.in_transaction:
            self.internal("ROLLBACK")

    def error(self, exc: sqlite3.Error) -> SqlError:
        if self._denied_transaction:
            self._denied_transaction = False
            return SqlError(TRANSACTION_MESSAGE)
        code = getattr(exc, "sqlite_errorcode", None)
        name = RESULT_CODE_NAMES.get(code & 0xFF) if isinstance(code, int) else None
        return SqlError(f"{exc}: {name}" if name else str(exc))

    def size(self) -> int:
        pages = self.internal("PRAGMA page_count").fetchone()[0]
        page_size = self.internal("PRAGMA page_size").fetchone()[0]
        return int(pages) * int(page_size)

    def close(self) -> None:
        if self._conn is not None:
            self.flush()
            if self.path is not None:
                self._conn.close()
                self._conn = None


_PLAIN_BINDINGS = frozenset({str, int, float, bytes, type(None)})


def _bindings(values: tuple[Any, ...]) -> tuple[Any, ...]:
    """The values SQLite binds; anything but numbers, strings, bytes and ``None`` is a ``TypeError``."""
    out = []
    for value in values:
        if type(value) not in _PLAIN_BINDINGS:
            if isinstance(value, bool):
                value = int(value)
            elif isinstance(value, (bytearray, memoryview)):
                value = bytes(value)
            elif not isinstance(value, (int, float, str, bytes)):
                raise JsTypeError(f"sql.exec(): a binding of type {type(value).__name__} is not supported")
        out.append(value)
    return tuple(out)


class SqlStorageCursor:
    """The cursor ``sql.exec`` returns: iterate rows (objects), ``toArray``, ``one``, ``raw``, counters.

    ``rowsRead`` counts the rows returned plus the rows written: SQLite does not expose how many rows
    a statement scanned (workerd counts them inside its VFS), so a filtered scan reads as fewer rows
    here than on Cloudflare.
    """

    __slots__ = ("_description", "_names", "_rows", "_pos", "rowsRead", "rowsWritten")

    def __init__(self, description: Any, rows: list[tuple[Any, ...]], rows_read: int, rows_written: int) -> None:
        self._description = description
        self._names: list[str] | None = None
        self._rows = rows
        self._pos = 0
        self.rowsRead = rows_read
        self.rowsWritten = rows_written

    rows_read = property(lambda self: self.rowsRead)
    rows_written = property(lambda self: self.rowsWritten)

    @property
    def _columns(self) -> list[str]:
        names = self._names
        if names is None:
            names = self._names = [d[0] for d in self._description or ()]
        return names

    @property
    def columnNames(self) -> list[str]:  # noqa: N802 - Cloudflare's name
        return list(self._columns)

    column_names = columnNames

    def _take(self) -> list[tuple[Any, ...]]:
        rows, self._pos = self._rows[self._pos :], len(self._rows)
        return rows

    def _object(self, row: tuple[Any, ...]) -> JsDict:
        return JsDict(zip(self._columns, row, strict=True))

    def __iter__(self) -> Iterator[JsDict]:
        while self._pos < len(self._rows):
            row = self._rows[self._pos]
            self._pos += 1
            yield self._object(row)

    def next(self) -> JsDict:
        """The JS iterator protocol: ``{done, value}``."""
        if self._pos < len(self._rows):
            row = self._rows[self._pos]
            self._pos += 1
            return JsDict(done=False, value=self._object(row))
        return JsDict(done=True, value=None)

    def toArray(self) -> list[JsDict]:  # noqa: N802 - Cloudflare's name
        columns = self._columns
        return [JsDict(zip(columns, r, strict=True)) for r in self._take()]

    to_array = toArray

    def one(self) -> JsDict:
        rows = self._take()
        if not rows:
            raise JsException("Error", "Expected exactly one result from SQL query, but got no results.")
        if len(rows) > 1:
            raise JsException("Error", "Expected exactly one result from SQL query, but got multiple results.")
        return self._object(rows[0])

    def raw(self) -> _RawIterator:
        return _RawIterator(self)


class _RawIterator:
    def __init__(self, cursor: SqlStorageCursor) -> None:
        self._cursor = cursor

    def __iter__(self) -> Iterator[list[Any]]:
        cursor = self._cursor
        while cursor._pos < len(cursor._rows):
            row = cursor._rows[cursor._pos]
            cursor._pos += 1
            yield list(row)

    def toArray(self) -> list[list[Any]]:  # noqa: N802 - Cloudflare's name
        return [list(r) for r in self._cursor._take()]

    to_array = toArray
    columnNames = property(lambda self: self._cursor.columnNames)  # noqa: N815


class SqlStorage:
    """``ctx.storage.sql``: ``exec(query, *bindings)`` and ``databaseSize``."""

    def __init__(self, db: ObjectDatabase, limits: DurableObjectLimits) -> None:
        self._db = db
        self._limits = limits

    def exec(self, query: str, *bindings: Any) -> SqlStorageCursor:  # noqa: A003 - Cloudflare's name
        if type(query) is not str and not isinstance(query, str):
            raise JsTypeError("sql.exec(): the query must be a string")
        plain = _PLAIN_BINDINGS
        for value in bindings:
            if type(value) not in plain:
                bindings = _bindings(bindings)
                break
        db = self._db
        conn = db._conn
        if conn is None or not db._commit_scheduled or not conn.in_transaction:
            db.begin()
            conn = db.conn
        before = conn.total_changes
        try:
            try:
                cursor = conn.execute(query, bindings)
            except sqlite3.ProgrammingError as exc:
                if "one statement at a time" not in str(exc):
                    raise
                statements = split_statements(query)
                for prelude in statements[:-1]:
                    conn.execute(prelude)
                cursor = conn.execute(statements[-1], bindings) if statements else conn.execute("SELECT 1 WHERE 0")
            rows = cursor.fetchall()
        except sqlite3.ProgrammingError as exc:
            message = str(exc)
            if "number of bindings" in message:
                raise SqlError("Wrong number of parameter bindings for SQL query.") from None
            raise SqlError(message) from None
        except sqlite3.Error as exc:
            raise db.error(exc) from None
        written = conn.total_changes - before
        return SqlStorageCursor(cursor.description, rows, len(rows) + written, written)

    @property
    def databaseSize(self) -> int:  # noqa: N802 - Cloudflare's name
        return self._db.size()

    database_size = databaseSize


class _NoSql:
    def __getattr__(self, name: str) -> Any:
        raise JsException(
            "Error",
            "SQL is not enabled for this Durable Object class. To enable it, set "
            "`new_sqlite_classes` in the migration that creates the class (wrangler.toml).",
        )


def _check_key(key: Any, limits: DurableObjectLimits) -> str:
    if not isinstance(key, str):
        raise JsTypeError(f"Durable Object storage keys must be strings, not {type(key).__name__}")
    size = len(key.encode("utf-8", "surrogatepass"))
    if size > limits.max_key_bytes:
        raise JsRangeError(
            f"Keys cannot be larger than {limits.max_key_bytes} bytes. A key of size {size} was provided."
        )
    return key


class ObjectStorage:
    """``ctx.storage``: the key-value API (``get``/``put``/``delete``/``list``/``deleteAll``),
    ``transaction``, alarms, ``sync`` and ``sql``."""

    def __init__(
        self,
        db: ObjectDatabase,
        *,
        sqlite: bool,
        limits: DurableObjectLimits,
        on_alarm_change: Callable[[float | None], None] | None = None,
    ) -> None:
        self._db = db
        self._sqlite = sqlite
        self._limits = limits
        self._value_limit = limits.max_value_bytes if sqlite else limits.max_kv_value_bytes
        self.on_alarm_change = on_alarm_change
        self.sql: Any = SqlStorage(db, limits) if sqlite else _NoSql()
        self.kv = SyncKv(self)

    # -- key-value -----------------------------------------------------------------------------
    def _keys(self, keys: list[Any]) -> list[str]:
        if len(keys) > self._limits.max_keys_per_call:
            raise JsRangeError(f"Maximum number of keys is {self._limits.max_keys_per_call}; {len(keys)} were given.")
        return [_check_key(k, self._limits) for k in keys]

    def get_sync(self, key: Any) -> Any:
        if isinstance(key, list):
            names = self._keys(key)
            found: dict[str, Any] = {}
            for name in names:
                row = self._db.internal("SELECT value FROM _cf_KV WHERE key = ?", (name,)).fetchone()
                if row is not None:
                    found[name] = clone.decode(row[0])
            return {k: found[k] for k in sorted(found)}
        row = self._db.internal("SELECT value FROM _cf_KV WHERE key = ?", (_check_key(key, self._limits),)).fetchone()
        return None if row is None else clone.decode(row[0])

    def put_sync(self, key: Any, value: Any = None) -> None:
        if isinstance(key, Mapping):
            entries = list(key.items())
            self._keys([k for k, _ in entries])
        else:
            entries = [(_check_key(key, self._limits), value)]
        encoded = []
        for name, item in entries:
            data = clone.encode(item)
            if len(data) > self._value_limit:
                raise JsRangeError(
                    f"Values cannot be larger than {self._value_limit} bytes. A value of size {len(data)} was provided."
                )
            encoded.append((name, data))
        self._db.begin()
        for name, data in encoded:
            self._db.internal("INSERT OR REPLACE INTO _cf_KV (key, value) VALUES (?, ?)", (name, data))

    def delete_sync(self, key: Any) -> bool | int:
        if isinstance(key, list):
            names = self._keys(key)
            self._db.begin()
            return sum(self._db.internal("DELETE FROM _cf_KV WHERE key = ?", (n,)).rowcount for n in names)
        name = _check_key(key, self._limits)
        self._db.begin()
        return self._db.internal("DELETE FROM _cf_KV WHERE key = ?", (name,)).rowcount > 0

    def list_sync(self, options: Mapping[str, Any] | None = None, **kwargs: Any) -> dict[str, Any]:
        opts = merge_options(options, kwargs)
        where: list[str] = []
        params: list[Any] = []
        if opts.get("start") is not None:
            where.append("key >= ?")
            params.append(_check_key(opts["start"], self._limits))
        if opts.get("startAfter") is not None:
            where.append("key > ?")
            params.append(_check_key(opts["startAfter"], self._limits))
        if opts.get("end") is not None:
            where.append("key < ?")
            params.append(_check_key(opts["end"], self._limits))
        prefix = opts.get("prefix")
        if prefix:
            where.append("substr(key, 1, ?) = ?")
            params.extend([len(prefix), _check_key(prefix, self._limits)])
        sql = "SELECT key, value FROM _cf_KV"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY key" + (" DESC" if opts.get("reverse") else "")
        limit = opts.get("limit")
        if limit is not None:
            if not isinstance(limit, int) or isinstance(limit, bool) or limit <= 0:
                raise JsTypeError("List limit must be positive.")
            sql += f" LIMIT {int(limit)}"
        return {k: clone.decode(v) for k, v in self._db.internal(sql, params).fetchall()}

    async def get(self, key: Any, options: Any = None, **_kwargs: Any) -> Any:
        return self.get_sync(key)

    async def put(self, key: Any, value: Any = None, options: Any = None, **_kwargs: Any) -> None:
        self.put_sync(key, value)

    async def delete(self, key: Any, options: Any = None, **_kwargs: Any) -> bool | int:
        return self.delete_sync(key)

    async def list(self, options: Mapping[str, Any] | None = None, **kwargs: Any) -> dict[str, Any]:  # noqa: A003
        return self.list_sync(options, **kwargs)

    async def deleteAll(self, options: Any = None, **_kwargs: Any) -> None:  # noqa: N802 - Cloudflare's name
        db = self._db
        db.begin()
        db.internal("DELETE FROM _cf_KV")
        if self._sqlite:
            tables = db.internal(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE '\\_cf\\_%' ESCAPE '\\' "
                "AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'"
            ).fetchall()
            for (name,) in tables:
                db.internal(f'DROP TABLE IF EXISTS "{name}"')
        self._set_alarm_row(None)

    delete_all = deleteAll

    async def sync(self) -> None:
        self._db.flush()

    # -- transactions ----------------------------------------------------------------------------
    async def transaction(self, closure: Callable[[Any], Any]) -> Any:
        db = self._db
        db.begin()
        name = f"t{db.savepoints}"
        db.internal(f"SAVEPOINT {name}")
        db.savepoints += 1
        txn = Transaction(self)
        try:
            result = closure(txn)
            if asyncio.iscoroutine(result) or hasattr(result, "__await__"):
                result = await result
        except BaseException:
            db.savepoints -= 1
            db.internal(f"ROLLBACK TO {name}")
            db.internal(f"RELEASE {name}")
            raise
        db.savepoints -= 1
        if txn._rolled_back:
            db.internal(f"ROLLBACK TO {name}")
        db.internal(f"RELEASE {name}")
        return result

    def transactionSync(self, closure: Callable[[], Any]) -> Any:  # noqa: N802 - Cloudflare's name
        db = self._db
        db.begin()
        name = f"t{db.savepoints}"
        db.internal(f"SAVEPOINT {name}")
        db.savepoints += 1
        try:
            result = closure()
        except BaseException:
            db.savepoints -= 1
            db.internal(f"ROLLBACK TO {name}")
            db.internal(f"RELEASE {name}")
            raise
        db.savepoints -= 1
        db.internal(f"RELEASE {name}")
        return result

    transaction_sync = transactionSync

    # -- alarms ------------------------------------------------------------------------------------
    def alarm_time(self) -> float | None:
        row = self._db.internal("SELECT value FROM _cf_METADATA WHERE key = 'alarm'").fetchone()
        return None if row is None or row[0] is None else float(row[0])

    def _set_alarm_row(self, millis: float | None) -> None:
        if self.on_alarm_change is not None:
            self.on_alarm_change(millis)  # may refuse (no alarm() handler) before anything is written
        self._db.begin()
        if millis is None:
            self._db.internal("DELETE FROM _cf_METADATA WHERE key = 'alarm'")
        else:
            self._db.internal("INSERT OR REPLACE INTO _cf_METADATA (key, value) VALUES ('alarm', ?)", (millis,))

    async def getAlarm(self, options: Any = None) -> float | None:  # noqa: N802 - Cloudflare's name
        return self.alarm_time()

    async def setAlarm(self, scheduled_time: Any, options: Any = None) -> None:  # noqa: N802
        try:
            millis = js_date_millis(scheduled_time)
        except (TypeError, ValueError):
            raise JsTypeError("setAlarm() requires a Date or a number of milliseconds since the epoch") from None
        self._set_alarm_row(float(int(millis)))

    async def deleteAlarm(self, options: Any = None) -> None:  # noqa: N802 - Cloudflare's name
        self._set_alarm_row(None)

    get_alarm = getAlarm
    set_alarm = setAlarm
    delete_alarm = deleteAlarm

    def set_meta(self, key: str, value: Any) -> None:
        self._db.begin()
        self._db.internal("INSERT OR REPLACE INTO _cf_METADATA (key, value) VALUES (?, ?)", (key, value))


class Transaction:
    """The ``txn`` a ``transaction()`` closure gets: the same key-value calls, plus ``rollback()``."""

    def __init__(self, storage: ObjectStorage) -> None:
        self._storage = storage
        self._rolled_back = False

    def rollback(self) -> None:
        self._rolled_back = True

    async def get(self, key: Any, options: Any = None) -> Any:
        return self._storage.get_sync(key)

    async def put(self, key: Any, value: Any = None, options: Any = None) -> None:
        self._storage.put_sync(key, value)

    async def delete(self, key: Any, options: Any = None) -> bool | int:
        return self._storage.delete_sync(key)

    async def list(self, options: Mapping[str, Any] | None = None, **kwargs: Any) -> dict[str, Any]:  # noqa: A003
        return self._storage.list_sync(options, **kwargs)

    getAlarm = property(lambda self: self._storage.getAlarm)  # noqa: N815
    setAlarm = property(lambda self: self._storage.setAlarm)  # noqa: N815
    deleteAlarm = property(lambda self: self._storage.deleteAlarm)  # noqa: N815


class SyncKv:
    """``ctx.storage.kv``: the synchronous key-value API of SQLite-backed objects."""

    def __init__(self, storage: ObjectStorage) -> None:
        self._storage = storage

    def get(self, key: str) -> Any:
        return self._storage.get_sync(key)

    def put(self, key: str, value: Any) -> None:
        self._storage.put_sync(key, value)

    def delete(self, key: str) -> bool | int:
        return self._storage.delete_sync(key)

    def list(self, options: Mapping[str, Any] | None = None, **kwargs: Any) -> Iterator[list[Any]]:  # noqa: A003
        return iter([[k, v] for k, v in self._storage.list_sync(options, **kwargs).items()])
