"""``env``: the bindings and variables a worker sees, by attribute (``env.AI``) or by key.

On Cloudflare ``env`` is a JS object; Python code reads ``self.env.NAME``. A missing name here is
an ``AttributeError`` that lists what *is* defined, since the usual cause is a binding declared
in another ``[env.<name>]`` section (wrangler does not inherit bindings into environments).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any


class Env:
    """Read-mostly namespace of bindings; ``Env(values)``."""

    __slots__ = ("_values",)

    def __init__(self, values: Mapping[str, Any] | None = None) -> None:
        object.__setattr__(self, "_values", dict(values or {}))

    def __getattr__(self, name: str) -> Any:
        try:
            return self._values[name]
        except KeyError:
            if name.startswith("__"):
                raise AttributeError(name) from None
            defined = ", ".join(sorted(self._values)) or "none"
            raise AttributeError(
                f"env has no binding or variable named {name!r} (defined: {defined}). "
                "Bindings are declared in wrangler.toml/wrangler.json(c); with --env they must be "
                "repeated in that environment's section."
            ) from None

    def __setattr__(self, name: str, value: Any) -> None:
        self._values[name] = value

    def __delattr__(self, name: str) -> None:
        try:
            del self._values[name]
        except KeyError:
            raise AttributeError(name) from None

    def __getitem__(self, name: str) -> Any:
        return self._values[name]

    def __contains__(self, name: object) -> bool:
        return name in self._values

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def get(self, name: str, default: Any = None) -> Any:
        return self._values.get(name, default)

    def keys(self) -> list[str]:
        return list(self._values)

    def items(self) -> list[tuple[str, Any]]:
        return list(self._values.items())

    def as_dict(self) -> dict[str, Any]:
        return dict(self._values)

    def __dir__(self) -> list[str]:
        return sorted(set(self._values) | {"get", "keys", "items", "as_dict"})

    def __repr__(self) -> str:
        return f"Env({', '.join(sorted(self._values))})"
