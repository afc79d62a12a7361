"""Values crossing between a Python Worker and D1: bound parameters in, column values out.

On Cloudflare a Python Worker calls D1's JavaScript client through Pyodide, so every value is
converted twice, and both conversions are reproduced here:

* **In** (``bind``): Pyodide turns a Python ``int`` into a JS Number when -2^53 <= x <= 2^53 and
  into a BigInt beyond, which D1's ``bind()`` rejects (``D1_TYPE_ERROR: Type 'bigint' ...``); a
  ``float`` and a ``bool`` become a Number and a Boolean. D1 then sends the values to the database
  as JSON, where a whole number is an integer: D1's documented type conversion stores an integral
  Number as INTEGER and any other Number as REAL, a Boolean as INTEGER 1/0; NaN and +-Infinity
  have no JSON form and arrive as NULL. So ``5`` and ``5.0`` both bind as INTEGER 5 and ``2.5``
  as REAL. (Miniflare hands Numbers to SQLite as doubles, so under ``wrangler dev`` ``5`` binds
  as REAL: a difference from production that flarelet does not copy.)
* **Other Python values** (the ``workers`` runtime SDK wraps ``env.DB`` and converts each argument
  with ``python_to_rpc``): ``None`` becomes JS ``null``, which binds NULL (a bare Pyodide call would
  pass ``undefined``, which D1 rejects); ``bytes`` and ``memoryview`` become a ``Uint8Array`` and a
  list an ``Array``, which D1 binds as a BLOB when every item is a byte; a tuple or ``bytearray``
  is a ``TypeError`` (``<class 'tuple'> cannot be sent over RPC.``); a dict or any other list is a
  ``D1_TYPE_ERROR`` quoting ``String(value)`` (``[object Object]``, ``1,2,300``).
* **Out** (results): D1 answers JSON, read into JS Numbers, which Pyodide turns into ``int``
  when integral and within +-2^53, else ``float``. So an INTEGER beyond 2^53 loses precision
  (9007199254740993 reads as 9007199254740992; INT64 max as the float 9.223372036854776e18),
  a whole REAL reads as ``int``, +-Infinity and NaN read as ``None``, and a BLOB as a list of
  byte values.
"""

from __future__ import annotations

import math
from typing import Any

from flarelet.bindings.d1.errors import D1Error
from flarelet.bindings.jsobject import check_rpc_value, js_string

#: Pyodide's bound between Number and BigInt (inclusive) and the largest ``int`` it gives back
#: for a JS Number
PYODIDE_INT_BOUND = 2**53


def js_typeof(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "bigint" if abs(value) > PYODIDE_INT_BOUND else "number"
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
    if isinstance(value, int) and abs(value) <= PYODIDE_INT_BOUND:
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            return None  # JSON has no NaN/Infinity: D1 receives null
        return int(value) if value.is_integer() and abs(value) <= PYODIDE_INT_BOUND else value
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
    """A SQLite value as a Python Worker receives it (JSON, then a JS Number or Array, then Pyodide)."""
    if isinstance(value, bytes):
        return list(value)
    if isinstance(value, int) and abs(value) > PYODIDE_INT_BOUND:
        value = float(value)  # a JS Number: rounded to the nearest double
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        if value.is_integer() and abs(value) <= PYODIDE_INT_BOUND:
            return int(value)
    return value
