"""WebSockets as Workers see them: ``WebSocketPair``, ``accept``/``send``/``close``, event listeners.

A pair is two connected ends: what one end sends, the other receives. The worker keeps the
*server* end and returns the *client* end in ``Response(None, status=101, web_socket=client)``;
the dev server then bridges the client end to the real connection (:func:`bridge_end`, used by
the ASGI app and by outbound ``fetch`` with ``Upgrade: websocket``), the test harness to its test
client. Events reach an end in one of three ways:

- bridged: handed to the bridge's callback (frames for the network);
- hibernated (``ctx.acceptWebSocket``): handed to the Durable Object's slot, which delivers
  ``webSocketMessage``/``webSocketClose``/``webSocketError`` one at a time;
- accepted (``ws.accept()``): dispatched to ``addEventListener`` listeners (``message``, ``close``,
  ``error``); until an end is accepted its events are queued, as workerd queues them.

Closing follows workerd with ``web_socket_auto_reply_to_close`` (the default for current
compatibility dates): a received close is answered at once, so a handler calling ``ws.close()``
afterwards does nothing. Attachments (``serializeAttachment``) are structured-cloned and kept
with the socket, so they survive a Durable Object's hibernation.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable
from typing import Any

from flarelet.bindings.durable_objects import clone
from flarelet.bindings.jsobject import JsException, JsRangeError, JsTypeError

log = logging.getLogger("flarelet")

#: Cloudflare's limit on one ``serializeAttachment`` value
MAX_ATTACHMENT_BYTES = 2048
#: Cloudflare's limit on one message (1 MiB)
MAX_MESSAGE_BYTES = 1024 * 1024

CONNECTING, OPEN, CLOSING, CLOSED = 0, 1, 2, 3

Event = tuple[Any, ...]  # ("message", data) | ("close", code, reason, was_clean) | ("error", exc)


class MessageEvent:
    type = "message"

    def __init__(self, data: str | bytes) -> None:
        self.data = data


class CloseEvent:
    type = "close"

    def __init__(self, code: int, reason: str, was_clean: bool) -> None:
        self.code = code
        self.reason = reason
        self.wasClean = was_clean
        self.was_clean = was_clean


class ErrorEvent:
    type = "error"

    def __init__(self, error: BaseException) -> None:
        self.error = error
        self.message = str(error)


def _check_close_code(code: int | None) -> int:
    if code is None:
        return 1000
    if not isinstance(code, int) or isinstance(code, bool) or not (code == 1000 or 3000 <= code <= 4999):
        raise JsRangeError(f"Invalid WebSocket close code: {code}.")
    return code


class WebSocket:
    """One end of a :class:`WebSocketPair`."""

    CONNECTING = CONNECTING
    OPEN = OPEN
    CLOSING = CLOSING
    CLOSED = CLOSED
    READY_STATE_CONNECTING = CONNECTING
    READY_STATE_OPEN = OPEN
    READY_STATE_CLOSING = CLOSING
    READY_STATE_CLOSED = CLOSED

    _flarelet_rpc_reference = True

    def __init__(self) -> None:
        self._peer: WebSocket | None = None
        self.readyState = OPEN
        self._accepted = False
        self._close_sent = False
        self._listeners: dict[str, list[Callable[..., Any]]] = {}
        self._pending: list[Event] = []
        self._sink: Any = None
        self._bridge: Callable[[Event], None] | None = None
        self._attachment: bytes | None = None
        self._auto_response_at: float | None = None
        self.tags: list[str] = []
        self.url: str | None = None
        self.protocol = ""
        self.extensions = ""

    @property
    def ready_state(self) -> int:
        return self.readyState

    # -- the worker's API ----------------------------------------------------------------------
    def accept(self) -> None:
        if self._sink is not None:
            raise JsTypeError("This WebSocket was already accepted with state.acceptWebSocket().")
        if self._accepted:
            return
        self._accepted = True
        self._drain()

    def addEventListener(self, kind: str, listener: Callable[..., Any], *_options: Any) -> None:  # noqa: N802
        self._listeners.setdefault(kind, []).append(listener)

    def removeEventListener(self, kind: str, listener: Callable[..., Any], *_options: Any) -> None:  # noqa: N802
        items = self._listeners.get(kind, [])
        if listener in items:
            items.remove(listener)

    add_event_listener = addEventListener
    remove_event_listener = removeEventListener

    def send(self, message: str | bytes | bytearray | memoryview) -> None:
        if not (self._accepted or self._sink is not None or self._bridge is not None):
            raise JsTypeError(
                "You must call one of accept() or state.acceptWebSocket() on this WebSocket before sending messages."
            )
        if self._close_sent or self.readyState == CLOSED:
            raise JsTypeError("Can't call WebSocket send() after close().")
        if isinstance(message, (bytearray, memoryview)):
            message = bytes(message)
        elif not isinstance(message, (str, bytes)):
            raise JsTypeError(f"WebSocket send() takes a string or bytes, not {type(message).__name__}")
        size = len(message) if isinstance(message, bytes) else len(message.encode("utf-8", "surrogatepass"))
        if size > MAX_MESSAGE_BYTES:
            raise JsRangeError(f"WebSocket message is too large ({size} bytes; the limit is {MAX_MESSAGE_BYTES}).")
        peer = self._peer
        if peer is not None:
            peer._receive(("message", message))

    def close(self, code: int | None = None, reason: str | None = None) -> None:
        if self._close_sent or self.readyState == CLOSED:
            return  # already closed (or the peer's close was auto-answered): nothing to do
        code = _check_close_code(code)
        reason = reason or ""
        if len(reason.encode()) > 123:
            raise JsRangeError("WebSocket close reason is too long (the limit is 123 bytes).")
        self._shutdown(code, reason)

    def _shutdown(self, code: int, reason: str) -> None:
        """Close with any code (the runtime's own closes: 1001 when flarelet shuts down)."""
        if self._close_sent or self.readyState == CLOSED:
            return
        self._close_sent = True
        self.readyState = CLOSING if self.readyState == OPEN else CLOSED
        peer = self._peer
        if peer is not None:
            peer._receive(("close", code, reason, True))

    # -- attachments -----------------------------------------------------------------------------
    def serializeAttachment(self, value: Any) -> None:  # noqa: N802 - Cloudflare's name
        data = clone.encode(value)
        if len(data) > MAX_ATTACHMENT_BYTES:
            raise JsRangeError(
                f"A WebSocket attachment cannot be larger than {MAX_ATTACHMENT_BYTES} bytes "
                f"(this one is {len(data)} bytes serialized)."
            )
        self._attachment = data

    def deserializeAttachment(self) -> Any:  # noqa: N802 - Cloudflare's name
        return None if self._attachment is None else clone.decode(self._attachment)

    serialize_attachment = serializeAttachment
    deserialize_attachment = deserializeAttachment

    # -- hibernation (called by ctx.acceptWebSocket) -----------------------------------------------
    def _hibernate(self, sink: Any, tags: list[str]) -> None:
        if self._accepted or self._sink is not None:
            raise JsTypeError("This WebSocket was already accepted.")
        if self._bridge is not None:
            raise JsTypeError("acceptWebSocket() expects the server end of a WebSocketPair, not the client end.")
        self._sink = sink
        self.tags = tags
        self._drain()

    # -- delivery ----------------------------------------------------------------------------------
    def _receive(self, event: Event) -> None:
        if event[0] == "close":
            if self.readyState == CLOSED:
                return
            answered = self._close_sent
            self.readyState = CLOSED
            if not answered:
                self._close_sent = True
                peer = self._peer
                if peer is not None and peer.readyState != CLOSED:
                    peer.readyState = CLOSED
                    if peer._bridge is not None:
                        peer._bridge(("close", event[1], event[2], True))
        if self._bridge is not None:
            self._bridge(event)
        elif self._sink is not None or self._accepted:
            self._dispatch(event)
        else:
            self._pending.append(event)

    def _drain(self) -> None:
        pending, self._pending = self._pending, []
        for event in pending:
            self._dispatch(event)

    def _dispatch(self, event: Event) -> None:
        kind = event[0]
        sink = self._sink
        if sink is not None:
            if kind == "message":
                sink.ws_message(self, event[1])
            elif kind == "close":
                sink.ws_close(self, event[1], event[2], event[3])
            else:
                sink.ws_error(self, event[1])
            return
        if kind == "message":
            obj: Any = MessageEvent(event[1])
        elif kind == "close":
            obj = CloseEvent(event[1], event[2], event[3])
        else:
            obj = ErrorEvent(event[1])
        for listener in list(self._listeners.get(kind, ())):
            try:
                result = listener(obj)
                if inspect.isawaitable(result):
                    task = asyncio.ensure_future(result)
                    task.add_done_callback(_log_listener_failure)
            except Exception:  # noqa: BLE001 - a failing listener is logged, the socket stays usable
                log.exception("WebSocket %s listener failed", kind)

    def __repr__(self) -> str:
        return f"<WebSocket readyState={self.readyState}>"


def _log_listener_failure(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("WebSocket listener failed: %r", task.exception())


class WebSocketPair:
    """``new WebSocketPair()``: ``client, server = WebSocketPair()``; also ``pair[0]``, ``pair[1]``,
    ``WebSocketPair.new().object_values()`` (Pyodide's spelling of ``Object.values(pair)``)."""

    def __init__(self) -> None:
        client, server = WebSocket(), WebSocket()
        client._peer, server._peer = server, client
        self.client = client
        self.server = server

    @classmethod
    def new(cls) -> WebSocketPair:
        return cls()

    def object_values(self) -> tuple[WebSocket, WebSocket]:
        return (self.client, self.server)

    def values(self) -> tuple[WebSocket, WebSocket]:
        return (self.client, self.server)

    def __iter__(self) -> Any:
        return iter((self.client, self.server))

    def __getitem__(self, index: int | str) -> WebSocket:
        return (self.client, self.server)[int(index)]

    def __len__(self) -> int:
        return 2


def bridge_end(end: WebSocket, deliver: Callable[[Event], None]) -> None:
    """Connect ``end`` to something outside the worker: events for ``end`` go to ``deliver``;
    the caller injects traffic with :func:`inject`. Raises if the end is already in use."""
    if end._bridge is not None or end._sink is not None or end._accepted:
        raise JsTypeError("This WebSocket was already accepted; return the other end of the WebSocketPair.")
    end._bridge = deliver
    pending, end._pending = end._pending, []
    for event in pending:
        deliver(event)


def inject(end: WebSocket, event: Event) -> None:
    """Traffic from outside, arriving at a bridged ``end``: forwarded to its peer."""
    peer = end._peer
    if event[0] == "close":
        if end.readyState == CLOSED and end._close_sent:
            return
        end._close_sent = True
        end.readyState = CLOSED
    if peer is not None:
        peer._receive(event)


class WebSocketClosed(JsException):
    """Raised by a test client when the worker closed the socket."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__("Error", f"WebSocket closed ({code} {reason})".strip())
        self.code = code
        self.reason = reason


async def serve_bridged(end: WebSocket, receive: Any, send: Any, response: Any = None) -> None:
    """Run an accepted ASGI WebSocket connection bridged to ``end`` until either side closes."""
    outgoing: asyncio.Queue[Event] = asyncio.Queue()
    bridge_end(end, outgoing.put_nowait)
    headers = []
    if response is not None:
        headers = [
            (k.encode("latin-1"), v.encode("latin-1"))
            for k, v in response._headers._items
            if k not in ("upgrade", "connection", "sec-websocket-accept", "content-length")
        ]
    await send({"type": "websocket.accept", "headers": headers})

    async def pump_out() -> None:
        while True:
            event = await outgoing.get()
            if event[0] == "message":
                data = event[1]
                if isinstance(data, str):
                    await send({"type": "websocket.send", "text": data})
                else:
                    await send({"type": "websocket.send", "bytes": data})
            elif event[0] == "close":
                await send({"type": "websocket.close", "code": event[1], "reason": event[2]})
                return

    sender = asyncio.ensure_future(pump_out())
    try:
        # uvicorn answers receive() with websocket.disconnect once either side has closed, so one
        # plain loop serves both directions' ends (no per-message futures)
        while True:
            message = await receive()
            kind = message["type"]
            if kind == "websocket.receive":
                text = message.get("text")
                inject(end, ("message", text if text is not None else message.get("bytes") or b""))
            elif kind == "websocket.disconnect":
                code = int(message.get("code") or 1005)
                inject(end, ("close", code, message.get("reason") or "", True))
                break
    except Exception as exc:  # noqa: BLE001 - the connection broke: the worker sees an error event
        inject(end, ("error", exc))
    finally:
        if not sender.done():
            sender.cancel()
        try:
            await sender
        except (asyncio.CancelledError, Exception):  # noqa: BLE001, S110 - connection gone
            pass


class LocalClient:
    """The far side of a client end, in process (the test harness's WebSocket client).

    ``send`` and ``close`` act as a browser's would; ``receive()`` returns the next message (str
    or bytes) or raises :class:`WebSocketClosed` once the worker has closed the socket.
    """

    def __init__(self, end: WebSocket, response: Any = None) -> None:
        self._end = end
        self.response = response
        self._queue: asyncio.Queue[Event] = asyncio.Queue()
        self.close_code: int | None = None
        self.close_reason = ""
        bridge_end(end, self._queue.put_nowait)

    @property
    def closed(self) -> bool:
        return self.close_code is not None

    def send(self, message: str | bytes) -> None:
        if self.closed or self._end.readyState == CLOSED:
            raise WebSocketClosed(self.close_code or 1006, self.close_reason)
        inject(self._end, ("message", message))

    async def receive(self, timeout: float | None = 5.0) -> str | bytes:
        if self.closed and self._queue.empty():
            raise WebSocketClosed(self.close_code or 1006, self.close_reason)
        event = await asyncio.wait_for(self._queue.get(), timeout)
        if event[0] == "message":
            return event[1]
        if event[0] == "close":
            self.close_code, self.close_reason = event[1], event[2]
            raise WebSocketClosed(event[1], event[2])
        raise event[1]

    async def receive_json(self, timeout: float | None = 5.0) -> Any:
        import json

        data = await self.receive(timeout)
        return json.loads(data)

    def close(self, code: int = 1000, reason: str = "") -> None:
        if self.closed:
            return
        self.close_code, self.close_reason = code, reason
        inject(self._end, ("close", code, reason, True))

    async def __aenter__(self) -> LocalClient:
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        self.close()
        await asyncio.sleep(0)
