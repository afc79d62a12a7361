"""Outbound ``fetch`` with ``Upgrade: websocket``: a worker opening a WebSocket to another server.

As on Cloudflare, the response is a ``101`` whose ``web_socket`` the worker ``accept()``s and then
uses like any other socket. The network side is the ``websockets`` library's asyncio client (the
same library the dev server's uvicorn uses); it is bridged to the far end of a
:class:`~flarelet.runtime.websocket.WebSocketPair`. A refused handshake comes back as the server's
HTTP response; a failed connection raises ``TypeError``, as a rejected ``fetch`` does.
"""

from __future__ import annotations

import asyncio
from typing import Any

from .headers import Headers
from .request import Request
from .response import Response
from .websocket import MAX_MESSAGE_BYTES, WebSocketPair, bridge_end, inject

#: seconds to wait for the opening handshake
OPEN_TIMEOUT_S = 30.0
_SKIPPED = frozenset(
    {
        "host",
        "upgrade",
        "connection",
        "content-length",
        "sec-websocket-key",
        "sec-websocket-version",
        "sec-websocket-extensions",
        "sec-websocket-accept",
    }
)
_tasks: set[asyncio.Future[Any]] = set()


def _keep(task: asyncio.Future[Any]) -> None:
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)


async def connect_websocket(request: Request, target: str | None = None) -> Response:
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI
    from websockets.typing import Subprotocol

    url = target or request.url
    if url.startswith("http://"):
        url = "ws://" + url[len("http://") :]
    elif url.startswith("https://"):
        url = "wss://" + url[len("https://") :]
    headers = [(k, v) for k, v in request.headers.multi_items() if k.lower() not in _SKIPPED]
    protocols = request.headers.get("sec-websocket-protocol")
    try:
        conn = await connect(
            url,
            additional_headers=[(k, v) for k, v in headers if k.lower() != "sec-websocket-protocol"],
            subprotocols=[Subprotocol(p.strip()) for p in protocols.split(",")] if protocols else None,
            max_size=MAX_MESSAGE_BYTES,
            open_timeout=OPEN_TIMEOUT_S,
            compression=None,
        )
    except InvalidStatus as exc:
        answer = exc.response
        return Response._from_parts(
            answer.status_code, Headers(list(answer.headers.raw_items())), bytes(answer.body or b"") or None
        )
    except (TimeoutError, InvalidURI, InvalidHandshake, OSError) as exc:
        raise TypeError(f"fetch failed: WebSocket connection to {request.url} failed: {exc}") from exc

    pair = WebSocketPair()
    local, remote = pair.client, pair.server
    outgoing: asyncio.Queue[Any] = asyncio.Queue()
    bridge_end(remote, outgoing.put_nowait)

    async def pump_out() -> None:
        try:
            while True:
                event = await outgoing.get()
                if event[0] == "message":
                    await conn.send(event[1])
                elif event[0] == "close":
                    await conn.close(event[1], event[2])
                    return
        except ConnectionClosed:
            return

    async def pump_in() -> None:
        try:
            async for message in conn:
                inject(remote, ("message", message))
        except ConnectionClosed:
            pass
        except Exception as exc:  # noqa: BLE001 - the worker's socket gets an error event
            inject(remote, ("error", exc))
        code = conn.close_code if conn.close_code is not None else 1006
        inject(remote, ("close", code, conn.close_reason or "", code != 1006))

    _keep(asyncio.ensure_future(pump_out()))
    _keep(asyncio.ensure_future(pump_in()))
    response_headers = Headers(list(conn.response.headers.raw_items())) if conn.response else Headers()
    response = Response._from_parts(101, response_headers, None)
    response.web_socket = local
    return response
