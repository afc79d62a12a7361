"""``WorkerDispatcher``: the one place where a worker's handlers are called.

The dev server, the cron scheduler, the queues binding and the in-process test harness all go
through this class, so a request behaves the same whichever way it arrives. It owns:

* handler lookup (a fresh ``Default`` instance per event, or the legacy ``on_*`` functions),
  called with workerd's relaxed arity (``fetch(self)`` works);
* the execution context and the ``waitUntil`` work it leaves (:class:`BackgroundTasks`);
* failure containment: an exception, a missing handler, or a non-``Response`` result becomes a
  500 (logged with its traceback) — the caller always gets a ``Response`` back.

No socket is involved: ``await dispatcher.fetch(Request("http://localhost/"))`` works in-process.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Sequence
from typing import Any

from .context import BackgroundTasks, ExecutionContext, ScheduledController, current_context, current_env
from .env import Env
from .errors import (
    HandlerResultError,
    MissingHandlerError,
    brief_error_response,
    describe_result,
    error_response,
    missing_name_line,
)
from .loader import WorkerLoadError, WorkerModule
from .outbound import FetchError
from .pyodide_api.ffi import set_server_loop
from .queue_batch import MessageBatch
from .request import Request
from .response import FetchResponse, Response


class WorkerDispatcher:
    """Runs one worker's ``fetch``/``scheduled``/``queue`` handlers against an ``env``."""

    def __init__(
        self,
        worker: WorkerModule | None,
        env: Env,
        *,
        load_error: WorkerLoadError | None = None,
        log: logging.Logger | None = None,
    ) -> None:
        #: swapped by the host on code reload; ``None`` while the module fails to import
        self.worker = worker
        self.env = env
        #: why ``worker`` is ``None`` (shown as the 500 page until the code is fixed)
        self.load_error = load_error
        self.log = log or logging.getLogger("flarelet")
        self.background = BackgroundTasks()

    # -- contexts ------------------------------------------------------------------------------
    def new_context(self) -> ExecutionContext:
        """A fresh ``ctx``; pass it to :meth:`fetch` and call ``ctx.flush()`` once the response is sent."""
        return ExecutionContext(self.background, self.env)

    async def wait_for_background(self, timeout: float | None = None) -> None:
        """Wait for every pending ``waitUntil`` task (``waitOnExecutionContext`` for all requests)."""
        await self.background.wait(timeout)

    async def _invoke(self, event: str, first: Any, ctx: ExecutionContext) -> Any:
        worker = self.worker
        if worker is None:
            raise self.load_error or WorkerLoadError("no worker is loaded")
        env = self.env
        set_server_loop(asyncio.get_running_loop())
        token_ctx = current_context.set(ctx)
        token_env = current_env.set(env)
        try:
            try:
                result = worker.call(event, ctx, env, (first, env, ctx))
            except LookupError as exc:
                if exc.args == (event,) and type(exc) is LookupError:
                    raise MissingHandlerError(f"Handler does not export a {event}() function.") from None
                raise
            # any awaitable resolving to a Response will do (``return fetch(request)`` un-awaited);
            # a coroutine that resolves to another awaitable is awaited in turn, as JS promises chain
            while inspect.isawaitable(result):
                result = await result
            return result
        finally:
            current_env.reset(token_env)
            current_context.reset(token_ctx)

    # -- events --------------------------------------------------------------------------------
    async def fetch(self, request: Request, ctx: ExecutionContext | None = None) -> Response:
        """Run the ``fetch`` handler; always returns a response (a 500 page on failure).

        With no ``ctx``, ``waitUntil`` work starts as soon as the handler returns; the dev server
        passes its own ``ctx`` and flushes it after the response has been sent.
        """
        own = ctx is None
        if ctx is None:
            ctx = self.new_context()
        try:
            result = await self._invoke("fetch", request, ctx)
            if not isinstance(result, FetchResponse):
                raise HandlerResultError(
                    f"The fetch handler returned {describe_result(result)}, not a Response. Return "
                    "workers.Response(...) (or Response.json(data) for JSON)."
                )
            return result  # type: ignore[return-value]
        except Exception as exc:  # noqa: BLE001 - contained: becomes a 500 page
            return self._failure(exc, request)
        finally:
            if own:
                ctx.flush()

    def _failure(self, exc: Exception, request: Request) -> Response:
        accept = request.headers.get("accept")
        if isinstance(exc, FetchError) or isinstance(exc.__cause__, FetchError):
            self.log.error("Uncaught exception in fetch handler (%s %s)", request.method, request.url, exc_info=exc)
            return brief_error_response(exc, accept)
        if isinstance(exc, WorkerLoadError) and exc.brief:
            self.log.error("%s %s: %s", request.method, request.url, exc.message)
            return brief_error_response(exc, accept)
        worker = self.worker
        missing = missing_name_line(exc, worker.main_path.parent if worker is not None else None)
        if missing is not None:
            self.log.error("%s %s: %s", request.method, request.url, missing, exc_info=exc)
            return brief_error_response(ImportError(missing), accept)
        details = exc.details if isinstance(exc, WorkerLoadError) and exc.details else None
        if isinstance(exc, (HandlerResultError, MissingHandlerError, WorkerLoadError)):
            self.log.error("%s %s: %s%s", request.method, request.url, exc, "\n" + details if details else "")
        else:
            self.log.error("Uncaught exception in fetch handler (%s %s)", request.method, request.url, exc_info=exc)
        return error_response(exc, request.headers.get("accept"), details)

    async def scheduled(self, cron: str = "", scheduled_time: float | None = None) -> dict[str, Any]:
        """Run the ``scheduled`` handler (and its ``waitUntil`` work); ``{"outcome", "noRetry"}``.

        ``scheduled_time`` is in milliseconds since the epoch (Cloudflare's ``scheduledTime``),
        default now.
        """
        when = time.time() * 1000.0 if scheduled_time is None else float(scheduled_time)
        controller = ScheduledController(cron, when)
        ctx = self.new_context()
        outcome = "ok"
        try:
            await self._invoke("scheduled", controller, ctx)
        except Exception as exc:  # noqa: BLE001
            self._log_event_failure("scheduled", exc)
            outcome = "exception"
        for exc in await ctx.settle():
            self.log.error("Uncaught exception in waitUntil() of scheduled event", exc_info=exc)
            outcome = "exception"
        return {"outcome": outcome, "noRetry": controller._no_retry}

    async def queue(self, queue_name: str, messages: Sequence[Any]) -> dict[str, Any]:
        """Run the ``queue`` handler on a batch; the outcome in Miniflare's ``FetcherQueueResult`` shape."""
        batch = MessageBatch(queue_name, messages)
        ctx = self.new_context()
        outcome = "ok"
        try:
            await self._invoke("queue", batch, ctx)
        except Exception as exc:  # noqa: BLE001
            self._log_event_failure("queue", exc)
            outcome = "exception"
        for exc in await ctx.settle():
            self.log.error("Uncaught exception in waitUntil() of queue event", exc_info=exc)
            outcome = "exception"
        return batch.result(outcome)

    def _log_event_failure(self, event: str, exc: Exception) -> None:
        if isinstance(exc, (MissingHandlerError, WorkerLoadError)):
            self.log.error("%s event failed: %s", event, exc)
        else:
            self.log.error("Uncaught exception in %s handler", event, exc_info=exc)

    async def aclose(self, timeout: float = 5.0) -> None:
        """Give pending ``waitUntil`` work ``timeout`` seconds, then cancel it."""
        try:
            await self.background.wait(timeout)
        except TimeoutError:
            self.log.warning("cancelling %d waitUntil task(s) still running at shutdown", self.background.pending)
            await self.background.cancel_all()
