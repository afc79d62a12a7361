"""``caches.default`` and ``await caches.open(name)``: Cloudflare's Cache API, locally.

::

    cache = caches.default
    cached = await cache.match(request)
    if cached is None:
        cached = await fetch(request)
        self.ctx.waitUntil(cache.put(request, cached.clone()))

What each call does follows workerd and Cloudflare's documentation:

* ``put(request, response)``: the request must be a ``GET`` and the response neither a ``206`` nor
  ``Vary: *`` (each a ``TypeError``); the body is read whole; whether and how long it is kept is
  :func:`.policy.decide` (Cache-Control, Expires, Age, Set-Cookie, default Edge TTLs). A response
  that may not be stored is dropped silently, as on Cloudflare. Entries larger than
  ``max_entry_bytes`` (512 MiB, Cloudflare's limit; ``[flarelet.cache] max_entry_bytes``) are
  dropped with a warning in the log.
* ``match(request, {ignoreMethod})``: ``None`` for a miss or a non-GET request (unless
  ``ignoreMethod``); a hit carries ``CF-Cache-Status: HIT``, ``Age`` and ``Content-Length``;
  ``If-None-Match`` / ``If-Modified-Since`` give a ``304``; ``Range`` on a cached ``200`` gives a
  ``206`` (several ranges: ``multipart/byteranges``) or a ``416``, read as Miniflare reads it.
* ``Vary``: ``*`` is refused; other values do not split the cache by default -- Cloudflare varies
  only under a Vary cache rule, and Miniflare never -- so the last ``put`` of a URL wins;
  ``[flarelet.cache] vary = true`` (the rule) keeps one entry per request-header variant.
* ``delete(request, {ignoreMethod})``: ``True`` when an entry was removed.

The ``caches`` object is module level, as the global is in workerd; the host binds it to the
worker's store (:func:`bind`), on disk under ``--persist-to`` or in memory.
"""

from __future__ import annotations

import logging
import re
import secrets
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ..context import current_env
from ..headers import Headers
from ..request import Request
from ..response import FetchResponse, Response
from .policy import decide, vary_names
from .store import CacheStore, Entry, variant_key

log = logging.getLogger("flarelet")

#: Cloudflare's largest cacheable object (Cache API), configurable as ``[flarelet.cache] max_entry_bytes``
DEFAULT_MAX_ENTRY_BYTES = 512 * 1024 * 1024
_DEFAULT = "default"


def _option(options: Any, kwargs: Mapping[str, Any], name: str, alias: str) -> bool:
    for key in (name, alias):
        if key in kwargs:
            return bool(kwargs[key])
    if options is None:
        return False
    if isinstance(options, Mapping):
        return bool(options.get(name, options.get(alias, False)))
    return bool(getattr(options, name, getattr(options, alias, False)))


def _request(value: Any) -> Request:
    value = getattr(value, "js_object", value)
    if isinstance(value, Request):
        return value
    if isinstance(value, str):
        return Request(value)
    url = getattr(value, "url", None)
    if isinstance(url, str):
        return Request(url)
    raise TypeError(f"Cache: expected a Request or a URL string, got {type(value).__name__}")


def _key(url: str) -> str:
    return url.split("#", 1)[0]


def _etag(value: str) -> str | None:
    value = value.strip()
    if value.startswith("W/"):
        value = value[2:]
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return None


def _not_modified(request: Request, headers: Headers) -> bool:
    inm, etag = request.headers.get("if-none-match"), headers.get("etag")
    if inm is not None and etag is not None and (ours := _etag(etag)) is not None:
        if inm.strip() == "*" or any(_etag(v) == ours for v in inm.split(",")):
            return True
    ims, modified = request.headers.get("if-modified-since"), headers.get("last-modified")
    if ims is not None and modified is not None:
        from email.utils import parsedate_to_datetime

        try:
            return parsedate_to_datetime(modified) <= parsedate_to_datetime(ims)
        except (TypeError, ValueError, IndexError):
            return False
    return False


_RANGE_UNIT = re.compile(r"^ *bytes *=", re.IGNORECASE)
_RANGE = re.compile(r"^ *(\d+)? *- *(\d+)? *$")


def parse_ranges(value: str, size: int) -> list[tuple[int, int]] | None:
    """A ``Range`` header as Miniflare's cache reads it: inclusive ``(start, end)`` pairs, ``[]`` for
    the whole body (an empty list, or a suffix at least as long as the body), ``None`` for 416
    (another unit, a malformed or reversed range, or a start past the end)."""
    unit = _RANGE_UNIT.match(value)
    if unit is None:
        return None
    spec = value[unit.end() :]
    if not spec.strip():
        return []
    ranges: list[tuple[int, int]] = []
    for part in spec.split(","):
        m = _RANGE.match(part)
        if m is None:
            return None
        first, last = m.group(1), m.group(2)
        if first is not None:
            start = int(first)
            end = int(last) if last is not None else size - 1
            if start > end or start >= size:
                return None
            ranges.append((start, min(end, size - 1)))
        elif last is not None:
            suffix = int(last)
            if suffix >= size:
                return []
            if suffix:
                ranges.append((size - suffix, size - 1))
        else:
            return None
    return ranges


def _ranged(entry: Entry, headers: Headers, ranges: list[tuple[int, int]]) -> Response:
    size = len(entry.body)
    if len(ranges) == 1:
        start, end = ranges[0]
        headers.set("content-range", f"bytes {start}-{end}/{size}")
        headers.set("content-length", str(end - start + 1))
        return Response._from_parts(206, headers, entry.body[start : end + 1] or None)
    boundary = secrets.token_hex(12)
    ctype = headers.get("content-type")
    parts = bytearray()
    for start, end in ranges:
        parts += f"--{boundary}\r\n".encode()
        if ctype:
            parts += f"Content-Type: {ctype}\r\n".encode()
        parts += f"Content-Range: bytes {start}-{end}/{size}\r\n\r\n".encode()
        parts += entry.body[start : end + 1] + b"\r\n"
    parts += f"--{boundary}--\r\n".encode()
    headers.set("content-type", f"multipart/byteranges; boundary={boundary}")
    headers.set("content-length", str(len(parts)))
    return Response._from_parts(206, headers, bytes(parts))


class Cache:
    """One named cache (``caches.default`` or ``await caches.open(name)``)."""

    def __init__(self, name: str, storage: CacheStorage) -> None:
        self._name = name
        self._storage = storage

    async def match(self, request: Any, options: Any = None, **kwargs: Any) -> Response | None:
        req = _request(request)
        if req.method != "GET" and not _option(options, kwargs, "ignoreMethod", "ignore_method"):
            return None
        now = self._storage.clock()
        for entry in await self._storage.store.variants(self._name, _key(req.url), now):
            if variant_key(entry.vary, req.headers.get) != entry.variant:
                continue
            return self._hit(req, entry, now)
        return None

    def _hit(self, req: Request, entry: Entry, now: float) -> Response:
        headers = Headers(entry.headers)
        age = int(headers.get("age") or 0) if (headers.get("age") or "").isdigit() else 0
        headers.set("age", str(age + int(now - entry.stored_at)))
        headers.set("cf-cache-status", "HIT")
        if _not_modified(req, headers):
            return Response._from_parts(304, headers, None)
        range_header = req.headers.get("range")
        if range_header is not None and entry.status == 200:
            ranges = parse_ranges(range_header, len(entry.body))
            if ranges is None:
                return Response._from_parts(
                    416, Headers({"content-range": f"bytes */{len(entry.body)}", "cf-cache-status": "HIT"}), None
                )
            if ranges:
                return _ranged(entry, headers, ranges)
        return Response._from_parts(entry.status, headers, entry.body or None)

    async def put(self, request: Any, response: Any) -> None:
        req = _request(request)
        if req.method != "GET":
            raise TypeError("Cannot cache response to non-GET request.")
        response = getattr(response, "js_object", response)
        if not isinstance(response, FetchResponse):
            raise TypeError(f"Cache.put: expected a Response, got {type(response).__name__}")
        if response.status == 206:
            raise TypeError("Cannot cache response to a range request (206 Partial Content).")
        if "*" in vary_names(response.headers):
            raise TypeError("Cannot cache response with 'Vary: *' header.")
        if response.bodyUsed:
            raise TypeError("Cannot cache a Response whose body has already been used (clone() it first).")
        body = await response.bytes()
        now = self._storage.clock()
        decision = decide(response.status, response.headers, now)
        if not decision.storable:
            log.debug("cache.put(%s): not stored: %s", req.url, decision.reason)
            return None
        if len(body) > self._storage.max_entry_bytes:
            log.warning(
                "cache.put(%s): not stored: %d bytes is over max_entry_bytes (%d)",
                req.url,
                len(body),
                self._storage.max_entry_bytes,
            )
            return None
        decision.headers.set("content-length", str(len(body)))  # as workerd serialises a cached response
        if not self._storage.vary:
            decision.vary = []
        entry = Entry(
            response.status,
            decision.headers.multi_items(),
            body,
            decision.vary,
            now,
            now + decision.ttl_s,
            variant_key(decision.vary, req.headers.get),
        )
        await self._storage.store.put(self._name, _key(req.url), entry.variant, entry)
        return None

    async def delete(self, request: Any, options: Any = None, **kwargs: Any) -> bool:
        req = _request(request)
        if req.method != "GET" and not _option(options, kwargs, "ignoreMethod", "ignore_method"):
            return False
        return await self._storage.store.delete(self._name, _key(req.url), self._storage.clock())

    def __repr__(self) -> str:
        return f"<Cache {self._name!r}>"


class CacheStorage:
    """``caches``: the default cache and named ones, over one :class:`CacheStore`."""

    def __init__(
        self,
        persist_to: Path | None = None,
        *,
        clock: Callable[[], float] = time.time,
        max_entry_bytes: int = DEFAULT_MAX_ENTRY_BYTES,
        synchronous: str | None = None,
        vary: bool = False,
    ) -> None:
        if int(max_entry_bytes) <= 0:
            raise ValueError("max_entry_bytes must be positive")
        self.store = CacheStore(persist_to, synchronous)
        self.clock = clock
        self.max_entry_bytes = int(max_entry_bytes)
        #: key entries by the request headers the response ``Vary``s on (Cloudflare's Vary cache rule)
        self.vary = bool(vary)
        self._default = Cache(_DEFAULT + ":", self)

    @classmethod
    def from_config(cls, persist_to: Path | None, section: Any) -> CacheStorage:
        """Build from ``[flarelet.cache]`` (``max_entry_bytes``); ``ValueError`` names a bad key."""
        section = section or {}
        if not isinstance(section, Mapping):
            raise ValueError("[flarelet.cache] must be a table")
        unknown = set(section) - {"max_entry_bytes", "vary"}
        if unknown:
            raise ValueError(
                f"[flarelet.cache]: unknown key(s) {', '.join(sorted(unknown))} (known: max_entry_bytes, vary)"
            )
        vary = section.get("vary", False)
        if not isinstance(vary, bool):
            raise ValueError(f"[flarelet.cache] vary must be true or false, not {vary!r}")
        limit = section.get("max_entry_bytes", DEFAULT_MAX_ENTRY_BYTES)
        if isinstance(limit, bool) or not isinstance(limit, int) or limit <= 0:
            raise ValueError(f"[flarelet.cache] max_entry_bytes must be a positive integer, not {limit!r}")
        return cls(persist_to, max_entry_bytes=limit, vary=vary)

    @property
    def default(self) -> Cache:
        return self._default

    async def open(self, name: str) -> Cache:
        if not isinstance(name, str):
            raise TypeError("caches.open: the cache name must be a string")
        return Cache("named:" + name, self)

    async def aclose(self) -> None:
        await self.store.aclose()


_fallback: list[CacheStorage | None] = [None]
#: id(env) -> that worker's storage: several hosts in one process (tests) each keep their own cache
_by_env: dict[int, CacheStorage] = {}


def bind(env: Any, storage: CacheStorage) -> None:
    """Make ``caches`` mean ``storage`` while ``env``'s worker runs (and outside any request)."""
    _by_env[id(env)] = storage
    _fallback[0] = storage


def unbind(env: Any) -> None:
    storage = _by_env.pop(id(env), None)
    if storage is not None and _fallback[0] is storage:
        _fallback[0] = None


def active() -> CacheStorage:
    """The running worker's storage (found through ``workers.env``'s context variable)."""
    env = current_env.get()
    if env is not None:
        found = _by_env.get(id(env))
        if found is not None:
            return found
    fallback = _fallback[0]
    if fallback is None:
        fallback = _fallback[0] = CacheStorage()
    return fallback


class _CachesProxy:
    """The module-level ``caches``: forwards to the active worker's :class:`CacheStorage`."""

    @property
    def default(self) -> Cache:
        return active().default

    async def open(self, name: str) -> Cache:
        return await active().open(name)

    def __repr__(self) -> str:
        return "<caches>"


caches = _CachesProxy()
