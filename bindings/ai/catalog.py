"""Which Workers AI models flarelet serves, which task runs each, and their public schemas.

The catalog is task-agnostic: a model *task* (speech recognition, text embeddings, ...) registers
its catalog entries (:class:`ModelSpec`: Cloudflare's public facts plus the local weights behind
each id) together with the :class:`~flarelet.bindings.ai.tasks.Task` that validates inputs, loads
models and runs them (:func:`register`). Every front door -- ``env.AI``, the REST API, the test
fakes -- resolves model ids here and dispatches by the entry's task; none of them knows a task.

The built-in tasks (:data:`BUILTIN_TASKS`) register when this module is first imported; each is a
module with a ``register()`` function. Whisper's is :mod:`flarelet.bindings.ai.asr.task`. A new
task gets its own folder beside ``asr/`` and one line in :data:`BUILTIN_TASKS`.

This module and the task registrations are pure data: importing them costs nothing.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from . import errors
from .spec import ModelSpec, TaskInfo

if TYPE_CHECKING:
    from .tasks import Task

__all__ = ["BUILTIN_TASKS", "MODELS", "TASKS", "ModelSpec", "TaskInfo", "register", "resolve", "task_of", "unregister"]

#: Modules of the built-in model tasks, each with ``register()``.
BUILTIN_TASKS = (
    "flarelet.bindings.ai.asr.task",
    "flarelet.bindings.ai.text.task",
    "flarelet.bindings.ai.embeddings.task",
)


#: every model served here, by id
MODELS: dict[str, ModelSpec] = {}
#: the task that runs each registered task name (``ModelSpec.task.name``)
TASKS: dict[str, Task] = {}


def register(task: Task, specs: Iterable[ModelSpec]) -> None:
    """Serve ``specs`` with ``task`` (a task's ``register()`` calls this; tests may too)."""
    specs = list(specs)
    for spec in specs:
        if spec.task.name != task.info.name:
            raise ValueError(f"{spec.id} belongs to task {spec.task.name!r}, not {task.info.name!r}")
        known = MODELS.get(spec.id)
        if known is not None and known != spec:
            raise ValueError(f"model {spec.id} is already registered by task {known.task.name!r}")
    TASKS[task.info.name] = task
    for spec in specs:
        MODELS[spec.id] = spec


def unregister(task_name: str) -> None:
    """Forget a task and its models (for tests that register a task of their own)."""
    TASKS.pop(task_name, None)
    for model_id in [m for m, spec in MODELS.items() if spec.task.name == task_name]:
        del MODELS[model_id]


def resolve(model: Any) -> ModelSpec:
    """The catalog entry for ``model``, or Cloudflare's 5007 ``No such model <id> or task``."""
    if not isinstance(model, str) or model not in MODELS:
        raise errors.no_such_model(str(model))
    return MODELS[model]


def task_of(spec: ModelSpec) -> Task:
    """The task that runs ``spec``."""
    return TASKS[spec.task.name]


def _register_builtin_tasks() -> None:
    for name in BUILTIN_TASKS:
        importlib.import_module(name).register()


_register_builtin_tasks()
