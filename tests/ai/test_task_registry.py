"""A second model task needs no edit to the Whisper code (issue 12): a toy text-embeddings task,
defined and registered in this file only, runs through the core -- the catalog, the service's
queue and dynamic batching, Cloudflare's errors, the ``env.AI`` binding and the REST API on a real
loopback server -- exactly as Whisper does, and nothing under ``bindings/ai/asr`` knows of it."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from flarelet.bindings.ai import catalog, errors
from flarelet.bindings.ai.binding import Ai, InferenceUpstreamError
from flarelet.bindings.ai.catalog import ModelSpec, TaskInfo
from flarelet.bindings.ai.rest import create_app
from flarelet.bindings.ai.rest_auth import RestCredentials
from flarelet.bindings.ai.service import AiService
from flarelet.bindings.ai.settings import AiSettings
from tests.rest.conftest import serve_app

#: Not "Text Embeddings": that task name is the real BGE task's (bindings/ai/embeddings).
TOY_TASK = TaskInfo(id="toy-text-embeddings", name="Toy Embeddings", description="A test-only toy task.")
TOY = "@cf/flarelet-test/toy-embeddings"
DIM = 4
TOKEN = "toy-task-token-0123456789abcdefghij"
ACCOUNT = "0123456789abcdef0123456789abcdef"


def embed(text: str) -> list[float]:
    """The toy model: counts of vowels, consonants, digits and others, L2-normalised."""
    counts = [0.0] * DIM
    for ch in text.lower():
        counts[0 if ch in "aeiou" else 1 if ch.isalpha() else 2 if ch.isdigit() else 3] += 1
    norm = math.sqrt(sum(c * c for c in counts)) or 1.0
    return [c / norm for c in counts]


class ToyJob:
    def __init__(self, texts: list[str]) -> None:
        self.texts = texts
        self.vectors: list[list[float]] | None = None
        self.finished = False


class ToyModel:
    def __init__(self) -> None:
        self.rounds: list[int] = []  # the batch size of every round

    def run(self, jobs: list[ToyJob]) -> None:
        self.rounds.append(len(jobs))
        time.sleep(0.05)  # long enough for companions to queue behind a running batch
        for job in jobs:
            job.vectors = [embed(t) for t in job.texts]
            job.finished = True


class ToyEmbeddings:
    """The whole task: input checks in Cloudflare's words, a model, batching, output shape."""

    info = TOY_TASK

    def __init__(self) -> None:
        self.model = ToyModel()
        self.loads = 0

    def parse_inputs(self, spec: ModelSpec, inputs: Any, settings: AiSettings) -> list[str]:
        if not isinstance(inputs, dict) or "text" not in inputs:
            raise errors.bad_input("Error: required properties at '/' are 'text'")
        text = inputs["text"]
        texts = [text] if isinstance(text, str) else text
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            raise errors.bad_input(f"Error: Type mismatch of '/text', '{errors.json_type(text)}' not in 'string'")
        return texts

    def side_work(self, request: Any) -> None:
        return None

    def load(self, spec: ModelSpec, settings: AiSettings) -> ToyModel:
        self.loads += 1
        return self.model

    def start(self, model: ToyModel, spec: ModelSpec, request: list[str], cancel: Any, side: Any) -> ToyJob:
        return ToyJob(request)

    def run_round(self, model: ToyModel, jobs: list[ToyJob], threads: int) -> None:
        model.run(jobs)

    def finish(self, job: ToyJob) -> dict:
        assert job.vectors is not None
        return {"shape": [len(job.vectors), DIM], "data": job.vectors}

    def input_model(self, spec: ModelSpec) -> None:
        return None


SPEC = ModelSpec(
    id=TOY,
    uuid="00000000-0000-4000-8000-00000000e1e1",
    description="Toy embeddings (tests only).",
    task=TOY_TASK,
    inputs={
        "type": "object",
        "properties": {"text": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]}},
        "required": ["text"],
    },
    outputs={"type": "object", "properties": {"shape": {"type": "array"}, "data": {"type": "array"}}},
    served_by="a toy in tests/ai/test_task_registry.py",
)


@pytest.fixture
def toy() -> Iterator[ToyEmbeddings]:
    task = ToyEmbeddings()
    catalog.register(task, [SPEC])
    try:
        yield task
    finally:
        catalog.unregister(TOY_TASK.name)


@pytest.fixture
def settings() -> AiSettings:
    return AiSettings.from_options({}).replace(workers=1, max_batch=4, batch_window_ms=100, queue_size=8)


async def test_a_registered_task_runs_through_the_service(toy, settings):
    service = AiService(settings)
    try:
        result = await service.run(TOY, {"text": ["hello", "4 cats"]})
    finally:
        await service.aclose()
    assert result == {"shape": [2, DIM], "data": [embed("hello"), embed("4 cats")]}
    assert toy.loads == 1 and service.stats["completed"] == 1


async def test_concurrent_requests_of_a_new_task_share_batches(toy, settings):
    service = AiService(settings)
    try:
        results = await asyncio.gather(*(service.run(TOY, {"text": f"request {i}"}) for i in range(4)))
    finally:
        await service.aclose()
    assert [r["data"] for r in results] == [[embed(f"request {i}")] for i in range(4)]
    assert max(toy.model.rounds) > 1, toy.model.rounds  # the service batched them


async def test_bad_input_of_a_new_task_is_5006_through_env_ai_as_cloudflare_does(toy, settings):
    ai = Ai(AiService(settings))
    with pytest.raises(InferenceUpstreamError) as info:
        await ai.run(TOY, {"text": 3})
    assert info.value.message == "5006: AiError: Bad input: Error: Type mismatch of '/text', 'number' not in 'string'"
    result = await ai.run(TOY, {"text": "ok"})
    assert result.shape == [1, DIM]
    assert [m["name"] for m in await ai.models({"task": "toy embeddings"})] == [TOY]


def test_whisper_models_stay_registered_beside_the_new_task(toy):
    assert catalog.task_of(catalog.resolve("@cf/openai/whisper")).info.name == "Automatic Speech Recognition"
    assert catalog.task_of(catalog.resolve(TOY)) is toy


@pytest.mark.slow
def test_a_registered_task_is_served_by_the_rest_api(toy, settings):
    credentials = RestCredentials(tokens=(TOKEN,), account_id=None, token_source="command line")
    app = create_app(settings, credentials=credentials, service=AiService(settings))
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with serve_app(app) as base:
        api = f"{base}/client/v4/accounts/{ACCOUNT}/ai"
        ok = httpx.post(f"{api}/run/{TOY}", json={"text": "hello"}, headers=auth)
        bad = httpx.post(f"{api}/run/{TOY}", json={"txt": "hello"}, headers=auth)
        search = httpx.get(f"{api}/models/search", params={"task": "Toy Embeddings"}, headers=auth)
        schema = httpx.get(f"{api}/models/schema", params={"model": TOY}, headers=auth)
        openapi = httpx.get(f"{base}/client/v4/openapi.json")
    assert ok.status_code == 200 and ok.json()["result"] == {"shape": [1, DIM], "data": [embed("hello")]}
    assert bad.status_code == 400 and bad.json()["errors"][0]["code"] == 5006
    assert [m["name"] for m in search.json()["result"]] == [TOY]
    assert search.json()["result"][0]["task"]["name"] == "Toy Embeddings"
    assert schema.json()["result"]["input"]["required"] == ["text"]
    assert f"/accounts/{{account_id}}/ai/run/{TOY}" in openapi.json()["paths"]
