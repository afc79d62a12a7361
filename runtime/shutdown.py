"""Ctrl-C for the servers (``flarelet dev``, ``flarelet ai serve``): drain once, quit on the second.

uvicorn's own handling drains silently on the first Ctrl-C (a transcription in flight can take
seconds, so people press again), and on the second it abandons the shutdown half-way: the
lifespan task and the request tasks are cancelled when the loop closes (pages of tracebacks), and
the interpreter then exits while inference threads still run native code, which aborts the
process (``terminate called without an active exception``, status 134).

:class:`GracefulServer` replaces uvicorn's signal handler:

* first SIGINT/SIGTERM: stop accepting connections and finish the requests in flight, saying how
  many and that a second Ctrl-C quits;
* second signal (or the first while still starting, when nothing is in flight to finish): flush
  the logs and leave with :func:`os._exit` (status 128 + signal number: 130 for Ctrl-C). No Python
  finalisation runs, so no native thread can abort it; storage stays safe because every
  acknowledged write is already durable (SQLite in WAL with ``synchronous=FULL``, R2 bodies
  renamed into place after fsync) -- the same guarantee as a SIGKILL.

The signal is not re-raised after a graceful drain (uvicorn's default): the command returns 0.

:class:`PromptServer` (GracefulServer's base, and what a server in a thread runs) stops without
uvicorn's fixed waits: uvicorn looks at ``should_exit`` every 0.1 s and, shutting down, sleeps
another 0.1 s after asking open connections to close, even when there are none -- 0.2 s for every
server a test suite starts and stops.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Callable
from types import FrameType

import uvicorn

#: flushed before a hard exit, so buffered request lines are not lost (set by the server's owner)
FlushHook = Callable[[], None]


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def hard_exit(code: int, flush: FlushHook | None = None) -> None:
    """Flush what is buffered (request log, logging handlers, stdio) and end the process now."""
    try:
        if flush is not None:
            flush()
        for name in ("flarelet", "uvicorn", ""):
            for handler in logging.getLogger(name).handlers:
                handler.flush()
        sys.stdout.flush()
        sys.stderr.flush()
    except Exception:  # noqa: BLE001,S110 -- a closed pipe must not keep the process alive
        pass
    os._exit(code)


class PromptServer(uvicorn.Server):
    """``uvicorn.Server`` that exits as soon as :meth:`request_exit` is called (from any thread)
    and, with no connection open, shuts down without uvicorn's fixed 0.1 s wait."""

    _loop: asyncio.AbstractEventLoop | None = None
    _wake: asyncio.Event | None = None

    def request_exit(self) -> None:
        """``should_exit``, and wake the main loop now rather than at its next 0.1 s tick."""
        self.should_exit = True
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None:
            try:
                loop.call_soon_threadsafe(wake.set)
            except RuntimeError:  # the loop has closed: the server is gone already
                pass

    async def main_loop(self) -> None:
        """uvicorn's loop of ``on_tick`` every 0.1 s, with a wake-up for :meth:`request_exit`."""
        self._loop, self._wake = asyncio.get_running_loop(), asyncio.Event()
        counter = 0
        should_exit = await self.on_tick(counter)
        while not should_exit:
            counter = (counter + 1) % 864000
            try:
                await asyncio.wait_for(self._wake.wait(), 0.1)
            except TimeoutError:
                pass
            should_exit = await self.on_tick(counter)

    async def shutdown(self, sockets: list | None = None) -> None:
        if self.server_state.connections or self.server_state.tasks:
            await super().shutdown(sockets=sockets)  # drain them, uvicorn's way
            return
        logging.getLogger("uvicorn.error").info("Shutting down")
        for server in self.servers:
            server.close()
        for sock in sockets or []:
            sock.close()
        if not self.force_exit:
            await self.lifespan.shutdown()


class GracefulServer(PromptServer):
    """``uvicorn.Server`` whose first signal drains (announced) and second exits at once."""

    def __init__(
        self,
        config: uvicorn.Config,
        *,
        say: Callable[[str], None],
        flush: FlushHook | None = None,
    ) -> None:
        super().__init__(config)
        self._say = say
        self._flush = flush

    @property
    def requests_in_flight(self) -> int:
        """Requests being answered now (uvicorn keeps one task per request cycle)."""
        return len(self.server_state.tasks)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:  # noqa: ARG002 -- signal handler API
        name = "Ctrl-C" if sig == signal.SIGINT else signal.Signals(sig).name
        if self.should_exit or not self.started:
            pending = self.requests_in_flight
            if self.started:
                detail = f", abandoning {_plural(pending, 'request')}" if pending else ""
                self._say(f"{name} again: quitting now{detail}")
            hard_exit(128 + sig, self._flush)
        self.should_exit = True
        pending = self.requests_in_flight
        if pending:
            self._say(
                f"Shutting down: finishing {_plural(pending, 'request')} in flight (press Ctrl-C again to quit now)"
            )
        else:
            self._say("Shutting down")
