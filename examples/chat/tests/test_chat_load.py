"""100 concurrent WebSocket clients over the real dev server: each receives every message."""

import asyncio
import json
from pathlib import Path

import pytest
from websockets.asyncio.client import connect

from flarelet.runtime.host import WorkerHost
from flarelet.runtime.server import DevServer, bind_socket

PROJECT = Path(__file__).resolve().parent.parent
CLIENTS = 100
SENDERS = 10
PER_SENDER = 5


@pytest.fixture
def chat_server(tmp_path):
    host = WorkerHost.from_config(PROJECT, persist_to=tmp_path)
    server = DevServer(host, bind_socket("127.0.0.1", 0), watch=False, log_requests=False).start_in_thread()
    yield server
    server.stop()


@pytest.mark.slow  # a real server and 100 sockets
def test_hundred_clients_each_receive_every_message(chat_server):
    url = chat_server.url.replace("http://", "ws://") + "/api/room/load/websocket?user="
    expected = {f"u{s}:{n}" for s in range(SENDERS) for n in range(PER_SENDER)}

    async def run():
        sockets = [await connect(url + f"u{i}", max_queue=None) for i in range(CLIENTS)]
        try:
            for ws in sockets:
                assert json.loads(await ws.recv())["type"] == "history"

            async def collect(ws):
                got = set()
                while len(got) < len(expected):
                    msg = json.loads(await ws.recv())
                    if msg["type"] == "message":
                        got.add(f"{msg['user']}:{msg['text']}")
                return got

            collectors = [asyncio.ensure_future(collect(ws)) for ws in sockets]

            async def send(index):
                for n in range(PER_SENDER):
                    await sockets[index].send(json.dumps({"text": str(n)}))

            await asyncio.gather(*(send(s) for s in range(SENDERS)))
            results = await asyncio.wait_for(asyncio.gather(*collectors), 60)
            for got in results:
                assert got == expected
        finally:
            await asyncio.gather(*(ws.close() for ws in sockets))

    asyncio.run(run())
