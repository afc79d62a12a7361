"""JSON request bodies whose audio is an array of integers, parsed straight into bytes.

Cloudflare's classic Whisper input is ``{"audio": [0..255, ...]}``: a 25 MB file is a 25-million
item array, ~100 MB of JSON. ``json.loads`` turns it into a list of 25 million Python ints (8-byte
pointers, ~6x the body in RSS) and holds the GIL for seconds while doing so, which stalls every
other request on the event loop. :func:`parse_json_inputs` instead finds the array (``audio``, or
turbo's ``audio.body``) in the raw body, checks it is nothing but unsigned integers and commas,
and converts it with numpy a slice at a time into ``bytes`` (one byte per item), releasing the GIL
between slices; only the small rest of the document goes through ``json.loads``. Peak memory is
the body plus its ``bytes`` result plus one slice's scratch; anything unusual (floats, an array
nested deeper, a value over 255) falls back to ``json.loads`` so the validators name the offending
item exactly as before.
"""

from __future__ import annotations

import json
import re
import secrets
from typing import Any

#: the key (``audio``; turbo's ``body`` inside it) followed by the opening bracket of its array
_ARRAY_START = re.compile(rb'"(audio|body)"\s*:\s*\[')
#: what an array of unsigned integers is made of
_UINT_ARRAY_CHARS = b"0123456789, \t\n\r"
#: items are converted this many bytes of JSON at a time (bounded scratch memory, GIL released between)
SLICE_BYTES = 256 * 1024
#: below this, plain ``json.loads`` is as cheap and simpler
FAST_PATH_MIN_BYTES = 64 * 1024


def parse_json_inputs(body: bytes | bytearray, parse_constant: Any = None) -> Any:
    """``json.loads(body)``, except that a large integer ``audio`` (or ``audio.body``) array comes
    back as ``bytes``. Raises what ``json.loads`` raises for a body that is not JSON."""
    if len(body) >= FAST_PATH_MIN_BYTES:
        parsed = _parse_with_byte_array(body, parse_constant)
        if parsed is not None:
            return parsed
    return json.loads(body, parse_constant=parse_constant)


def _parse_with_byte_array(body: bytes | bytearray, parse_constant: Any) -> Any | None:
    """The parsed document with the biggest integer array as bytes; ``None`` to use the plain path."""
    best: tuple[int, int, bytes] | None = None
    for match in _ARRAY_START.finditer(body):
        start = match.end()  # first byte after "["
        end = body.find(b"]", start)
        if end < 0:
            return None
        if best is None or end - start > best[1] - best[0]:
            best = (start, end, match.group(1))
    if best is None:
        return None
    start, end, key = best
    if end - start < FAST_PATH_MIN_BYTES:
        return None
    data = _uint_items_to_bytes(body, start, end)
    if data is None:
        return None
    sentinel = "flarelet-byte-array-" + secrets.token_hex(8)
    rest = b"".join((body[: start - 1], json.dumps(sentinel).encode(), body[end + 1 :]))
    document = json.loads(rest, parse_constant=parse_constant)
    # the array must be where its key says: audio, or audio.body (not inside a string, not deeper)
    if isinstance(document, dict):
        if key == b"audio" and document.get("audio") == sentinel:
            document["audio"] = data
            return document
        inner = document.get("audio")
        if key == b"body" and isinstance(inner, dict) and inner.get("body") == sentinel:
            inner["body"] = data
            return document
    return None


def _uint_items_to_bytes(body: bytes | bytearray, start: int, end: int) -> bytes | None:
    """The items of ``body[start:end]`` (``1, 2,255``) as bytes; ``None`` unless every item is an
    integer 0..255 (numpy's text reader converts a slice without making a Python object per item;
    slices are cut at commas, so each holds whole items)."""
    import warnings

    import numpy as np

    out = bytearray()
    position = start
    while position < end:
        stop = min(end, position + SLICE_BYTES)
        if stop < end:
            comma = body.rfind(b",", position, stop)
            stop = comma if comma > position else end
        chunk = bytes(body[position:stop])
        position = stop + 1
        if chunk.translate(None, _UINT_ARRAY_CHARS):
            return None  # a sign, a decimal point, a nested value...: the exact path explains it
        if not chunk.strip():
            return None  # an empty item
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # numpy warns (and stops) on text it cannot read to the end
            try:
                values = np.fromstring(chunk, dtype=np.int64, sep=",")
            except (ValueError, DeprecationWarning):
                return None
        if values.size != chunk.count(b",") + 1 or values.max() > 255:
            return None
        out += values.astype(np.uint8).tobytes()
    return bytes(out)
