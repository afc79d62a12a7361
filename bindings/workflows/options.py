"""``[[workflows]]`` entries and the limits of the Workflows engine."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from flarelet.bindings.registry import ConfigSectionError

_CLASS_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
#: Cloudflare's pattern for workflow names and instance ids
ID_PATTERN = re.compile(r"^[a-zA-Z0-9_][a-zA-Z0-9\-_]*$")
MAX_WORKFLOW_NAME_LENGTH = 64


@dataclass(frozen=True)
class WorkflowLimits:
    """Cloudflare's limits, each settable in ``[flarelet.workflows]`` (or per binding's ``limits``)."""

    #: steps (``step.do``) one instance may run; Cloudflare's default, raised with ``limits.steps``
    steps: int = 10_000
    #: a step name's longest length in characters
    step_name_length: int = 256
    #: an instance id's longest length
    instance_id_length: int = 100
    #: instances one ``create_batch`` may create
    batch_size: int = 100
    #: bytes of a step's stored result (and of params/output/event payloads): 1 MiB
    value_bytes: int = 1024 * 1024


@dataclass(frozen=True)
class WorkflowOptions:
    """One ``[[workflows]]`` entry: ``env.<binding>`` runs ``class_name`` as workflow ``name``."""

    name: str
    binding: str
    class_name: str
    #: the worker that defines ``class_name`` (``None``: this one)
    script_name: str | None = None
    limits: WorkflowLimits = field(default_factory=WorkflowLimits)


def parse_limits(raw: Any, key: str, base: WorkflowLimits | None = None) -> WorkflowLimits:
    base = base or WorkflowLimits()
    if raw is None:
        return base
    if not isinstance(raw, Mapping):
        raise ConfigSectionError(key, "must be a table")
    values = dict(base.__dict__)
    for name, value in raw.items():
        if name not in values:
            raise ConfigSectionError(f"{key}.{name}", f"unknown limit (known: {', '.join(sorted(values))})")
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ConfigSectionError(f"{key}.{name}", "must be a positive integer")
        values[name] = value
    return WorkflowLimits(**values)


def parse_workflows(section: Any, flarelet_table: Mapping[str, Any] | None = None) -> list[WorkflowOptions]:
    """Validate the ``workflows`` array (``ConfigSectionError`` names the bad key)."""
    base = parse_limits((flarelet_table or {}).get("workflows"), "flarelet.workflows")
    if not isinstance(section, list):
        raise ConfigSectionError("workflows", "must be an array of tables ([[workflows]])")
    out: list[WorkflowOptions] = []
    for index, item in enumerate(section):
        key = f"workflows[{index}]"
        if not isinstance(item, Mapping):
            raise ConfigSectionError(key, "must be a table with name, binding and class_name")
        name = item.get("name")
        if not isinstance(name, str) or not ID_PATTERN.match(name) or len(name) > MAX_WORKFLOW_NAME_LENGTH:
            raise ConfigSectionError(f"{key}.name", "must be 1-64 letters, digits, '-' or '_' (not starting with '-')")
        binding = item.get("binding")
        if not isinstance(binding, str) or not binding:
            raise ConfigSectionError(f"{key}.binding", "missing: the name of the env entry (a string)")
        class_name = item.get("class_name")
        if not isinstance(class_name, str) or not _CLASS_NAME.match(class_name):
            raise ConfigSectionError(f"{key}.class_name", "missing: the WorkflowEntrypoint class to run (a string)")
        script_name = item.get("script_name")
        if script_name is not None and (not isinstance(script_name, str) or not script_name):
            raise ConfigSectionError(f"{key}.script_name", "must be the name of another worker")
        limits = parse_limits(item.get("limits"), f"{key}.limits", base)
        out.append(WorkflowOptions(name, binding, class_name, script_name, limits))
    return out
