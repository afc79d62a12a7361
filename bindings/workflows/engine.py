"""The Workflows engine of one workflow: instances as asyncio tasks over persisted history.

Each live instance is one task running ``run(event, step)`` of the workflow class (found through
the host: ``host.run_workflow(script_name, class_name, event, step)``). Its history (step
results, sleeps, consumed events) is read from the store when the task starts; ``run`` replays
from the top and every completed step returns its stored result, so after a restart -- or a
``resume`` -- the instance goes on after its last completed step. On ``start`` the engine
relaunches every instance whose status is live (queued, running, waiting, waitingForPause).

Statuses follow Cloudflare: ``queued`` -> ``running`` (``waiting`` while sleeping or waiting
for an event) -> ``complete`` | ``errored`` | ``terminated``; ``pause`` makes a running instance
``waitingForPause`` until its current step ends (at once when it sleeps or waits), then
``paused``; ``resume`` queues it again; ``restart`` forgets its history and runs it anew.

Waiting goes through the engine's :class:`~flarelet.bindings.workflows.clock.Clock`, so tests
can move time (:meth:`Engine.settle` tells them when every instance is blocked).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as _dt
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from flarelet.bindings.jsobject import JsDict
from flarelet.bindings.registry import WorkerHost

from . import codec
from .clock import Clock, ManualClock
from .errors import WorkflowError, error_record
from .options import ID_PATTERN, WorkflowOptions
from .step import PythonStep, StepAbort, StepContext
from .store import StepRow, WorkflowStore

FINISHED = ("complete", "errored", "terminated")
#: real seconds :meth:`Engine.settle` waits for running step code before giving up
SETTLE_TIMEOUT_S = 60.0
#: real seconds of quiet after which blocked instances count as idle
_QUIET_S = 0.02


class InstanceRun:
    """One execution of one instance (a task); what :class:`StepContext` calls back into."""

    def __init__(self, engine: Engine, instance_id: str) -> None:
        self.engine = engine
        self.instance_id = instance_id
        self.history: dict[str, StepRow] = {}
        self.task: asyncio.Task[None] | None = None
        #: step callbacks running now (user code inside ``step.do``)
        self.callbacks = 0
        #: waits on the clock or an event now
        self.blocked = 0
        self.pause_requested = False
        self.event_arrived = asyncio.Event()

    # -- storage ------------------------------------------------------------------------------
    async def put_step(self, key: str, state: str, **fields: Any) -> None:
        await self.engine.store.put_step(self.instance_id, key, state, **fields)
        self.engine.touch()

    # -- waiting ------------------------------------------------------------------------------
    async def _status_while(self, waiting: Callable[[], Awaitable[Any]]) -> Any:
        engine = self.engine
        await self.check_pause()  # a pause asked for while a step ran takes effect before any wait
        await engine.store.set_status(self.instance_id, "waiting")
        self.blocked += 1
        engine.touch()
        try:
            result = await waiting()
        finally:
            self.blocked -= 1
            engine.touch()
        if not self.pause_requested:
            await engine.store.set_status(self.instance_id, "running")
        return result

    async def wait_clock(self, when: float) -> None:
        if when <= self.engine.clock.now():
            return
        await self._status_while(lambda: self.engine.clock.sleep_until(when))

    async def wait_event(self, event_type: str, key: str, deadline: float) -> str | None:
        """The stored value of the consumed event, or ``None`` at ``deadline``."""
        store = self.engine.store
        value = await store.consume_event(self.instance_id, event_type, key)
        if value is not None:
            return value

        async def waiting() -> str | None:
            clock = self.engine.clock
            timer = asyncio.ensure_future(clock.sleep_until(deadline))
            try:
                while True:
                    self.event_arrived.clear()
                    found = await store.consume_event(self.instance_id, event_type, key)
                    if found is not None:
                        return found
                    if timer.done() or clock.now() >= deadline:
                        return None
                    arrived = asyncio.ensure_future(self.event_arrived.wait())
                    await asyncio.wait({arrived, timer}, return_when=asyncio.FIRST_COMPLETED)
                    arrived.cancel()
            finally:
                timer.cancel()

        return await self._status_while(waiting)

    # -- attempts -----------------------------------------------------------------------------
    async def attempt(self, callback: Callable[[Any], Any], ctx: Any, timeout_s: float) -> Any:
        """Run one attempt of a step callback, failing it with ``WorkflowTimeoutError`` past ``timeout_s``."""
        from .errors import WorkflowTimeoutError

        async def call() -> Any:
            result = callback(ctx)
            if asyncio.iscoroutine(result) or isinstance(result, asyncio.Future):
                result = await result
            return result

        clock = self.engine.clock
        work = asyncio.ensure_future(call())
        timer = asyncio.ensure_future(clock.sleep_until(clock.now() + timeout_s))
        self.callbacks += 1
        try:
            await asyncio.wait({work, timer}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            work.cancel()
            raise
        finally:
            self.callbacks -= 1
            timer.cancel()
            self.engine.touch()
        if not work.done():
            work.cancel()
            with contextlib.suppress(BaseException):
                await work
            raise WorkflowTimeoutError(f"Execution timed out after {timeout_s * 1000:.0f}ms")
        return work.result()

    # -- control ------------------------------------------------------------------------------
    async def check_pause(self) -> None:
        if self.pause_requested:
            await self.engine.store.set_status(self.instance_id, "paused")
            self.engine.touch()
            raise StepAbort("paused")

    async def abort_errored(self, error: BaseException) -> None:
        await self.engine.finish(self.instance_id, "errored", error=error)
        raise StepAbort("errored")


class Engine:
    """All instances of one workflow (see the module docstring)."""

    def __init__(
        self,
        options: WorkflowOptions,
        store: WorkflowStore,
        *,
        clock: Clock,
        log: logging.Logger | None = None,
    ) -> None:
        self.options = options
        self.store = store
        self.clock = clock
        self.log = log or logging.getLogger("flarelet")
        self.host: WorkerHost | None = None
        self.runs: dict[str, InstanceRun] = {}
        self._last_activity = time.monotonic()
        if isinstance(clock, ManualClock):
            clock.add_settler(self.settle)

    def touch(self) -> None:
        self._last_activity = time.monotonic()

    # -- lifecycle ----------------------------------------------------------------------------
    async def start(self, host: WorkerHost) -> None:
        """Relaunch every live instance (after a restart they resume after their last completed step)."""
        self.host = host
        for row in await self.store.live_instances():
            if row.id not in self.runs:
                self._launch(row.id)

    async def aclose(self) -> None:
        """Stop the tasks; statuses stay as they are, so the next start resumes them."""
        if isinstance(self.clock, ManualClock):
            self.clock.remove_settler(self.settle)
        runs = list(self.runs.values())
        for run in runs:
            if run.task is not None:
                run.task.cancel()
        for run in runs:
            if run.task is not None:
                with contextlib.suppress(BaseException):
                    await run.task
        self.runs.clear()

    def _launch(self, instance_id: str) -> InstanceRun | None:
        """Start the instance's task; before :meth:`start` it stays queued and ``start`` launches it."""
        if self.host is None:
            return None
        run = InstanceRun(self, instance_id)
        self.runs[instance_id] = run
        run.task = asyncio.get_running_loop().create_task(self._execute(run), name=f"workflow {instance_id}")
        self.touch()
        return run

    async def _execute(self, run: InstanceRun) -> None:
        instance_id = run.instance_id
        try:
            row = await self.store.get_instance(instance_id)
            if row is None:
                return
            run.history = await self.store.steps(instance_id)
            await self.store.set_status(instance_id, "running", started=row.started or self.clock.now())
            event = JsDict(
                payload=codec.loads(row.params),
                timestamp=_dt.datetime.fromtimestamp(row.created),
                instanceId=instance_id,
                workflowName=self.options.name,
            )
            step = PythonStep(StepContext(run))
            host = self.host
            if host is None:
                raise RuntimeError("the workflow engine is not started")
            try:
                result = await host.run_workflow(self.options.script_name, self.options.class_name, event, step)
            except StepAbort:
                return
            except Exception as exc:  # noqa: BLE001 - the instance errors; the server goes on
                self.log.error(
                    "workflow %s instance %s errored: %s: %s", self.options.name, instance_id, type(exc).__name__, exc
                )
                await self.finish(instance_id, "errored", error=exc)
                return
            try:
                codec.check_storable(result)
                output = codec.dumps(result)
            except (TypeError, codec.NotSerialisable) as exc:
                await self.finish(instance_id, "errored", error=exc)
                return
            await self.store.set_status(instance_id, "complete", ended=self.clock.now(), output=output)
        except StepAbort:
            return
        finally:
            if self.runs.get(instance_id) is run:
                del self.runs[instance_id]
            self.touch()

    async def finish(self, instance_id: str, status: str, *, error: BaseException | None = None) -> None:
        await self.store.set_status(
            instance_id,
            status,
            ended=self.clock.now(),
            error=codec.dumps(error_record(error)) if error is not None else None,
        )
        self.touch()

    # -- binding operations -------------------------------------------------------------------
    def check_id(self, instance_id: Any) -> str:
        limit = self.options.limits.instance_id_length
        if not isinstance(instance_id, str) or len(instance_id) > limit or not ID_PATTERN.match(instance_id):
            raise WorkflowError("Workflow instance has invalid id")
        return instance_id

    async def create(self, batch: list[tuple[str, Any]]) -> list[str]:
        """Queue instances ``[(id, params)]`` and start them; the ids (committed before returning)."""
        rows = []
        now = self.clock.now()
        for instance_id, params in batch:
            self.check_id(instance_id)
            try:
                codec.check_storable(params)
            except codec.NotSerialisable as exc:
                raise TypeError(f"the params of a workflow instance must be serialisable: {exc}") from None
            text = codec.dumps(params)
            if len(text.encode()) > self.options.limits.value_bytes:
                raise WorkflowError(
                    f"params are larger than {self.options.limits.value_bytes} bytes", "instance.params_too_large"
                )
            rows.append((instance_id, text, now))
        existing = await self.store.create_instances(rows)
        if existing:
            raise WorkflowError(f"Instance with id {existing[0]} already exists", "instance.already_exists")
        for instance_id, _, _ in rows:
            self._launch(instance_id)
        return [r[0] for r in rows]

    async def require(self, instance_id: str) -> Any:
        row = await self.store.get_instance(instance_id)
        if row is None:
            raise WorkflowError("instance.not_found")
        return row

    async def status(self, instance_id: str) -> JsDict:
        row = await self.require(instance_id)
        steps = await self.store.steps(instance_id)
        # as Miniflare's status(): each completed step's result, and each received event's payload
        outputs = []
        for key, record in steps.items():
            if record.state == "done" and record.value is not None:
                value = codec.loads(record.value)
                outputs.append(value["payload"] if key.startswith("wait:") else value)
        return JsDict(
            status=row.status,
            error=codec.loads(row.error) if row.error else None,
            output=codec.loads(row.output) if row.output else None,
            __LOCAL_DEV_STEP_OUTPUTS=outputs,
        )

    async def _stop_task(self, instance_id: str) -> None:
        run = self.runs.pop(instance_id, None)
        if run is not None and run.task is not None and not run.task.done():
            run.task.cancel()
            with contextlib.suppress(BaseException):
                await run.task

    async def pause(self, instance_id: str) -> None:
        row = await self.require(instance_id)
        if row.status in FINISHED:
            raise WorkflowError(f"Cannot pause an instance that is {row.status}", "instance.invalid_state")
        if row.status in ("paused", "waitingForPause"):
            return
        run = self.runs.get(instance_id)
        if run is None or run.callbacks == 0:
            await self._stop_task(instance_id)
            await self.store.set_status(instance_id, "paused")
        else:
            run.pause_requested = True
            await self.store.set_status(instance_id, "waitingForPause")
        self.touch()

    async def resume(self, instance_id: str) -> None:
        row = await self.require(instance_id)
        if row.status == "waitingForPause":
            run = self.runs.get(instance_id)
            if run is not None:
                run.pause_requested = False
            await self.store.set_status(instance_id, "running")
            return
        if row.status != "paused":
            raise WorkflowError(f"Cannot resume an instance that is {row.status}", "instance.invalid_state")
        await self.store.set_status(instance_id, "queued")
        self._launch(instance_id)

    async def terminate(self, instance_id: str) -> None:
        row = await self.require(instance_id)
        if row.status in FINISHED:
            raise WorkflowError(f"Cannot terminate an instance that is {row.status}", "instance.invalid_state")
        await self._stop_task(instance_id)
        await self.store.set_status(instance_id, "terminated", ended=self.clock.now())
        self.touch()

    async def restart(self, instance_id: str) -> None:
        await self.require(instance_id)
        await self._stop_task(instance_id)
        await self.store.reset_instance(instance_id)
        self._launch(instance_id)

    async def send_event(self, instance_id: str, event_type: Any, payload: Any) -> None:
        row = await self.require(instance_id)
        if not isinstance(event_type, str) or not ID_PATTERN.match(event_type) or len(event_type) > 100:
            raise WorkflowError("Event type is invalid", "instance.invalid_event_type")
        if row.status in FINISHED:
            raise WorkflowError(f"Cannot send an event to an instance that is {row.status}", "instance.invalid_state")
        try:
            codec.check_storable(payload)
        except codec.NotSerialisable as exc:
            raise TypeError(f"an event payload must be serialisable: {exc}") from None
        await self.store.add_event(instance_id, event_type, codec.dumps(payload), self.clock.now())
        run = self.runs.get(instance_id)
        if run is not None:
            run.event_arrived.set()
        self.touch()

    # -- tests --------------------------------------------------------------------------------
    async def settle(self, timeout: float = SETTLE_TIMEOUT_S) -> None:
        """Return once every live instance is blocked (on the clock or an event) or finished.

        Step code that is running (``step.do`` callbacks, which may really sleep) is waited for,
        up to ``timeout`` real seconds.
        """
        deadline = time.monotonic() + timeout
        while True:
            await asyncio.sleep(0)
            runs = list(self.runs.values())
            busy = [r for r in runs if r.callbacks > 0 or r.blocked == 0]
            quiet = time.monotonic() - self._last_activity >= _QUIET_S
            if not busy and quiet:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"workflow instances still running after {timeout}s: {[r.instance_id for r in busy]}"
                )
            await asyncio.sleep(0.005)
