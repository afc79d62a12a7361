"""D1 binding: statement API, result shapes, batches, exec, errors and Durable Object SQL rules."""

from __future__ import annotations

from pathlib import Path

import pytest

from flarelet.bindings.d1 import D1Database, D1Limits, split_statements
from flarelet.bindings.jsobject import JsDict, JsException

SCHEMA = (
    "CREATE TABLE users (id INTEGER PRIMARY KEY AUTOINCREMENT, email TEXT UNIQUE NOT NULL, score REAL, avatar BLOB);\n"
    "CREATE TABLE posts (id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL REFERENCES users(id), title TEXT);"
)


@pytest.fixture
async def db(d1: D1Database) -> D1Database:
    await d1.exec(SCHEMA)
    return d1


async def test_all_first_raw_run_shapes(db: D1Database) -> None:
    inserted = await db.prepare("INSERT INTO users (email, score) VALUES (?, ?)").bind("a@x", 1.5).run()
    assert inserted.success is True
    assert inserted.meta.changes == 1 and inserted.meta.last_row_id == 1
    assert inserted.meta.changed_db is True
    # D1's counters: the row, its UNIQUE index entry and sqlite_sequence's row written, after
    # reading sqlite_sequence (empty: one read, the Rewind)
    assert inserted.meta.rows_written == 3 and inserted.meta.rows_read == 1
    assert set(inserted.meta) >= {
        "duration",
        "changes",
        "last_row_id",
        "rows_read",
        "rows_written",
        "size_after",
        "served_by",
    }
    await db.prepare("INSERT INTO users (email, score) VALUES (?1, ?2)").bind("b@x", 2).run()

    result = await db.prepare("SELECT id, email, score FROM users ORDER BY id").all()
    assert isinstance(result, JsDict) and result.success is True
    assert result.results[0].email == "a@x"
    assert result.results == [{"id": 1, "email": "a@x", "score": 1.5}, {"id": 2, "email": "b@x", "score": 2}]
    assert result.meta.rows_read == 2 and result.meta.changes == 0 and result.meta.changed_db is False

    assert await db.prepare("SELECT * FROM users WHERE id = ?").bind(2).first() == {
        "id": 2,
        "email": "b@x",
        "score": 2,
        "avatar": None,
    }
    assert await db.prepare("SELECT email FROM users WHERE id = ?").bind(1).first("email") == "a@x"
    assert await db.prepare("SELECT email FROM users WHERE id = 99").first() is None
    assert await db.prepare("SELECT email FROM users WHERE id = 99").first("email") is None
    assert await db.prepare("SELECT id, email FROM users ORDER BY id").raw() == [[1, "a@x"], [2, "b@x"]]
    assert await db.prepare("SELECT id, email FROM users ORDER BY id").raw(columnNames=True) == [
        ["id", "email"],
        [1, "a@x"],
        [2, "b@x"],
    ]
    assert await db.prepare("SELECT id FROM users WHERE id = 1").raw({"columnNames": True}) == [["id"], [1]]


async def test_first_unknown_column(db: D1Database) -> None:
    await db.prepare("INSERT INTO users (email) VALUES ('a')").run()
    with pytest.raises(JsException) as info:
        await db.prepare("SELECT email FROM users").first("nope")
    assert info.value.message == "D1_COLUMN_NOTFOUND: Column not found (nope)"


async def test_bind_value_conversions(db: D1Database) -> None:
    row = (
        await db.prepare("SELECT ? AS n, ? AS t, ? AS b, ? AS f, ? AS whole, ? AS blob, ? AS arr")
        .bind(None, "txt", True, 2.5, 3.0, b"\x00\xff", [1, 2, 3])
        .first()
    )
    assert row == {"n": None, "t": "txt", "b": 1, "f": 2.5, "whole": 3, "blob": [0, 255], "arr": [1, 2, 3]}
    await db.prepare("INSERT INTO users (email, avatar) VALUES (?, ?)").bind("p", b"\x89PNG").run()
    assert await db.prepare("SELECT avatar FROM users").first("avatar") == [0x89, 0x50, 0x4E, 0x47]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"a": 1}, "D1_TYPE_ERROR: Type 'object' not supported for value '[object Object]'"),
        ([1, "x"], "D1_TYPE_ERROR: Type 'object' not supported for value '1,x'"),
        (2**60, f"D1_TYPE_ERROR: Type 'bigint' not supported for value '{2**60}'"),
    ],
)
def test_bind_rejects_unsupported_types(d1: D1Database, value, message) -> None:
    with pytest.raises(JsException) as info:
        d1.prepare("SELECT ?").bind(value)
    assert info.value.message == message


async def test_bind_none_binds_null_as_the_runtime_sdk_sends_jsnull(db: D1Database) -> None:
    # workers-runtime-sdk wraps env.DB: python_to_rpc turns None into JS null, which D1's
    # bind() accepts (a bare Pyodide call would pass undefined, which D1 rejects)
    row = await db.prepare("SELECT ? IS NULL AS n, typeof(?) AS t").bind(None, None).first()
    assert row == {"n": 1, "t": "null"}
    await db.prepare("INSERT INTO users (email, score) VALUES (?, ?)").bind("n@x", None).run()
    assert await db.prepare("SELECT score FROM users WHERE email = ?").bind("n@x").first("score") is None


async def test_bind_bytes_memoryview_and_byte_lists_bind_as_blobs_as_to_js_typed_arrays(db: D1Database) -> None:
    # to_js turns a buffer into a Uint8Array and a list into an Array; D1's bind() keeps an
    # Array of 0..255 and copies a typed array into one: both arrive as BLOBs
    row = (
        await db.prepare("SELECT typeof(?) AS a, typeof(?) AS b, typeof(?) AS c")
        .bind(b"\x01", memoryview(b"\x02"), [3])
        .first()
    )
    assert row == {"a": "blob", "b": "blob", "c": "blob"}


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ((1, 2), "<class 'tuple'> cannot be sent over RPC."),
        (bytearray(b"x"), "<class 'bytearray'> cannot be sent over RPC."),
    ],
)
def test_bind_tuple_and_bytearray_raise_type_error_as_python_to_rpc(d1: D1Database, value, message) -> None:
    with pytest.raises(TypeError) as info:
        d1.prepare("SELECT ?").bind(value)
    assert str(info.value) == message


def test_bind_list_beyond_a_byte_is_d1_type_error_with_the_js_array_text(d1: D1Database) -> None:
    with pytest.raises(JsException) as info:
        d1.prepare("SELECT ?").bind([1, 2, 300])
    assert info.value.message == "D1_TYPE_ERROR: Type 'object' not supported for value '1,2,300'"


def test_bind_returns_a_new_statement(d1: D1Database) -> None:
    stmt = d1.prepare("SELECT ?")
    bound = stmt.bind(1)
    assert stmt.params == [] and bound.params == [1] and bound is not stmt


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("SELECT * FROM missing", "D1_ERROR: no such table: missing: SQLITE_ERROR"),
        ("SELEC 1", 'D1_ERROR: near "SELEC": syntax error at offset 0: SQLITE_ERROR'),
        ("SELECT ?", "D1_ERROR: Wrong number of parameter bindings for SQL query."),
        ("   -- only a comment", "D1_ERROR: No SQL statements detected."),
    ],
)
async def test_sql_errors(db: D1Database, sql: str, message: str) -> None:
    with pytest.raises(JsException) as info:
        await db.prepare(sql).all()
    assert info.value.name == "Error"
    assert info.value.message == message


async def test_constraint_errors(db: D1Database) -> None:
    await db.prepare("INSERT INTO users (email) VALUES ('a')").run()
    with pytest.raises(JsException, match="D1_ERROR: UNIQUE constraint failed: users.email: SQLITE_CONSTRAINT"):
        await db.prepare("INSERT INTO users (email) VALUES ('a')").run()
    # foreign keys are enforced, as in D1
    with pytest.raises(JsException, match="FOREIGN KEY constraint failed: SQLITE_CONSTRAINT"):
        await db.prepare("INSERT INTO posts (user_id, title) VALUES (42, 't')").run()


async def test_multiple_statements_in_one_prepare(db: D1Database) -> None:
    result = (
        await db.prepare("INSERT INTO users (email) VALUES ('x'); SELECT email FROM users WHERE email = ?")
        .bind("x")
        .all()
    )
    assert result.results == [{"email": "x"}]
    with pytest.raises(JsException) as info:
        await db.prepare("SELECT ?; SELECT ?").bind(1).all()
    assert "only the last statement can have parameters" in info.value.message


async def test_batch_is_one_transaction(db: D1Database) -> None:
    stmt = db.prepare("INSERT INTO users (email) VALUES (?)")
    results = await db.batch([stmt.bind("a"), stmt.bind("b"), db.prepare("SELECT count(*) AS n FROM users")])
    assert [r.success for r in results] == [True, True, True]
    assert results[2].results[0].n == 2
    with pytest.raises(JsException, match="UNIQUE constraint failed"):
        await db.batch([stmt.bind("c"), stmt.bind("a")])
    # the failed batch left nothing behind
    assert await db.prepare("SELECT count(*) AS n FROM users").first("n") == 2
    assert await db.prepare("SELECT count(*) AS n FROM users WHERE email = 'c'").first("n") == 0


async def test_exec(d1: D1Database) -> None:
    result = await d1.exec("CREATE TABLE t (x);\n\nINSERT INTO t VALUES (1); INSERT INTO t VALUES (2);")
    assert result.count == 2 and result.duration >= 0  # the blank line is dropped, not counted
    assert await d1.prepare("SELECT sum(x) AS s FROM t").first("s") == 3
    with pytest.raises(JsException) as info:
        await d1.exec("INSERT INTO t VALUES (3);\nINSERT INTO nope VALUES (1);")
    # workerd's D1 client numbers the database's one error as line 1 and quotes the first line
    assert info.value.message == (
        "D1_EXEC_ERROR: Error in line 1: INSERT INTO t VALUES (3);: no such table: nope: SQLITE_ERROR"
    )
    # exec is atomic too: line 1 was rolled back
    assert await d1.prepare("SELECT count(*) AS n FROM t").first("n") == 2
    with pytest.raises(JsException, match="D1_EXEC_ERROR: Error in line 1: : No SQL statements detected."):
        await d1.exec("   ")


async def test_exec_sends_each_line_so_a_comment_line_fails_as_d1(d1: D1Database) -> None:
    with pytest.raises(JsException) as info:
        await d1.exec("CREATE TABLE t (x);\n-- a comment\nINSERT INTO t VALUES (1);")
    assert info.value.message == (
        "D1_EXEC_ERROR: Error in line 1: CREATE TABLE t (x);: SQL code did not contain a statement."
    )
    assert await d1.prepare("SELECT name FROM sqlite_master WHERE name = 't'").first() is None


async def test_durable_object_sql_rules(d1: D1Database, tmp_path: Path) -> None:
    with pytest.raises(JsException, match="To execute a transaction, please use the state.storage.transaction"):
        await d1.prepare("BEGIN TRANSACTION").run()
    with pytest.raises(JsException, match="To execute a transaction"):
        await d1.prepare("SAVEPOINT s").run()
    target = tmp_path / "escape.sqlite"
    with pytest.raises(JsException, match="D1_ERROR: .*"):
        await d1.prepare(f"ATTACH DATABASE '{target}' AS other").run()
    assert not target.exists()
    with pytest.raises(JsException, match="not authorized: SQLITE_AUTH"):
        await d1.prepare("PRAGMA journal_mode = DELETE").run()
    await d1.exec("CREATE TABLE t (a INTEGER, b TEXT);")
    columns = await d1.prepare("PRAGMA table_info(t)").all()
    assert [c["name"] for c in columns.results] == ["a", "b"]
    # our own transactions still work after a denied BEGIN
    await d1.prepare("INSERT INTO t VALUES (1, 'x')").run()
    assert await d1.prepare("SELECT count(*) AS n FROM t").first("n") == 1


async def test_limits(d1: D1Database) -> None:
    limits = D1Limits()
    placeholders = ", ".join("?" for _ in range(limits.max_bound_parameters + 1))
    with pytest.raises(JsException, match="too many SQL variables"):
        await d1.prepare(f"SELECT {placeholders}").bind(*range(limits.max_bound_parameters + 1)).all()
    ok = ", ".join("?" for _ in range(limits.max_bound_parameters))
    assert len(await d1.prepare(f"SELECT {ok}").bind(*range(limits.max_bound_parameters)).raw()) == 1
    with pytest.raises(JsException, match="too big|too long"):
        await d1.prepare("SELECT ?").bind("x" * (limits.max_value_bytes + 1)).all()
    with pytest.raises(JsException, match="D1_ERROR: statement too long"):
        await d1.prepare("SELECT '" + "x" * limits.max_sql_bytes + "'").all()


async def test_configurable_limits() -> None:
    db = D1Database.in_memory(limits=D1Limits(max_bound_parameters=2))
    with pytest.raises(JsException, match="too many SQL variables"):
        await db.prepare("SELECT ?, ?, ?").bind(1, 2, 3).all()


async def test_meta_last_row_id_and_changes(db: D1Database) -> None:
    res = await db.batch(
        [
            db.prepare("INSERT INTO users (email) VALUES ('a')"),
            db.prepare("INSERT INTO users (email) VALUES ('b')"),
            db.prepare("UPDATE users SET score = 1"),
        ]
    )
    assert [r.meta.last_row_id for r in res[:2]] == [1, 2]
    assert res[2].meta.changes == 2


async def test_dump_is_gone_from_d1_so_it_raises_d1_dump_error(db: D1Database) -> None:
    with pytest.raises(JsException) as info:
        await db.dump()
    assert info.value.message == "D1_DUMP_ERROR: Status + 404"


async def test_with_session(db: D1Database) -> None:
    session = db.withSession("first-primary")
    await session.prepare("INSERT INTO users (email) VALUES ('s')").run()
    assert (await session.batch([db.prepare("SELECT email FROM users")]))[0].results == [{"email": "s"}]
    assert session.getBookmark() is None


def test_split_statements() -> None:
    sql = """
    CREATE TABLE a (x TEXT DEFAULT ';');  -- trailing; comment
    /* block; comment */
    CREATE TRIGGER tr AFTER INSERT ON a BEGIN INSERT INTO a VALUES ('t;'); END;
    INSERT INTO a VALUES ('it''s; fine')
    """
    statements = split_statements(sql)
    assert len(statements) == 3
    assert "CREATE TRIGGER tr" in statements[1] and statements[1].endswith("END;")
    assert statements[2] == "INSERT INTO a VALUES ('it''s; fine')"
    assert split_statements("-- nothing\n;;") == []


# -- values through Pyodide and D1's JSON (see flarelet.bindings.d1.values) -------------------------


async def test_int_and_whole_float_bind_as_integer_per_d1_type_conversion_docs(d1: D1Database) -> None:
    sql = "SELECT ? / 2 AS half, typeof(?) AS i, typeof(?) AS w, typeof(?) AS b, typeof(?) AS r"
    row = await d1.prepare(sql).bind(5, 42, 5.0, True, 2.5).first()
    assert row == {"half": 2, "i": "integer", "w": "integer", "b": "integer", "r": "real"}


async def test_pyodide_int_bound_is_2_53_inclusive_then_bigint_is_a_d1_type_error(d1: D1Database) -> None:
    assert await d1.prepare("SELECT ? AS x").bind(2**53).first("x") == 2**53
    assert await d1.prepare("SELECT ? AS x").bind(-(2**53)).first("x") == -(2**53)
    with pytest.raises(JsException) as info:
        d1.prepare("SELECT ? AS x").bind(2**53 + 1)
    assert info.value.message == f"D1_TYPE_ERROR: Type 'bigint' not supported for value '{2**53 + 1}'"


async def test_results_read_as_js_numbers_then_pyodide_int_or_float(d1: D1Database) -> None:
    row = await d1.prepare(
        "SELECT 9007199254740993 AS big, 9223372036854775807 AS max, 3.0 AS whole, 2.5 AS half, 1e300*1e10 AS inf"
    ).first()
    assert row["big"] == 9007199254740992 and type(row["big"]) is int  # rounded to a double, still <= 2^53
    assert row["max"] == 9.223372036854776e18 and type(row["max"]) is float
    assert row["whole"] == 3 and type(row["whole"]) is int
    assert row["half"] == 2.5
    assert row["inf"] is None  # JSON has no Infinity: D1 answers null


async def test_nan_and_infinity_bind_as_null_as_d1_json(d1: D1Database) -> None:
    row = await d1.prepare("SELECT ? IS NULL AS a, ? IS NULL AS b").bind(float("nan"), float("inf")).first()
    assert row == {"a": 1, "b": 1}


# -- error texts as workerd gives them ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("SELEC 1", 'near "SELEC": syntax error at offset 0: SQLITE_ERROR'),
        ("   SELECT 1 WHERE 1 = = 1", 'near "=": syntax error at offset 22: SQLITE_ERROR'),
        ("SELECT 1 + + FROM FROM t", 'near "FROM": syntax error at offset 13: SQLITE_ERROR'),
        ("SELECT 1;  SELEC 2", 'near "SELEC": syntax error at offset 0: SQLITE_ERROR'),
        ("SELECT nope FROM users", "no such column: nope at offset 7: SQLITE_ERROR"),
        ("SELECT nofn(1)", "no such function: nofn at offset 7: SQLITE_ERROR"),
        ("SELECT 'abc", 'unrecognized token: "\'abc" at offset 7: SQLITE_ERROR'),
        ("SELECT * FROM missing", "no such table: missing: SQLITE_ERROR"),
        ("SELECT * FROM users WHERE", "incomplete input: SQLITE_ERROR"),
    ],
)
async def test_sql_errors_carry_sqlite_error_offset_as_workerd(db: D1Database, sql: str, message: str) -> None:
    with pytest.raises(JsException) as info:
        await db.prepare(sql).all()
    assert info.value.message == f"D1_ERROR: {message}"


@pytest.mark.parametrize(
    ("sql", "extended"),
    [
        ("INSERT INTO users (email) VALUES ('a')", "SQLITE_CONSTRAINT_UNIQUE"),
        ("INSERT INTO users (id, email) VALUES (1, 'b')", "SQLITE_CONSTRAINT_PRIMARYKEY"),
        ("INSERT INTO users (email) VALUES (NULL)", "SQLITE_CONSTRAINT_NOTNULL"),
        ("INSERT INTO posts (user_id) VALUES (99)", "SQLITE_CONSTRAINT_FOREIGNKEY"),
    ],
)
async def test_constraint_errors_name_the_extended_code_as_workerd(db: D1Database, sql: str, extended: str) -> None:
    await db.prepare("INSERT INTO users (id, email) VALUES (1, 'a')").run()
    with pytest.raises(JsException) as info:
        await db.prepare(sql).run()
    assert info.value.message.endswith(f": SQLITE_CONSTRAINT (extended: {extended})")


async def test_statement_too_long_names_sqlite_toobig_as_workerd(d1: D1Database) -> None:
    with pytest.raises(JsException) as info:
        await d1.prepare("SELECT '" + "a" * 100_001 + "'").all()
    assert info.value.message == "D1_ERROR: statement too long: SQLITE_TOOBIG"


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("-- only a comment", "SQL code did not contain a statement."),
        ("/* a block */ ;", "SQL code did not contain a statement."),
        ("   -- an indented comment", "No SQL statements detected."),  # D1 drops it before running
        ("", "No SQL statements detected."),
    ],
)
async def test_sql_without_a_statement_as_d1(d1: D1Database, sql: str, message: str) -> None:
    with pytest.raises(JsException) as info:
        await d1.prepare(sql).all()
    assert info.value.message == f"D1_ERROR: {message}"


async def test_locating_a_syntax_error_never_runs_what_the_authorizer_denies(d1: D1Database) -> None:
    # the probe that finds the offset would compile the prefix "PRAGMA writable_schema = ON",
    # which SQLite applies while compiling: it must not
    with pytest.raises(JsException) as info:
        await d1.prepare("PRAGMA writable_schema = ON ON").run()
    assert info.value.message.startswith('D1_ERROR: near "ON": syntax error')

    def writable_schema(conn) -> int:
        d1._engine._auth.internal = True  # read past the authorizer, on the store's thread
        try:
            return conn.execute("PRAGMA writable_schema").fetchone()[0]
        finally:
            d1._engine._auth.internal = False

    assert await d1._store.run(writable_schema) == 0
