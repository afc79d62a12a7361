"""WebSockets: pairs, accept/send/close and listeners, the dev server's upgrade, outbound fetch."""

import asyncio

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed, InvalidStatus

from flarelet.bindings.durable_objects.plugin import resolve_migrations
from flarelet.bindings.jsobject import JsRangeError, JsTypeError
from flarelet.bindings.registry import ConfigSectionError
from flarelet.runtime.host import WorkerHost
from flarelet.runtime.server import DevServer, bind_socket
from flarelet.runtime.websocket import WebSocketPair
from flarelet.testing import WebSocketClosed, WebSocketUpgradeError

from .conftest import PROJECT


async def test_accepted_socket_gets_messages_through_listeners_and_closes_with_its_code(do_worker):
    client = await do_worker.websocket("/counter/ws")
    client.send("hi")
    assert await client.receive() == "echo:hi"
    client.send(b"\x01")
    assert await client.receive() == "echo:b'\\x01'"
    client.send("close")
    with pytest.raises(WebSocketClosed) as closed:
        await client.receive()
    assert (closed.value.code, closed.value.reason) == (4000, "asked to")


async def test_upgrade_refused_by_the_worker_raises_with_its_response(do_worker):
    with pytest.raises(WebSocketUpgradeError) as err:
        await do_worker.websocket("/elsewhere")
    assert err.value.status == 404


async def test_pair_rules_follow_workerd():
    client, server = WebSocketPair()
    with pytest.raises(JsTypeError, match="You must call one of accept"):
        server.send("early")
    events = []
    server.addEventListener("message", lambda e: events.append(e.data))
    client.accept()
    client.send("queued before accept")
    assert events == []
    server.accept()
    assert events == ["queued before accept"]
    with pytest.raises(JsRangeError, match="Invalid WebSocket close code: 1005"):
        server.close(1005)
    with pytest.raises(JsRangeError, match="attachment cannot be larger than 2048"):
        server.serializeAttachment("x" * 3000)
    server.serializeAttachment({"user": "ada"})
    assert server.deserializeAttachment() == {"user": "ada"}
    closes = []
    client.addEventListener("close", lambda e: closes.append((e.code, e.reason, e.wasClean)))
    server.close(1000, "bye")
    assert closes == [(1000, "bye", True)]
    with pytest.raises(JsTypeError, match="after close"):
        server.send("late")


def test_dev_server_upgrades_and_refuses_like_cloudflare():
    host = WorkerHost.from_config(PROJECT)
    server = DevServer(host, bind_socket("127.0.0.1", 0), watch=False, log_requests=False).start_in_thread()
    try:

        async def run():
            url = server.url.replace("http://", "ws://")
            async with connect(url + "/counter/net") as ws:
                await ws.send("over the network")
                assert await ws.recv() == "echo:over the network"
            with pytest.raises(InvalidStatus) as refused:
                async with connect(url + "/nothing"):
                    pass
            assert refused.value.response.status_code == 404
            assert b"not found" in refused.value.response.body

        asyncio.run(run())
        assert httpx.get(server.url + "/counter/net").text.endswith("count=1")
    finally:
        server.stop()


async def test_outbound_fetch_with_upgrade_opens_a_websocket(do_worker):
    async def echo(ws):
        async for message in ws:
            await ws.send(f"upstream:{message}")

    async with serve(echo, "127.0.0.1", 0) as upstream:
        port = upstream.sockets[0].getsockname()[1]
        resp = await do_worker.fetch("/outbound", headers={"x-target": f"http://127.0.0.1:{port}/"})
        assert await resp.text() == "upstream said upstream:hello upstream"


def test_migrations_replay_and_errors():
    classes, deleted = resolve_migrations(
        [
            {"tag": "v1", "new_sqlite_classes": ["A"], "new_classes": ["B"]},
            {"tag": "v2", "renamed_classes": [{"from": "A", "to": "C"}], "deleted_classes": ["B"]},
        ]
    )
    assert classes["C"].sqlite and classes["C"].origin == "A"
    assert deleted == {"B": "v2"}
    with pytest.raises(ConfigSectionError, match="cannot rename X"):
        resolve_migrations([{"renamed_classes": [{"from": "X", "to": "Y"}]}])
    with pytest.raises(ConfigSectionError, match="created twice"):
        resolve_migrations([{"new_classes": ["A"]}, {"new_sqlite_classes": ["A"]}])


def test_binding_to_a_deleted_class_is_a_config_error(tmp_path):
    from flarelet.wrangler_compat.config import ConfigError

    (tmp_path / "w.py").write_text("from workers import DurableObject\nclass Gone(DurableObject): pass\n")
    (tmp_path / "wrangler.toml").write_text(
        'name = "x"\nmain = "w.py"\n[[durable_objects.bindings]]\nname = "G"\nclass_name = "Gone"\n'
        '[[migrations]]\ntag = "v1"\nnew_classes = ["Gone"]\n[[migrations]]\ntag = "v2"\ndeleted_classes = ["Gone"]\n'
    )
    with pytest.raises(ConfigError, match="class Gone was deleted by migration v2"):
        WorkerHost.from_config(tmp_path)


def test_script_name_binding_explains_when_the_other_worker_is_not_running(tmp_path):
    (tmp_path / "w.py").write_text(
        "from workers import Response, WorkerEntrypoint\n"
        "class Default(WorkerEntrypoint):\n    async def fetch(self, request):\n        return Response('x')\n"
    )
    (tmp_path / "wrangler.toml").write_text(
        'name = "a"\nmain = "w.py"\n[[durable_objects.bindings]]\nname = "B"\nclass_name = "Room"\nscript_name = "b"\n'
    )
    host = WorkerHost.from_config(tmp_path)
    row = next(r for r in host.bindings if r.name == "B")
    assert row.resource == "Room (defined in b)"
    with pytest.raises(RuntimeError, match="lives in worker 'b' \\(script_name\\).*-c b/wrangler.toml"):
        host.env.B.idFromName("x")


def test_messages_over_cloudflares_1_mib_limit_close_the_connection():
    host = WorkerHost.from_config(PROJECT)
    server = DevServer(host, bind_socket("127.0.0.1", 0), watch=False, log_requests=False).start_in_thread()
    try:

        async def run():
            async with connect(server.url.replace("http://", "ws://") + "/counter/big", max_size=None) as ws:
                await ws.send("x" * (1024 * 1024 + 1))
                with pytest.raises(ConnectionClosed) as closed:
                    await ws.recv()
                assert closed.value.rcvd.code == 1009  # message too big

        asyncio.run(run())
    finally:
        server.stop()


def test_a_websocket_answer_to_a_plain_request_is_a_500_as_workerd_says():
    host = WorkerHost.from_config(PROJECT)
    server = DevServer(host, bind_socket("127.0.0.1", 0), watch=False, log_requests=False).start_in_thread()
    try:
        resp = httpx.get(server.url + "/counter/plain", headers={"upgrade": "websocket"})
        assert resp.status_code == 500
        assert 'did not contain the header "Upgrade: websocket"' in resp.text
    finally:
        server.stop()


async def test_hibernated_handlers_run_in_order_and_interleave_only_at_real_io(do_worker):
    client = await do_worker.websocket("/counter/hws/hibernate")
    client.send("one")
    client.send("slow-two")  # awaits real I/O
    client.send("three")
    got = [await client.receive() for _ in range(3)]
    assert got == ["hib:one", "hib:three", "hib:slow-two"]
    client.send("fail")  # logged; the socket and the object stay usable
    client.send("four")
    assert await client.receive() == "hib:four"
    storage = await do_worker.run_in_durable_object(
        do_worker.durable_object("COUNTER", "hws"), lambda obj, ctx: ctx.storage
    )
    assert await storage.get("last") == "four"


async def test_script_name_reaches_the_same_objects_as_the_owning_worker(tmp_path):
    from flarelet.testing import Worker

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "w.py").write_text(
        "from workers import Response, WorkerEntrypoint\n"
        "class Default(WorkerEntrypoint):\n"
        "    async def fetch(self, request):\n"
        "        n = await self.env.ROOMS.getByName('shared').bump()\n"
        "        return Response(str(n))\n"
    )
    (tmp_path / "a" / "wrangler.toml").write_text(
        'name = "a"\nmain = "w.py"\n[[durable_objects.bindings]]\nname = "ROOMS"\nclass_name = "Room"\n'
        'script_name = "b"\n'
    )
    (tmp_path / "b" / "w.py").write_text(
        "from workers import DurableObject, Response, WorkerEntrypoint\n"
        "class Room(DurableObject):\n"
        "    async def bump(self):\n"
        "        n = (await self.ctx.storage.get('n') or 0) + 1\n"
        "        await self.ctx.storage.put('n', n)\n"
        "        return n\n"
        "class Default(WorkerEntrypoint):\n"
        "    async def fetch(self, request):\n"
        "        return Response(str(await self.env.ROOMS.getByName('shared').bump()))\n"
    )
    (tmp_path / "b" / "wrangler.toml").write_text(
        'name = "b"\nmain = "w.py"\n[[durable_objects.bindings]]\nname = "ROOMS"\nclass_name = "Room"\n'
        '[[migrations]]\ntag = "v1"\nnew_sqlite_classes = ["Room"]\n'
    )
    async with Worker.from_config(tmp_path / "a", workers=[tmp_path / "b"], persist_to=tmp_path / "state") as worker:
        assert await (await worker.fetch("/")).text() == "1"
        assert await worker.peer("b").env.ROOMS.getByName("shared").bump() == 2
        assert await (await worker.fetch("/")).text() == "3"
        assert worker.env.ROOMS.idFromName("x") == worker.peer("b").env.ROOMS.idFromName("x")
    assert list((tmp_path / "state" / "v3" / "do").iterdir())[0].name == "b-Room"
