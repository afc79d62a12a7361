"""The ``durable_objects`` config section and ``[[migrations]]``: builds the namespaces on ``env``.

Migrations decide each class's storage backend and identity, as on Cloudflare:
``new_sqlite_classes`` get SQL storage, ``new_classes`` the key-value-only backend (``sql`` then
refuses), ``renamed_classes`` keep the objects (ids and storage follow the class's *first* name),
and a binding to a class listed in ``deleted_classes`` is a configuration error. A class that no
migration mentions runs key-value only, as wrangler would refuse to deploy it anyway.

Objects persist under ``<persist-to>/v3/do/<worker>-<Class>/<id>.sqlite`` (Miniflare's layout).
``script_name`` (another worker's class) reaches that worker's namespace when it runs in the same
process (``flarelet dev -c a -c b``): one set of objects, whichever worker calls.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict

from flarelet.bindings import registry
from flarelet.bindings.storage.config import validate_entries, validate_model
from flarelet.bindings.storage.sqlite import synchronous_mode

from .namespace import DurableObjectNamespace, DurableObjectSettings
from .storage import DurableObjectLimits

TYPE_LABEL = "Durable Object"


class _Entry(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str
    class_name: str
    script_name: str | None = None
    environment: str | None = None


class _Rename(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="allow")
    from_: str
    to: str

    def __init__(self, **data: Any) -> None:
        if "from" in data:
            data["from_"] = data.pop("from")
        super().__init__(**data)


class _Migration(BaseModel):
    model_config = ConfigDict(extra="allow")
    tag: str | None = None
    new_classes: list[str] = []
    new_sqlite_classes: list[str] = []
    renamed_classes: list[_Rename] = []
    deleted_classes: list[str] = []


@dataclass(frozen=True)
class ClassInfo:
    """Where a class's objects live and what storage they have."""

    sqlite: bool
    #: the name its objects were created under (ids and files keep it across renames)
    origin: str


def resolve_migrations(raw: Any) -> tuple[dict[str, ClassInfo], dict[str, str]]:
    """Replay ``[[migrations]]``: live classes, and deleted classes -> the tag that deleted them."""
    if raw is None:
        return {}, {}
    if not isinstance(raw, list):
        raise registry.ConfigSectionError("migrations", f"expected an array of tables, got {raw!r}")
    classes: dict[str, ClassInfo] = {}
    deleted: dict[str, str] = {}
    for index, item in enumerate(raw):
        step = validate_model(f"migrations[{index}]", item, _Migration)
        tag = step.tag or f"#{index}"
        for name in step.new_classes + step.new_sqlite_classes:
            if name in classes:
                raise registry.ConfigSectionError(
                    f"migrations[{index}]", f"class {name} is created twice (it already exists before tag {tag})"
                )
        for name in step.new_classes:
            classes[name] = ClassInfo(sqlite=False, origin=name)
            deleted.pop(name, None)
        for name in step.new_sqlite_classes:
            classes[name] = ClassInfo(sqlite=True, origin=name)
            deleted.pop(name, None)
        for rename in step.renamed_classes:
            info = classes.pop(rename.from_, None)
            if info is None:
                raise registry.ConfigSectionError(
                    f"migrations[{index}].renamed_classes",
                    f"cannot rename {rename.from_}: no earlier migration creates it",
                )
            classes[rename.to] = info
        for name in step.deleted_classes:
            if classes.pop(name, None) is None:
                raise registry.ConfigSectionError(
                    f"migrations[{index}].deleted_classes", f"cannot delete {name}: no earlier migration creates it"
                )
            deleted[name] = tag
    return classes, deleted


def settings_from(options: Mapping[str, Any]) -> DurableObjectSettings:
    table = dict((options.get("flarelet") or {}).get("durable_objects") or {})
    limits = DurableObjectLimits(
        **{k: table.pop(k) for k in list(table) if k in DurableObjectLimits.__dataclass_fields__}
    )
    synchronous = synchronous_mode(table.pop("sqlite_synchronous", None) or options.get("sqlite_synchronous"))
    known = {"hibernate_after_s", "alarm_max_retries", "alarm_retry_base_s", "block_concurrency_timeout_s"}
    unknown = set(table) - known
    if unknown:
        raise registry.ConfigSectionError(
            "flarelet.durable_objects", f"unknown setting(s): {', '.join(sorted(unknown))}"
        )
    return DurableObjectSettings(limits=limits, synchronous=synchronous, **table)


class ForeignNamespace:
    """``env.X`` for a binding with ``script_name``: the namespace of that worker's class.

    Resolved on first use through the host (``lookup_worker``), so both workers reach the same
    objects, ids and storage, as on Cloudflare; while that worker is not running in this process,
    every use says so.
    """

    def __init__(self, plugin: DurableObjectsPlugin, ctx: registry.BindingContext, entry: _Entry) -> None:
        self._plugin = plugin
        self._ctx = ctx
        self._binding = entry.name
        self._class_name = entry.class_name
        self._script = entry.script_name or ""
        self._resolved: DurableObjectNamespace | None = None

    def _namespace(self) -> DurableObjectNamespace:
        if self._resolved is not None:
            return self._resolved
        host = self._ctx.host
        target = host.lookup_worker(self._script) if host is not None else None
        if target is None:
            raise RuntimeError(
                f"env.{self._binding}: Durable Object class {self._class_name} lives in worker {self._script!r} "
                f"(script_name), which is not running here: start both, e.g. flarelet dev -c this/wrangler.toml "
                f"-c {self._script}/wrangler.toml"
            )
        self._resolved = self._plugin.namespace_for(target.ctx, self._class_name, also=self._ctx)
        return self._resolved

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__"):
            raise AttributeError(attr)
        return getattr(self._namespace(), attr)

    def __repr__(self) -> str:
        return f"<DurableObjectNamespace {self._binding} ({self._class_name} of {self._script})>"


class DurableObjectsPlugin:
    key = "durable_objects"

    def __init__(self) -> None:
        #: (binding context, its namespaces): one context per host, and several hosts may share this plugin
        self._namespaces: list[tuple[registry.BindingContext, list[DurableObjectNamespace]]] = []

    def _of(self, ctx: registry.BindingContext) -> list[DurableObjectNamespace]:
        for owner, namespaces in self._namespaces:
            if owner is ctx:
                return namespaces
        namespaces = []
        self._namespaces.append((ctx, namespaces))
        return namespaces

    def create(self, section: Any, ctx: registry.BindingContext) -> list[registry.BindingInfo]:
        if section is None:
            return []
        if not isinstance(section, Mapping):
            raise registry.ConfigSectionError("durable_objects", f"expected a table with `bindings`, got {section!r}")
        entries = validate_entries(
            "durable_objects.bindings", section.get("bindings") or [], _Entry, binding_field="name"
        )
        classes, deleted = resolve_migrations(ctx.options.get("migrations"))
        settings = settings_from(ctx.options)
        worker = str(ctx.options.get("worker_name") or "worker")
        infos: list[registry.BindingInfo] = []
        for index, entry in enumerate(entries):
            if entry.script_name and entry.script_name != worker:
                value: Any = ForeignNamespace(self, ctx, entry)
                resource = f"{entry.class_name} (defined in {entry.script_name})"
                infos.append(registry.BindingInfo(entry.name, TYPE_LABEL, resource, value))
                continue
            if entry.class_name in deleted:
                raise registry.ConfigSectionError(
                    f"durable_objects.bindings[{index}].class_name",
                    f"class {entry.class_name} was deleted by migration {deleted[entry.class_name]}",
                )
            namespace = self._existing(ctx, entry.class_name)
            if namespace is None:
                info = classes.get(entry.class_name, ClassInfo(sqlite=False, origin=entry.class_name))
                namespace = DurableObjectNamespace(
                    entry.name,
                    entry.class_name,
                    f"{worker}-{info.origin}",
                    sqlite=info.sqlite,
                    persist_root=ctx.persist_to,
                    settings=settings,
                    ctx=ctx,
                )
                self._of(ctx).append(namespace)
            infos.append(registry.BindingInfo(entry.name, TYPE_LABEL, entry.class_name, namespace))
        return infos

    def _existing(self, ctx: registry.BindingContext, class_name: str) -> DurableObjectNamespace | None:
        return next((ns for ns in self._of(ctx) if ns.class_name == class_name), None)

    def namespace_for(
        self, ctx: registry.BindingContext, class_name: str, *, also: registry.BindingContext | None = None
    ) -> DurableObjectNamespace:
        """The namespace of ``class_name`` in the worker of ``ctx`` (made if that worker binds none):
        how another worker's ``script_name`` binding reaches the same objects."""
        found = self._existing(ctx, class_name)
        if found is not None:
            return found
        classes, deleted = resolve_migrations(ctx.options.get("migrations"))
        if class_name in deleted:
            raise RuntimeError(f"Durable Object class {class_name} was deleted by migration {deleted[class_name]}")
        info = classes.get(class_name, ClassInfo(sqlite=False, origin=class_name))
        worker = str(ctx.options.get("worker_name") or "worker")
        namespace = DurableObjectNamespace(
            f"<{class_name}>",
            class_name,
            f"{worker}-{info.origin}",
            sqlite=info.sqlite,
            persist_root=ctx.persist_to,
            settings=settings_from(ctx.options),
            ctx=ctx,
        )
        self._of(ctx).append(namespace)
        if also is not None:  # the owner may have no durable_objects section: close it with the caller too
            self._of(also).append(namespace)
        return namespace

    async def start(self, ctx: registry.BindingContext) -> None:
        for namespace in self._of(ctx):
            namespace.restore_alarms()

    def code_reloaded(self, ctx: registry.BindingContext) -> None:
        """New code: drop live instances (the next event builds them from the new classes)."""
        for namespace in self._of(ctx):
            namespace.reset_instances()

    async def aclose(self, ctx: registry.BindingContext | None = None) -> None:
        """Close what was built for ``ctx`` (one worker), or everything."""
        if ctx is None:
            closing, self._namespaces = self._namespaces, []
        else:
            closing = [(owner, items) for owner, items in self._namespaces if owner is ctx]
            self._namespaces = [(owner, items) for owner, items in self._namespaces if owner is not ctx]
        for _, namespaces in closing:
            for namespace in namespaces:
                await namespace.aclose()


plugin = DurableObjectsPlugin()
