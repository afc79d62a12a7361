"""``env.MY_DO``: a Durable Object namespace, and the stubs it hands out.

``idFromName`` / ``newUniqueId`` / ``idFromString`` make ids (:mod:`.ids`); ``get(id)`` and
``getByName(name)`` return a :class:`DurableObjectStub`. A stub forwards ``fetch`` and any other
method name as an RPC call to the object's single instance (:class:`.instance.ObjectSlot`).
Arguments and results are copied by the RPC rules of :mod:`.clone`; errors the object raises reach
the caller unchanged, as workerd rethrows them. snake_case aliases (``id_from_name``) are the
Python SDK's.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flarelet.bindings import registry
from flarelet.bindings.jsobject import JsTypeError
from flarelet.bindings.storage import paths
from flarelet.bindings.storage.sqlite import DEFAULT_SYNCHRONOUS

from . import clone
from .ids import DurableObjectId, IdFactory
from .instance import ObjectSlot, RpcError
from .storage import DurableObjectLimits, ObjectDatabase

#: handlers the runtime calls itself; workerd refuses them as RPC methods
RESERVED_METHODS = frozenset(
    {"fetch", "connect", "alarm", "webSocketMessage", "webSocketClose", "webSocketError", "constructor"}
)
_SAFE_DIR = re.compile(r"[A-Za-z0-9_.-]{1,128}")


@dataclass(frozen=True)
class DurableObjectSettings:
    """``[flarelet.durable_objects]``: limits and timings (defaults are Cloudflare's)."""

    limits: DurableObjectLimits = field(default_factory=DurableObjectLimits)
    #: idle seconds before an object whose only connections are hibernatable WebSockets is evicted
    hibernate_after_s: float | None = 10.0
    alarm_max_retries: int = 6
    alarm_retry_base_s: float = 2.0
    #: a ``blockConcurrencyWhile`` callback running longer resets the object (Cloudflare: 30 s)
    block_concurrency_timeout_s: float = 30.0
    synchronous: str = DEFAULT_SYNCHRONOUS


class DurableObjectNamespace:
    """One ``[[durable_objects.bindings]]`` entry."""

    def __init__(
        self,
        binding: str,
        class_name: str,
        unique_key: str,
        *,
        sqlite: bool,
        persist_root: Path | None,
        settings: DurableObjectSettings,
        ctx: registry.BindingContext,
    ) -> None:
        self.binding = binding
        self.class_name = class_name
        self.unique_key = unique_key
        self.sqlite = sqlite
        self.settings = settings
        self._ctx = ctx
        self._ids = IdFactory(unique_key)
        self._slots: dict[str, ObjectSlot] = {}
        self._folder: Path | None = None
        if persist_root is not None:
            name = unique_key if _SAFE_DIR.fullmatch(unique_key) else paths.hashed_name(unique_key)
            folder = paths.kind_root(persist_root, "do") / name
            paths.ensure_inside(persist_root, folder)
            self._folder = folder

    # -- host access ---------------------------------------------------------------------------
    def _host(self) -> Any:
        host = self._ctx.host
        if host is None:
            raise RuntimeError(f"env.{self.binding}: the worker is not running yet")
        return host

    def resolve_class(self) -> type:
        module = self._host().worker_module()
        cls = getattr(module, self.class_name, None) if module is not None else None
        if cls is None:
            raise JsTypeError(
                f"Your Worker depends on the following Durable Objects, which are not exported in your entrypoint "
                f"file: {self.class_name}."
            )
        return cls

    def class_has(self, name: str) -> bool | None:
        try:
            return callable(getattr(self.resolve_class(), name, None))
        except Exception:  # noqa: BLE001 - unknown while the code fails to load
            return None

    def env(self) -> Any:
        return self._host().env

    def host_env_scope(self) -> contextlib.AbstractContextManager[Any]:
        host = self._ctx.host
        scope = getattr(host, "env_scope", None)
        return scope() if scope is not None else contextlib.nullcontext()

    # -- ids -----------------------------------------------------------------------------------
    def idFromName(self, name: str) -> DurableObjectId:  # noqa: N802 - Cloudflare's name
        return self._ids.from_name(name)

    def newUniqueId(self, options: Mapping[str, Any] | None = None, **_kwargs: Any) -> DurableObjectId:  # noqa: N802
        return self._ids.unique()

    def idFromString(self, value: str) -> DurableObjectId:  # noqa: N802 - Cloudflare's name
        return self._ids.from_string(value)

    id_from_name = idFromName
    new_unique_id = newUniqueId
    id_from_string = idFromString

    def get(
        self, object_id: DurableObjectId, options: Mapping[str, Any] | None = None, **_kwargs: Any
    ) -> DurableObjectStub:
        if not isinstance(object_id, DurableObjectId):
            raise JsTypeError(
                f"get() expects a DurableObjectId (from idFromName, newUniqueId or idFromString), "
                f"not {type(object_id).__name__}"
            )
        self._ids.from_string(object_id.toString())  # an id from another namespace is refused
        return DurableObjectStub(self, object_id)

    def getByName(self, name: str, options: Mapping[str, Any] | None = None, **_kwargs: Any) -> DurableObjectStub:  # noqa: N802
        return DurableObjectStub(self, self._ids.from_name(name))

    get_by_name = getByName

    def jurisdiction(self, name: str) -> DurableObjectNamespace:
        """Jurisdictions do not exist locally: the same namespace."""
        return self

    # -- objects -------------------------------------------------------------------------------
    def slot(self, object_id: DurableObjectId) -> ObjectSlot:
        key = object_id.toString()
        slot = self._slots.get(key)
        if slot is None:
            path = None if self._folder is None else self._folder / f"{key}.sqlite"
            slot = ObjectSlot(
                self, object_id, ObjectDatabase(path, self.settings.synchronous, self.settings.limits.max_sql_params)
            )
            self._slots[key] = slot
        return slot

    def slots(self) -> Iterator[ObjectSlot]:
        return iter(list(self._slots.values()))

    def persisted_ids(self) -> list[str]:
        if self._folder is None or not self._folder.is_dir():
            return []
        return sorted(p.stem for p in self._folder.glob("*.sqlite") if len(p.stem) == 64)

    def restore_alarms(self) -> None:
        """Re-arm alarms of persisted objects (called when the worker starts)."""
        for hex_id in self.persisted_ids():
            try:
                object_id = self._ids.from_string(hex_id)
            except JsTypeError:
                continue
            slot = self.slot(object_id)
            when = slot.storage.alarm_time()
            if when is not None:
                slot.schedule_alarm(when, 0)

    def reset_instances(self) -> None:
        for slot in self.slots():
            slot.reset()

    async def aclose(self) -> None:
        slots, self._slots = list(self._slots.values()), {}
        for slot in slots:
            await slot.aclose()

    def __repr__(self) -> str:
        return f"<DurableObjectNamespace {self.binding} ({self.class_name})>"


class DurableObjectStub:
    """What ``get()`` returns: ``id``, ``name``, ``fetch(...)`` and RPC methods."""

    _flarelet_rpc_reference = True

    def __init__(self, namespace: DurableObjectNamespace, object_id: DurableObjectId) -> None:
        self._namespace = namespace
        self.id = object_id
        self.name = object_id.name

    async def fetch(self, input: Any, init: Any = None, **kwargs: Any) -> Any:  # noqa: A002 - Fetch API name
        options = dict(init.items() if hasattr(init, "items") else (init or {}))
        options.update(kwargs)
        request = self._namespace._host().make_request(input, options)
        slot = self._namespace.slot(self.id)

        def call(obj: Any) -> Any:
            handler = getattr(obj, "fetch", None)
            if handler is None:
                raise JsTypeError("Handler does not export a fetch() function.")
            return handler(request)

        return await slot.deliver(call)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return _RpcMethod(self, name)

    async def _call(self, method: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Any:
        if kwargs:
            raise TypeError(
                f"{method}(): RPC calls take positional arguments only (keyword arguments cannot cross "
                "the RPC boundary)"
            )
        if method in RESERVED_METHODS:
            raise RpcError(f'Cannot call handler method "{method}" over RPC.')
        sent = [clone.rpc_copy(a) for a in args]
        slot = self._namespace.slot(self.id)

        def call(obj: Any) -> Any:
            fn = None if method.startswith("_") else getattr(obj, method, None)
            if fn is None or not callable(fn):
                if fn is not None:
                    return fn
                raise RpcError(f'The RPC receiver does not implement the method "{method}".')
            return fn(*sent)

        result = await slot.deliver(call)
        return clone.rpc_copy(result)

    def __repr__(self) -> str:
        return f"<DurableObjectStub {self._namespace.class_name} {self.id}>"


class _RpcMethod:
    __slots__ = ("_stub", "_name")

    def __init__(self, stub: DurableObjectStub, name: str) -> None:
        self._stub = stub
        self._name = name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._stub._call(self._name, args, kwargs)

    def __await__(self) -> Any:
        """``await stub.prop``: read a property over RPC."""
        return self._stub._call(self._name, (), {}).__await__()
