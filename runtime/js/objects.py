"""Plain JavaScript values: objects, arrays, maps, and the ``JSON``/``Object``/``Array`` namespaces.

A JS object reached from Python (``JSON.parse(text)``, ``to_js(d, dict_converter=Object.fromEntries)``,
``Object.new()``) is a :class:`JsObject`: a ``dict`` that also answers attribute access
(``obj.name``), as a Pyodide ``JsProxy`` of an object does. ``to_js(d)`` without a converter gives a
:class:`JsMap` (Pyodide converts dicts to ``Map`` by default), lists become :class:`JsArray`, and
bytes become ``Uint8Array``. ``to_py`` undoes each.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from .buffers import ArrayBuffer, Uint8Array
from .errors import JsProxy, type_error


class JsObject(dict, JsProxy):
    """A JS object: item and attribute access (a missing attribute is an ``AttributeError``)."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value

    def __delattr__(self, name: str) -> None:
        try:
            del self[name]
        except KeyError:
            raise AttributeError(name) from None

    def to_py(self, *_args: Any, **_kwargs: Any) -> dict[str, Any]:
        return {k: to_py(v) for k, v in self.items()}

    def as_object_map(self) -> JsObject:
        return self

    @classmethod
    def new(cls, init: Mapping[str, Any] | None = None) -> JsObject:
        return cls(init or {})


class JsMap(dict, JsProxy):
    """A JS ``Map`` (what ``to_js(dict)`` gives without ``dict_converter``)."""

    @property
    def size(self) -> int:
        return len(self)

    def has(self, key: Any) -> bool:
        return key in self

    def set(self, key: Any, value: Any) -> JsMap:
        self[key] = value
        return self

    def delete(self, key: Any) -> bool:
        return self.pop(key, _MISSING) is not _MISSING

    def entries(self) -> list[list[Any]]:
        return [[k, v] for k, v in self.items()]

    def to_py(self, *_args: Any, **_kwargs: Any) -> dict[Any, Any]:
        return {k: to_py(v) for k, v in self.items()}


_MISSING = object()


class JsArray(list, JsProxy):
    """A JS ``Array``: a list with ``length``, ``push``, ``includes``, ``join``..."""

    @property
    def length(self) -> int:
        return len(self)

    def push(self, *items: Any) -> int:
        self.extend(items)
        return len(self)

    def includes(self, item: Any) -> bool:
        return item in self

    def indexOf(self, item: Any) -> int:  # noqa: N802 - JS name
        try:
            return self.index(item)
        except ValueError:
            return -1

    def join(self, sep: str = ",") -> str:
        return sep.join("" if v is None else str(v) for v in self)

    def to_py(self, *_args: Any, **_kwargs: Any) -> list[Any]:
        return [to_py(v) for v in self]

    @classmethod
    def new(cls, *items: Any) -> JsArray:
        if len(items) == 1 and isinstance(items[0], int):
            return cls([None] * items[0])
        return cls(items)

    @staticmethod
    def isArray(value: Any) -> bool:  # noqa: N802 - JS name
        return isinstance(value, list)

    @classmethod
    def of(cls, *items: Any) -> JsArray:
        return cls(items)


setattr(JsArray, "from", classmethod(lambda cls, items, fn=None: cls(fn(v) if fn else v for v in items)))


def to_js(
    value: Any,
    *,
    depth: int = -1,
    dict_converter: Callable[[Iterable[Any]], Any] | None = None,
    default_converter: Callable[..., Any] | None = None,
    **_ignored: Any,
) -> Any:
    """``pyodide.ffi.to_js``: dicts -> ``Map`` (or ``dict_converter(entries)``), lists -> ``Array``,
    bytes -> ``Uint8Array``; anything else (including JS stand-ins) is passed through."""
    if depth == 0 or value is None or isinstance(value, (str, int, float, JsProxy)):
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return Uint8Array(value)
    nested = depth - 1 if depth > 0 else -1

    def conv(v: Any) -> Any:
        return to_js(v, depth=nested, dict_converter=dict_converter, default_converter=default_converter)

    if isinstance(value, Mapping):
        entries = [(k, conv(v)) for k, v in value.items()]
        if dict_converter is not None:
            return dict_converter(entries)
        return JsMap(entries)
    if isinstance(value, (list, tuple)):
        return JsArray(conv(v) for v in value)
    if isinstance(value, (set, frozenset)):
        return JsArray(conv(v) for v in value)
    if default_converter is not None:
        return default_converter(value, conv, None)
    return value


def to_py(value: Any, *_args: Any, **_kwargs: Any) -> Any:
    """``JsProxy.to_py`` / ``pyodide.ffi.to_py``: JS stand-ins back to plain Python values."""
    convert = getattr(value, "to_py", None)
    if isinstance(value, JsProxy) and convert is not None:
        return convert()
    return value


def _json_default(value: Any) -> Any:
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        # JSON.stringify(new Uint8Array([1, 2])) is {"0":1,"1":2}; an ArrayBuffer is {}
        return {} if isinstance(value, ArrayBuffer) else {str(i): b for i, b in enumerate(bytes(value))}
    to_json = getattr(value, "toJSON", None)
    if callable(to_json):
        return to_json()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise type_error(f"Do not know how to serialize a {type(value).__name__}")


class JSON:  # noqa: N801 - JS name
    """``JSON.stringify`` (compact, or indented by ``space``) and ``JSON.parse`` (objects -> ``JsObject``)."""

    @staticmethod
    def stringify(value: Any, replacer: Any = None, space: int | str | None = None) -> str | None:
        if callable(replacer) or isinstance(replacer, list):
            raise type_error("JSON.stringify: replacer functions and lists are not supported by flarelet")
        if isinstance(space, int):
            indent: int | str | None = min(space, 10) if space > 0 else None
        elif isinstance(space, str) and space:
            indent = space[:10]
        else:
            indent = None
        separators = (",", ": ") if indent is not None else (",", ":")
        try:
            return json.dumps(value, default=_json_default, ensure_ascii=False, indent=indent, separators=separators)
        except ValueError as exc:  # circular structure
            raise type_error(f"Converting circular structure to JSON ({exc})") from None

    @staticmethod
    def parse(text: str | bytes, reviver: Any = None) -> Any:
        try:
            return _wrap(json.loads(text))
        except json.JSONDecodeError as exc:
            raise JsExceptionSyntax(f"Unexpected token in JSON at position {exc.pos}") from None


def JsExceptionSyntax(message: str) -> Exception:  # noqa: N802 - builds the JS SyntaxError
    from .errors import JsException

    return JsException("SyntaxError", message)


def _wrap(value: Any) -> Any:
    if isinstance(value, dict):
        return JsObject({k: _wrap(v) for k, v in value.items()})
    if isinstance(value, list):
        return JsArray(_wrap(v) for v in value)
    return value


class Object:  # noqa: N801 - JS name
    """``Object.fromEntries``, ``keys``, ``values``, ``entries``, ``assign``, ``new``."""

    @staticmethod
    def new(init: Mapping[str, Any] | None = None) -> JsObject:
        return JsObject(init or {})

    @staticmethod
    def fromEntries(entries: Any) -> JsObject:  # noqa: N802 - JS name
        pairs = entries.items() if isinstance(entries, Mapping) else entries
        return JsObject((k, v) for k, v in pairs)

    @staticmethod
    def keys(obj: Any) -> JsArray:
        return JsArray(obj.keys() if isinstance(obj, Mapping) else vars(obj))

    @staticmethod
    def values(obj: Any) -> JsArray:
        return JsArray(obj.values() if isinstance(obj, Mapping) else vars(obj).values())

    @staticmethod
    def entries(obj: Any) -> JsArray:
        items = obj.items() if isinstance(obj, Mapping) else vars(obj).items()
        return JsArray(JsArray([k, v]) for k, v in items)

    @staticmethod
    def assign(target: Any, *sources: Mapping[str, Any]) -> Any:
        for source in sources:
            if source:
                target.update(source)
        return target


Array = JsArray
