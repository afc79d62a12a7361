"""Validating wrangler config sections that are arrays of tables (``[[kv_namespaces]]``...)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from flarelet.bindings import registry

M = TypeVar("M", bound=BaseModel)


def validate_model(key: str, item: Any, model: type[M]) -> M:
    """``model`` from one table, or :class:`registry.ConfigSectionError` naming the bad key."""
    if not isinstance(item, Mapping):
        raise registry.ConfigSectionError(key, f"expected an object, got {item!r}")
    try:
        return model.model_validate(dict(item))
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise registry.ConfigSectionError(f"{key}.{where}" if where else key, err["msg"]) from None


def validate_entries(key: str, section: Any, model: type[M], *, binding_field: str = "binding") -> list[M]:
    """Validate a list-of-tables section; bindings must be identifiers and unique."""
    if not isinstance(section, list):
        raise registry.ConfigSectionError(key, f'Expected "{key}" to be an array of objects, but got {section!r}.')
    entries: list[M] = []
    seen: set[str] = set()
    for index, item in enumerate(section):
        entry = validate_model(f"{key}[{index}]", item, model)
        binding = getattr(entry, binding_field)
        if not isinstance(binding, str) or not binding.isidentifier():
            raise registry.ConfigSectionError(
                f"{key}[{index}].{binding_field}", f"{binding!r} is not a valid binding name"
            )
        if binding in seen:
            raise registry.ConfigSectionError(
                f"{key}[{index}].{binding_field}", f"binding {binding!r} is defined twice"
            )
        seen.add(binding)
        entries.append(entry)
    return entries


class StoragePlugin:
    """The shape the KV, D1 and R2 plugins share: validate the ``[[...]]`` entries, open one
    store per entry (in memory when ``ctx.persist_to`` is ``None``), close them all on shutdown.

    Subclasses set :attr:`key`, :attr:`type_label`, :attr:`entry_model` and implement
    :meth:`open_store`; everything else (the table rows, the bookkeeping) lives here once.
    """

    key: str
    type_label: str
    entry_model: type[BaseModel]

    def __init__(self) -> None:
        self._opened: list[Any] = []

    def open_store(self, entry: Any, ctx: registry.BindingContext) -> tuple[Any, str]:
        """The store for one entry and the resource name the bindings table shows."""
        raise NotImplementedError

    def create(self, section: Any, ctx: registry.BindingContext) -> list[registry.BindingInfo]:
        infos = []
        entries: list[Any] = validate_entries(self.key, section, self.entry_model)  # each has ``binding``
        for entry in entries:
            store, resource = self.open_store(entry, ctx)
            self._opened.append(store)
            infos.append(registry.BindingInfo(entry.binding, self.type_label, resource, store))
        return infos

    async def aclose(self) -> None:
        opened, self._opened = self._opened, []
        for store in opened:
            await store.aclose()
