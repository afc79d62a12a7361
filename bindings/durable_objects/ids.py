"""Durable Object ids: 64 hex digits, as Cloudflare's.

workerd (``ActorIdFactoryImpl`` in ``server.c++``) builds a 32-byte id from a 16-byte base and a
16-byte MAC of that base keyed by the namespace: a name-derived base is the SHA-256 of the name
with its top bit set, a unique one is random with the top bit clear. So ``idFromName`` is stable
per namespace (and across restarts, which keeps persisted objects reachable), two namespaces give
different ids for one name, and ``idFromString`` can refuse an id made by another namespace.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re

from flarelet.bindings.jsobject import JsTypeError

_HEX64 = re.compile(r"[0-9a-f]{64}")


class DurableObjectId:
    """``DurableObjectId``: ``toString()``, ``equals()``, ``name`` (set for name-derived ids)."""

    __slots__ = ("_hex", "name")

    def __init__(self, hex_id: str, name: str | None = None) -> None:
        self._hex = hex_id
        self.name = name

    def toString(self) -> str:  # noqa: N802 - Cloudflare's name
        return self._hex

    to_string = toString

    def equals(self, other: object) -> bool:
        return isinstance(other, DurableObjectId) and other._hex == self._hex

    def __str__(self) -> str:
        return self._hex

    def __eq__(self, other: object) -> bool:
        return self.equals(other)

    def __hash__(self) -> int:
        return hash(self._hex)

    def __repr__(self) -> str:
        return f"DurableObjectId({self._hex!r})"


class IdFactory:
    """Makes and checks the ids of one namespace (keyed by its unique key)."""

    def __init__(self, unique_key: str) -> None:
        self._key = hashlib.sha256(unique_key.encode()).digest()

    def _mac(self, base: bytes) -> bytes:
        return hmac.new(self._key, base, hashlib.sha256).digest()[:16]

    def _make(self, base: bytes) -> str:
        return (base + self._mac(base)).hex()

    def from_name(self, name: str) -> DurableObjectId:
        if not isinstance(name, str):
            raise JsTypeError(f"idFromName(): the name must be a string, not {type(name).__name__}")
        base = bytearray(hashlib.sha256(name.encode("utf-8", "surrogatepass")).digest()[:16])
        base[0] |= 0x80
        return DurableObjectId(self._make(bytes(base)), name)

    def unique(self) -> DurableObjectId:
        base = bytearray(os.urandom(16))
        base[0] &= 0x7F
        return DurableObjectId(self._make(bytes(base)))

    def from_string(self, value: str) -> DurableObjectId:
        if not isinstance(value, str) or not _HEX64.fullmatch(value):
            raise JsTypeError("Invalid Durable Object ID: must be 64 hex digits")
        raw = bytes.fromhex(value)
        if not hmac.compare_digest(self._mac(raw[:16]), raw[16:]):
            raise JsTypeError("Durable Object ID is not valid for this namespace.")
        return DurableObjectId(value)
