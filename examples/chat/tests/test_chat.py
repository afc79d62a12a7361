"""The chat example, in process: rooms, history in SQL, attachments, auto-response, hibernation."""

import asyncio
import dataclasses
import json
from pathlib import Path

import pytest

from flarelet.testing import WebSocketUpgradeError, Worker

PROJECT = Path(__file__).resolve().parent.parent


async def join(worker, room="lobby", user="ada"):
    client = await worker.websocket(f"/api/room/{room}/websocket?user={user}")
    first = json.loads(await client.receive())
    assert first["type"] == "history"
    return client, first["messages"]


async def next_of(client, kind):
    while True:
        msg = json.loads(await client.receive())
        if msg["type"] == kind:
            return msg


async def test_messages_reach_everyone_in_the_room_and_only_that_room(worker):
    ada, _ = await join(worker, user="ada")
    bob, _ = await join(worker, user="bob")
    other, _ = await join(worker, room="elsewhere", user="eve")
    ada.send(json.dumps({"text": "hello"}))
    for client in (ada, bob):
        msg = await next_of(client, "message")
        assert (msg["user"], msg["text"]) == ("ada", "hello")
    other.send(json.dumps({"text": "unrelated"}))
    assert (await next_of(other, "message"))["text"] == "unrelated"
    ada.send(json.dumps({"text": "second"}))
    assert (await next_of(bob, "message"))["text"] == "second"


async def test_history_is_kept_in_sql_and_sent_on_join(worker):
    ada, _ = await join(worker)
    for i in range(3):
        ada.send(json.dumps({"text": f"m{i}"}))
        await next_of(ada, "message")
    late, history = await join(worker, user="late")
    assert [m["text"] for m in history] == ["m0", "m1", "m2"]
    rows = await worker.run_in_durable_object(
        worker.durable_object("ROOMS", "lobby"),
        lambda room, ctx: ctx.storage.sql.exec("SELECT count(*) AS n FROM messages").one().n,
    )
    assert rows == 3


async def test_ping_is_answered_by_the_auto_response_without_waking_the_room(worker):
    ada, _ = await join(worker)
    stub = worker.durable_object("ROOMS", "lobby")
    slot = stub._namespace.slot(stub.id)
    generation = slot.generation
    await next_of(ada, "join")
    ada.send("ping")
    assert await ada.receive() == "pong"
    assert slot.generation == generation
    stamp = slot.state.getWebSocketAutoResponseTimestamp(slot.websockets[0])
    assert stamp is not None


async def test_leave_is_announced_when_a_client_closes(worker):
    ada, _ = await join(worker, user="ada")
    bob, _ = await join(worker, user="bob")
    await next_of(ada, "join")  # bob's join
    bob.close()
    left = await next_of(ada, "leave")
    assert left == {"type": "leave", "user": "bob", "online": 1}


async def test_plain_requests_to_the_room_are_refused_with_426(worker):
    with pytest.raises(WebSocketUpgradeError) as err:
        await worker.websocket("/api/room/lobby/nothing")
    assert err.value.status == 404
    resp = await worker.fetch("/api/room/lobby/websocket")
    assert resp.status == 426


async def test_the_page_is_served_from_assets(worker):
    resp = await worker.fetch("/")
    assert resp.status == 200
    assert "new WebSocket(" in await resp.text()


async def test_room_hibernates_and_wakes_with_its_attachments_and_history():
    async with Worker.from_config(PROJECT) as worker:
        namespace = worker.env.ROOMS
        namespace.settings = dataclasses.replace(namespace.settings, hibernate_after_s=0.05)
        ada, _ = await join(worker, user="ada")
        ada.send(json.dumps({"text": "before"}))
        await next_of(ada, "message")
        stub = worker.durable_object("ROOMS", "lobby")
        slot = stub._namespace.slot(stub.id)
        for _ in range(100):
            if not slot.live:
                break
            await asyncio.sleep(0.02)
        assert not slot.live, "the room should have hibernated"
        ada.send(json.dumps({"text": "after"}))
        msg = await next_of(ada, "message")
        assert (msg["user"], msg["text"]) == ("ada", "after")  # the name came from the attachment
        assert slot.generation == 2  # a fresh instance was built


async def test_shutting_down_closes_the_rooms_sockets_with_1001():
    from flarelet.testing import WebSocketClosed

    worker = Worker.from_config(PROJECT)
    async with worker:
        ada, _ = await join(worker)
    with pytest.raises(WebSocketClosed) as closed:
        while True:
            await ada.receive(timeout=2)
    assert closed.value.code == 1001
