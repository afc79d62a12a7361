"""What may cross a Workers RPC boundary, and what it becomes on the other side.

On Cloudflare a Python worker's RPC arguments and results go through the SDK's ``python_to_rpc``
(Python -> JS), then the structured clone between isolates, then ``python_from_rpc`` (JS ->
Python). There is no JS here, so :func:`to_rpc` applies the same rules in one step and makes the
same copies -- the callee never shares a mutable object with the caller:

* ``None``, ``bool``, ``int``, ``float``, ``str`` cross as they are;
* ``bytes``/``memoryview`` become ``bytes``; ``list`` a new list; ``dict`` a
  :class:`~flarelet.bindings.jsobject.JsDict` (a JS object: string keys, ``obj.key`` works);
  ``set``/``frozenset`` a ``set`` (a JS ``Set``); ``datetime`` a naive local ``datetime``
  (``datetime.fromtimestamp`` of the JS ``Date``, as the SDK reads it back);
* an ``Exception`` becomes ``Exception("Error: <message>")`` (a JS ``Error``);
* ``Request``, ``Response``, ``Headers``, ``Blob``, ``FormData`` cross as they are (workerd
  serializes them; bodies stay single-use);
* a function (or bound method, lambda) becomes an :class:`RpcStub`: calling it returns an
  awaitable, and its arguments and result cross the boundary again (JS RPC's function stubs);
* ``tuple`` and ``bytearray`` raise ``TypeError("<class 'tuple'> cannot be sent over RPC.")`` and
  an awaitable ``TypeError("Awaitable <class 'coroutine'> cannot be sent over RPC.")`` (the SDK's
  checks, raised in the caller before anything is sent);
* anything else (instances of your own classes, classes, generators...) raises
  :class:`DataCloneError` with workerd's text ``Could not serialize object of type "Point". This
  type does not support serialization.``

An exception raised by the callee reaches the caller as :class:`RpcError` (a subclass of
``pyodide.ffi.JsException``, what a rejected JS promise is in Pyodide): ``err.name`` is the
remote error's name (``"TypeError"`` for runtime errors such as ``Method x does not exist``,
``"PythonError"`` for a Python exception, ``"NonRetryableError"``...), ``err.message`` its text,
``err.remote_type`` the Python class name when it was a Python exception.

The Durable Objects room uses the same functions for its stubs.
"""

from __future__ import annotations

import datetime as _dt
import inspect
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from flarelet.bindings.jsobject import JsDict

from .body import Blob, FormData
from .headers import Headers
from .js.errors import JsException
from .request import Request
from .response import FetchResponse

#: nested containers deeper than this are refused (V8's serializer also has a depth limit)
MAX_DEPTH = 1000

_PASS_THROUGH = (Request, FetchResponse, Headers, Blob, FormData)


class RpcError(JsException):
    """An error thrown across an RPC call: ``name`` (JS error name) and ``message``."""

    def __init__(self, name: str, message: str, *, remote_type: str | None = None) -> None:
        super().__init__(name, message)
        self.remote_type = remote_type


class DataCloneError(RpcError):
    """A value that the structured clone cannot copy."""

    def __init__(self, type_name: str) -> None:
        super().__init__(
            "DataCloneError",
            f'Could not serialize object of type "{type_name}". This type does not support serialization.',
        )


class RpcStub:
    """A function received over RPC: ``await stub(*args)`` calls it on the side that sent it."""

    __slots__ = ("_fn",)

    def __init__(self, fn: Callable[..., Any]) -> None:
        self._fn = fn

    async def __call__(self, *args: Any, **kwargs: Any) -> Any:
        sent_args = [to_rpc(a) for a in args]
        sent_kwargs = {k: to_rpc(v) for k, v in kwargs.items()}
        try:
            result = self._fn(*sent_args, **sent_kwargs)
            if inspect.isawaitable(result):
                result = await result
        except RpcError:
            raise
        except Exception as exc:  # noqa: BLE001 - crosses back as the remote error
            raise remote_error(exc) from exc
        return to_rpc(result)

    def __repr__(self) -> str:
        return f"<RpcStub {getattr(self._fn, '__qualname__', self._fn)!r}>"


def _type_name(value: Any) -> str:
    return type(value).__name__


def to_rpc(value: Any, _depth: int = 0) -> Any:
    """Copy ``value`` across an RPC boundary (see the module docstring); raises for what may not cross."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if _depth > MAX_DEPTH:
        raise DataCloneError(_type_name(value))
    if isinstance(value, (tuple, bytearray)):
        raise TypeError(f"{type(value)} cannot be sent over RPC.")
    if isinstance(value, bytes):
        return value
    if isinstance(value, memoryview):
        return value.tobytes()
    if isinstance(value, list):
        return [to_rpc(v, _depth + 1) for v in value]
    if isinstance(value, Mapping):
        out = JsDict()
        for key, item in value.items():
            if isinstance(key, bool) or not isinstance(key, (str, int, float)):
                raise DataCloneError(_type_name(key))
            out[key if isinstance(key, str) else str(key)] = to_rpc(item, _depth + 1)
        return out
    if isinstance(value, (set, frozenset)):
        return {to_rpc(v, _depth + 1) for v in value}
    if isinstance(value, _dt.datetime):
        return _dt.datetime.fromtimestamp(value.timestamp())
    if isinstance(value, _PASS_THROUGH):
        return value
    if isinstance(value, RpcStub):
        return value
    if isinstance(value, BaseException):
        return Exception(f"Error: {value}")
    if inspect.isawaitable(value):
        raise TypeError(f"Awaitable {type(value)} cannot be sent over RPC.")
    if callable(value) and not isinstance(value, type):
        return RpcStub(value)
    raise DataCloneError(_type_name(value))


def remote_error(exc: BaseException) -> RpcError:
    """What the caller sees when the callee raised ``exc``."""
    if isinstance(exc, RpcError):
        return exc
    name = getattr(exc, "js_name", None)
    if isinstance(name, str):
        return RpcError(name, str(exc), remote_type=type(exc).__name__)
    return RpcError("PythonError", f"{type(exc).__name__}: {exc}", remote_type=type(exc).__name__)


class RuntimeTypeError(TypeError):
    """A ``TypeError`` thrown by the runtime itself (reaches an RPC caller as a JS ``TypeError``)."""

    js_name = "TypeError"


async def call_across(fn: Callable[..., Awaitable[Any]], args: Any, kwargs: Mapping[str, Any]) -> Any:
    """Send ``args`` over, await ``fn`` on the far side, bring its result back (errors as :class:`RpcError`)."""
    sent_args = [to_rpc(a) for a in args]
    sent_kwargs = {str(k): to_rpc(v) for k, v in kwargs.items()}
    try:
        result = await fn(*sent_args, **sent_kwargs)
    except RpcError:
        raise
    except Exception as exc:  # noqa: BLE001 - the callee's failure crosses as an RpcError
        raise remote_error(exc) from exc
    try:
        return to_rpc(result)
    except TypeError as exc:
        raise RpcError("TypeError", str(exc)) from exc
