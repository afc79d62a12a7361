"""The ``workflows`` plugin: an :class:`Engine` per workflow, started with the worker.

Engines are shared per workflow within the process (keyed by its database file, or by the
binding context when in memory), so two workers binding one workflow -- one of them through
``script_name`` -- drive one set of instances instead of running each twice. The clock is the
wall clock unless the harness passes ``options["workflow_clock"]`` (a ``ManualClock``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from flarelet.bindings.registry import BindingContext, BindingInfo

from .binding import WorkflowBinding
from .clock import SystemClock
from .engine import Engine
from .options import parse_workflows
from .store import WorkflowStore, open_store

TYPE_LABEL = "Workflow"


@dataclass
class _Shared:
    engine: Engine
    users: set[int] = field(default_factory=set)


class WorkflowsPlugin:
    key = "workflows"

    def __init__(self) -> None:
        self._shared: dict[tuple[str, str], _Shared] = {}
        #: binding context id -> keys of the engines it uses
        self._by_ctx: dict[int, list[tuple[str, str]]] = {}

    def create(self, section: Any, ctx: BindingContext) -> list[BindingInfo]:
        flarelet_table = ctx.options.get("flarelet") or {}
        clock = ctx.options.get("workflow_clock") or SystemClock()
        rows = []
        keys = []
        for options in parse_workflows(section, flarelet_table):
            store = open_store(ctx.persist_to, options.name, ctx.options.get("sqlite_synchronous"))
            # in memory (tests): never shared, so a context id reused after garbage collection finds nothing
            key = (str(store.path) if store.path is not None else f"memory:{uuid.uuid4()}", options.name)
            shared = self._shared.get(key)
            if shared is None:
                shared = _Shared(Engine(options, WorkflowStore(store), clock=clock, log=ctx.log))
                self._shared[key] = shared
            shared.users.add(id(ctx))
            keys.append(key)
            resource = options.class_name + (f" ({options.script_name})" if options.script_name else "")
            rows.append(BindingInfo(options.binding, TYPE_LABEL, resource, WorkflowBinding(shared.engine)))
        self._by_ctx[id(ctx)] = keys
        return rows

    def engines(self, ctx: BindingContext) -> list[Engine]:
        """The engines behind ``ctx``'s workflow bindings (the test harness moves their clock)."""
        return [self._shared[k].engine for k in self._by_ctx.get(id(ctx), []) if k in self._shared]

    async def start(self, ctx: BindingContext) -> None:
        assert ctx.host is not None
        for engine in self.engines(ctx):
            if engine.host is None:
                await engine.start(ctx.host)

    async def aclose(self, ctx: BindingContext | None = None) -> None:
        """Stop the engines ``ctx`` used (all with ``None``) once no other worker uses them."""
        contexts = [id(ctx)] if ctx is not None else list(self._by_ctx)
        for ctx_id in contexts:
            for key in self._by_ctx.pop(ctx_id, []):
                shared = self._shared.get(key)
                if shared is None:
                    continue
                shared.users.discard(ctx_id)
                if not shared.users:
                    del self._shared[key]
                    await shared.engine.aclose()
                    await shared.engine.store.store.aclose()


plugin = WorkflowsPlugin()
