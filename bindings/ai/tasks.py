"""What a model task gives the core: the :class:`Task` protocol the service, the REST API and the
fakes dispatch to.

The core (:mod:`~flarelet.bindings.ai.service`) owns everything a task shares -- admission and
the bounded queue, timeouts and cancellation, worker threads and dynamic batching, Cloudflare's
errors, the catalog and the front doors -- and asks the request's task (found by the model id's
catalog entry) for the rest, in this order:

1. :meth:`Task.parse_inputs` validates and decodes the inputs (off the event loop, before
   queueing, no model needed): 5006 / 3006 on bad input;
2. :meth:`Task.side_work` may name work to start at once on the service's side thread while the
   request waits in the queue (Whisper's ``vad_filter`` pass), or None;
3. on a worker thread, :meth:`Task.load` gives the model (loaded once per process, the task's
   business), and :meth:`Task.start` a job for the request;
4. :meth:`Task.run_round` advances several jobs of one model together (one batch) until each
   job's ``finished`` is true; a task that cannot batch finishes them one by one;
5. :meth:`Task.finish` gives the output in Cloudflare's shape (or raises its error).

A task that can stream (text generation) also has ``streams(request) -> bool`` (the caller asked
for server-sent events) and ``drain(job) -> list[bytes]`` (the bytes made since the last call):
the service then answers with a :class:`~flarelet.bindings.ai.streaming.AiStream` once the first
bytes exist, and after every round sends what ``drain`` gives; ``finish`` only reports the job's error.

A new task implements this in its own folder (``bindings/ai/<task>/``) and registers itself with
:func:`flarelet.bindings.ai.catalog.register`; see ``tests/ai/test_task_registry.py`` for a
complete toy task going through the service and the REST API.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from .settings import AiSettings
    from .spec import ModelSpec, TaskInfo


class Job(Protocol):
    """One request in progress on a model."""

    @property
    def finished(self) -> bool: ...


class Task(Protocol):
    info: TaskInfo

    def parse_inputs(self, spec: ModelSpec, inputs: Any, settings: AiSettings) -> Any:
        """The validated (and decoded) request, or :class:`~flarelet.bindings.ai.errors.AiError`."""
        ...

    def side_work(self, request: Any) -> Callable[[], Any] | None:
        """Model-free work to run while the request queues (its result reaches :meth:`start`)."""
        ...

    def load(self, spec: ModelSpec, settings: AiSettings) -> Any:
        """The model that serves ``spec`` (cached by the task; called on worker threads)."""
        ...

    def start(self, model: Any, spec: ModelSpec, request: Any, cancel: threading.Event, side: Future | None) -> Job:
        """A job for ``request`` on ``model``; ``cancel`` is set on timeout or when the caller left."""
        ...

    def run_round(self, model: Any, jobs: Sequence[Any], threads: int) -> None:
        """Advance ``jobs`` (all on ``model``) by one step; ``threads``: this round's CPU threads."""
        ...

    def finish(self, job: Any) -> dict:
        """A finished job's output in Cloudflare's shape (or raise its AiError)."""
        ...

    def input_model(self, spec: ModelSpec) -> Any:
        """The pydantic model of ``spec``'s JSON inputs for the OpenAPI document, or None."""
        ...


class StreamingTask(Task, Protocol):
    """A task that can answer with server-sent events (see the module docstring)."""

    def streams(self, request: Any) -> bool:
        """Whether the caller asked for server-sent events."""
        ...

    def drain(self, job: Any) -> list[bytes]:
        """The bytes ``job`` made since the last call."""
        ...
