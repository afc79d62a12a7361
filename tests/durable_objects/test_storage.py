"""Durable Object storage: key-value, SQL, transactions, alarms, persistence and the output gate."""

import asyncio
import sqlite3
import time

import pytest

from flarelet.bindings.durable_objects.storage import SqlError
from flarelet.bindings.jsobject import JsException, JsRangeError
from flarelet.testing import Worker

from .conftest import PROJECT


async def storage_of(worker, name="s"):
    stub = worker.durable_object("COUNTER", name)
    return stub, await worker.run_in_durable_object(stub, lambda obj, ctx: ctx.storage)


async def test_kv_get_put_delete_with_single_keys_and_lists(do_worker):
    _, storage = await storage_of(do_worker)
    assert await storage.get("missing") is None
    await storage.put("a", {"n": 1, "items": [1, 2]})
    await storage.put({"b": 2, "c": 3})
    assert await storage.get("a") == {"n": 1, "items": [1, 2]}
    assert await storage.get(["c", "a", "zzz"]) == {"a": {"n": 1, "items": [1, 2]}, "c": 3}
    assert await storage.delete("b") is True
    assert await storage.delete("b") is False
    assert await storage.delete(["a", "c", "nope"]) == 2


async def test_kv_list_orders_by_key_with_prefix_start_end_reverse_limit(do_worker):
    _, storage = await storage_of(do_worker)
    await storage.put({f"k{i}": i for i in range(6)} | {"other": -1})
    assert list(await storage.list()) == ["k0", "k1", "k2", "k3", "k4", "k5", "other"]
    assert list(await storage.list(prefix="k", reverse=True, limit=2)) == ["k5", "k4"]
    assert list(await storage.list({"start": "k2", "end": "k4"})) == ["k2", "k3"]
    assert list(await storage.list(startAfter="k4", prefix="k")) == ["k5"]
    await storage.deleteAll()
    assert await storage.list() == {}


async def test_kv_limits_are_cloudflares_and_named(do_worker):
    _, storage = await storage_of(do_worker)
    with pytest.raises(JsRangeError, match="Keys cannot be larger than 2048 bytes"):
        await storage.put("k" * 2049, 1)
    with pytest.raises(JsRangeError, match="Maximum number of keys is 128"):
        await storage.get([f"k{i}" for i in range(129)])
    with pytest.raises(JsRangeError, match="Values cannot be larger than 131072 bytes"):
        await do_worker.durable_object("KVONLY", "x").big(200_000)


async def test_stored_values_are_copies(do_worker):
    _, storage = await storage_of(do_worker)
    items = [1]
    await storage.put("list", items)
    items.append(2)
    assert await storage.get("list") == [1]
    with pytest.raises(JsException, match='Could not serialize object of type "object"'):
        await storage.put("bad", object())


async def test_transaction_rolls_back_on_exception_and_on_rollback(do_worker):
    _, storage = await storage_of(do_worker)
    await storage.put("x", 1)

    async def failing(txn):
        await txn.put("x", 2)
        raise RuntimeError("no")

    with pytest.raises(RuntimeError):
        await storage.transaction(failing)
    assert await storage.get("x") == 1

    async def rolled_back(txn):
        await txn.put("x", 3)
        txn.rollback()

    await storage.transaction(rolled_back)
    assert await storage.get("x") == 1

    async def committed(txn):
        await txn.put("x", (await txn.get("x")) + 10)
        return "ok"

    assert await storage.transaction(committed) == "ok"
    assert await storage.get("x") == 11
    assert storage.transactionSync(lambda: storage.kv.put("y", 5)) is None
    assert storage.kv.get("y") == 5


async def test_sql_exec_cursor_as_workerd(do_worker):
    stub, storage = await storage_of(do_worker)
    sql = storage.sql
    sql.exec("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT)")
    cursor = sql.exec("INSERT INTO t (name) VALUES (?), (?)", "ada", "bob")
    assert cursor.rowsWritten == 2
    cursor = sql.exec("SELECT id, name FROM t ORDER BY id")
    assert cursor.columnNames == ["id", "name"]
    rows = cursor.toArray()
    assert [r.name for r in rows] == ["ada", "bob"] and rows[0]["id"] == 1
    assert sql.exec("SELECT name FROM t WHERE id = ?", 2).one().name == "bob"
    assert sql.exec("SELECT * FROM t").raw().toArray() == [[1, "ada"], [2, "bob"]]
    assert [r.id for r in sql.exec("SELECT id FROM t")] == [1, 2]
    with pytest.raises(JsException, match="Expected exactly one result from SQL query, but got no results."):
        sql.exec("SELECT * FROM t WHERE id = 99").one()
    with pytest.raises(JsException, match="but got multiple results."):
        sql.exec("SELECT * FROM t").one()
    assert sql.databaseSize > 0
    sql.exec("CREATE TABLE u (a); INSERT INTO u VALUES (?)", 7)
    assert sql.exec("SELECT a FROM u").one().a == 7
    result = await stub.sql("SELECT count(*) AS n FROM t")
    assert result["rows"] == [{"n": 2}]


async def test_sql_refuses_transactions_internal_tables_and_bad_sql_as_workerd_does(do_worker):
    _, storage = await storage_of(do_worker)
    sql = storage.sql
    with pytest.raises(SqlError, match=r"state.storage.transaction\(\)"):
        sql.exec("BEGIN TRANSACTION")
    with pytest.raises(SqlError, match="SQLITE_AUTH"):
        sql.exec("SELECT * FROM _cf_KV")
    with pytest.raises(SqlError, match="syntax error.*SQLITE_ERROR"):
        sql.exec("SELEC 1")
    with pytest.raises(SqlError, match="Wrong number of parameter bindings"):
        sql.exec("SELECT ?", 1, 2)
    with pytest.raises(SqlError, match="SQLITE_AUTH"):
        sql.exec("PRAGMA journal_mode = DELETE")
    with pytest.raises(SqlError, match="too many SQL variables"):
        sql.exec("SELECT " + ", ".join("?" * 101), *range(101))
    with pytest.raises(TypeError, match="not supported"):
        sql.exec("SELECT ?", {"a": 1})
    assert sql.exec("PRAGMA table_list").toArray() is not None


async def test_sql_is_refused_for_key_value_classes_as_cloudflare_does(do_worker):
    stub = do_worker.durable_object("KVONLY", "kv")
    with pytest.raises(JsException, match="SQL is not enabled for this Durable Object class"):
        await stub.use_sql()
    await stub.put("k", [1, "two"])
    assert await stub.get("k") == [1, "two"]


async def test_alarm_runs_and_is_cleared(do_worker):
    stub = do_worker.durable_object("COUNTER", "alarm")
    await stub.set_alarm_in(30)
    storage = await do_worker.run_in_durable_object(stub, lambda obj, ctx: ctx.storage)
    assert await storage.getAlarm() is not None
    for _ in range(100):
        if await stub.alarm_calls():
            break
        await asyncio.sleep(0.02)
    assert await stub.alarm_calls() == [{"retryCount": 0, "isRetry": False}]
    assert await storage.getAlarm() is None


async def test_failing_alarm_is_retried_with_backoff_as_cloudflare_retries(do_worker):
    stub = do_worker.durable_object("COUNTER", "retry")
    await stub.set_alarm_in(0, 2)
    for _ in range(200):
        if len(await stub.alarm_calls()) >= 3:
            break
        await asyncio.sleep(0.02)
    calls = await stub.alarm_calls()
    assert calls == [
        {"retryCount": 0, "isRetry": False},
        {"retryCount": 1, "isRetry": True},
        {"retryCount": 2, "isRetry": True},
    ]


async def test_set_alarm_needs_an_alarm_handler_as_cloudflare_says(do_worker):
    stub = do_worker.durable_object("KVONLY", "noalarm")
    storage = await do_worker.run_in_durable_object(stub, lambda obj, ctx: ctx.storage)
    with pytest.raises(TypeError, match=r"must have an alarm\(\) handler"):
        await storage.setAlarm(time.time() * 1000 + 1000)


async def test_harness_runs_a_pending_alarm_now(do_worker):
    stub = do_worker.durable_object("COUNTER", "now")
    await stub.set_alarm_in(60_000)
    assert await do_worker.run_durable_object_alarm(stub) is True
    assert await stub.alarm_calls() == [{"retryCount": 0, "isRetry": False}]
    assert await do_worker.run_durable_object_alarm(stub) is False


async def test_output_gate_writes_are_committed_before_the_result_is_returned(persisted_worker, tmp_path):
    stub = persisted_worker.durable_object("COUNTER", "gate")
    assert await stub.increment(7) == 7
    files = list((tmp_path / "v3" / "do" / "do-tests-Counter").glob("*.sqlite"))
    assert [f.stem for f in files] == [stub.id.toString()]
    other = sqlite3.connect(files[0])  # another connection sees the committed row at once
    assert other.execute("SELECT count(*) FROM _cf_KV WHERE key = 'count'").fetchone()[0] == 1
    other.close()


async def test_storage_and_alarms_persist_across_restarts(tmp_path):
    async with Worker.from_config(PROJECT, persist_to=tmp_path) as worker:
        stub = worker.durable_object("COUNTER", "kept")
        await stub.increment(4)
        await stub.sql("CREATE TABLE IF NOT EXISTS t (v)")
        await stub.sql("INSERT INTO t VALUES (?)", "row")
        await stub.set_alarm_in(300)
    async with Worker.from_config(PROJECT, persist_to=tmp_path) as worker:
        stub = worker.durable_object("COUNTER", "kept")
        assert await stub.increment() == 5
        assert (await stub.sql("SELECT v FROM t"))["rows"] == [{"v": "row"}]
        for _ in range(100):  # the alarm was re-armed at start-up
            if await stub.alarm_calls():
                break
            await asyncio.sleep(0.02)
        assert len(await stub.alarm_calls()) == 1


async def test_renamed_classes_keep_their_objects_ids_and_storage(tmp_path):
    async with Worker.from_config(PROJECT, persist_to=tmp_path) as worker:
        await worker.durable_object("RENAMED", "r").remember("kept")
        assert (tmp_path / "v3" / "do" / "do-tests-OldName").is_dir()
