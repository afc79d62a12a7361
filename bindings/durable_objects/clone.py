"""What may cross a Durable Object boundary (RPC arguments and results) and what may be stored.

On Cloudflare a Python value crosses RPC as ``python_to_rpc`` converts it and V8's structured
clone then copies it; storage values are structured-cloned too. So data is *copied* (a caller
mutating a list after the call changes nothing in the object), and the rules follow workerd's SDK:

- data: ``None``, ``bool``, ``int``, ``float``, ``str``, ``bytes``, ``list``, ``dict``, ``set``,
  ``datetime`` (nested freely);
- RPC refuses ``tuple``, ``bytearray`` and plain functions with ``TypeError: <class 'tuple'>
  cannot be sent over RPC.`` (``_raise_on_disabled_type``); storage accepts tuples as arrays;
- by reference over RPC: callables that are not plain functions (bound methods become RPC
  stubs), Durable Object stubs and ids, Fetch API objects (``Request``, ``Response``, ...) and
  exceptions (sent as ``Error`` with the message);
- anything else (an instance of a user class) is a ``DataCloneError: Could not serialize object
  of type "..."``, as V8 says for a value it cannot clone.

Stored values are pickled after this check and read back with an unpickler that can only build
these types, so a state file can never make flarelet import or run anything.
"""

from __future__ import annotations

import datetime as _dt
import io
import pickle
import types
from typing import Any

from flarelet.bindings.jsobject import JsException

#: Fetch API types of the runtime that cross RPC by reference (matched by name: bindings never
#: import the runtime)
_BY_REFERENCE_TYPES = frozenset({"Request", "Response", "FetchResponse", "Headers", "FormData", "Blob", "File"})


class DataCloneError(JsException):
    """V8's ``DataCloneError`` (a ``DOMException``)."""

    def __init__(self, message: str) -> None:
        super().__init__("DataCloneError", message)


def _refuse(value: Any) -> DataCloneError:
    return DataCloneError(
        f'Could not serialize object of type "{type(value).__name__}". This type does not support serialization.'
    )


def _passes_by_reference(value: Any) -> bool:
    if getattr(value, "_flarelet_rpc_reference", False):
        return True
    kind = type(value)
    if kind.__name__ in _BY_REFERENCE_TYPES and kind.__module__.startswith("flarelet.runtime"):
        return True
    return isinstance(value, BaseException)


def rpc_copy(value: Any) -> Any:
    """A copy of ``value`` as the other side of an RPC call sees it; raises for what may not cross."""
    if value is None or isinstance(value, (bool, int, float, str, bytes, _dt.datetime)):
        return value
    kind = type(value)
    if kind is list or isinstance(value, list):
        return [rpc_copy(v) for v in value]
    if isinstance(value, dict):
        return {k: rpc_copy(v) for k, v in value.items()}
    if isinstance(value, (set, frozenset)):
        return {rpc_copy(v) for v in value}
    if isinstance(value, (tuple, bytearray, types.FunctionType)):
        raise TypeError(f"{type(value)} cannot be sent over RPC.")
    if _passes_by_reference(value):
        return value
    if callable(value) and not isinstance(value, type):
        return value
    raise _refuse(value)


def storage_copy(value: Any) -> Any:
    """``value`` as structured clone stores it (tuples become lists); raises for what cannot be stored."""
    if value is None or isinstance(value, (bool, int, float, str, bytes, _dt.datetime)):
        return value
    if isinstance(value, (list, tuple)):
        return [storage_copy(v) for v in value]
    if isinstance(value, bytearray):
        return bytes(value)
    if isinstance(value, dict):
        return {k: storage_copy(v) for k, v in value.items()}
    if isinstance(value, (set, frozenset)):
        return {storage_copy(v) for v in value}
    raise _refuse(value)


def encode(value: Any) -> bytes:
    """The stored form of a value (checked by :func:`storage_copy`)."""
    return pickle.dumps(storage_copy(value), protocol=5)


class _DataUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if module == "datetime" and name in ("datetime", "timezone", "timedelta"):
            return getattr(_dt, name)
        raise pickle.UnpicklingError(f"stored value refers to {module}.{name}, which storage never writes")


def decode(data: bytes) -> Any:
    return _DataUnpickler(io.BytesIO(data)).load()
