"""``ctx`` of a Durable Object (``DurableObjectState``): id, storage, gates, WebSocket hibernation.

WebSockets are the runtime's (``flarelet.runtime.websocket``); this module only calls the small
duck-typed surface they offer for hibernation (``_hibernate(sink, tags)``, ``readyState``,
``tags``), so the bindings layer never imports the runtime.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from flarelet.bindings.jsobject import JsRangeError, JsTypeError

from .ids import DurableObjectId
from .storage import ObjectStorage

if TYPE_CHECKING:
    from .instance import ObjectSlot

#: Cloudflare's limits on the hibernation API (developers.cloudflare.com/durable-objects/platform/limits)
MAX_TAGS_PER_WEBSOCKET = 10
MAX_TAG_LENGTH = 256
MAX_AUTO_RESPONSE_LENGTH = 2048


class WebSocketRequestResponsePair:
    """``new WebSocketRequestResponsePair(request, response)`` for ``setWebSocketAutoResponse``."""

    def __init__(self, request: str, response: str) -> None:
        if not isinstance(request, str) or not isinstance(response, str):
            raise JsTypeError("WebSocketRequestResponsePair takes two strings")
        if len(request) > MAX_AUTO_RESPONSE_LENGTH or len(response) > MAX_AUTO_RESPONSE_LENGTH:
            raise JsRangeError(
                f"Request and response of an auto-response pair are limited to {MAX_AUTO_RESPONSE_LENGTH} characters."
            )
        self.request = request
        self.response = response

    @classmethod
    def new(cls, request: str, response: str) -> WebSocketRequestResponsePair:
        return cls(request, response)


class DurableObjectState:
    """What a Durable Object's constructor receives as ``ctx`` (also ``state`` in older code)."""

    def __init__(self, slot: ObjectSlot) -> None:
        self._slot = slot
        self.id: DurableObjectId = slot.id
        self.storage: ObjectStorage = slot.storage

    # -- concurrency ---------------------------------------------------------------------------
    def blockConcurrencyWhile(self, callback: Callable[[], Any]) -> asyncio.Task[Any]:  # noqa: N802
        """Run ``callback`` with no other event delivered to this object until it finishes.

        The gate closes at once (so a constructor can call this without awaiting it); the
        returned task resolves to the callback's result.
        """
        return self._slot.block_concurrency(callback)

    block_concurrency_while = blockConcurrencyWhile

    def waitUntil(self, awaitable: Any) -> None:  # noqa: N802 - Cloudflare's name
        if not inspect.isawaitable(awaitable):
            raise JsTypeError(f"waitUntil() expects an awaitable, got {type(awaitable).__name__}")
        self._slot.track(asyncio.ensure_future(awaitable))

    wait_until = waitUntil

    def abort(self, reason: Any = None) -> None:
        """Reset the object: the in-memory instance is dropped (storage stays)."""
        self._slot.reset(reason)

    # -- WebSocket hibernation -------------------------------------------------------------------
    def acceptWebSocket(self, ws: Any, tags: list[str] | None = None) -> None:  # noqa: N802
        tags = list(tags or [])
        if len(tags) > MAX_TAGS_PER_WEBSOCKET:
            raise JsRangeError(f"A WebSocket can have at most {MAX_TAGS_PER_WEBSOCKET} tags; {len(tags)} were given.")
        for tag in tags:
            if not isinstance(tag, str):
                raise JsTypeError("WebSocket tags must be strings")
            if len(tag) > MAX_TAG_LENGTH:
                raise JsRangeError(f"A WebSocket tag is limited to {MAX_TAG_LENGTH} characters.")
        hibernate = getattr(ws, "_hibernate", None)
        if hibernate is None:
            raise JsTypeError("acceptWebSocket() expects the server end of a WebSocketPair")
        hibernate(self._slot, tags)
        self._slot.websockets.append(ws)

    accept_websocket = acceptWebSocket

    def getWebSockets(self, tag: str | None = None) -> list[Any]:  # noqa: N802 - Cloudflare's name
        sockets = [ws for ws in self._slot.websockets if ws.readyState in (0, 1)]
        if tag is not None:
            sockets = [ws for ws in sockets if tag in ws.tags]
        return sockets

    get_websockets = getWebSockets

    def getTags(self, ws: Any) -> list[str]:  # noqa: N802 - Cloudflare's name
        if ws not in self._slot.websockets:
            raise JsTypeError("getTags() was called on a WebSocket that this object did not accept")
        return list(ws.tags)

    get_tags = getTags

    def setWebSocketAutoResponse(self, pair: WebSocketRequestResponsePair | None = None) -> None:  # noqa: N802
        self._slot.auto_response = pair

    def getWebSocketAutoResponse(self) -> WebSocketRequestResponsePair | None:  # noqa: N802
        return self._slot.auto_response

    def getWebSocketAutoResponseTimestamp(self, ws: Any) -> float | None:  # noqa: N802
        stamp = getattr(ws, "_auto_response_at", None)
        return None if stamp is None else stamp

    set_websocket_auto_response = setWebSocketAutoResponse
    get_websocket_auto_response = getWebSocketAutoResponse
    get_websocket_auto_response_timestamp = getWebSocketAutoResponseTimestamp

    def setHibernatableWebSocketEventTimeout(self, timeout_ms: int | None = None) -> None:  # noqa: N802
        self._slot.event_timeout_ms = timeout_ms

    def getHibernatableWebSocketEventTimeout(self) -> int | None:  # noqa: N802
        return self._slot.event_timeout_ms
