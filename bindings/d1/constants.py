"""D1's names, limits, messages and SQLite result-code names."""

from __future__ import annotations

from dataclasses import dataclass

TYPE_LABEL = "D1 Database"
OBJECT_CLASS = "miniflare-D1DatabaseObject"
SERVED_BY = "miniflare.db"


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
NO_STATEMENTS_MESSAGE = "No SQL statements detected."
#: ``dump()``: D1 no longer serves it; workerd's client reports the status (Miniflare answers 404)
DUMP_GONE_MESSAGE = "Status + 404"
#: a query of comments only (workerd's SQL splitter finds no statement in it)
COMMENTS_ONLY_MESSAGE = "SQL code did not contain a statement."
#: over ``max_sql_bytes`` (SQLite's SQLITE_LIMIT_SQL_LENGTH)
TOO_LONG_MESSAGE = "statement too long: SQLITE_TOOBIG"
WRONG_BINDINGS_MESSAGE = "Wrong number of parameter bindings for SQL query."
PRELUDE_BINDINGS_MESSAGE = (
    "When executing multiple SQL statements in a single call, only the last statement can have parameters."
)

#: SQLite primary result codes -> names (workerd appends ``: SQLITE_<NAME>`` to messages)
RESULT_CODE_NAMES = {
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


DEFAULT_LIMITS = D1Limits()
