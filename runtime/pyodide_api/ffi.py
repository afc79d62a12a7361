"""``pyodide.ffi``: conversions, proxies and ``run_sync`` without a JavaScript engine.

* ``to_js``/``to_py`` convert between Python values and flarelet's JS stand-ins (``runtime.js``):
  bytes become a ``Uint8Array`` (with ``.buffer``), dicts a ``Map`` or ``dict_converter(entries)``.
* ``create_proxy(obj)`` wraps a Python object for JS; the wrapper forwards calls and attributes
  until ``destroy()``. ``create_once_callable(fn)`` may be called once, then throws as Pyodide does.
* ``run_sync(awaitable)`` blocks until an awaitable finishes (Pyodide does this with JSPI stack
  switching). From a worker thread (a WSGI app runs in one) it runs the awaitable on the server's
  event loop; on the event loop's own thread it runs it on a fresh loop in a helper thread, which
  suits self-contained coroutines (objects bound to the server's loop cannot be used there).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from ..js.buffers import ArrayBuffer, Uint8Array
from ..js.errors import JsException, JsProxy
from ..js.objects import JsArray, JsMap, JsObject, to_js, to_py

T = TypeVar("T")

__all__ = [
    "IN_BROWSER",
    "JsArray",
    "JsBuffer",
    "JsException",
    "JsMap",
    "JsProxy",
    "JsProxyObject",
    "PyProxy",
    "create_once_callable",
    "create_proxy",
    "destroy_proxies",
    "run_sync",
    "to_js",
    "to_py",
]

#: False: flarelet runs on CPython, not in a browser (libraries must not take their emscripten paths)
IN_BROWSER = False
JsBuffer = (ArrayBuffer, Uint8Array)
JsProxyObject = JsObject


class PyProxy:
    """What ``create_proxy`` returns: forwards calls and attributes to the wrapped object."""

    __slots__ = ("_obj", "_destroyed", "_once")

    def __init__(self, obj: Any, once: bool = False) -> None:
        self._obj = obj
        self._destroyed: str | None = None
        self._once = once

    def _target(self) -> Any:
        if self._destroyed is not None:
            raise JsException("Error", self._destroyed)
        return self._obj

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        target = self._target()
        if self._once:
            self._destroyed = "This function proxy has already been called once (create_once_callable)."
        return target(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._target(), name)

    def destroy(self, msg: str | None = None) -> None:
        self._destroyed = msg or "Object has already been destroyed"

    def unwrap(self) -> Any:
        return self._target()

    def __repr__(self) -> str:
        return f"PyProxy({self._obj!r})"


def create_proxy(obj: Any, *, capture_this: bool = False, roundtrip: bool = True) -> PyProxy:
    return PyProxy(obj)


def create_once_callable(obj: Callable[..., Any], *, _may_syncify: bool = False) -> PyProxy:
    if not callable(obj):
        raise TypeError("create_once_callable expects a callable")
    return PyProxy(obj, once=True)


def destroy_proxies(proxies: Any) -> None:
    for proxy in proxies:
        if isinstance(proxy, PyProxy):
            proxy.destroy()


#: the dev server's event loop, recorded by the dispatcher while it runs a worker
_server_loop: list[asyncio.AbstractEventLoop | None] = [None]


def set_server_loop(loop: asyncio.AbstractEventLoop | None) -> None:
    _server_loop[0] = loop


def run_sync(awaitable: Awaitable[T]) -> T:
    """Block until ``awaitable`` finishes and return its result (see module docstring)."""
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is None:
        loop = _server_loop[0]
        if loop is not None and loop.is_running():
            # no loop runs on this thread, so this is a worker thread (a WSGI app's): use the server's
            return asyncio.run_coroutine_threadsafe(_as_coroutine(awaitable), loop).result()
        return asyncio.run(_as_coroutine(awaitable))
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="flarelet-run-sync") as pool:
        return pool.submit(asyncio.run, _as_coroutine(awaitable)).result()


async def _as_coroutine(awaitable: Awaitable[T]) -> T:
    return await awaitable
