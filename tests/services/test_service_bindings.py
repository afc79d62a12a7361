"""Service bindings and RPC between workers in one process (``[[services]]``)."""

from __future__ import annotations

import datetime
from pathlib import Path

import httpx
import pytest

from flarelet.runtime.rpc import DataCloneError, RpcError, to_rpc
from flarelet.testing import Worker
from flarelet.wrangler_compat.config import ConfigError

PROJECTS = Path(__file__).parent / "projects"
CALLER = PROJECTS / "caller"
CALLEE = PROJECTS / "callee"


@pytest.fixture
async def caller():
    async with Worker.from_config(CALLER, workers=[CALLEE]) as worker:
        yield worker


async def test_service_fetch_reaches_the_other_workers_fetch_handler(caller):
    resp = await caller.fetch("/proxy")
    assert await resp.text() == "200 callee saw GET https://callee.internal/hello?x=1 x-from=caller callee helpers"


async def test_each_worker_imports_its_own_helpers_module_of_the_same_name(caller):
    assert await (await caller.fetch("/who")).text() == "caller helpers"
    assert await caller.env.CALLEE.helpers_name() == "callee helpers"


async def test_rpc_call_from_a_handler(caller):
    assert await (await caller.fetch("/add")).json() == {"sum": 5}


async def test_rpc_method_sees_its_own_env_not_the_callers(caller):
    assert await caller.env.CALLEE.word() == "swordfish"
    assert "SECRET_WORD" not in caller.env


async def test_rpc_sync_method_result_is_awaitable_as_on_workerd(caller):
    assert await caller.env.CALLEE.sync_double(21) == 42


async def test_named_entrypoint_binding_calls_that_class(caller):
    stats = await caller.env.ADMIN.stats()
    assert stats["env_word"] == "swordfish"
    assert stats.env_word == "swordfish"  # a JS object: attribute access too
    assert await (await caller.env.ADMIN.fetch("https://admin/")).text() == "admin fetch"


async def test_rpc_arguments_are_copied_not_shared_as_structured_clone_does(caller):
    items = ["mine"]
    assert await caller.env.CALLEE.mutate(items) == 2
    assert items == ["mine"]


async def test_rpc_dict_keys_become_strings_as_js_object_keys(caller):
    assert await caller.env.CALLEE.echo({1: "a", "b": [None, 2.5]}) == {"1": "a", "b": [None, 2.5]}


async def test_rpc_missing_method_raises_workerd_type_error(caller):
    with pytest.raises(RpcError) as info:
        await caller.env.CALLEE.no_such_method()
    assert info.value.name == "TypeError"
    assert str(info.value) == "TypeError: Method no_such_method does not exist"


async def test_rpc_class_instance_result_raises_data_clone_error(caller):
    with pytest.raises(DataCloneError, match='Could not serialize object of type "Point"'):
        await caller.env.CALLEE.point()


async def test_rpc_tuple_argument_is_refused_as_the_python_sdk_does(caller):
    with pytest.raises(TypeError, match=r"<class 'tuple'> cannot be sent over RPC\."):
        await caller.env.CALLEE.echo((1, 2))
    with pytest.raises(TypeError, match="bytearray"):
        await caller.env.CALLEE.echo(bytearray(b"x"))


async def test_rpc_callee_exception_reaches_caller_as_python_error(caller):
    with pytest.raises(RpcError) as info:
        await caller.env.CALLEE.boom()
    assert info.value.name == "PythonError"
    assert info.value.remote_type == "ValueError"
    assert "the callee failed" in str(info.value)


async def test_rpc_function_argument_becomes_a_callable_stub(caller):
    assert await caller.env.CALLEE.call_back(lambda v: v * 10, 1) == 20


async def test_rpc_response_crosses_the_boundary(caller):
    resp = await caller.env.CALLEE.respond()
    assert resp.status == 201 and resp.headers.get("x-made") == "yes"
    assert await resp.text() == "made by the callee"


async def test_rpc_datetime_crosses_as_a_js_date(caller):
    when = await caller.env.CALLEE.when()
    assert isinstance(when, datetime.datetime)
    assert when.timestamp() == datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.UTC).timestamp()


async def test_service_not_running_answers_503_like_wrangler_dev(caller):
    resp = await caller.fetch("/missing")
    assert resp.status == 503
    assert 'service "not-running"' in await resp.text()
    with pytest.raises(RpcError, match="not-running"):
        await caller.env.MISSING.anything()


async def test_peer_lookup_by_name(caller):
    assert caller.peer("callee").name == "callee"
    assert caller.host.lookup_worker("caller") is caller.host
    with pytest.raises(LookupError):
        caller.peer("nobody")


def test_to_rpc_rules():
    assert to_rpc(b"ab") == b"ab" and to_rpc(memoryview(b"cd")) == b"cd"
    assert to_rpc({"s": {1, 2}}) == {"s": {1, 2}}
    with pytest.raises(TypeError, match="Awaitable"):
        coro = _coro()
        try:
            to_rpc(coro)
        finally:
            coro.close()
    with pytest.raises(DataCloneError):
        to_rpc(object())
    with pytest.raises(DataCloneError):
        to_rpc(int)  # a class is not a function


async def _coro():
    return 1


def test_services_config_errors_name_the_key(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "entry.py").write_text(
        "from workers import WorkerEntrypoint\nclass Default(WorkerEntrypoint):\n    pass\n"
    )
    (tmp_path / "wrangler.toml").write_text('name = "x"\nmain = "src/entry.py"\n\n[[services]]\nbinding = "A"\n')
    with pytest.raises(ConfigError, match=r"wrangler.toml:4: services\[0\]\.service: missing"):
        Worker.from_config(tmp_path)


def test_two_workers_with_one_name_are_refused():
    with pytest.raises(ConfigError, match='two workers are named "callee"'):
        Worker.from_config(CALLEE, workers=[CALLEE])


@pytest.mark.slow
def test_dev_with_two_configs_serves_the_first_and_binds_the_second(serve_worker):
    with serve_worker(CALLER / "wrangler.toml", "-c", str(CALLEE / "wrangler.toml")) as running:
        assert httpx.get(running.url + "/add").json() == {"sum": 5}
        assert httpx.get(running.url + "/proxy").text.startswith("200 callee saw GET")
        assert httpx.get(running.url + "/who").text == "caller helpers"
        running.wait_for_log("Also running worker callee")


async def test_reloading_one_worker_keeps_each_workers_own_modules(caller):
    assert caller.peer("callee").reload_code(raise_errors=True)
    assert await caller.env.CALLEE.helpers_name() == "callee helpers"
    assert await (await caller.fetch("/who")).text() == "caller helpers"
    assert caller.host.reload_code(raise_errors=True)
    assert await caller.env.CALLEE.helpers_name() == "callee helpers"
    assert await (await caller.fetch("/who")).text() == "caller helpers"


async def test_named_entrypoint_that_is_not_exported_raises_type_error(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "entry.py").write_text(
        "from workers import Response, WorkerEntrypoint\n\n"
        "class Default(WorkerEntrypoint):\n"
        "    async def fetch(self, request):\n"
        "        return Response(await self.env.GHOST.stats())\n"
    )
    (tmp_path / "wrangler.toml").write_text(
        'name = "ghost-caller"\nmain = "src/entry.py"\n\n'
        '[[services]]\nbinding = "GHOST"\nservice = "callee"\nentrypoint = "NotExported"\n'
    )
    async with Worker.from_config(tmp_path, workers=[CALLEE]) as worker:
        with pytest.raises(RpcError, match='does not export an entrypoint named "NotExported"'):
            await worker.env.GHOST.stats()
        resp = await worker.fetch("/")
        assert resp.status == 500  # the caller's handler failed; the server goes on


async def test_props_of_the_binding_are_the_targets_ctx_props(caller):
    assert (await caller.env.ADMIN.stats())["props"] == {"tenant": "acme"}
    assert await caller.env.CALLEE.props() == {}


@pytest.mark.flarelet(config="projects/caller", workers=["projects/callee"])
async def test_pytest_marker_runs_workers_beside_the_tested_one(worker):
    assert await (await worker.fetch("/add")).json() == {"sum": 5}
    assert worker.peer("callee").name == "callee"
