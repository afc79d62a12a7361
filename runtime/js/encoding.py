"""``TextEncoder``, ``TextDecoder``, ``atob`` and ``btoa`` as workerd implements them.

``atob`` is the WHATWG "forgiving base64" decode: ASCII whitespace is ignored, padding may be
missing, and anything else outside the alphabet throws an ``InvalidCharacterError`` DOMException.
Both functions use JS "binary strings" (one character per byte, code points 0-255).
"""

from __future__ import annotations

import base64
import binascii
import codecs
import re
from typing import Any

from .buffers import Uint8Array
from .errors import JsProxy, dom_exception, type_error

_B64_ALPHABET = re.compile(r"^[A-Za-z0-9+/]*$")
_ASCII_WHITESPACE = re.compile(r"[\t\n\f\r ]")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def atob(data: Any) -> str:
    text = _ASCII_WHITESPACE.sub("", str(data))
    if len(text) % 4 == 0:
        if text.endswith("=="):
            text = text[:-2]
        elif text.endswith("="):
            text = text[:-1]
    if len(text) % 4 == 1 or not _B64_ALPHABET.match(text):
        raise dom_exception("InvalidCharacterError", "atob() called with invalid base64-encoded data.")
    padded = text + "=" * (-len(text) % 4)
    try:
        return base64.b64decode(padded).decode("latin-1")
    except binascii.Error:
        raise dom_exception("InvalidCharacterError", "atob() called with invalid base64-encoded data.") from None


def btoa(data: Any) -> str:
    text = str(data)
    try:
        raw = text.encode("latin-1")
    except UnicodeEncodeError:
        raise dom_exception(
            "InvalidCharacterError", "btoa() can only operate on characters in the Latin1 (ISO/IEC 8859-1) range."
        ) from None
    return base64.b64encode(raw).decode("ascii")


class TextEncoder(JsProxy):
    """UTF-8 only, as in every browser and workerd."""

    __slots__ = ()
    encoding = "utf-8"

    @classmethod
    def new(cls) -> TextEncoder:
        return cls()

    def encode(self, text: Any = "") -> Uint8Array:
        # a lone surrogate becomes U+FFFD, as JS's UTF-8 encoder does
        return Uint8Array(_LONE_SURROGATE.sub("\ufffd", str(text)).encode("utf-8"))

    def encodeInto(self, text: str, dest: Uint8Array) -> dict[str, int]:  # noqa: N802 - JS name
        from .objects import JsObject

        data = b""
        read = 0
        for ch in str(text):
            piece = ch.encode("utf-8", "replace")
            if len(data) + len(piece) > len(dest):
                break
            data += piece
            read += 2 if ord(ch) > 0xFFFF else 1
        dest[: len(data)] = data
        return JsObject(read=read, written=len(data))


_LABELS = {"utf8": "utf-8", "unicode-1-1-utf-8": "utf-8", "latin1": "windows-1252", "ascii": "windows-1252"}


class TextDecoder(JsProxy):
    """``TextDecoder(label="utf-8", {fatal, ignoreBOM})``; ``decode(buf, {stream})``."""

    __slots__ = ("encoding", "fatal", "ignoreBOM", "_decoder", "_bom_seen")

    def __init__(self, label: str = "utf-8", options: Any = None, **kwargs: Any) -> None:
        opts = dict(options or {}, **kwargs)
        name = _LABELS.get(str(label).strip().lower(), str(label).strip().lower())
        try:
            codecs.lookup(name)
        except LookupError:
            raise dom_exception(
                "RangeError",
                f"Failed to construct 'TextDecoder': The encoding label provided (\"{label}\") is invalid.",
            ) from None
        self.encoding = name
        self.fatal = bool(opts.get("fatal", False))
        self.ignoreBOM = bool(opts.get("ignoreBOM", False))  # noqa: N815 - JS name
        self._decoder: Any = None
        self._bom_seen = False

    @classmethod
    def new(cls, label: str = "utf-8", options: Any = None, **kwargs: Any) -> TextDecoder:
        return cls(label, options, **kwargs)

    def decode(self, data: Any = None, options: Any = None, **kwargs: Any) -> str:
        stream = bool(dict(options or {}, **kwargs).get("stream", False))
        if data is None:
            raw = b""
        elif isinstance(data, (bytes, bytearray, memoryview)):
            raw = bytes(data)
        else:
            raise type_error("TextDecoder.decode: argument is not an ArrayBuffer or ArrayBufferView")
        if self._decoder is None:
            self._decoder = codecs.getincrementaldecoder(self.encoding)("strict" if self.fatal else "replace")
            self._bom_seen = False
        try:
            text = self._decoder.decode(raw, final=not stream)
        except UnicodeDecodeError:
            self._decoder = None
            raise type_error("The encoded data was not valid for encoding " + self.encoding) from None
        if not self._bom_seen and text:
            self._bom_seen = True
            if not self.ignoreBOM and self.encoding == "utf-8" and text.startswith("\ufeff"):
                text = text[1:]
        if not stream:
            self._decoder = None
        return text
