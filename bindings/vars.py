"""Plain variables and local secrets on ``env`` (``[vars]``, ``.dev.vars``/``.env``, ``--var``).

Owns the ``vars`` config key. Precedence, lowest first, as in wrangler dev:

1. ``[vars]`` of the config (or of ``[env.<name>]``; vars are not inherited): strings, or JSON
   values (tables/arrays/numbers/booleans), which appear as Python values; objects also allow
   attribute access (``env.CONFIG.region``), as a JS object does in Python Workers;
2. local secrets, which the runtime reads from ``.dev.vars``/``.env`` and passes as
   ``ctx.options["dev_vars"]`` (a ``str -> str`` mapping) — printed as ``(hidden)``;
3. ``--var KEY:VALUE`` from the command line, ``ctx.options["cli_vars"]``: always strings.

The runtime hands this plugin the ``vars`` section even when the config has none, so secrets and
``--var`` values appear on their own.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from .registry import BindingContext, BindingInfo, ConfigSectionError

TYPE_LABEL = "Environment Variable"
_MAX_SHOWN = 40


class JsonObject(dict):
    """A JSON object var: a ``dict`` that also allows ``obj.key`` (Python Workers' JS-object feel)."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


def _to_python(value: Any) -> Any:
    if isinstance(value, Mapping):
        return JsonObject({str(k): _to_python(v) for k, v in value.items()})
    if isinstance(value, list):
        return [_to_python(v) for v in value]
    return value


def _shown(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
    if len(text) > _MAX_SHOWN:
        text = text[: _MAX_SHOWN - 3] + "..."
    return f'"{text}"' if isinstance(value, str) else text


class VarsPlugin:
    key = "vars"

    def create(self, section: Any, ctx: BindingContext) -> list[BindingInfo]:
        if section is None:
            section = {}
        if not isinstance(section, Mapping):
            raise ConfigSectionError("vars", f"must be a table of names to values, got {type(section).__name__}")
        rows: dict[str, BindingInfo] = {}
        for name, value in section.items():
            if not isinstance(name, str) or not name:
                raise ConfigSectionError("vars", f"invalid variable name {name!r}")
            rows[name] = BindingInfo(name, TYPE_LABEL, _shown(value), _to_python(value))
        for source in ("dev_vars", "cli_vars"):
            extra = ctx.options.get(source) or {}
            for name, value in extra.items():
                shown = "(hidden)" if source == "dev_vars" else _shown(str(value))
                rows.pop(name, None)  # re-insert so the printed order shows where it came from
                rows[name] = BindingInfo(name, TYPE_LABEL, f'"{shown}"' if source == "dev_vars" else shown, str(value))
        return list(rows.values())


plugin = VarsPlugin()
