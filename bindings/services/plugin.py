"""The ``services`` plugin: one :class:`ServiceBinding` per ``[[services]]`` entry."""

from __future__ import annotations

from typing import Any

from flarelet.bindings.registry import BindingContext, BindingInfo

from .binding import ServiceBinding
from .options import parse_services

TYPE_LABEL = "Worker"


class ServicesPlugin:
    key = "services"

    def create(self, section: Any, ctx: BindingContext) -> list[BindingInfo]:
        rows = []
        for options in parse_services(section):
            resource = options.service + (f"#{options.entrypoint}" if options.entrypoint else "")
            rows.append(BindingInfo(options.binding, TYPE_LABEL, resource, ServiceBinding(options, ctx)))
        return rows


plugin = ServicesPlugin()
