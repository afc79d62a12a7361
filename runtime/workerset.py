"""Several workers in one process, by name, as ``wrangler dev -c a/wrangler.toml -c b/wrangler.toml``.

The first worker is the one served on the dev server's port; the others run beside it, reachable
only through bindings (service bindings, Durable Object and Workflow ``script_name``), exactly as
wrangler dev's multi-config mode and Miniflare's ``workers: [...]`` option. Every worker keeps its
own config, ``env``, bindings and modules (see :mod:`flarelet.runtime.loader` on module spaces);
they share the persistence root, so two workers naming the same KV namespace id see the same data.

Looking another worker up: ``host.lookup_worker(name)`` on any member (plugins reach it as
``ctx.host.lookup_worker(name)``), which asks this set's :meth:`WorkerSet.get`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from flarelet.wrangler_compat.config import ConfigError

from . import workers_sdk
from .host import WorkerHost


class WorkerSet:
    """Workers by name; ``primary`` (the first) is served."""

    def __init__(self, hosts: Sequence[WorkerHost]) -> None:
        if not hosts:
            raise ValueError("a WorkerSet needs at least one worker")
        self.hosts: list[WorkerHost] = list(hosts)
        self._by_name: dict[str, WorkerHost] = {}
        for host in self.hosts:
            name = host.name
            if name in self._by_name:
                raise ConfigError(
                    host.config.path,
                    None,
                    "name",
                    f'two workers are named "{name}" ({self._by_name[name].config.path} and {host.config.path}); '
                    "service bindings address workers by name, so each needs its own",
                )
            self._by_name[name] = host
            host.peers = self
        # ``workers.env`` outside a handler (module import time) means the served worker's env
        workers_sdk.set_default_env(self.primary.env)

    @classmethod
    def from_configs(
        cls,
        paths: Sequence[Path | str],
        env_name: str | None = None,
        vars: Mapping[str, str] | None = None,  # noqa: A002 - wrangler's name
        persist_to: Path | str | None = None,
        options: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> WorkerSet:
        """Build every worker (raises ``ConfigError``); the first path is the primary."""
        hosts = [
            WorkerHost.from_config(path, env_name, vars=vars, persist_to=persist_to, options=options, **kwargs)
            for path in paths
        ]
        return cls(hosts)

    @property
    def primary(self) -> WorkerHost:
        return self.hosts[0]

    @property
    def others(self) -> list[WorkerHost]:
        return self.hosts[1:]

    def get(self, name: str) -> WorkerHost | None:
        """The worker whose config ``name`` is ``name``, or ``None``."""
        return self._by_name.get(name)

    def __iter__(self) -> Iterator[WorkerHost]:
        return iter(self.hosts)

    def __len__(self) -> int:
        return len(self.hosts)

    async def start(self) -> None:
        """Start the other workers, then the primary (so its bindings find them ready)."""
        for host in self.others:
            if not host.started:
                await host.start()
        if not self.primary.started:
            await self.primary.start()

    async def aclose(self) -> None:
        """Close the primary first (its requests may still call the others), then the rest."""
        for host in self.hosts:
            if host.started:
                await host.aclose()
