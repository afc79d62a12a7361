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
from collections.abc import Mapping, Sequence
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
from .loader import WorkerLoadError, WorkerModule, active_space
from .outbound import FetchError
from .pyodide_api.ffi import set_server_loop
from .queue_batch import MessageBatch
from .request import Request
from .response import FetchResponse, Response
from .rpc import RuntimeTypeError


class WorkerDispatcher:
    """Runs one worker's ``fetch``/``scheduled``/``queue`` handlers against an ``env``."""

    def __init__(
        self,
        worker: WorkerModule | None,
        env: Env,
        *,
        load_error: WorkerLoadError | None = None,
        log: logging.Logger | None = None,
        space: str = "",
    ) -> None:
        #: swapped by the host on code reload; ``None`` while the module fails to import
        self.worker = worker
        #: the loader space of this worker (imports inside its handlers search its folder)
        self.space = space
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
        token_space = active_space.set(self.space)
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
            active_space.reset(token_space)
            current_env.reset(token_env)
            current_context.reset(token_ctx)

    def entrypoint_class(self, entrypoint: str | None) -> type | None:
        """The class answering ``entrypoint`` (``None``: the default export) or ``None`` if not exported."""
        worker = self.worker
        if worker is None:
            raise self.load_error or WorkerLoadError("no worker is loaded")
        return worker.entrypoint_class(entrypoint)

    async def call_entrypoint(
        self,
        entrypoint: str | None,
        method: str,
        args: Sequence[Any],
        kwargs: dict[str, Any],
        props: Mapping[str, Any] | None = None,
    ) -> Any:
        """Call ``method`` on a fresh instance of an entrypoint class (one instance per call, as workerd).

        Raises ``TypeError("Method x does not exist")`` (workerd's text) when the instance has no
        such callable. Arguments arrive already converted by :mod:`flarelet.runtime.rpc`; the caller
        converts the result.
        """
        cls = self.entrypoint_class(entrypoint)
        if cls is None:
            raise RuntimeTypeError(_no_entrypoint(entrypoint))
        ctx = self.new_context()
        ctx.props = dict(props or {})
        token_ctx = current_context.set(ctx)
        token_env = current_env.set(self.env)
        token_space = active_space.set(self.space)
        try:
            instance = cls(ctx, self.env)
            target = getattr(instance, method, None) if not method.startswith("__") else None
            if not callable(target):
                raise RuntimeTypeError(f"Method {method} does not exist")
            result = target(*args, **kwargs)
            if inspect.isawaitable(result):
                result = await result
            return result
        finally:
            active_space.reset(token_space)
            current_env.reset(token_env)
            current_context.reset(token_ctx)
            ctx.flush()

    async def run_workflow(self, class_name: str, event: Any, step: Any) -> Any:
        """``run(event, step)`` on a fresh instance of the exported ``WorkflowEntrypoint`` class ``class_name``."""
        from .workers_sdk import WorkflowEntrypoint

        worker = self.worker
        if worker is None:
            raise self.load_error or WorkerLoadError("no worker is loaded")
        cls = getattr(worker.module, class_name, None)
        if not (inspect.isclass(cls) and issubclass(cls, WorkflowEntrypoint)):
            raise RuntimeTypeError(
                f'The worker does not export a WorkflowEntrypoint class named "{class_name}" '
                "(the class_name of its [[workflows]] binding)."
            )
        ctx = self.new_context()
        token_ctx = current_context.set(ctx)
        token_env = current_env.set(self.env)
        token_space = active_space.set(self.space)
        try:
            instance: Any = cls(ctx, self.env)  # the Worker's subclass defines run()
            result = instance.run(event, step)
            if inspect.isawaitable(result):
                result = await result
            return result
        finally:
            active_space.reset(token_space)
            current_env.reset(token_env)
            current_context.reset(token_ctx)
            ctx.flush()

    async def fetch_entrypoint(
        self, entrypoint: str | None, request: Request, props: Mapping[str, Any] | None = None
    ) -> Response:
        """``fetch`` of an entrypoint (the default one goes through :meth:`fetch`); a 500 page on failure."""
        if entrypoint is None or entrypoint == "default":
            ctx = self.new_context()
            ctx.props = dict(props or {})
            try:
                return await self.fetch(request, ctx)
            finally:
                ctx.flush()
        try:
            result = await self.call_entrypoint(entrypoint, "fetch", (request,), {}, props)
            if not isinstance(result, FetchResponse):
                raise HandlerResultError(
                    f"The fetch handler returned {describe_result(result)}, not a Response. Return "
                    "workers.Response(...) (or Response.json(data) for JSON)."
                )
            return result  # type: ignore[return-value]
        except Exception as exc:  # noqa: BLE001 - contained: becomes a 500 page
            return self._failure(exc, request)

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
        for failure in await ctx.settle():
            self.log.error("Uncaught exception in waitUntil() of scheduled event", exc_info=failure)
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
        for failure in await ctx.settle():
            self.log.error("Uncaught exception in waitUntil() of queue event", exc_info=failure)
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


def _no_entrypoint(entrypoint: str | None) -> str:
    if entrypoint is None or entrypoint == "default":
        return "The worker has no default export (class Default(WorkerEntrypoint))."
    return f'The worker does not export an entrypoint named "{entrypoint}" (a WorkerEntrypoint subclass).'
