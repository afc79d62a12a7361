"""D1's ``meta.rows_read`` / ``rows_written``: the numbers D1 reports (and bills by).

Every expected number here is what D1's counters (workerd's SQLite) gave for the same statement
on the same data, run through Miniflare (``scripts/storage_diff.py`` runs the same shapes).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from flarelet.bindings.d1 import D1Database
from flarelet.bindings.d1.engine import d1_database_path


async def rows(db: D1Database, sql: str, *binds: object) -> tuple[int, int]:
    stmt = db.prepare(sql)
    result = await (stmt.bind(*binds) if binds else stmt).all()
    return result.meta.rows_read, result.meta.rows_written


@pytest.fixture
async def db(d1: D1Database) -> D1Database:
    await d1.exec("CREATE TABLE cnt (n INTEGER)")
    await d1.exec("\n".join(f"INSERT INTO cnt VALUES ({i});" for i in range(10)))
    await d1.exec("CREATE TABLE u (id INTEGER PRIMARY KEY, name TEXT, age INTEGER)")
    await d1.prepare("INSERT INTO u (name, age) VALUES ('a', 1), ('b', 2), ('c', 3), ('d', 4), ('e', 5)").run()
    await d1.exec("CREATE INDEX u_age ON u(age)")
    await d1.exec("CREATE TABLE t5 (k TEXT PRIMARY KEY, v INTEGER UNIQUE)")
    return d1


# -- the five rows of the differential test's table -----------------------------------------------


async def test_count_star_reads_every_row_of_the_table_as_d1_counts_the_btree(db: D1Database) -> None:
    assert await rows(db, "SELECT count(*) FROM cnt") == (10, 0)


async def test_constant_select_reads_no_row_as_d1(db: D1Database) -> None:
    assert await rows(db, "SELECT 1") == (0, 0)


async def test_update_reads_every_row_it_scans_and_writes_the_rows_it_changes_as_d1(db: D1Database) -> None:
    assert await rows(db, "UPDATE cnt SET n = n + 100 WHERE n < 2") == (10, 2)


async def test_insert_with_text_primary_key_writes_the_row_and_its_index_entries_as_d1(db: D1Database) -> None:
    # the row, the primary key's index entry, the UNIQUE column's index entry
    assert await rows(db, "INSERT INTO t5 VALUES ('a', 1)") == (0, 3)


async def test_create_table_writes_its_schema_row_twice_as_d1(db: D1Database) -> None:
    # SQLite inserts a placeholder schema row, then reads it back (one read) and rewrites it
    assert await rows(db, "CREATE TABLE m (x)") == (1, 2)
    # each PRIMARY KEY / UNIQUE index adds its own schema row
    assert await rows(db, "CREATE TABLE m2 (k TEXT PRIMARY KEY, v INTEGER UNIQUE)") == (1, 4)


# -- more shapes -----------------------------------------------------------------------------------


async def test_multi_row_insert_writes_each_row_and_each_index_entry_as_d1(db: D1Database) -> None:
    assert await rows(db, "INSERT INTO t5 VALUES ('b', 2), ('c', 3), ('d', 4)") == (0, 9)
    assert await rows(db, "INSERT INTO cnt VALUES (20), (21)") == (0, 2)


async def test_delete_counts_deleted_rows_not_their_index_entries_as_d1(db: D1Database) -> None:
    assert await rows(db, "DELETE FROM u WHERE id = 1") == (1, 1)
    assert await rows(db, "DELETE FROM cnt WHERE n >= 108") == (10, 0)
    # no WHERE: SQLite clears the table without reading it, each cleared row one write
    assert await rows(db, "DELETE FROM u") == (0, 4)


async def test_index_search_reads_the_rows_found_plus_the_range_end_where_a_full_scan_reads_all(
    db: D1Database,
) -> None:
    assert await rows(db, "SELECT * FROM u WHERE age = 3") == (2, 0)  # found, then the next entry
    assert await rows(db, "SELECT * FROM u WHERE age = 99") == (0, 0)  # an equality seek that finds none
    assert await rows(db, "SELECT * FROM u WHERE age > 2") == (3, 0)  # to the end of the index
    assert await rows(db, "SELECT name FROM u WHERE age BETWEEN 2 AND 3") == (3, 0)
    assert await rows(db, "SELECT * FROM u WHERE name = 'c'") == (5, 0)  # no index: every row
    assert await rows(db, "SELECT * FROM u WHERE id = 3") == (1, 0)
    assert await rows(db, "SELECT * FROM u WHERE id = 99") == (1, 0)  # a rowid lookup reads one


async def test_count_over_an_index_range_reads_the_rows_it_counts_as_d1(db: D1Database) -> None:
    assert await rows(db, "SELECT count(*) AS c FROM u WHERE age > 2") == (3, 0)
    assert await rows(db, "SELECT count(*) AS c FROM u WHERE age = ?", 3) == (2, 0)  # and the next entry


async def test_joins_read_the_outer_rows_and_each_lookup_as_d1(db: D1Database) -> None:
    await db.prepare("INSERT INTO t5 VALUES ('a', 1), ('b', 2), ('c', 3), ('d', 4)").run()
    # 10 outer rows, one rowid lookup each (found or not)
    assert await rows(db, "SELECT * FROM cnt JOIN u ON u.id = cnt.n") == (20, 0)
    # 5 outer rows, a unique-index lookup for each, 4 of them found
    assert await rows(db, "SELECT * FROM u JOIN t5 ON t5.v = u.age") == (9, 0)
    # every row of the inner table for each outer row
    assert await rows(db, "SELECT u.name FROM u, cnt") == (55, 0)


async def test_sort_without_index_reads_each_row_again_from_the_sorter_as_d1(db: D1Database) -> None:
    assert await rows(db, "SELECT * FROM cnt ORDER BY n DESC") == (20, 0)
    await db.exec("CREATE TABLE empty (x)")
    assert await rows(db, "SELECT * FROM empty") == (1, 0)  # the Rewind of an empty table
    assert await rows(db, "SELECT * FROM empty ORDER BY x") == (2, 0)


async def test_limit_without_filter_stops_reading_as_d1(db: D1Database) -> None:
    assert await rows(db, "SELECT * FROM cnt LIMIT 3") == (3, 0)
    await db.exec("CREATE INDEX cnt_n ON cnt(n)")
    assert await rows(db, "SELECT max(n) FROM cnt") == (1, 0)
    assert await rows(db, "SELECT n FROM cnt ORDER BY n LIMIT 2") == (2, 0)


async def test_filtered_scan_under_limit_reads_the_whole_table_unless_the_limit_stops_it(db: D1Database) -> None:
    assert await rows(db, "SELECT * FROM cnt WHERE n > 4 LIMIT 50") == (10, 0)  # D1 reads all 10
    assert await rows(db, "SELECT * FROM cnt WHERE n >= 0 LIMIT 1") == (1, 0)  # the first row matches


async def test_update_writes_only_the_indexes_of_changed_columns_as_d1(db: D1Database) -> None:
    assert await rows(db, "UPDATE u SET age = age + 1 WHERE id = 2") == (1, 2)
    assert await rows(db, "UPDATE u SET name = 'z' WHERE id = 2") == (1, 1)
    assert await rows(db, "UPDATE u SET name = 'zz'") == (5, 5)


async def test_returning_reads_back_its_rows_and_autoincrement_its_sequence_as_d1(db: D1Database) -> None:
    await db.exec("CREATE INDEX cnt_n ON cnt(n)")
    assert await rows(db, "INSERT INTO cnt VALUES (1000) RETURNING n") == (1, 2)
    await db.exec("CREATE TABLE a (id INTEGER PRIMARY KEY AUTOINCREMENT, x)")
    assert await rows(db, "INSERT INTO a (x) VALUES (1)") == (1, 2)  # + sqlite_sequence's row
    assert await rows(db, "INSERT INTO a (x) VALUES (2), (3)") == (1, 3)


async def test_insert_select_reads_source_and_temporary_copy_as_d1(db: D1Database) -> None:
    await db.exec("CREATE INDEX cnt_n ON cnt(n)")
    # reading the table it writes: SQLite copies the 10 rows to a temporary table first
    assert await rows(db, "INSERT INTO cnt SELECT n FROM cnt") == (20, 20)


async def test_without_rowid_table_writes_one_entry_per_row_as_d1(db: D1Database) -> None:
    assert await rows(db, "CREATE TABLE w (k TEXT PRIMARY KEY, v) WITHOUT ROWID") == (1, 2)
    assert await rows(db, "INSERT INTO w VALUES ('a', 1), ('b', 2)") == (0, 2)
    assert await rows(db, "SELECT * FROM w WHERE k = 'a'") == (1, 0)
    assert await rows(db, "DELETE FROM w WHERE k = 'a'") == (1, 1)


async def test_create_index_writes_one_entry_per_row_plus_its_schema_row_as_d1(db: D1Database) -> None:
    assert (await rows(db, "CREATE INDEX cnt_n ON cnt(n)"))[1] == 11


async def test_multi_statement_query_reports_its_last_statement_as_d1(db: D1Database) -> None:
    assert await rows(db, "SELECT count(*) FROM cnt; SELECT 1") == (0, 0)
    assert await rows(db, "SELECT 1; SELECT count(*) FROM cnt") == (10, 0)


async def test_batch_reports_each_statements_own_counters(db: D1Database) -> None:
    results = await db.batch([db.prepare("INSERT INTO t5 VALUES ('z', 26)"), db.prepare("SELECT count(*) FROM cnt")])
    assert [(r.meta.rows_read, r.meta.rows_written) for r in results] == [(0, 3), (10, 0)]


async def test_run_reports_the_same_counters_as_all(db: D1Database) -> None:
    result = await db.prepare("SELECT * FROM cnt WHERE n > ?").bind(5).run()
    assert (result.meta.rows_read, result.meta.rows_written) == (10, 0)


async def test_counters_follow_schema_changes_of_the_same_statement(db: D1Database) -> None:
    assert await rows(db, "SELECT * FROM cnt WHERE n = 3") == (10, 0)
    await db.exec("CREATE INDEX cnt_n ON cnt(n)")
    assert await rows(db, "SELECT * FROM cnt WHERE n = 3") == (2, 0)


async def test_drop_table_reports_the_database_changed_as_d1(db: D1Database) -> None:
    await db.exec("CREATE TABLE gone (x)")
    result = await db.prepare("DROP TABLE gone").run()
    assert result.meta.changed_db is True and result.meta.changes == 0
    assert (await db.prepare("SELECT 1").run()).meta.changed_db is False


async def test_counters_follow_a_schema_changed_by_another_connection(tmp_path: Path) -> None:
    db = D1Database.open(tmp_path, "shared")
    try:
        await db.exec("CREATE TABLE t (x)")
        await db.prepare("INSERT INTO t VALUES (1), (2), (3)").run()
        assert await rows(db, "SELECT * FROM t WHERE x = 2") == (3, 0)
        other = sqlite3.connect(d1_database_path(tmp_path, "shared"))
        other.execute("CREATE INDEX t_x ON t(x)")  # a migration applied by `flarelet d1 execute`
        other.commit()
        other.close()
        assert await rows(db, "SELECT * FROM t WHERE x = 2") == (2, 0)
    finally:
        await db.aclose()


async def test_foreign_key_checks_read_one_parent_row_per_inserted_child_as_d1(db: D1Database) -> None:
    await db.exec("CREATE TABLE child (id INTEGER PRIMARY KEY, uid INTEGER REFERENCES u(id), note TEXT)")
    assert await rows(db, "INSERT INTO child (uid, note) VALUES (1, 'a'), (3, 'b'), (5, 'c')") == (3, 3)
    # the parent's own insert skips the recount of pending child violations (none pending)
    assert await rows(db, "INSERT INTO u (name, age) VALUES ('f', 6)") == (0, 2)
    # deleting a parent row scans the child table for rows that still point at it
    assert await rows(db, "DELETE FROM u WHERE id = 6") == (4, 1)
