"""Reload on file changes, inside the running process (watchfiles).

Two watches, so a project folder holding a ``.venv`` or ``node_modules`` is never walked:

* the worker's code folder (the folder of ``main``), recursively, for ``.py`` files: a change
  re-imports the worker's modules only (:meth:`WorkerHost.reload_code`), so bindings, their
  storage and the AI binding's loaded models stay in memory;
* the config folder, not recursively, for the config file and ``.dev.vars``/``.env*``: a change
  rebuilds the bindings (:meth:`WorkerHost.reload_config`).

``watchfiles`` is imported when the watcher starts, after the server is ready, so it does not
count against cold start.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from .host import WorkerHost

log = logging.getLogger("flarelet")


class Reloader:
    def __init__(self, host: WorkerHost, on_config_reloaded: Callable[[], Any] | None = None) -> None:
        self.host = host
        self.on_config_reloaded = on_config_reloaded
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._lock = asyncio.Lock()
        self.reloads = 0

    def start(self) -> None:
        host = self.host
        config_dir = host.config.dir
        code_dir = host.config.main.parent if host.config.main else None
        loop = asyncio.get_running_loop()
        self._tasks.append(loop.create_task(self._watch(config_dir, False, self._on_config_change)))
        if code_dir is not None and code_dir != config_dir:
            self._tasks.append(loop.create_task(self._watch(code_dir, True, self._on_code_change)))

    async def stop(self) -> None:
        self._stop.set()
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _watch(self, folder: Path, recursive: bool, handler: Callable[[set[Path]], Awaitable[None]]) -> None:
        import watchfiles

        try:
            async for changes in watchfiles.awatch(
                folder, recursive=recursive, stop_event=self._stop, debounce=400, step=50, rust_timeout=500
            ):
                try:
                    await handler({Path(p) for _, p in changes})
                except Exception:  # noqa: BLE001 - a failed reload must not stop the watching
                    log.exception("reloading after a change in %s failed", folder)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - a broken watcher must not take the server down
            log.exception("file watcher on %s stopped", folder)

    async def _on_config_change(self, paths: set[Path]) -> None:
        host = self.host
        watched = {p.resolve() for p in host.watch_paths}
        config_changed = sorted(p for p in paths if p.resolve() in watched)
        code_changed = sorted(
            p
            for p in paths
            if p.suffix == ".py" and host.config.main is not None and p.resolve().parent == host.config.main.parent
        )
        async with self._lock:
            if config_changed:
                log.info(
                    "%s changed, rebuilding bindings and reloading the worker",
                    ", ".join(p.name for p in config_changed),
                )
                if await host.reload_config():
                    self.reloads += 1
                    log.info("Reloaded")
                    if self.on_config_reloaded is not None:
                        self.on_config_reloaded()
            elif code_changed:
                await self._reload_code(code_changed)

    async def _on_code_change(self, paths: set[Path]) -> None:
        changed = sorted(p for p in paths if p.suffix == ".py")
        if changed:
            async with self._lock:
                await self._reload_code(changed)

    async def _reload_code(self, changed: list[Path]) -> None:
        log.info("%s changed, reloading the worker", ", ".join(p.name for p in changed))
        if self.host.reload_code():
            self.reloads += 1
            log.info("Reloaded")
