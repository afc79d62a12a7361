"""``env.OTHER``: a service binding (Cloudflare's ``Fetcher``), for ``fetch`` and RPC.

``await env.OTHER.fetch(url_or_request, method=..., headers=..., body=...)`` hands a request to
the other worker's ``fetch`` handler, in process (no socket), and returns its ``Response``; a
worker that is not running answers 503, as under ``wrangler dev``.

``await env.OTHER.some_method(*args, **kwargs)`` calls ``some_method`` on a fresh instance of the
target's entrypoint class (``Default``, or the ``entrypoint`` of the binding), the way workerd
calls a Python ``WorkerEntrypoint`` over JS RPC: arguments and the result are copied with
Cloudflare's rules (``flarelet.runtime.rpc`` says which types cross and the errors for those that
may not), a missing method raises ``RpcError("TypeError: Method x does not exist")``.

The runtime does the work through the host protocol (``service_fetch``, ``call_entrypoint``),
looked up when a call is made, so the target may be reloaded or started after this binding.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flarelet.bindings.registry import BindingContext, WorkerHost

from .options import ServiceOptions

#: attribute names that are not RPC methods (Python's own protocols, JS RPC's reserved names)
_NOT_METHODS = frozenset({"then", "connect", "constructor"})


class ServiceBinding:
    """``env.<binding>`` for a ``[[services]]`` entry."""

    def __init__(self, options: ServiceOptions, ctx: BindingContext) -> None:
        self._options = options
        self._ctx = ctx

    @property
    def _host(self) -> WorkerHost:
        host = self._ctx.host
        if host is None:
            raise RuntimeError(f"env.{self._options.binding}: the worker is not started yet")
        return host

    async def fetch(self, input: Any, init: Mapping[str, Any] | None = None, **options: Any) -> Any:  # noqa: A002
        """Send a request to the bound worker's ``fetch`` handler (a full URL or a ``Request``)."""
        merged = {**dict(init or {}), **options}
        host = self._host
        request = host.make_request(input, merged)
        return await host.service_fetch(
            self._options.service, self._options.entrypoint, request, props=self._options.props
        )

    def connect(self, *_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError(f"env.{self._options.binding}.connect(): TCP sockets to a service are not supported locally")

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in _NOT_METHODS:
            raise AttributeError(name)
        return _RpcMethod(self, name)

    def __repr__(self) -> str:
        target = self._options.service + (f"#{self._options.entrypoint}" if self._options.entrypoint else "")
        return f"<service binding {self._options.binding} -> {target}>"


class _RpcMethod:
    """``env.OTHER.method``: calling it returns an awaitable, as a JS RPC stub's method does."""

    __slots__ = ("_binding", "_name")

    def __init__(self, binding: ServiceBinding, name: str) -> None:
        self._binding = binding
        self._name = name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        binding = self._binding
        options = binding._options
        return binding._host.call_entrypoint(
            options.service, options.entrypoint, self._name, args, kwargs, props=options.props
        )

    def __repr__(self) -> str:
        return f"<rpc method {self._binding._options.service}.{self._name}>"
