"""One Durable Object id's live side: its single instance, its gates, its alarm, its WebSockets.

An :class:`ObjectSlot` exists per id for as long as the namespace does; the user's object inside
it is created on the first event (``cls(ctx, env)``) and may be dropped again: ``ctx.abort()``, a
code reload, or *hibernation* -- when the only things keeping it are hibernatable WebSockets and
it has been idle for ``hibernate_after_s`` (Cloudflare's 10 s), the instance is evicted; the
sockets stay open, and the next message builds a fresh instance (constructor again, in-memory
fields gone, storage and attachments kept), as on Cloudflare.

Events (``fetch``, RPC calls, ``alarm``, WebSocket messages) run one at a time in the input-gate
sense: a storage call never suspends (see :mod:`.storage`), so nothing interleaves with it; an
event waits while ``blockConcurrencyWhile`` holds the gate (the constructor's included); when an
event ends, its writes are committed before its result is handed back (the output gate).

Alarms: ``setAlarm`` schedules a timer; ``alarm()`` runs as an event with ``{retryCount,
isRetry}``; when it raises it is retried with exponential backoff (2 s, 4 s, 8 s, ... up to 6
retries: Cloudflare's policy; both numbers are settings), and the alarm is cleared once it succeeds
unless the handler set a new one.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from flarelet.bindings.jsobject import JsDict, JsException, JsTypeError

from .ids import DurableObjectId
from .state import DurableObjectState, WebSocketRequestResponsePair
from .storage import ObjectDatabase, ObjectStorage

if TYPE_CHECKING:
    from .namespace import DurableObjectNamespace

log = logging.getLogger("flarelet")


class ObjectSlot:
    """The home of one object id (see module docstring)."""

    def __init__(self, namespace: DurableObjectNamespace, object_id: DurableObjectId, db: ObjectDatabase) -> None:
        self.namespace = namespace
        self.id = object_id
        self.db = db
        self.storage = ObjectStorage(
            db, sqlite=namespace.sqlite, limits=namespace.settings.limits, on_alarm_change=self._alarm_changed
        )
        self.state = DurableObjectState(self)
        self.websockets: list[Any] = []
        self.auto_response: WebSocketRequestResponsePair | None = None
        self.event_timeout_ms: int | None = None
        self._object: Any = None
        self._constructing: asyncio.Future[Any] | None = None
        self._gates: list[asyncio.Future[None]] = []
        self._active = 0
        self._last_active = time.monotonic()
        self._alarm_handle: asyncio.TimerHandle | None = None
        self._evict_handle: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Future[Any]] = set()
        self.generation = 0

    # -- the instance -------------------------------------------------------------------------
    @property
    def live(self) -> bool:
        return self._object is not None

    async def instance(self) -> Any:
        obj = self._object
        if obj is not None:
            return obj
        if self._constructing is not None:
            return await asyncio.shield(self._constructing)
        loop = asyncio.get_running_loop()
        self._constructing = loop.create_future()
        try:
            cls = self.namespace.resolve_class()
            self.state = DurableObjectState(self)
            with self.namespace.host_env_scope():
                obj = cls(self.state, self.namespace.env())
            self._object = obj
            self.generation += 1
            self._constructing.set_result(obj)
            return obj
        except BaseException as exc:
            self._constructing.set_exception(exc)
            self._constructing.exception()  # retrieved: later waiters re-raise it themselves
            raise
        finally:
            self._constructing = None

    def reset(self, reason: Any = None) -> None:
        """Drop the in-memory instance (``ctx.abort``, code reload); storage and sockets stay."""
        self.db.flush()
        self._object = None
        if reason is not None:
            log.info("Durable Object %s reset: %s", self.id, reason)

    # -- gates --------------------------------------------------------------------------------
    def block_concurrency(self, callback: Callable[[], Any]) -> asyncio.Task[Any]:
        loop = asyncio.get_running_loop()
        gate: asyncio.Future[None] = loop.create_future()
        self._gates.append(gate)

        timeout = self.namespace.settings.block_concurrency_timeout_s

        async def run() -> Any:
            try:
                result = callback()
                if inspect.isawaitable(result):
                    result = await asyncio.wait_for(result, timeout)
                return result
            except TimeoutError:
                self.reset("blockConcurrencyWhile() callback timed out")
                raise JsException(
                    "Error",
                    f"A call to blockConcurrencyWhile() in a Durable Object waited for too long ({timeout:g} s).",
                ) from None
            except BaseException:
                self.reset("blockConcurrencyWhile() callback failed")
                raise
            finally:
                self._gates.remove(gate)
                gate.set_result(None)
                self.db.flush()

        task = loop.create_task(run())
        self.track(task)
        return task

    async def _enter(self) -> None:
        while self._gates:
            await asyncio.wait(list(self._gates))

    def track(self, task: asyncio.Future[Any]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Future[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            log.error("Durable Object %s: uncaught error in background work: %r", self.id, exc)

    # -- events --------------------------------------------------------------------------------
    async def deliver(self, call: Callable[[Any], Any]) -> Any:
        """Run one event against the instance: ``call(obj)`` (awaited if it returns an awaitable)."""
        obj = self._object
        if obj is None:
            obj = await self.instance()
        if self._gates:
            await self._enter()
            obj = await self.instance()
        self._active += 1
        try:
            with self.namespace.host_env_scope():
                result = call(obj)
                if inspect.isawaitable(result):
                    result = await result
            return result
        finally:
            self._active -= 1
            self._last_active = time.monotonic()
            self.db.flush()
            if self.websockets and not self._active:
                self._schedule_hibernation()

    def spawn(self, coro: Any) -> None:
        self.track(asyncio.ensure_future(coro))

    # -- hibernation ---------------------------------------------------------------------------
    def _schedule_hibernation(self) -> None:
        after = self.namespace.settings.hibernate_after_s
        if after is None or after < 0 or self._evict_handle is not None:
            return  # a pending check re-arms itself for the rest of the idle time
        self._evict_handle = asyncio.get_running_loop().call_later(after, self._maybe_hibernate)

    def _maybe_hibernate(self) -> None:
        self._evict_handle = None
        after = self.namespace.settings.hibernate_after_s or 0
        if self._active or self._gates or self._object is None:
            return
        idle = time.monotonic() - self._last_active
        if idle < after:
            self._evict_handle = asyncio.get_running_loop().call_later(after - idle, self._maybe_hibernate)
            return
        if not any(ws.readyState in (0, 1) for ws in self.websockets):
            return
        self.db.flush()
        self._object = None
        log.debug("Durable Object %s hibernated (%d WebSockets kept)", self.id, len(self.websockets))

    # -- WebSocket events (called by hibernated sockets) ----------------------------------------
    def ws_message(self, ws: Any, data: str | bytes) -> None:
        pair = self.auto_response
        if pair is not None and data == pair.request:
            ws._auto_response_at = time.time() * 1000.0
            ws.send(pair.response)
            return
        self._start(self._ws_event("webSocketMessage", ws, data))

    def ws_close(self, ws: Any, code: int, reason: str, was_clean: bool) -> None:
        self._start(self._ws_event("webSocketClose", ws, code, reason, was_clean, remove=True))

    def ws_error(self, ws: Any, error: BaseException) -> None:
        self._start(self._ws_event("webSocketError", ws, error, remove=True))

    def _start(self, coro: Any) -> None:
        """Start a WebSocket event at once, as an eager task would: most handlers finish without
        suspending (storage never suspends), and then no task is made at all. A handler that does
        suspend is carried on by a task in the same context. Events arriving while one is being
        started this way (a handler sending to a socket of this worker) get a task of their own."""
        if _eager_depth.get():
            self.spawn(coro)
            return
        context = contextvars.copy_context()
        context.run(_eager_depth.set, True)
        try:
            yielded = context.run(coro.send, None)
        except StopIteration:
            return
        task = asyncio.get_running_loop().create_task(_carry_on(coro, yielded), context=context)
        self.track(task)

    async def _ws_event(self, name: str, ws: Any, *args: Any, remove: bool = False) -> None:
        try:

            def call(obj: Any) -> Any:
                handler = getattr(obj, name, None)
                if handler is None:
                    if name == "webSocketMessage":
                        raise JsTypeError(
                            f"{type(obj).__name__} accepted a hibernatable WebSocket but has no {name}() handler"
                        )
                    return None
                return handler(ws, *args)

            await self.deliver(call)
        except Exception:  # noqa: BLE001 - a handler's failure is logged, the object stays up
            log.exception("Durable Object %s: %s() failed", self.id, name)
        finally:
            if remove and ws in self.websockets:
                self.websockets.remove(ws)

    # -- alarms --------------------------------------------------------------------------------
    def _alarm_changed(self, millis: float | None) -> None:
        if millis is not None and self.namespace.class_has("alarm") is False:
            raise JsTypeError("Your Durable Object class must have an alarm() handler in order to call setAlarm()")
        self.schedule_alarm(millis, 0)

    def schedule_alarm(self, millis: float | None, retry: int) -> None:
        if self._alarm_handle is not None:
            self._alarm_handle.cancel()
            self._alarm_handle = None
        if millis is None:
            return
        loop = asyncio.get_running_loop()
        delay = max(0.0, millis / 1000.0 - time.time())
        self._alarm_handle = loop.call_later(delay, lambda: self.spawn(self._run_alarm(millis, retry)))

    async def _run_alarm(self, scheduled: float, retry: int) -> None:
        self._alarm_handle = None
        if self.storage.alarm_time() != scheduled:
            return
        info = JsDict(retryCount=retry, isRetry=retry > 0)

        def call(obj: Any) -> Any:
            handler = obj.alarm
            try:
                takes = len(inspect.signature(handler).parameters)
            except (TypeError, ValueError):
                takes = 1
            return handler(info) if takes else handler()

        settings = self.namespace.settings
        try:
            await self.deliver(call)
        except Exception as exc:  # noqa: BLE001 - retried as Cloudflare retries alarms
            if retry < settings.alarm_max_retries:
                delay = settings.alarm_retry_base_s * (2**retry)
                log.warning("Durable Object %s: alarm() failed (%r); retry %d in %.1fs", self.id, exc, retry + 1, delay)
                self._alarm_handle = asyncio.get_running_loop().call_later(
                    delay, lambda: self.spawn(self._run_alarm(scheduled, retry + 1))
                )
            else:
                log.error("Durable Object %s: alarm() failed %d times; giving up", self.id, retry + 1)
                self._clear_alarm_if(scheduled)
            return
        self._clear_alarm_if(scheduled)

    def _clear_alarm_if(self, scheduled: float) -> None:
        if self.storage.alarm_time() == scheduled:
            self.db.begin()
            self.db.internal("DELETE FROM _cf_METADATA WHERE key = 'alarm'")
            self.db.flush()

    # -- shutdown ------------------------------------------------------------------------------
    async def aclose(self) -> None:
        for handle in (self._alarm_handle, self._evict_handle):
            if handle is not None:
                handle.cancel()
        for ws in list(self.websockets):
            try:
                getattr(ws, "_shutdown", ws.close)(1001, "Durable Object is shutting down")
            except Exception:  # noqa: BLE001, S110 - already closed
                pass
        for task in list(self._tasks):
            task.cancel()
        self.db.close()


#: set while a WebSocket event is being started eagerly (see ``ObjectSlot._start``)
_eager_depth: contextvars.ContextVar[bool] = contextvars.ContextVar("flarelet_do_eager", default=False)


async def _carry_on(coro: Any, yielded: Any) -> Any:
    """Drive a coroutine that already ran up to its first suspension, as its own task would."""
    _eager_depth.set(False)
    while True:
        try:
            if yielded is None:
                await asyncio.sleep(0)  # a bare yield: one turn of the loop
            else:
                # the coroutine yielded a future it is blocked on; take it over as a Task does
                yielded._asyncio_future_blocking = False
                await yielded
        except BaseException as exc:  # noqa: BLE001 - handed to the coroutine, as a task does
            try:
                yielded = coro.throw(exc)
            except StopIteration as stop:
                return stop.value
            continue
        try:
            yielded = coro.send(None)
        except StopIteration as stop:
            return stop.value


class RpcError(JsException, TypeError):
    def __init__(self, message: str) -> None:
        super().__init__("TypeError", message)
