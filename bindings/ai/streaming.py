"""A streamed Workers AI answer: server-sent-event bytes handed from a service worker to the caller.

A task that streams (text generation) makes bytes round by round on a worker thread; the service
pushes each round's bytes into an :class:`AiStream` (:meth:`AiStream.push`, thread-safe), and the
caller -- the ``env.AI`` binding (a ``ReadableStream``-like body for ``Response``) or the REST
route (raw SSE) -- async-iterates it. The stream:

* ends when the job finishes (the task's closing events are the last bytes);
* ends early when the service's time limit passes, and then stops the job;
* stops the job when the caller stops reading (client disconnect, ``break``, garbage collection),
  so nothing generates for nobody -- the same cancellation as a whole answer's.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

log = logging.getLogger("flarelet.ai")

_END = object()


class AiStream:
    """Async-iterable bytes of one streamed request (one reader)."""

    media_type = "text/event-stream"

    def __init__(self, loop: asyncio.AbstractEventLoop, cancel: threading.Event, deadline: float) -> None:
        self._loop = loop
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._cancel = cancel
        self._deadline = deadline
        self._done = False
        self._read = False
        self._first: bytes | None = None
        self.timed_out = False

    # -- the worker's side (any thread) ---------------------------------------------------------

    def push(self, chunks: list[bytes]) -> None:
        if chunks:
            self._put(b"".join(chunks))

    def close(self, error: BaseException | None = None) -> None:
        self._put(error if error is not None else _END)

    def _put(self, item: Any) -> None:
        try:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, item)
        except RuntimeError:  # the caller's loop is closed: nobody reads; stop the work
            self._cancel.set()

    # -- the caller's side ------------------------------------------------------------------------

    async def start(self) -> AiStream:
        """Wait for the first bytes (or the request's error, raised): read before the answer is
        given, so that a refusal is a normal error rather than a broken stream."""
        item = await self._next()
        if item is _END:
            self._done = True
            if self.timed_out:
                from . import errors

                raise errors.timeout("no output within the time limit")
        elif isinstance(item, BaseException):
            self._done = True
            raise item
        else:
            self._first = item
        return self

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self.chunks()

    async def _next(self) -> Any:
        remaining = self._deadline - time.monotonic()
        try:
            return await asyncio.wait_for(self._queue.get(), max(0.0, remaining))
        except TimeoutError:
            self.timed_out = True
            self._cancel.set()
            return _END

    def chunks(self) -> AsyncIterator[bytes]:
        if self._read:
            from flarelet.bindings.jsobject import JsTypeError

            raise JsTypeError("This ReadableStream is currently locked to a reader.")
        self._read = True
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[bytes]:
        try:
            first, self._first = self._first, None
            if first:
                yield first
            while not self._done:
                item = await self._next()
                if item is _END:
                    break
                if isinstance(item, BaseException):  # after bytes went out: the stream just ends
                    log.warning("Workers AI stream ended early: %s", item)
                    break
                yield item
            self._done = True
        finally:
            if not self._done:  # the reader went away: stop generating for nobody
                self._cancel.set()
