"""``URL`` and ``URLSearchParams`` (WHATWG URL Standard).

Parsing and the setters go through ``ada-url`` — the same C++ parser (ada) that workerd and
Node.js use for ``URL`` — so normalisation (``/a/../b``, IDNA hosts, default ports, percent
encoding) matches Cloudflare's exactly. ``searchParams`` is live, as in JS: changing it rewrites
``url.search`` and vice versa. Query strings use the ``application/x-www-form-urlencoded``
serializer (space as ``+``, only ``*-._`` and alphanumerics left bare).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any
from urllib.parse import parse_qsl, quote_plus

from .errors import JsProxy, type_error


def _ada() -> Any:
    import ada_url  # lazy: only workers that build URLs pay for the import

    return ada_url


def _encode(text: str) -> str:
    return quote_plus(text, safe="*").replace("~", "%7E")


class URLSearchParams(JsProxy):
    __slots__ = ("_pairs", "_url")

    def __init__(self, init: Any = None) -> None:
        self._url: URL | None = None
        self._pairs: list[tuple[str, str]] = []
        if init is None:
            return
        if isinstance(init, URLSearchParams):
            self._pairs = list(init._pairs)
        elif isinstance(init, str):
            self._pairs = _parse(init)
        elif isinstance(init, Mapping):
            self._pairs = [(str(k), str(v)) for k, v in init.items()]
        elif isinstance(init, Iterable):
            for pair in init:
                items = list(pair)
                if len(items) != 2:
                    raise type_error(
                        "Failed to construct 'URLSearchParams': Sequence initializer must only contain pair elements"
                    )
                self._pairs.append((str(items[0]), str(items[1])))
        else:
            raise type_error(f"Failed to construct 'URLSearchParams': unsupported init {type(init).__name__}")

    @classmethod
    def new(cls, init: Any = None) -> URLSearchParams:
        return cls(init)

    def _changed(self) -> None:
        if self._url is not None:
            self._url._set_search_from_params(self.toString())

    def append(self, name: str, value: Any) -> None:
        self._pairs.append((str(name), str(value)))
        self._changed()

    def delete(self, name: str, value: Any = None) -> None:
        self._pairs = [(k, v) for k, v in self._pairs if not (k == name and (value is None or v == str(value)))]
        self._changed()

    def get(self, name: str) -> str | None:
        return next((v for k, v in self._pairs if k == name), None)

    def getAll(self, name: str) -> list[str]:  # noqa: N802 - JS name
        return [v for k, v in self._pairs if k == name]

    def has(self, name: str, value: Any = None) -> bool:
        return any(k == name and (value is None or v == str(value)) for k, v in self._pairs)

    def set(self, name: str, value: Any) -> None:
        name, value = str(name), str(value)
        out: list[tuple[str, str]] = []
        placed = False
        for k, v in self._pairs:
            if k == name:
                if not placed:
                    out.append((k, value))
                    placed = True
            else:
                out.append((k, v))
        if not placed:
            out.append((name, value))
        self._pairs = out
        self._changed()

    def sort(self) -> None:
        self._pairs.sort(key=lambda kv: kv[0].encode("utf-16-be"))
        self._changed()

    @property
    def size(self) -> int:
        return len(self._pairs)

    def keys(self) -> Iterator[str]:
        return iter([k for k, _ in self._pairs])

    def values(self) -> Iterator[str]:
        return iter([v for _, v in self._pairs])

    def entries(self) -> Iterator[list[str]]:
        return iter([[k, v] for k, v in self._pairs])

    def forEach(self, callback: Any) -> None:  # noqa: N802 - JS name
        for k, v in list(self._pairs):
            callback(v, k, self)

    def toString(self) -> str:  # noqa: N802 - JS name
        return "&".join(f"{_encode(k)}={_encode(v)}" for k, v in self._pairs)

    def __iter__(self) -> Iterator[list[str]]:
        return self.entries()

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.has(name)

    def __len__(self) -> int:
        return len(self._pairs)

    def __str__(self) -> str:
        return self.toString()

    def __repr__(self) -> str:
        return f"URLSearchParams({self.toString()!r})"


def _parse(query: str) -> list[tuple[str, str]]:
    if query.startswith("?"):
        query = query[1:]
    return parse_qsl(query, keep_blank_values=True)


_PARTS = ("href", "protocol", "username", "password", "host", "hostname", "port", "pathname", "search", "hash")


class URL(JsProxy):
    """``URL.new(url, base=None)`` (or ``URL(url, base)``); invalid input throws ``TypeError: Invalid URL string.``"""

    __slots__ = ("_url", "_params")

    def __init__(self, url: Any, base: Any = None) -> None:
        ada = _ada()
        try:
            self._url = ada.URL(str(url), None if base is None else str(base))
        except ValueError:
            raise type_error("Invalid URL string.") from None
        self._params = URLSearchParams(self._url.search)
        self._params._url = self

    @classmethod
    def new(cls, url: Any, base: Any = None) -> URL:
        return cls(url, base)

    @staticmethod
    def canParse(url: Any, base: Any = None) -> bool:  # noqa: N802 - JS name
        return bool(_ada().URL.can_parse(str(url), None if base is None else str(base)))

    @classmethod
    def parse(cls, url: Any, base: Any = None) -> URL | None:
        try:
            return cls(url, base)
        except Exception:  # noqa: BLE001 - JS URL.parse returns null on any failure
            return None

    def __getattr__(self, name: str) -> Any:
        if name in _PARTS:
            return getattr(self._url, name)
        if name == "origin":
            return self._url.origin
        raise AttributeError(name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name in URL.__slots__:
            object.__setattr__(self, name, value)
            return
        if name not in _PARTS:
            raise AttributeError(f"URL has no settable property {name!r}")
        try:
            setattr(self._url, name, str(value))
        except ValueError:
            if name == "href":
                raise type_error("Invalid URL string.") from None
            return  # JS ignores invalid values for the other setters
        if name in ("search", "href"):
            self._params._pairs = _parse(self._url.search)

    def _set_search_from_params(self, query: str) -> None:
        self._url.search = query

    @property
    def searchParams(self) -> URLSearchParams:  # noqa: N802 - JS name
        return self._params

    def toString(self) -> str:  # noqa: N802 - JS name
        return self._url.href

    toJSON = toString

    def __str__(self) -> str:
        return self._url.href

    def __repr__(self) -> str:
        return f"URL({self._url.href!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, URL) and other.href == self.href

    def __hash__(self) -> int:
        return hash(self._url.href)
