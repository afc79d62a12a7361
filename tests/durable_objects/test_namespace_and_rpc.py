"""Namespaces, ids, stubs and RPC: what may cross, and the errors for what may not (workerd's rules)."""

import asyncio
import dataclasses
import datetime as dt
import re

import pytest

from flarelet.bindings.durable_objects.clone import DataCloneError
from flarelet.bindings.jsobject import JsException, JsTypeError


async def test_ids_are_64_hex_and_name_derived_ids_are_stable_per_namespace_as_workerd_does(do_worker):
    counter, renamed = do_worker.env.COUNTER, do_worker.env.RENAMED
    a = counter.idFromName("alpha")
    assert re.fullmatch(r"[0-9a-f]{64}", a.toString())
    assert counter.id_from_name("alpha") == a and a.name == "alpha"
    assert renamed.idFromName("alpha") != a  # another namespace, another id
    assert counter.idFromString(a.toString()) == a
    unique = {counter.newUniqueId().toString() for _ in range(50)}
    assert len(unique) == 50
    assert all(int(u[0], 16) < 8 for u in unique)  # unique ids have the top bit clear, named ones set
    assert int(a.toString()[0], 16) >= 8


async def test_id_from_string_refuses_bad_and_foreign_ids_as_workerd_does(do_worker):
    counter, renamed = do_worker.env.COUNTER, do_worker.env.RENAMED
    with pytest.raises(JsTypeError, match="64 hex digits"):
        counter.idFromString("abc")
    with pytest.raises(JsTypeError, match="not valid for this namespace"):
        counter.idFromString(renamed.idFromName("x").toString())
    with pytest.raises(JsTypeError, match="DurableObjectId"):
        counter.get("not-an-id")


async def test_rpc_calls_reach_one_instance_per_id(do_worker):
    stub_a = do_worker.env.COUNTER.getByName("one")
    stub_b = do_worker.env.COUNTER.get(do_worker.env.COUNTER.idFromName("one"))
    first, second = await stub_a.whoami(), await stub_b.whoami()
    assert first == second and first["name"] == "one"
    assert await stub_a.increment() == 1
    assert await stub_b.increment(5) == 6
    other = await do_worker.env.COUNTER.getByName("two").whoami()
    assert other["object"] != first["object"]


async def test_rpc_arguments_and_results_are_copied_not_shared(do_worker):
    stub = do_worker.env.COUNTER.getByName("copy")
    mine = ["from the caller"]
    back = await stub.mutate(mine)
    assert mine == ["from the caller"]
    assert back == ["from the caller", "from the object"]
    value = {
        "n": 1,
        "f": 1.5,
        "s": "x",
        "b": b"\x00",
        "l": [None, True],
        "set": {1, 2},
        "when": dt.datetime(2020, 1, 1),
    }
    assert await stub.echo(value) == value
    assert await stub.sync_method(2, 3) == 5  # sync methods are awaited through the stub too


async def test_rpc_refuses_tuples_and_plain_functions_as_python_to_rpc_does(do_worker):
    stub = do_worker.env.COUNTER.getByName("refuse")
    with pytest.raises(TypeError, match=r"<class 'tuple'> cannot be sent over RPC."):
        await stub.echo((1, 2))
    with pytest.raises(TypeError, match=r"<class 'function'> cannot be sent over RPC."):
        await stub.echo(lambda: 1)
    with pytest.raises(TypeError, match=r"<class 'tuple'> cannot be sent over RPC."):
        await stub.give_tuple()


async def test_rpc_refuses_class_instances_with_a_data_clone_error_as_v8_does(do_worker):
    stub = do_worker.env.COUNTER.getByName("refuse")
    with pytest.raises(DataCloneError, match='Could not serialize object of type "Thing"'):
        await stub.give_thing()
    with pytest.raises(DataCloneError):
        await stub.echo(object())


async def test_rpc_to_a_missing_method_is_a_type_error_as_workerd_says(do_worker):
    stub = do_worker.env.COUNTER.getByName("missing")
    with pytest.raises(TypeError, match='The RPC receiver does not implement the method "nope".'):
        await stub.nope()
    with pytest.raises(TypeError, match='Cannot call handler method "alarm" over RPC.'):
        await stub.alarm({})
    with pytest.raises(TypeError, match="positional arguments only"):
        await stub.increment(by=2)


async def test_errors_thrown_by_the_object_reach_the_caller(do_worker):
    stub = do_worker.env.COUNTER.getByName("errors")
    with pytest.raises(ValueError, match="boom"):
        await stub.fail("boom")
    assert await stub.increment() == 1  # the object still answers


async def test_constructor_block_concurrency_while_holds_events_until_it_finishes(do_worker):
    assert await do_worker.env.COUNTER.getByName("ready").was_ready() is True


async def test_input_gate_storage_calls_never_interleave_so_no_update_is_lost(do_worker):
    stub = do_worker.env.COUNTER.getByName("gate")
    results = await asyncio.gather(*(stub.increment() for _ in range(50)))
    assert sorted(results) == list(range(1, 51))


async def test_real_io_lets_events_interleave_as_on_cloudflare(do_worker):
    stub = do_worker.env.COUNTER.getByName("io")
    results = await asyncio.gather(*(stub.slow_increment() for _ in range(5)))
    assert max(results) < 5  # read-sleep-write races once the object awaits real I/O


async def test_stub_fetch_reaches_the_object_fetch_handler(do_worker):
    resp = await do_worker.fetch("/counter/web", method="POST")
    assert await resp.text() == "POST http://localhost:8787/counter/web count=1"
    resp = await do_worker.env.COUNTER.getByName("web").fetch("http://do/x")
    assert await resp.text() == "GET http://do/x count=2"


async def test_harness_lists_ids_and_runs_code_inside_an_object(do_worker):
    stub = do_worker.durable_object("COUNTER", "inside")
    await stub.increment(3)
    got = await do_worker.run_in_durable_object(stub, lambda obj, ctx: ctx.storage.get("count"))
    assert got == 3
    assert stub.id.toString() in do_worker.list_durable_object_ids("COUNTER")


async def test_block_concurrency_while_times_out_and_resets_the_object_as_cloudflare_does(do_worker):
    stub = do_worker.durable_object("COUNTER", "stuck")
    namespace = do_worker.env.COUNTER
    namespace.settings = dataclasses.replace(namespace.settings, block_concurrency_timeout_s=0.05)
    before = await stub.whoami()
    with pytest.raises(JsException, match=r"blockConcurrencyWhile\(\) in a Durable Object waited for too long"):
        await stub.block_forever()
    after = await stub.whoami()
    assert after["object"] != before["object"]  # a fresh instance
