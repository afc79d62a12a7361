"""``[limits] cpu_ms``: a worker invocation that uses more CPU time than allowed is stopped.

Cloudflare counts the CPU time an invocation spends running its own code (not time spent waiting
on I/O) and ends it with error 1102 ("Worker exceeded resource limits") when it passes ``cpu_ms``
(30 s unless configured, at most 5 minutes). Here the worker's coroutines run on the event loop
thread, so a handler that loops forever would also stop every other request. This module meters
and interrupts them:

* :class:`CpuMeter` is one invocation's budget. :meth:`CpuMeter.run` drives the handler's
  coroutine step by step (each ``send``/``throw`` is a *step*: the code between two awaits) and
  adds each step's time to the invocation's total; synchronous calls go through
  :meth:`CpuMeter.call`. A step costs two ``perf_counter`` reads (reading a thread's CPU clock is
  a system call, ~1.5 µs, too dear for every step of every request).
* :class:`CpuWatchdog` is one daemon thread per process. Every ``poll_s`` it looks at the steps
  running now; a step still running at its second look is a long one, and from its first look on
  its time is read from the loop thread's CPU clock (``time.pthread_getcpuclockid``), so time the
  process spent descheduled on a busy machine, or blocked in a system call, is not charged. When
  the invocation is over budget it raises :class:`CpuLimitExceeded` inside that thread with
  ``PyThreadState_SetAsyncExc``. The exception derives from ``BaseException``, so worker code's
  ``except Exception`` cannot swallow it; it is raised again every poll while the step goes on,
  so a bare ``except:`` cannot either.

Why in-process rather than a worker process per request: bindings, loaded AI models and the
outbound HTTP client live on the event loop and must stay shared and cheap, and a step's cost is
two clock reads. Limits of the approach, by design of CPython: an asynchronous exception is only
delivered between bytecodes, so a single long call into C (``sum(range(10**12))``, a huge regex,
``time.sleep``) is interrupted when it returns, not during it; and it lands wherever the worker's
Python code is, which (like Cloudflare resetting an isolate) may leave the worker's own module
state half-updated. Tasks the worker spawns itself (``asyncio.create_task``, ``gather``) are
metered with it once :func:`install_task_factory` is installed on the loop (the dev server does),
and so is its ``waitUntil`` work. A stuck C call never delays shutdown: the dev server exits on a signal regardless (see
:mod:`flarelet.runtime.server`).
"""

from __future__ import annotations

import asyncio
import ctypes
import inspect
import threading
import time
from collections.abc import Awaitable, Callable, Generator
from threading import get_ident
from time import perf_counter
from types import CoroutineType
from typing import Any, TypeVar

T = TypeVar("T")

#: Cloudflare's default CPU time per invocation (``[limits] cpu_ms`` unset)
DEFAULT_CPU_MS = 30_000
#: the most ``[limits] cpu_ms`` accepts on Cloudflare
MAX_CPU_MS = 300_000

_set_async_exc = ctypes.pythonapi.PyThreadState_SetAsyncExc

#: whether another thread's CPU clock can be read (Linux and most Unixes; not macOS or Windows)
_HAS_THREAD_CLOCKS = hasattr(time, "pthread_getcpuclockid")
#: this thread's CPU seconds, on the same clock :meth:`CpuWatchdog.thread_cpu` reads
_own_cpu = time.thread_time if _HAS_THREAD_CLOCKS else perf_counter


class CpuLimitExceeded(BaseException):  # noqa: N818 - named after what happened, as Cloudflare's message
    """Raised inside a worker that used more CPU time than ``[limits] cpu_ms`` allows."""


class ShutdownInterrupt(BaseException):  # noqa: N818
    """Raised inside a worker step that is still running when the server is told to stop."""


def _raise_in(thread_id: int, exc_type: type[BaseException]) -> None:
    """Schedule ``exc_type`` to be raised in ``thread_id`` at its next bytecode."""
    _set_async_exc(ctypes.c_ulong(thread_id), ctypes.py_object(exc_type))


def _clear_pending(thread_id: int) -> None:
    _set_async_exc(ctypes.c_ulong(thread_id), None)


class CpuMeter:
    """One invocation's CPU budget (see module docstring)."""

    __slots__ = (
        "limit",
        "used",
        "label",
        "exceeded",
        "_watchdog",
        "_thread",
        "_started",
        "_step",
        "_seen_step",
        "_seen_cpu",
        "_seen_after",
        "_fired",
        "_fired_at",
        "_outer",
    )

    def __init__(self, watchdog: CpuWatchdog, limit_ms: float, label: str = "") -> None:
        self.limit = limit_ms / 1000.0
        #: seconds used by the finished steps
        self.used = 0.0
        self.label = label
        self.exceeded = False
        self._watchdog = watchdog
        self._thread = 0
        self._started = 0.0
        self._step = 0
        self._seen_step = -1
        self._seen_cpu = 0.0
        self._seen_after = 0.0
        self._fired: type[BaseException] | None = None
        self._fired_at = 0.0
        self._outer: CpuMeter | None = None

    @property
    def used_ms(self) -> float:
        return self.used * 1000.0

    def _enter(self) -> None:
        thread = self._thread = get_ident()
        self._step += 1
        active = self._watchdog.active
        # an invocation inside another one's step (a worker fetching itself in process) nests
        self._outer = active.get(thread)
        active[thread] = self
        self._started = perf_counter()

    def _leave(self) -> None:
        elapsed = perf_counter() - self._started
        watchdog = self._watchdog
        with watchdog.lock:
            if self._outer is not None:
                watchdog.active[self._thread] = self._outer
                self._outer = None
            else:
                watchdog.active.pop(self._thread, None)
            if self._seen_step == self._step:  # a long step: the watchdog measured its CPU time
                elapsed = min(elapsed, self._seen_after + _own_cpu() - self._seen_cpu)
            self.used += elapsed
            if self._fired is not None:
                # fired but not delivered yet (the step ended first): never let it land elsewhere
                _clear_pending(self._thread)
                self._fired = None

    def _step_cpu(self) -> float:
        """CPU seconds of the running step, as far as the watchdog has seen it (read from the watchdog)."""
        return self._seen_after + self._watchdog.thread_cpu(self._thread) - self._seen_cpu

    def _interrupted(self, exc: BaseException) -> BaseException:
        """Tidy up after the interrupt landed (possibly before :meth:`_leave` ran) and say why."""
        watchdog = self._watchdog
        with watchdog.lock:
            if watchdog.active.get(self._thread) is self:
                if self._outer is not None:
                    watchdog.active[self._thread] = self._outer
                else:
                    del watchdog.active[self._thread]
                if self._seen_step == self._step:
                    self.used += self._seen_after + _own_cpu() - self._seen_cpu
                else:
                    self.used += perf_counter() - self._started
            self._outer = None
            _clear_pending(self._thread)
            self._fired = None
        if isinstance(exc, CpuLimitExceeded):
            self.exceeded = True
            return CpuLimitExceeded(
                f"Worker exceeded its CPU time limit of {self.limit * 1000:.0f} ms{self.label} "
                f"(used {self.used_ms:.0f} ms; [limits] cpu_ms in wrangler.toml)"
            )
        return exc

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)``, metered (a ``def`` handler runs entirely inside it)."""
        try:
            self._enter()
            try:
                return fn(*args)
            finally:
                self._leave()
        except (CpuLimitExceeded, ShutdownInterrupt) as exc:
            raise self._interrupted(exc) from None

    def run(self, awaitable: Awaitable[T]) -> Awaitable[T]:
        """``await meter.run(coro)``: ``coro``'s result, with every step metered."""
        return _Metered(awaitable, self)

    async def invoke(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``await meter.invoke(fn, *args)``: ``fn(*args)``, awaited if it returns an awaitable.

        The call and the coroutine's first step are one metered step, run here without the
        step-driving machinery: a handler that finishes without suspending (most answers) costs
        two clock reads. One that suspends is driven on by :class:`_Metered`."""
        result: Any = None
        try:
            self._enter()
            try:
                result = fn(*args)
                if type(result) is CoroutineType:
                    try:
                        yielded = result.send(None)
                    except StopIteration as stop:
                        return stop.value
            finally:
                self._leave()
        except (CpuLimitExceeded, ShutdownInterrupt) as exc:
            if type(result) is CoroutineType:
                result.close()  # landed after the coroutine suspended: finish it here
            raise self._interrupted(exc) from None
        if type(result) is CoroutineType:
            return await _Metered(None, self, resume=(result, yielded))
        if inspect.isawaitable(result):
            return await _Metered(result, self)
        return result


class _Metered:
    """Drives an awaitable (or, first, the call that makes it) with every step metered."""

    __slots__ = ("_awaitable", "_meter", "_resume")

    def __init__(
        self,
        awaitable: Awaitable[Any] | None,
        meter: CpuMeter,
        resume: tuple[Any, Any] | None = None,
    ) -> None:
        self._awaitable = awaitable
        self._meter = meter
        #: (coroutine, what its first step yielded) when that step already ran (:meth:`CpuMeter.invoke`)
        self._resume = resume

    def __await__(self) -> Generator[Any, Any, Any]:
        meter = self._meter
        inner: Any = None
        send_value: Any = None
        to_throw: BaseException | None = None
        if self._resume is not None:
            inner, yielded = self._resume
            try:
                send_value = yield yielded
            except BaseException as exc:  # noqa: BLE001 - cancellation etc. go on to the worker's code
                send_value, to_throw = None, exc
        while True:
            try:
                meter._enter()
                try:
                    if inner is None:  # the first step
                        inner = self._awaitable.__await__()  # type: ignore[union-attr]
                        yielded = inner.send(None)
                    elif to_throw is None:
                        yielded = inner.send(send_value)
                    else:
                        thrown, to_throw = to_throw, None
                        yielded = inner.throw(thrown)
                finally:
                    meter._leave()
            except StopIteration as stop:
                return stop.value
            except (CpuLimitExceeded, ShutdownInterrupt) as exc:
                if inner is not None:
                    inner.close()
                raise meter._interrupted(exc) from None
            try:
                send_value = yield yielded
            except BaseException as exc:  # noqa: BLE001 - cancellation etc. go on to the worker's code
                send_value, to_throw = None, exc


class CpuWatchdog:
    """The thread that interrupts an over-budget step (one per process: :func:`watchdog`)."""

    def __init__(self, poll_s: float = 0.02, refire_s: float = 0.2) -> None:
        self.poll_s = poll_s
        #: an interrupt the worker swallowed (bare ``except:``) is raised again after this long
        self.refire_s = refire_s
        self.lock = threading.Lock()
        #: thread id -> the meter whose step runs on it now (set and cleared by that thread)
        self.active: dict[int, CpuMeter] = {}
        self._thread: threading.Thread | None = None

    def meter(self, limit_ms: float, label: str = "") -> CpuMeter:
        if self._thread is None:
            self._thread = threading.Thread(target=self._watch, name="flarelet-cpu-watchdog", daemon=True)
            self._thread.start()
        return CpuMeter(self, limit_ms, label)

    def thread_cpu(self, thread_id: int) -> float:
        """CPU seconds ``thread_id`` has used (its ``CLOCK_THREAD_CPUTIME_ID``, read from here)."""
        if not _HAS_THREAD_CLOCKS:  # macOS, Windows: wall time stands in (descheduled time counts)
            return perf_counter()
        # not cached: thread ids are reused once a thread ends, and the lookup makes no system call
        return time.clock_gettime(time.pthread_getcpuclockid(thread_id))

    def _watch(self) -> None:
        while True:
            time.sleep(self.poll_s)
            for meter in list(self.active.values()):
                if meter._fired is not None and time.monotonic() - meter._fired_at < self.refire_s:
                    continue
                try:
                    with self.lock:
                        if self.active.get(meter._thread) is not meter:
                            continue
                        if meter._seen_step != meter._step:
                            # first sight of this step: from now on its CPU clock is read; until
                            # now it ran for at most its wall time
                            meter._seen_step = meter._step
                            meter._seen_cpu = self.thread_cpu(meter._thread)
                            meter._seen_after = min(perf_counter() - meter._started, self.poll_s)
                            continue
                        spent = meter.used + meter._step_cpu()
                except OSError:  # the thread ended between the read and now
                    continue
                if spent > meter.limit:
                    self.interrupt(meter, CpuLimitExceeded)

    def interrupt(self, meter: CpuMeter, exc_type: type[BaseException]) -> bool:
        """Raise ``exc_type`` in ``meter``'s step if it is still running; False if it is not."""
        with self.lock:
            if self.active.get(meter._thread) is not meter:
                return False
            meter._fired = exc_type
            meter._fired_at = time.monotonic()
            _raise_in(meter._thread, exc_type)
            return True

    def interrupt_current_thread(self, exc_type: type[BaseException]) -> None:
        """From a signal handler: raise ``exc_type`` right here if a worker step runs on this thread."""
        if threading.get_ident() in self.active:
            raise exc_type("the server is shutting down")


_WATCHDOG = CpuWatchdog()


def install_task_factory(loop: asyncio.AbstractEventLoop) -> None:
    """Meter tasks a worker starts itself (``asyncio.create_task``, ``gather``) against the
    invocation that started them: a task created while a worker step runs shares its budget."""
    previous = loop.get_task_factory()
    active = _WATCHDOG.active

    def factory(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Future[Any]:
        meter = active.get(get_ident())
        if meter is not None and asyncio.iscoroutine(coro):
            coro = metered(meter, coro)
        if previous is not None:
            return previous(loop, coro, **kwargs)
        return asyncio.Task(coro, loop=loop, **kwargs)

    loop.set_task_factory(factory)


async def metered(meter: CpuMeter, coro: Awaitable[T]) -> T:
    """``coro`` as a coroutine whose steps count against ``meter`` (for ``create_task``)."""
    return await meter.run(coro)


def watchdog() -> CpuWatchdog:
    return _WATCHDOG
