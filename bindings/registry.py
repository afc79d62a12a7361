"""How bindings plug into the runtime (the contract between ``runtime/`` and ``bindings/``).

Miniflare's design, in Python: each kind of binding is a *plugin* that owns the wrangler config
section it reads (``ai``, ``kv_namespaces``, ``d1_databases``...), validates it with its own schema,
builds the objects that appear on ``env``, owns its storage, and may add HTTP routes to the dev
server (the AI plugin adds the Workers AI REST API).

Data flows one way: ``wrangler_compat`` parses the config, ``runtime`` hands each section to its
plugin through :func:`load_plugin`, and the plugin returns :class:`BindingInfo` rows (the table
``flarelet dev`` prints, and the values put on ``env``). Plugins never import ``runtime``; what they
need from the host (running a worker's ``queue`` handler, say) reaches them through
:class:`WorkerHost`.

Plugins are found by import path so a kind whose module is absent is reported, not fatal.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

#: config key -> "module:attribute" of the plugin object that owns it.
PLUGIN_PATHS: dict[str, str] = {
    "vars": "flarelet.bindings.vars:plugin",
    "ai": "flarelet.bindings.ai.plugin:plugin",
    "kv_namespaces": "flarelet.bindings.kv:plugin",
    "d1_databases": "flarelet.bindings.d1:plugin",
    "r2_buckets": "flarelet.bindings.r2:plugin",
    "queues": "flarelet.bindings.queues:plugin",
    "durable_objects": "flarelet.bindings.durable_objects.plugin:plugin",
    "services": "flarelet.bindings.services.plugin:plugin",
    "workflows": "flarelet.bindings.workflows.plugin:plugin",
}


@runtime_checkable
class WorkerHost(Protocol):
    """What the runtime offers plugins (implemented by ``runtime``).

    Several workers may run in one process (``flarelet dev -c a -c b``); a plugin reaches another
    one by its config ``name`` with :meth:`lookup_worker` (``ctx.host.lookup_worker("b")``), which
    returns that worker's host (with the same methods) or ``None``.
    """

    @property
    def name(self) -> str:
        """This worker's config ``name``."""
        ...

    async def dispatch_queue(self, queue: str, messages: Sequence[Any]) -> Any:
        """Run the worker's ``queue`` handler on a batch; returns the per-message outcome."""
        ...

    #: the worker's ``env`` (what Durable Objects are constructed with)
    env: Any

    #: the worker's own binding context (a Durable Object class is served by its worker's plugin state)
    ctx: BindingContext

    def env_scope(self) -> Any:
        """A context manager under which ``workers.env`` is this worker's env (Durable Object events)."""
        ...

    def lookup_worker(self, name: str) -> WorkerHost | None:
        """The worker named ``name`` running in this process (this one for its own name), or ``None``."""
        ...

    async def service_fetch(
        self, service: str, entrypoint: str | None, request: Any, *, props: Mapping[str, Any] | None = None
    ) -> Any:
        """A request answered by ``service``'s ``fetch`` (of ``entrypoint``, with ``ctx.props``); a ``Response``."""
        ...

    async def call_entrypoint(
        self,
        service: str,
        entrypoint: str | None,
        method: str,
        args: Sequence[Any],
        kwargs: Mapping[str, Any],
        *,
        props: Mapping[str, Any] | None = None,
    ) -> Any:
        """RPC: ``method(*args, **kwargs)`` on a fresh instance of ``service``'s ``entrypoint`` class (``ctx.props``).

        Values cross with Cloudflare's rules (copied, or refused with its errors); the callee's
        exception is raised as ``RpcError``.
        """
        ...

    def make_request(self, input: Any, init: Mapping[str, Any]) -> Any:  # noqa: A002 - Fetch API name
        """A runtime ``Request`` from ``fetch``-style arguments (URL or ``Request``, plus init options)."""
        ...

    async def run_workflow(self, script_name: str | None, class_name: str, event: Any, step: Any) -> Any:
        """Run ``class_name(ctx, env).run(event, step)`` of this worker (or ``script_name``'s)."""
        ...


@dataclass
class BindingContext:
    """Everything a plugin may use to build its bindings."""

    config_dir: Path
    #: root folder for local persistence (``--persist-to``, default ``.wrangler/state``);
    #: ``None`` means keep everything in memory (tests).
    persist_to: Path | None
    #: free-form options from the command line / harness (``preload``, ``api_token``, ...).
    options: Mapping[str, Any] = field(default_factory=dict)
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("flarelet"))
    #: set by the runtime once the worker is loaded; ``None`` before that.
    host: WorkerHost | None = None


@dataclass
class BindingInfo:
    """One ``env`` entry, and the row ``flarelet dev`` prints for it (as wrangler does)."""

    name: str
    type_label: str  # e.g. "AI", "KV Namespace", "Environment Variable"
    resource: str  # e.g. the namespace id, the var's value (shortened), "" if none
    value: Any
    mode: str = "local"


class ConfigSectionError(ValueError):
    """A plugin rejected its config section; ``key`` is the dotted path of the bad key."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key
        self.message = message


class BindingPlugin(Protocol):
    """A kind of binding. Optional hooks may be omitted by a plugin."""

    #: the wrangler config key this plugin owns
    key: str

    def create(self, section: Any, ctx: BindingContext) -> list[BindingInfo]:
        """Validate ``section`` (raise :class:`ConfigSectionError`) and build the bindings."""
        ...

    # Optional:
    # def routes(self, ctx: BindingContext) -> list[starlette.routing.BaseRoute]: extra dev-server routes
    # async def start(self, ctx: BindingContext) -> None: after the worker is loaded (ctx.host is set)
    # async def aclose(self[, ctx: BindingContext]) -> None: on shutdown; flush and close storage (with ``ctx``:
    #     only what was built for that context -- one plugin object serves every worker of the process)
    # def code_reloaded(self, ctx) -> None: the worker's code was re-imported (drop live instances)


def load_plugin(key: str) -> BindingPlugin | None:
    """Import the plugin for a config key, or ``None`` when that kind is not available here."""
    path = PLUGIN_PATHS.get(key)
    if path is None:
        return None
    module_name, _, attr = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            return None
        raise
    return getattr(module, attr)


Hook = Callable[[], Awaitable[None]]
