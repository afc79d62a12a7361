"""The ``step`` a workflow's ``run(event, step)`` receives.

Two layers, as on Cloudflare:

* :class:`StepContext` is the engine's step (the JS ``WorkflowStep``): ``do(name, [config,]
  callback)``, ``sleep``, ``sleep_until``, ``wait_for_event``. Each call is keyed by its name and
  occurrence (the second ``do("x")`` of a run is ``do:x:2``); a key already completed in this
  instance's history returns its stored result without running anything, so ``run`` can be
  replayed from the top after a restart and resumes after its last completed step.
* :class:`PythonStep` is what Python code sees (the SDK's ``_WorkflowStepWrapper``):
  ``@step.do(name=None, *, concurrent=False, config=None)`` decorates a step function whose
  parameters name earlier steps (their results are passed in) or ``ctx`` (``{"attempt": n}``);
  the legacy ``@step.do("name", depends=[f, g], concurrent=True)`` form works too, and so does
  the JS-style ``await step.do("name", callback)``.

Step defaults are Cloudflare's: ``retries = {limit: 5, delay: "10 seconds", backoff:
"exponential"}``, ``timeout = "10 minutes"`` per attempt; the n-th retry waits ``delay`` (constant),
``delay * n`` (linear) or ``delay * 2**(n-1)`` (exponential). ``NonRetryableError`` fails a step
at once. ``wait_for_event`` times out after ``"24 hours"`` unless told otherwise.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import inspect
import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from flarelet.bindings.jsobject import JsDict

from . import codec
from .durations import duration_ms
from .errors import (
    NonRetryableError,
    WorkflowFatalError,
    WorkflowTimeoutError,
    error_record,
    rebuild_error,
)

if TYPE_CHECKING:
    from .engine import InstanceRun

DEFAULT_RETRIES: dict[str, Any] = {"limit": 5, "delay": 10_000, "backoff": "exponential"}
DEFAULT_TIMEOUT = "10 minutes"
DEFAULT_EVENT_TIMEOUT = "24 hours"
_CONTROL = re.compile(r"[\x00-\x1f]")
_BACKOFFS = ("constant", "linear", "exponential")


class StepAbort(BaseException):  # noqa: N818 - an unwinding signal, not an error
    """Unwinds ``run`` when the instance is paused or must stop (not catchable by ``except Exception``)."""


def retry_delay_ms(retries: Mapping[str, Any], attempt: int) -> float:
    """How long to wait before retry after the ``attempt``-th failed attempt."""
    delay = duration_ms(retries["delay"], "retries.delay")
    backoff = retries.get("backoff") or "exponential"
    if backoff == "exponential":
        return delay * (2 ** (attempt - 1))
    if backoff == "linear":
        return delay * attempt
    return delay


def resolve_config(name: str, config: Any) -> dict[str, Any]:
    """Cloudflare's defaults under the step's ``config``; ``WorkflowFatalError`` when it is malformed."""
    bad = WorkflowFatalError(
        f'Step config for "{name}" is in a invalid format. See '
        "https://developers.cloudflare.com/workflows/build/sleeping-and-retrying/"
    )
    if config is None:
        config = {}
    if not isinstance(config, Mapping) or set(config) - {"retries", "timeout"}:
        raise bad
    retries = config.get("retries")
    if retries is not None:
        if not isinstance(retries, Mapping) or set(retries) - {"limit", "delay", "backoff"}:
            raise bad
        if "limit" not in retries or "delay" not in retries:
            raise bad
        limit = retries["limit"]
        if isinstance(limit, bool) or not isinstance(limit, (int, float)) or limit < 0:
            raise bad
        if retries.get("backoff") is not None and retries["backoff"] not in _BACKOFFS:
            raise bad
        try:
            duration_ms(retries["delay"])
        except ValueError:
            raise bad from None
    timeout = config.get("timeout")
    if timeout is not None:
        try:
            if duration_ms(timeout) == 0:
                raise bad
        except ValueError:
            raise bad from None
    merged_retries = {**DEFAULT_RETRIES, **dict(retries or {})}
    if merged_retries.get("backoff") is None:
        merged_retries["backoff"] = "exponential"
    return {"retries": merged_retries, "timeout": timeout if timeout is not None else DEFAULT_TIMEOUT}


class StepContext:
    """The engine's step for one run of one instance (see the module docstring)."""

    def __init__(self, run: InstanceRun) -> None:
        self._run = run
        self._counts: dict[str, int] = {}
        self._steps_started = 0

    def _key(self, kind: str, name: str) -> tuple[str, int]:
        count = self._counts.get(kind + name, 0) + 1
        self._counts[kind + name] = count
        return f"{kind}:{name}:{count}", count

    def _check_name(self, name: Any) -> str:
        limits = self._run.engine.options.limits
        if not isinstance(name, str) or len(name) > limits.step_name_length or _CONTROL.search(name):
            raise WorkflowFatalError(
                f'Step name "{name}" exceeds max length ({limits.step_name_length} chars) or invalid characters found'
            )
        return name

    # -- do ---------------------------------------------------------------------------------
    async def do(self, name: str, config_or_callback: Any, callback: Any = None) -> Any:
        """``step.do(name, [config,] callback)``: run ``callback({"attempt": n})`` once, durably."""
        if callback is None:
            config, callback = None, config_or_callback
        else:
            config = config_or_callback
        if not callable(callback):
            raise TypeError("step.do() needs a callback: step.do(name, [config,] callback)")
        run = self._run
        limits = run.engine.options.limits
        self._steps_started += 1
        if self._steps_started > limits.steps:
            raise WorkflowFatalError(
                f"The limit of {limits.steps} steps has been reached. This limit can be changed in your worker "
                "configuration."
            )
        self._check_name(name)
        resolved = resolve_config(name, config)
        key, _ = self._key("do", name)
        record = run.history.get(key)
        if record is not None and record.state == "done":
            return codec.loads(record.value)
        if record is not None and record.state == "failed":
            raise rebuild_error(codec.loads(record.error))
        await run.check_pause()
        attempts = record.attempts if record is not None else 0
        if record is not None and record.state == "retrying" and record.wake_at is not None:
            await run.wait_clock(record.wake_at)
        retries = resolved["retries"]
        timeout_s = duration_ms(resolved["timeout"], "timeout") / 1000.0
        while True:
            attempts += 1
            # the attempt is counted before it starts: one cut short by a crash counts as failed
            await run.put_step(key, "running", attempts=attempts)
            try:
                value = await run.attempt(callback, JsDict(attempt=attempts), timeout_s)
                codec.check_storable(value)
                stored = codec.dumps(value)
                if len(stored.encode()) > limits.value_bytes:
                    raise WorkflowFatalError(
                        f"Step {name}-{_ordinal(key)} output is too large. Maximum allowed size is "
                        f"{limits.value_bytes} bytes."
                    )
            except codec.NotSerialisable:
                await run.put_step(
                    key, "failed", attempts=attempts, error=codec.dumps(error_record(_not_serialisable(name)))
                )
                await run.abort_errored(
                    WorkflowFatalError(
                        f'The execution of the Workflow instance was terminated, as the step "{name}" returned a '
                        "value which is not serialisable"
                    )
                )
                raise AssertionError("unreachable") from None
            except WorkflowFatalError as exc:
                await run.put_step(key, "failed", attempts=attempts, error=codec.dumps(error_record(exc)))
                raise
            except NonRetryableError as exc:
                await run.put_step(key, "failed", attempts=attempts, error=codec.dumps(error_record(exc)))
                raise
            except Exception as exc:  # noqa: BLE001 - a failed attempt: retried per config
                run.engine.log.warning(
                    "workflow %s instance %s: step %r attempt %d failed: %s: %s",
                    run.engine.options.name,
                    run.instance_id,
                    name,
                    attempts,
                    type(exc).__name__,
                    exc,
                )
                if attempts <= retries["limit"]:
                    wake = run.engine.clock.now() + retry_delay_ms(retries, attempts) / 1000.0
                    await run.put_step(key, "retrying", attempts=attempts, wake_at=wake)
                    await run.wait_clock(wake)
                    continue
                await run.put_step(key, "failed", attempts=attempts, error=codec.dumps(error_record(exc)))
                raise
            await run.put_step(key, "done", attempts=attempts, value=stored)
            break
        await run.check_pause()
        return codec.loads(stored)

    # -- sleep --------------------------------------------------------------------------------
    async def sleep(self, name: str, duration: Any) -> None:
        """``step.sleep(name, "10 seconds" | ms)``: a durable sleep (survives a restart)."""
        self._check_name(name)
        millis = duration_ms(duration, "step.sleep duration")
        await self._sleep_keyed(name, lambda now: now + millis / 1000.0)

    async def sleep_until(self, name: str, timestamp: Any) -> None:
        """``step.sleep_until(name, datetime | ms since epoch | ISO string)``."""
        self._check_name(name)
        when = _timestamp_s(timestamp)

        def wake(now: float) -> float:
            if when < now:
                raise ValueError("You can't sleep until a time in the past, time-traveler")
            return when

        await self._sleep_keyed(name, wake)

    async def _sleep_keyed(self, name: str, wake_at: Callable[[float], float]) -> None:
        run = self._run
        key, _ = self._key("sleep", name)
        record = run.history.get(key)
        if record is not None and record.state == "done":
            return
        await run.check_pause()
        if record is not None and record.wake_at is not None:
            wake = record.wake_at
        else:
            wake = wake_at(run.engine.clock.now())
            await run.put_step(key, "sleeping", wake_at=wake)
        await run.wait_clock(wake)
        await run.put_step(key, "done", wake_at=wake)
        await run.check_pause()

    # -- events -------------------------------------------------------------------------------
    async def wait_for_event(self, name: str, event_type: str, timeout: Any = DEFAULT_EVENT_TIMEOUT) -> Any:
        """Wait for ``instance.send_event(type=event_type, payload=...)``; ``{"payload", "timestamp", "type"}``."""
        self._check_name(name)
        if not isinstance(event_type, str) or not event_type:
            raise TypeError("wait_for_event() needs the event type (a string)")
        run = self._run
        timeout_ms = duration_ms(timeout if timeout is not None else DEFAULT_EVENT_TIMEOUT, "timeout")
        key, _ = self._key("wait", name)
        record = run.history.get(key)
        if record is not None and record.state == "done":
            return codec.loads(record.value)
        if record is not None and record.state == "failed":
            raise rebuild_error(codec.loads(record.error))
        await run.check_pause()
        if record is not None and record.wake_at is not None:
            deadline = record.wake_at
        else:
            deadline = run.engine.clock.now() + timeout_ms / 1000.0
            await run.put_step(key, "waiting", wake_at=deadline)
        value = await run.wait_event(event_type, key, deadline)
        if value is None:
            error = WorkflowTimeoutError(f"Execution timed out after {timeout_ms:.0f}ms")
            await run.put_step(key, "failed", wake_at=deadline, error=codec.dumps(error_record(error)))
            raise error
        await run.check_pause()
        return codec.loads(value)

    waitForEvent = wait_for_event  # noqa: N815 - Cloudflare's name
    sleepUntil = sleep_until  # noqa: N815 - Cloudflare's name


def _ordinal(key: str) -> str:
    return key.rsplit(":", 1)[-1]


def _not_serialisable(name: str) -> WorkflowFatalError:
    return WorkflowFatalError(f'Value returned from step "{name}" is not serialisable')


def _timestamp_s(value: Any) -> float:
    if isinstance(value, _dt.datetime):
        return value.timestamp()
    if isinstance(value, bool):
        raise TypeError("sleep_until() takes a datetime, milliseconds since the epoch, or an ISO 8601 string")
    if isinstance(value, (int, float)):
        return float(value) / 1000.0
    if isinstance(value, str):
        text = value.replace("Z", "+00:00")
        parsed = _dt.datetime.fromisoformat(text)
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=_dt.UTC)
        return parsed.timestamp()
    raise TypeError("sleep_until() takes a datetime, milliseconds since the epoch, or an ISO 8601 string")


class PythonStep:
    """``step`` as Python workflows see it (see the module docstring)."""

    def __init__(self, core: StepContext) -> None:
        self._core = core
        self._memo: dict[Any, Any] = {}
        self._in_flight: dict[Any, asyncio.Future[Any]] = {}
        self.step_closures: dict[str, Callable[[], Any]] = {}

    def do(
        self,
        name: Any = None,
        depends: Any = None,
        concurrent: bool = False,
        config: Any = None,
        *more: Any,
    ) -> Any:
        """``@step.do(...)`` decorator, or ``await step.do(name, [config,] callback)`` (JS form)."""
        if callable(depends) and not isinstance(depends, (list, tuple)):
            return self._core.do(name, depends)  # step.do(name, callback)
        if isinstance(depends, Mapping) and callable(concurrent):
            return self._core.do(name, depends, concurrent)  # step.do(name, config, callback)
        if callable(name) and not isinstance(name, str):
            return self._decorator(None, None, False, None)(name)  # bare @step.do
        return self._decorator(name, depends, concurrent, config)

    def _decorator(self, name: str | None, depends: Any, concurrent: bool, config: Any) -> Callable[..., Any]:
        def decorator(func: Callable[..., Any]) -> Callable[[], Any]:
            step_name = func.__name__ if name is None else name

            async def wrapper() -> Any:
                deps = self._dependencies(func, depends)
                results = await self._gather(deps, concurrent)
                return await self._call(step_name, wrapper, config, func, results)

            wrapper._step_name = step_name  # type: ignore[attr-defined]
            wrapper.__name__ = getattr(func, "__name__", step_name)
            self.step_closures[step_name] = wrapper
            return wrapper

        return decorator

    def _dependencies(self, func: Callable[..., Any], depends: Any) -> list[Any]:
        params = list(inspect.signature(func).parameters.values())
        found: list[Any] = []
        if depends is None:
            for p in params:
                if p.name in self.step_closures:
                    found.append(self.step_closures[p.name])
                elif p.name == "ctx":
                    found.append(p)
                else:
                    raise TypeError(f"Received unexpected parameter {p.name}")
            return found
        non_ctx = [p for p in params if p.name != "ctx"]
        if len(depends) != len(non_ctx):
            raise TypeError(
                f"Step declares {len(non_ctx)} non-ctx parameter(s) but 'depends' has {len(depends)} item(s)"
            )
        remaining = list(depends)
        for p in params:
            if p.name == "ctx":
                found.append(p)
                continue
            dep = remaining.pop(0)
            if not hasattr(dep, "_step_name"):
                raise TypeError(f"'depends' entry for parameter {p.name!r} is not a function decorated with step.do")
            found.append(dep)
        return found

    async def _gather(self, deps: list[Any], concurrent: bool) -> list[Any]:
        if concurrent:
            return list(await asyncio.gather(*(self._resolve(d) for d in deps)))
        return [await self._resolve(d) for d in deps]

    async def _resolve(self, dep: Any) -> Any:
        if isinstance(dep, inspect.Parameter):
            return dep
        if dep in self._memo:
            return self._memo[dep]
        if dep in self._in_flight:
            return await self._in_flight[dep]
        return await dep()

    async def _call(self, name: str, key: Any, config: Any, func: Callable[..., Any], results: list[Any]) -> Any:
        async def callback(ctx: Any) -> Any:
            args = [ctx if isinstance(r, inspect.Parameter) else r for r in results]
            value = func(*args)
            if inspect.isawaitable(value):
                value = await value
            return value

        task = asyncio.ensure_future(self._core.do(name, config, callback))
        self._in_flight[key] = task
        try:
            result = await task
            self._memo[key] = result
        finally:
            self._in_flight.pop(key, None)
        return result

    def sleep(self, name: str, duration: Any) -> Any:
        return self._core.sleep(name, duration)

    def sleep_until(self, name: str, timestamp: Any) -> Any:
        return self._core.sleep_until(name, timestamp)

    async def wait_for_event(self, name: str, event_type: Any = None, /, timeout: Any = DEFAULT_EVENT_TIMEOUT) -> Any:
        if isinstance(event_type, Mapping):  # the JS form: wait_for_event(name, {"type", "timeout"})
            timeout = event_type.get("timeout", DEFAULT_EVENT_TIMEOUT)
            event_type = event_type.get("type")
        return await self._core.wait_for_event(name, event_type, timeout)

    sleepUntil = sleep_until  # noqa: N815 - Cloudflare's name
    waitForEvent = wait_for_event  # noqa: N815 - Cloudflare's name
