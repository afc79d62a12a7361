"""The execution context (``ctx``) a handler receives, and the work it leaves behind.

``ctx.waitUntil(coro)`` is how a worker does something after its response is on the wire
(logging, cache writes). On Cloudflare the promise outlives the response and a failure is logged,
never sent to the client. Here a coroutine handed to ``waitUntil`` is held until the dev server
has sent the response (:meth:`ExecutionContext.flush`), then runs as a task tracked by
:class:`BackgroundTasks`; its exception is logged with a traceback. Awaitables that are already
running (tasks, futures) are simply tracked.

The current context is also kept in a context variable so ``workers.wait_until(...)`` (the
module-level form from ``cloudflare:workers``) finds the request it belongs to.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import logging
import time
from collections.abc import Awaitable
from typing import Any

log = logging.getLogger("flarelet")

current_context: contextvars.ContextVar[ExecutionContext | None] = contextvars.ContextVar(
    "flarelet_execution_context", default=None
)
#: the env of the worker being run (``workers.env``); set by the dispatcher per call
current_env: contextvars.ContextVar[Any] = contextvars.ContextVar("flarelet_env", default=None)


class BackgroundTasks:
    """Every ``waitUntil`` task of a worker, so tests and shutdown can wait for them."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Future[Any]] = set()

    def add(
        self, awaitable: Awaitable[Any], label: str = "waitUntil", context: contextvars.Context | None = None
    ) -> asyncio.Future[Any]:
        if asyncio.iscoroutine(awaitable):
            task: asyncio.Future[Any] = asyncio.get_running_loop().create_task(awaitable, context=context)
        else:
            task = asyncio.ensure_future(awaitable)
        self._tasks.add(task)
        task.add_done_callback(lambda t: self._done(t, label))
        return task

    def _done(self, task: asyncio.Future[Any], label: str) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            log.error("Uncaught exception in %s()", label, exc_info=(type(exc), exc, exc.__traceback__))

    @property
    def pending(self) -> int:
        return len(self._tasks)

    async def wait(self, timeout: float | None = None) -> None:
        """Wait until no background work is left (work that adds more work is waited for too)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._tasks:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            done, _ = await asyncio.wait(set(self._tasks), timeout=remaining)
            if deadline is not None and time.monotonic() >= deadline and self._tasks:
                raise TimeoutError(f"{len(self._tasks)} waitUntil task(s) still running after {timeout}s")
            await asyncio.sleep(0)  # let done-callbacks run

    async def cancel_all(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)


class ExecutionContext:
    """``ctx`` / ``self.ctx``: ``waitUntil``, ``passThroughOnException`` (Cloudflare's names and snake_case)."""

    __slots__ = ("_tracker", "_deferred", "_flushed", "_tasks", "_env", "passing_through", "props")

    def __init__(self, tracker: BackgroundTasks, env: Any = None) -> None:
        self._tracker = tracker
        self._env = env
        self._deferred: list[Awaitable[Any]] | None = None
        self._tasks: list[asyncio.Future[Any]] = []
        self._flushed = False
        self.passing_through = False
        self.props: dict[str, Any] = {}

    def waitUntil(self, awaitable: Awaitable[Any]) -> None:  # noqa: N802 - Cloudflare's name
        if not inspect.isawaitable(awaitable):
            raise TypeError(f"waitUntil() expects a coroutine or awaitable, got {type(awaitable).__name__}")
        if self._flushed or not inspect.iscoroutine(awaitable):
            self._tasks.append(self._tracker.add(awaitable, context=self._task_context()))
            return
        if self._deferred is None:
            self._deferred = []
        self._deferred.append(awaitable)

    wait_until = waitUntil

    def passThroughOnException(self) -> None:  # noqa: N802 - Cloudflare's name
        """Accepted for compatibility; locally there is no origin to fall through to."""
        self.passing_through = True

    pass_through_on_exception = passThroughOnException

    def flush(self) -> None:
        """Start the deferred ``waitUntil`` coroutines (called once the response has been sent)."""
        self._flushed = True
        deferred, self._deferred = self._deferred, None
        if deferred:
            context = self._task_context()
            for coro in deferred:
                self._tasks.append(self._tracker.add(coro, context=context))

    async def settle(self) -> list[BaseException]:
        """Flush, wait for this context's waitUntil work, and return its exceptions (scheduled/queue)."""
        self.flush()
        errors: list[BaseException] = []
        while self._tasks:
            tasks, self._tasks = self._tasks, []
            for result in await asyncio.gather(*tasks, return_exceptions=True):
                if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
                    errors.append(result)
        return errors

    def _task_context(self) -> contextvars.Context:
        """Context variables for waitUntil work: this request and its env (``workers.wait_until`` works there)."""
        context = contextvars.copy_context()
        context.run(current_context.set, self)
        context.run(current_env.set, self._env)
        return context

    def discard(self) -> None:
        """Close deferred coroutines that will never run (the worker was torn down)."""
        deferred, self._deferred = self._deferred, None
        for coro in deferred or ():
            coro.close()  # type: ignore[attr-defined]


class ScheduledController:
    """The ``controller`` of a ``scheduled`` handler (``cron``, ``scheduledTime`` in ms)."""

    def __init__(self, cron: str, scheduled_time_ms: float) -> None:
        self.cron = cron
        self.scheduledTime = scheduled_time_ms
        self.type = "scheduled"
        self._no_retry = False

    @property
    def scheduled_time(self) -> float:
        return self.scheduledTime

    def noRetry(self) -> None:  # noqa: N802 - Cloudflare's name
        self._no_retry = True

    no_retry = noRetry

    def __repr__(self) -> str:
        return f"ScheduledController(cron={self.cron!r}, scheduledTime={self.scheduledTime!r})"


class env_scope:  # noqa: N801 - used like a function: ``with env_scope(env):``
    """``workers.env`` is ``env`` inside (a Durable Object's events run with their worker's env).

    A class rather than ``@contextmanager``: it wraps every Durable Object event, and a generator
    context manager costs several times more per use."""

    __slots__ = ("_env", "_token")

    def __init__(self, env: Any) -> None:
        self._env = env
        self._token: Any = None

    def __enter__(self) -> None:
        self._token = current_env.set(self._env)

    def __exit__(self, *exc_info: Any) -> None:
        current_env.reset(self._token)
