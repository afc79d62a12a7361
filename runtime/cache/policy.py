"""Whether the Cache API stores a response, and for how long (Cloudflare's rules, in one place).

``cache.put`` honours the response's ``Cache-Control`` (``s-maxage`` over ``max-age``, ``no-store``,
``no-cache``, ``private``, ``private=Set-Cookie``), ``Expires`` (against ``Date``), ``Age`` and
``Vary`` (see :mod:`.api`); request headers never matter (Cloudflare ignores a request's ``Cache-Control``). A
response with ``Set-Cookie`` is never stored unless ``Cache-Control: private=Set-Cookie`` asks
for the cookie to be stripped first. Without a freshness directive a response gets Cloudflare's
default Edge TTL for its status (200/206/301: 120 min, 302/303: 20 min, 404/410: 3 min; other
statuses are not cached). ``no-cache`` would force a revalidation the Cache API cannot make,
so such a response is never returned by ``match``: it is not stored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime

from ..headers import Headers

#: Cloudflare's default Edge TTL (seconds) by status, used when no directive sets freshness
DEFAULT_EDGE_TTL_S: dict[int, int] = {200: 7200, 206: 7200, 301: 7200, 302: 1200, 303: 1200, 404: 180, 410: 180}
_HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection"}
)
_DIRECTIVE = re.compile(r'\s*([!#$%&\'*+.^_`|~0-9A-Za-z-]+)\s*(?:=\s*("(?:[^"\\]|\\.)*"|[^,]*))?\s*(?:,|$)')


@dataclass
class Decision:
    """``put``'s verdict: store or not, the seconds the entry stays fresh, the headers kept."""

    storable: bool
    ttl_s: float = 0.0
    headers: Headers = field(default_factory=Headers)
    #: lower-case request header names the entry varies on (``Vary``)
    vary: list[str] = field(default_factory=list)
    reason: str = ""


def parse_cache_control(value: str | None) -> dict[str, str | None]:
    """``"public, max-age=60, private=\\"Set-Cookie\\""`` -> ``{"public": None, "max-age": "60", ...}``."""
    directives: dict[str, str | None] = {}
    if not value:
        return directives
    for m in _DIRECTIVE.finditer(value):
        if not m.group(1):
            continue
        raw = m.group(2)
        if raw is not None:
            raw = raw.strip()
            if raw.startswith('"') and raw.endswith('"') and len(raw) >= 2:
                raw = raw[1:-1]
        directives.setdefault(m.group(1).lower(), raw)
    return directives


def _seconds(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return max(0, int(value.strip()))
    except ValueError:
        return None


def _http_date(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def vary_names(headers: Headers) -> list[str]:
    """The request header names a response varies on (``*`` included as is)."""
    names: list[str] = []
    for value in headers.getAll("vary"):
        names.extend(n.strip().lower() for n in value.split(",") if n.strip())
    return sorted(set(names))


def decide(status: int, headers: Headers, now: float) -> Decision:
    """Apply Cloudflare's caching rules to a response ``put`` into the cache (see module docstring)."""
    kept = Headers([(k, v) for k, v in headers.multi_items() if k not in _HOP_BY_HOP])
    cc = parse_cache_control(headers.get("cache-control"))
    private = "private" in cc
    fields = [f.strip().lower() for f in (cc.get("private") or "").split(",") if f.strip()]
    if fields:  # private=<fields>: only those fields are private; Set-Cookie is stripped and the rest cached
        private = False
        if "set-cookie" in fields:
            kept.delete("set-cookie")
    if "no-store" in cc:
        return Decision(False, reason="Cache-Control: no-store")
    if private:
        return Decision(False, reason="Cache-Control: private")
    if "no-cache" in cc:
        return Decision(False, reason="Cache-Control: no-cache (the Cache API cannot revalidate)")
    if kept.has("set-cookie"):
        return Decision(False, reason="the response sets a cookie (Set-Cookie)")
    ttl: float | None = None
    if "s-maxage" in cc:
        ttl = _seconds(cc["s-maxage"])
    if ttl is None and "max-age" in cc:
        ttl = _seconds(cc["max-age"])
    if ttl is None and headers.has("expires"):
        expires = _http_date(headers.get("expires"))
        date = _http_date(headers.get("date")) or now
        ttl = 0 if expires is None else expires - date  # an invalid Expires means already expired
    if ttl is None:
        ttl = DEFAULT_EDGE_TTL_S.get(status, 0)
    ttl -= _seconds(headers.get("age")) or 0
    if ttl <= 0:
        return Decision(False, reason="the response is already stale (no freshness lifetime left)")
    return Decision(True, ttl_s=float(ttl), headers=kept, vary=vary_names(headers))
