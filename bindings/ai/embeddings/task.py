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
