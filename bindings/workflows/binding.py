"""``env.MY_WORKFLOW`` (Cloudflare's ``Workflow``) and the instance handles it returns.

Python's names and Cloudflare's both work: ``create(id=..., params=...)`` or
``create({"id": ..., "params": ...})``, ``create_batch([...])`` / ``createBatch``, ``get(id)``;
an instance has ``id``, ``status()``, ``pause()``, ``resume()``, ``terminate()``, ``restart()``
and ``send_event(type=..., payload=...)`` / ``sendEvent({"type", "payload"})``. Every call is
async, as over RPC on Cloudflare; ``create`` returns once the instance is committed to storage.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from .engine import Engine
from .errors import WorkflowError


def _create_options(options: Any, kwargs: Mapping[str, Any]) -> tuple[str, Any]:
    merged: dict[str, Any] = {}
    if options is not None:
        if not isinstance(options, Mapping):
            raise TypeError("create() takes {'id': ..., 'params': ...} or id=..., params=...")
        merged.update(options)
    merged.update(kwargs)
    unknown = set(merged) - {"id", "params"}
    if unknown:
        raise TypeError(f"create() got unexpected option(s): {', '.join(sorted(unknown))}")
    instance_id = merged.get("id")
    if instance_id is None:
        instance_id = str(uuid.uuid4())
    params = merged.get("params")
    return instance_id, {} if params is None else params


class WorkflowInstance:
    """A handle on one instance (``await env.WF.get(id)``)."""

    def __init__(self, engine: Engine, instance_id: str) -> None:
        self._engine = engine
        self.id = instance_id

    async def status(self) -> Any:
        """``{"status", "error", "output"}`` (Cloudflare's ``InstanceStatus``)."""
        return await self._engine.status(self.id)

    async def pause(self) -> None:
        await self._engine.pause(self.id)

    async def resume(self) -> None:
        await self._engine.resume(self.id)

    async def terminate(self) -> None:
        await self._engine.terminate(self.id)

    async def restart(self) -> None:
        await self._engine.restart(self.id)

    async def send_event(self, event: Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        """Deliver ``{"type": ..., "payload": ...}`` to the instance's ``wait_for_event`` (buffered until it waits)."""
        merged = {**dict(event or {}), **kwargs}
        if "type" not in merged:
            raise TypeError("send_event() needs the event type: send_event(type='...', payload=...)")
        await self._engine.send_event(self.id, merged["type"], merged.get("payload"))

    sendEvent = send_event  # noqa: N815 - Cloudflare's name

    def __repr__(self) -> str:
        return f"<WorkflowInstance {self._engine.options.name}/{self.id}>"


class WorkflowBinding:
    """``env.<binding>`` for a ``[[workflows]]`` entry."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    async def create(self, options: Mapping[str, Any] | None = None, **kwargs: Any) -> WorkflowInstance:
        instance_id, params = _create_options(options, kwargs)
        (created,) = await self._engine.create([(instance_id, params)])
        return WorkflowInstance(self._engine, created)

    async def create_batch(self, batch: list[Mapping[str, Any]]) -> list[WorkflowInstance]:
        if not isinstance(batch, list):
            raise TypeError("create_batch() takes a list of {'id', 'params'} options")
        if not batch:
            raise WorkflowError("WorkflowError: batchCreate should have at least 1 instance")
        limit = self._engine.options.limits.batch_size
        if len(batch) > limit:
            raise WorkflowError(
                f"batchCreate takes at most {limit} instances, got {len(batch)}", "instance.batch_too_large"
            )
        items = [_create_options(item, {}) for item in batch]
        ids = [i for i, _ in items]
        if len(set(ids)) != len(ids):
            raise WorkflowError("the batch names one instance id twice", "instance.already_exists")
        created = await self._engine.create(items)
        return [WorkflowInstance(self._engine, i) for i in created]

    createBatch = create_batch  # noqa: N815 - Cloudflare's name

    async def get(self, instance_id: str) -> WorkflowInstance:
        await self._engine.require(instance_id)
        return WorkflowInstance(self._engine, instance_id)

    def __repr__(self) -> str:
        return f"<Workflow binding {self._engine.options.name} ({self._engine.options.class_name})>"
