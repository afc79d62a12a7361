"""``[[services]]`` entries, validated: ``binding``, ``service``, optional ``entrypoint`` and ``props``."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from flarelet.bindings.registry import ConfigSectionError

_IDENTIFIER = re.compile(r"^[A-Za-z_$][A-Za-z0-9_$]*$")


@dataclass(frozen=True)
class ServiceOptions:
    """One service binding: ``env.<binding>`` talks to worker ``service`` (its ``entrypoint`` class)."""

    binding: str
    service: str
    #: a named ``WorkerEntrypoint`` class of the target; ``None`` = its default export
    entrypoint: str | None = None
    #: what the target's entrypoint sees as ``self.ctx.props``
    props: Mapping[str, Any] = field(default_factory=dict)


def parse_services(section: Any) -> list[ServiceOptions]:
    """Validate the ``services`` array (raises :class:`ConfigSectionError` naming the bad key)."""
    if not isinstance(section, list):
        raise ConfigSectionError("services", "must be an array of tables ([[services]])")
    out: list[ServiceOptions] = []
    seen: set[str] = set()
    for index, item in enumerate(section):
        key = f"services[{index}]"
        if not isinstance(item, Mapping):
            raise ConfigSectionError(key, "must be a table with binding and service")
        binding = item.get("binding")
        if not isinstance(binding, str) or not binding:
            raise ConfigSectionError(f"{key}.binding", "missing: the name of the env entry (a string)")
        if binding in seen:
            raise ConfigSectionError(f"{key}.binding", f'"{binding}" is bound twice')
        seen.add(binding)
        service = item.get("service")
        if not isinstance(service, str) or not service:
            raise ConfigSectionError(f"{key}.service", "missing: the name of the worker to bind to (a string)")
        entrypoint = item.get("entrypoint")
        if entrypoint is not None and (not isinstance(entrypoint, str) or not _IDENTIFIER.match(entrypoint)):
            raise ConfigSectionError(f"{key}.entrypoint", "must be the name of an exported WorkerEntrypoint class")
        props = item.get("props", {})
        if not isinstance(props, Mapping):
            raise ConfigSectionError(f"{key}.props", "must be a table (the target's ctx.props)")
        out.append(ServiceOptions(binding, service, entrypoint, dict(props)))
    return out
