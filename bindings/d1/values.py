"""Values crossing between a Python Worker and D1: bound parameters in, column values out."""

from __future__ import annotations

import math
from typing import Any

from flarelet.bindings.d1.constants import MAX_SAFE_INTEGER
from flarelet.bindings.d1.errors import D1Error
from flarelet.bindings.jsobject import JsDict, check_rpc_value

# -- values ----------------------------------------------------------------------------------


def js_string(value: Any) -> str:
    """``String(value)`` of what ``value`` becomes in JS, for ``D1_TYPE_ERROR`` messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, JsDict)):
        return "[object Object]"
    if isinstance(value, list):
        return ",".join("" if v is None else js_string(v) for v in value)
    return str(value)


def js_typeof(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "bigint" if abs(value) > MAX_SAFE_INTEGER else "number"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if callable(value):
        return "function"
    return "object"


def convert_bind_value(value: Any) -> Any:
    """A Python value bound to ``?`` as D1's ``bind()`` accepts it, else ``D1_TYPE_ERROR``."""
    check_rpc_value(value)
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return 1 if value else 0
    if isinstance(value, int) and abs(value) <= MAX_SAFE_INTEGER:
        return value
    if isinstance(value, float):
        return None if math.isnan(value) else value
    if isinstance(value, (bytes, memoryview)):
        return bytes(value)
    if isinstance(value, list) and all(isinstance(b, int) and not isinstance(b, bool) and 0 <= b < 256 for b in value):
        return bytes(value)
    kind, text = js_typeof(value), js_string(value)
    raise D1Error(
        f"D1_TYPE_ERROR: Type '{kind}' not supported for value '{text}'",
        f"Type '{kind}' not supported for value '{text}'",
    )


def out_value(value: Any) -> Any:
    """A SQLite value as a Python Worker receives it (through a JS number / array)."""
    if isinstance(value, bytes):
        return list(value)
    if isinstance(value, float) and value.is_integer() and abs(value) <= MAX_SAFE_INTEGER:
        return int(value)
    return value
