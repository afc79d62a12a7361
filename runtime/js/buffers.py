"""``ArrayBuffer`` and ``Uint8Array`` as Python byte types.

Worker code passes JS byte containers around (``to_js(png_bytes).buffer`` into a ``Response``,
``TextEncoder().encode(s)`` into ``crypto.subtle``). Subclassing ``bytes``/``bytearray`` gives these
stand-ins the buffer protocol, so every Python API that takes bytes takes them, while they also
answer the JS/Pyodide spellings (``byteLength``, ``buffer``, ``to_bytes()``, ``subarray``...).
A ``Uint8Array``'s ``buffer`` is a snapshot of its bytes, not a shared view (a JS view would share
memory; no worker in the wild mutates one through the other).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .errors import JsProxy, type_error


def as_bytes(value: Any, what: str = "argument") -> bytes:
    """Bytes of a BufferSource (``ArrayBuffer``, typed array, ``bytes``-like); else a JS ``TypeError``."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise type_error(f"Failed to execute: {what} is not of type 'ArrayBuffer' or 'ArrayBufferView'.")


class ArrayBuffer(bytes, JsProxy):
    """A JS ``ArrayBuffer``: immutable bytes with ``byteLength``, ``slice`` and Pyodide's ``to_bytes()``."""

    __slots__ = ()

    @classmethod
    def new(cls, length: int = 0) -> ArrayBuffer:
        return cls(bytes(int(length)))

    @property
    def byteLength(self) -> int:  # noqa: N802 - JS name
        return len(self)

    def slice(self, begin: int = 0, end: int | None = None) -> ArrayBuffer:
        return ArrayBuffer(bytes(self)[begin:end])

    def to_bytes(self) -> bytes:
        return bytes(self)

    def to_py(self, *_args: Any, **_kwargs: Any) -> memoryview:
        return memoryview(bytes(self))

    def to_memoryview(self) -> memoryview:
        return memoryview(bytes(self))

    @staticmethod
    def isView(value: Any) -> bool:  # noqa: N802 - JS name
        return isinstance(value, Uint8Array)

    def __repr__(self) -> str:
        return f"ArrayBuffer({len(self)} bytes)"


class Uint8Array(bytearray, JsProxy):
    """A JS ``Uint8Array``: mutable bytes with ``length``, ``byteLength``, ``buffer``, ``subarray``..."""

    # bytearray subclasses cannot use non-empty __slots__ usefully; no extra state is kept

    def __init__(self, source: Any = 0, byte_offset: int = 0, length: int | None = None) -> None:
        if isinstance(source, int):
            super().__init__(source)
            return
        if isinstance(source, (bytes, bytearray, memoryview)):
            data = bytes(source)
            end = None if length is None else byte_offset + length
            super().__init__(data[byte_offset:end])
            return
        if isinstance(source, Iterable):
            super().__init__(int(v) & 0xFF for v in source)
            return
        raise type_error(f"Uint8Array: cannot construct from {type(source).__name__}")

    @classmethod
    def new(cls, source: Any = 0, byte_offset: int = 0, length: int | None = None) -> Uint8Array:
        return cls(source, byte_offset, length)

    @classmethod
    def of(cls, *values: int) -> Uint8Array:
        return cls(values)

    @property
    def length(self) -> int:
        return len(self)

    @property
    def byteLength(self) -> int:  # noqa: N802 - JS name
        return len(self)

    @property
    def byteOffset(self) -> int:  # noqa: N802 - JS name
        return 0

    BYTES_PER_ELEMENT = 1

    @property
    def buffer(self) -> ArrayBuffer:
        return ArrayBuffer(bytes(self))

    def subarray(self, begin: int = 0, end: int | None = None) -> Uint8Array:
        return Uint8Array(bytes(self)[begin:end])

    def slice(self, begin: int = 0, end: int | None = None) -> Uint8Array:
        return Uint8Array(bytes(self)[begin:end])

    def set(self, source: Any, offset: int = 0) -> None:
        data = bytes(source) if isinstance(source, (bytes, bytearray, memoryview)) else bytes(source)
        if offset + len(data) > len(self):
            raise JsRangeError("offset is out of bounds")
        self[offset : offset + len(data)] = data

    def fill(self, value: int, start: int = 0, end: int | None = None) -> Uint8Array:
        stop = len(self) if end is None else end
        self[start:stop] = bytes([value & 0xFF]) * max(0, stop - start)
        return self

    def to_bytes(self) -> bytes:
        return bytes(self)

    def to_py(self, *_args: Any, **_kwargs: Any) -> memoryview:
        return memoryview(self)

    def to_memoryview(self) -> memoryview:
        return memoryview(self)

    def __repr__(self) -> str:
        return f"Uint8Array({len(self)} bytes)"


def JsRangeError(message: str) -> Exception:  # noqa: N802 - reads as the JS error it builds
    from .errors import JsException

    return JsException("RangeError", message)


setattr(Uint8Array, "from", classmethod(lambda cls, source: cls(source)))
