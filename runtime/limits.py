"""The dev server's limits, read from the config: Cloudflare's values unless told otherwise.

* ``[limits] cpu_ms`` (wrangler's key): CPU time per invocation, default 30,000 ms, at most
  300,000 (:mod:`flarelet.runtime.cpu_limit`); exceeding it gives error 1102.
* ``[flarelet] max_header_bytes`` (128 KiB, Cloudflare's total request header size; 431 above it)
  and ``max_url_bytes`` (16 KiB, Cloudflare's URL size; 414 above it).
* ``[flarelet] header_timeout_s`` (10): a client has this long to send a request's head, counted
  from its first byte (or from the connection, for the first request) and not extended by
  trickled bytes, so a slowloris client is closed (408 when part of a head arrived).
* ``[flarelet] body_timeout_s`` (30): the longest silence allowed while a request body is being
  sent; then the connection is closed and the worker's body read raises, as for any abort.
* ``[flarelet] keep_alive_s`` (30): how long an idle keep-alive connection stays open.

Cloudflare documents the header and URL sizes and its 400 s keep-alive for clients; it does not
document a header-read timeout, so the defaults for the timeouts are the common servers' ones,
short enough that stuck sockets do not pile up in a dev server.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flarelet.wrangler_compat.config import WorkerConfig

from .cpu_limit import DEFAULT_CPU_MS, MAX_CPU_MS

DEFAULT_MAX_HEADER_BYTES = 128 * 1024
DEFAULT_MAX_URL_BYTES = 16 * 1024


@dataclass(frozen=True)
class ServerLimits:
    cpu_ms: int = DEFAULT_CPU_MS
    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES
    max_url_bytes: int = DEFAULT_MAX_URL_BYTES
    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0
    keep_alive_s: float = 30.0

    @property
    def small_head_bytes(self) -> int:
        """A request head no larger than this is within both size limits without counting."""
        return min(self.max_header_bytes, self.max_url_bytes)

    @classmethod
    def from_config(cls, config: WorkerConfig) -> ServerLimits:
        """Read ``[limits]`` and ``[flarelet]``; a bad value is a :class:`ConfigError` naming its key."""
        values: dict[str, Any] = {}
        limits = config.raw_value("limits")
        if limits is not None:
            if not isinstance(limits, dict):
                raise config.error(config.origin_of("limits"), "must be a table (e.g. [limits] cpu_ms = 50)")
            if "cpu_ms" in limits:
                cpu = limits["cpu_ms"]
                if isinstance(cpu, bool) or not isinstance(cpu, int) or not 1 <= cpu <= MAX_CPU_MS:
                    raise config.error(
                        config.origin_of("limits") + ("cpu_ms",),
                        f"must be an integer from 1 to {MAX_CPU_MS} (milliseconds; got {cpu!r})",
                    )
                values["cpu_ms"] = cpu
        for key, kind in (
            ("max_header_bytes", int),
            ("max_url_bytes", int),
            ("header_timeout_s", float),
            ("body_timeout_s", float),
            ("keep_alive_s", float),
        ):
            if key not in config.flarelet:
                continue
            value = config.flarelet[key]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise config.error(("flarelet", key), f"must be a positive number (got {value!r})")
            values[key] = kind(value)
        return cls(**values)
