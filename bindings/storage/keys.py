"""Keys as stored: UTF-8 bytes in BLOB columns, ordered and paged like Cloudflare's.

KV and R2 list keys in lexicographic order of their UTF-8 bytes. Storing keys as BLOBs makes
SQLite compare them with ``memcmp`` -- exactly that order -- and keeps keys holding NUL
characters intact (SQLite's text functions stop at the first NUL). Prefix scans become byte
ranges ``[prefix, prefix_upper_bound(prefix))`` that use the primary-key index.
"""

from __future__ import annotations

import base64
import binascii
import math
import re


def encode_key(key: str) -> bytes:
    return key.encode("utf-8", "surrogatepass")


def decode_key(raw: bytes) -> str:
    return bytes(raw).decode("utf-8", "surrogatepass")


def utf8_length(text: str) -> int:
    """``Buffer.byteLength(text)`` (a lone surrogate counts 3 bytes, as its U+FFFD would)."""
    return len(text.encode("utf-8", "surrogatepass"))


def prefix_upper_bound(prefix: bytes) -> bytes | None:
    """Smallest byte string greater than every string starting with ``prefix`` (``None``: no bound)."""
    trimmed = prefix.rstrip(b"\xff")
    if not trimmed:
        return None
    return trimmed[:-1] + bytes([trimmed[-1] + 1])


def encode_cursor(last_key: bytes) -> str:
    """An opaque cursor: the key to resume *after* (so keys added meanwhile are still listed)."""
    return base64.urlsafe_b64encode(last_key).decode("ascii").rstrip("=")


def decode_cursor(cursor: str) -> bytes | None:
    """The key a cursor resumes after, or ``None`` for a cursor we did not issue."""
    if not isinstance(cursor, str) or not cursor:
        return None
    try:
        return base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    except (binascii.Error, ValueError):
        return None


def js_number_str(value: float | int) -> str:
    """A number as JS ``String(n)`` prints it (``30.0`` -> ``"30"``), for error messages."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        if value.is_integer() and abs(value) < 1e21:
            return str(int(value))
        return repr(value)
    return str(value)


def js_parse_int(value: object) -> int | None:
    """JS ``parseInt(String(value))`` for numbers and numeric strings; ``None`` for ``NaN``."""
    text = js_number_str(value) if isinstance(value, (int, float)) else str(value)
    text = text.strip()
    sign = 1
    if text[:1] in "+-" and text:
        sign = -1 if text[0] == "-" else 1
        text = text[1:]
    digits = ""
    for ch in text:
        if ch.isdigit() and ch.isascii():
            digits += ch
        else:
            break
    return sign * int(digits) if digits else None


_JS_DECIMAL = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


def js_to_number(value: object) -> float:
    """JS ``Number(value)`` for what a Python value becomes in JS (``"abc"`` -> NaN, ``""`` -> 0)."""
    if value is None:
        return 0.0
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, (int, float)):
        return float(value)
    text = str(value).strip()
    if not text:
        return 0.0
    if _JS_DECIMAL.match(text):
        return float(text)
    if text in ("Infinity", "+Infinity", "-Infinity"):
        return float(text.replace("Infinity", "inf"))
    if text[:2].lower() in ("0x", "0o", "0b"):
        try:
            return float(int(text, 0))
        except ValueError:
            return math.nan
    return math.nan


def js_to_int32(value: object) -> int:
    """What workerd's ``jsg::Optional<int>`` options receive: JS ``ToInt32(Number(value))``
    (``"abc"`` and NaN -> 0, ``30.9`` -> 30)."""
    number = js_to_number(value)
    if not math.isfinite(number):
        return 0
    wrapped = int(number) % 2**32
    return wrapped - 2**32 if wrapped >= 2**31 else wrapped
