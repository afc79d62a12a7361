"""``Headers``: the Fetch API header list, usable the JavaScript way and the Python way.

Cloudflare's Python SDK hands workers two flavours of headers: request headers behave like a JS
``Headers`` (``get``, ``has``, ``set``, ``append``, ``delete``, ``entries``), while
``Response.headers`` behaves like ``http.client.HTTPMessage`` (``headers["content-type"]``,
``get_all``, ``items()``). Worker code written against either must run unchanged, so this one
class offers both. Names are case-insensitive and stored lower-cased (as the Fetch spec does);
values keep their order and multiplicity, so ``Set-Cookie`` survives round trips.

Incoming requests build their headers lazily from the raw ASGI list (:meth:`Headers._from_raw`),
so a handler that never looks at headers pays nothing for them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Union

HeadersInit = Union["Headers", Mapping[str, str], Iterable[tuple[str, str]], None]


class Headers:
    """Case-insensitive, multi-valued HTTP headers (Fetch ``Headers`` + ``HTTPMessage`` API)."""

    __slots__ = ("_items",)

    def __init__(self, init: HeadersInit | Any = None) -> None:
        self._items: list[tuple[str, str]] = []
        if init is None:
            return
        if isinstance(init, Headers):
            self._items = list(init._items)
            return
        if type(init) is dict or isinstance(init, Mapping):
            pairs: Iterable[Any] = init.items()
        elif hasattr(init, "items") and callable(init.items):  # HTTPMessage, JsDict-likes
            pairs = init.items()
        else:
            pairs = init
        for pair in pairs:
            try:
                name, value = pair
            except (TypeError, ValueError):
                raise TypeError(f"Headers expects (name, value) pairs, got {pair!r}") from None
            self.append(name, value)

    @classmethod
    def _from_raw(cls, raw: Iterable[tuple[bytes, bytes]]) -> Headers:
        """Build from ASGI ``[(b"name", b"value")]`` (names already lower-case per ASGI)."""
        headers = cls.__new__(cls)
        headers._items = [(k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in raw]
        return headers

    def _raw(self) -> list[tuple[bytes, bytes]]:
        return [(k.encode("latin-1"), v.encode("latin-1")) for k, v in self._items]

    # -- Fetch API -------------------------------------------------------------------------
    def get(self, name: str, default: Any = None) -> str | Any:
        """All values of ``name`` joined by ``", "`` (Fetch semantics), or ``default``."""
        key = name.lower()
        values = [v for k, v in self._items if k == key]
        if not values:
            return default
        return values[0] if len(values) == 1 else ", ".join(values)

    def has(self, name: str) -> bool:
        key = name.lower()
        return any(k == key for k, _ in self._items)

    def set(self, name: str, value: Any) -> None:
        key = _check_name(name)
        value = _check_value(value)
        items = self._items
        for i, (k, _) in enumerate(items):
            if k == key:
                items[i] = (key, value)
                self._items = [p for j, p in enumerate(items) if j <= i or p[0] != key]
                return
        items.append((key, value))

    def append(self, name: str, value: Any) -> None:
        self._items.append((_check_name(name), _check_value(value)))

    def delete(self, name: str) -> None:
        key = name.lower()
        self._items = [p for p in self._items if p[0] != key]

    def getAll(self, name: str) -> list[str]:  # noqa: N802 - Cloudflare's JS name
        key = name.lower()
        return [v for k, v in self._items if k == key]

    def getSetCookie(self) -> list[str]:  # noqa: N802 - Fetch API name
        return self.getAll("set-cookie")

    def entries(self) -> Iterator[tuple[str, str]]:
        return iter(list(self._items))

    # -- Python mapping / HTTPMessage API ----------------------------------------------------
    get_all = getAll
    getlist = getAll

    def __getitem__(self, name: str) -> str | None:
        # HTTPMessage returns None for a missing header rather than raising.
        return self.get(name)

    def __setitem__(self, name: str, value: Any) -> None:
        self.set(name, value)

    def __delitem__(self, name: str) -> None:
        self.delete(name)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.has(name)

    def keys(self) -> list[str]:
        seen: dict[str, None] = {}
        for k, _ in self._items:
            seen.setdefault(k, None)
        return list(seen)

    def values(self) -> list[str]:
        return [self.get(k) for k in self.keys()]

    def items(self) -> list[tuple[str, str]]:
        """Unique names with joined values (``dict(headers)`` round-trips through this)."""
        return [(k, self.get(k)) for k in self.keys()]

    def multi_items(self) -> list[tuple[str, str]]:
        return list(self._items)

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def __len__(self) -> int:
        return len(self.keys())

    def __bool__(self) -> bool:
        return bool(self._items)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Headers):
            return sorted(self._items) == sorted(other._items)
        if isinstance(other, Mapping):
            return dict(self.items()) == {str(k).lower(): v for k, v in other.items()}
        return NotImplemented

    def copy(self) -> Headers:
        return Headers(self)

    def to_dict(self) -> dict[str, str]:
        return dict(self.items())

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"


_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
#: validated name -> lower-case form; header names repeat, so each is checked once
_NAMES: dict[str, str] = {}


def _check_name(name: Any) -> str:
    lowered = _NAMES.get(name) if isinstance(name, str) else None
    if lowered is not None:
        return lowered
    if not isinstance(name, str) or not _TOKEN.fullmatch(name):
        raise TypeError(f"Invalid header name: {name!r}")
    lowered = name.lower()
    if len(_NAMES) < 4096:
        _NAMES[name] = lowered
    return lowered


def _check_value(value: Any) -> str:
    if not isinstance(value, str):
        if isinstance(value, bool) or value is None:
            raise TypeError(f"Invalid header value: {value!r} (expected str)")
        value = str(value)
    value = value.strip(" \t")
    if "\r" in value or "\n" in value or "\0" in value:
        raise TypeError(f"Invalid header value: {value!r}")
    if not value.isascii():
        # a header value is a ByteString: workerd throws where it is set, never at send time
        try:
            value.encode("latin-1")
        except UnicodeEncodeError:
            raise TypeError(
                f"Invalid header value: {value!r} (header values must be ISO-8859-1; percent-encode "
                "other characters, e.g. urllib.parse.quote)"
            ) from None
    return value
