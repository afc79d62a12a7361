"""Text generation and embeddings through the local Workers AI service, ``env.AI`` and the REST
API on a real loopback server, on the tiny random models mapped to Cloudflare's ids (the same
mapping a user writes in ``[flarelet.ai] models``)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from flarelet.bindings.ai import errors
from flarelet.bindings.ai.binding import Ai, InferenceUpstreamError
from flarelet.bindings.ai.rest import create_app
from flarelet.bindings.ai.rest_auth import RestCredentials
from flarelet.bindings.ai.service import AiService
from flarelet.bindings.ai.settings import AiSettings
from flarelet.bindings.jsobject import ByteStream
from tests.rest.conftest import serve_app

LLAMA = "@cf/meta/llama-3.1-8b-instruct"
LLAMA_70B = "@cf/meta/llama-3.3-70b-instruct-fp8-fast"
GPT_OSS = "@cf/openai/gpt-oss-120b"
GLM = "@cf/zai-org/glm-4.7-flash"
BGE = "@cf/baai/bge-base-en-v1.5"
M3 = "@cf/baai/bge-m3"
TOKEN = "textgen-test-token-0123456789abcdefgh"
ACCOUNT = "0123456789abcdef0123456789abcdef"
HI = [{"role": "user", "content": "hi"}]


@pytest.fixture
def settings(tmp_path, tiny_llm_dir, tiny_bert_dir) -> AiSettings:
    paths = {m: tiny_llm_dir for m in (LLAMA, LLAMA_70B, GPT_OSS, GLM)} | {BGE: tiny_bert_dir, M3: tiny_bert_dir}
    return AiSettings.from_options({}).replace(
        cache_dir=tmp_path, model_paths=paths, workers=1, max_batch=8, batch_window_ms=0, queue_size=8, threads=1
    )


@pytest.fixture
def no_eos(settings):
    """The tiny model may sample its end-of-turn token at any step; length tests take it away."""
    from flarelet.bindings.ai.text.engine import get_engine

    engine = get_engine(LLAMA, settings)
    saved = engine.stop_ids
    engine.stop_ids = frozenset()
    yield engine
    engine.stop_ids = saved


@pytest.fixture
async def service(settings):
    svc = AiService(settings)
    yield svc
    await svc.aclose()


def events_of(body: bytes) -> list[Any]:
    assert body.endswith(b"\n\n")
    out = []
    for block in body.split(b"\n\n")[:-1]:
        assert block.startswith(b"data: "), block
        data = block[len(b"data: ") :]
        out.append("[DONE]" if data == b"[DONE]" else json.loads(data))
    return out


async def test_native_run_returns_response_tool_calls_usage_as_cloudflare_does(service, no_eos):
    result = await service.run(LLAMA, {"prompt": "hi", "max_tokens": 5})
    assert set(result) == {"response", "tool_calls", "usage"}
    assert isinstance(result["response"], str) and result["tool_calls"] == []
    assert result["usage"]["completion_tokens"] == 5
    assert result["usage"]["total_tokens"] == result["usage"]["prompt_tokens"] + 5


async def test_binding_stream_is_a_readable_stream_body_of_cloudflares_events(settings, no_eos):
    ai = Ai(AiService(settings))
    stream = await ai.run(LLAMA, {"messages": HI, "stream": True, "max_tokens": 6})
    assert isinstance(stream, ByteStream)
    events = events_of(await stream.bytes())
    assert events[-1] == "[DONE]"
    assert events[-2] == {
        "response": "",
        "usage": {
            "prompt_tokens": events[-2]["usage"]["prompt_tokens"],
            "completion_tokens": 6,
            "total_tokens": events[-2]["usage"]["prompt_tokens"] + 6,
        },
    }
    assert list(events[-3]) == ["tool_calls", "p"]
    for event in events[:-3]:
        assert list(event) == ["response", "tool_calls", "p"] and event["tool_calls"] == []


async def test_first_event_arrives_long_before_the_last(service, no_eos):
    started = time.perf_counter()
    stream = await service.run(LLAMA, {"prompt": "hi", "stream": True, "max_tokens": 120})
    stamps = []
    async for chunk in stream:
        stamps.append((time.perf_counter() - started, chunk))
    first_token = next(t for t, c in stamps if b'"response":"' in c and b'"response":""' not in c)
    total = stamps[-1][0]
    assert len(stamps) > 10  # sent piece by piece, not all at the end
    assert first_token < total / 3, (first_token, total)


async def test_chat_completions_id_streams_chunks_then_closing_events(service, no_eos):
    stream = await service.run(GLM, {"messages": HI, "stream": True, "max_tokens": 4})
    events = events_of(b"".join([c async for c in stream]))
    assert events[-1] == "[DONE]" and events[-2]["response"] == "" and events[-2]["usage"]["completion_tokens"] == 4
    chunks = events[:-2]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[-1]["choices"] == [] and chunks[-2]["choices"][0]["finish_reason"] == "length"


async def test_chat_completions_id_answers_a_chat_completion(service, no_eos):
    result = await service.run(GLM, {"messages": HI, "max_tokens": 3})
    assert result["object"] == "chat.completion" and result["model"] == GLM
    assert result["choices"][0]["message"]["role"] == "assistant"
    assert result["choices"][0]["finish_reason"] == "length"


async def test_gpt_oss_answers_the_responses_form(service, no_eos):
    result = await service.run(GPT_OSS, {"input": "What is 2+2?", "instructions": "terse", "max_output_tokens": 3})
    assert result["object"] == "response" and result["output"][0]["type"] == "message"
    assert result["usage"]["output_tokens"] == 3


async def test_json_mode_response_is_an_object(service):
    schema = {
        "type": "object",
        "properties": {"ok": {"type": "boolean"}},
        "required": ["ok"],
        "additionalProperties": False,
    }
    result = await service.run(
        LLAMA,
        {"prompt": "ok?", "max_tokens": 40, "response_format": {"type": "json_schema", "json_schema": schema}},
    )
    assert isinstance(result["response"], dict) and isinstance(result["response"]["ok"], bool)


async def test_json_mode_and_stream_is_refused_through_env_ai(settings):
    ai = Ai(AiService(settings))
    fmt = {"type": "json_schema", "json_schema": {"type": "object"}}
    with pytest.raises(InferenceUpstreamError) as info:
        await ai.run(LLAMA, {"prompt": "a", "stream": True, "response_format": fmt})
    assert "JSON Mode currently doesn't support streaming" in info.value.message


async def test_queue_full_is_3040_for_generation_too(settings, no_eos):
    service = AiService(settings.replace(queue_size=0))
    try:
        first = await service.run(LLAMA, {"prompt": "hi", "stream": True, "max_tokens": 400})
        with pytest.raises(errors.AiError) as info:
            await service.run(LLAMA, {"prompt": "hi", "max_tokens": 2})
        assert info.value.code == 3040 and info.value.status == 429
        await first.chunks().aclose()
    finally:
        await service.aclose()


async def test_time_limit_ends_generation_with_3007(settings, no_eos):
    service = AiService(settings.replace(timeout_s=0.3))
    try:
        with pytest.raises(errors.AiError) as info:
            await service.run(LLAMA, {"prompt": "hi", "max_tokens": 100000})
        assert info.value.code == 3007
    finally:
        await service.aclose()
    assert service.in_flight == 0


async def test_a_reader_that_goes_away_stops_the_generation(service, no_eos):
    stream = await service.run(LLAMA, {"prompt": "hi", "stream": True, "max_tokens": 100000})
    reader = stream.chunks()
    await reader.__anext__()
    await reader.aclose()  # as the REST route's iterator is closed when the client disconnects
    deadline = time.monotonic() + 10
    while service.in_flight and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    assert service.in_flight == 0
    assert service.stats["aborted"] == 1


async def test_embeddings_through_the_service(service):
    result = await service.run(BGE, {"text": ["a cat", "a dog"]})
    assert result["shape"] == [2, 768] and result["pooling"] == "mean"
    ranked = await service.run(M3, {"query": "a cat", "contexts": [{"text": "a dog"}, {"text": "a cat"}]})
    assert ranked["response"][0]["id"] == 1


def test_models_name_the_stand_ins():
    entries = {m["name"]: m for m in AiService(AiSettings.from_options({})).models()}
    text = entries[LLAMA_70B]
    assert text["task"]["name"] == "Text Generation"
    assert "SmolLM2-135M-Instruct" in json.dumps(text)
    assert "all-MiniLM-L6-v2" in json.dumps(entries[BGE])
    assert entries[BGE]["task"]["name"] == "Text Embeddings"


# -- REST, on a loopback server ---------------------------------------------------------------------


@pytest.fixture
def api(settings, no_eos) -> Iterator[str]:
    credentials = RestCredentials(tokens=(TOKEN,), account_id=None, token_source="command line")
    app = create_app(settings, credentials=credentials, service=AiService(settings))
    with serve_app(app) as base:
        yield f"{base}/client/v4/accounts/{ACCOUNT}/ai"


AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.mark.slow
def test_rest_run_is_enveloped_and_streams_raw_sse(api):
    ok = httpx.post(f"{api}/run/{LLAMA}", json={"prompt": "hi", "max_tokens": 3}, headers=AUTH)
    assert ok.status_code == 200 and ok.json()["success"] is True
    assert ok.json()["result"]["usage"]["completion_tokens"] == 3
    with httpx.stream(
        "POST", f"{api}/run/{LLAMA}", json={"prompt": "hi", "stream": True, "max_tokens": 3}, headers=AUTH
    ) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        body = r.read()
    events = events_of(body)
    assert events[-1] == "[DONE]" and events[-2]["usage"]["completion_tokens"] == 3
    bad = httpx.post(f"{api}/run/{LLAMA}", json={"prompt": "hi", "lora": "x"}, headers=AUTH)
    assert bad.status_code == 400 and bad.json()["errors"][0]["code"] == 3037


@pytest.mark.slow
def test_the_official_openai_client_works_by_changing_only_base_url(api):
    from openai import OpenAI

    client = OpenAI(api_key=TOKEN, base_url=f"{api}/v1")
    completion = client.chat.completions.create(model=LLAMA, messages=HI, max_tokens=4)
    assert completion.choices[0].message.role == "assistant"
    assert completion.usage.completion_tokens == 4
    pieces = [
        chunk.choices[0].delta.content or ""
        for chunk in client.chat.completions.create(model=GLM, messages=HI, max_tokens=4, stream=True)
        if chunk.choices
    ]
    assert len(pieces) >= 2
    emb = client.embeddings.create(model=BGE, input=["a cat", "a dog"])
    assert len(emb.data) == 2 and len(emb.data[0].embedding) == 768
    floats = client.embeddings.create(model=BGE, input="a cat", encoding_format="float")
    assert floats.data[0].embedding == pytest.approx(emb.data[0].embedding, abs=1e-6)
    response = client.responses.create(model=GPT_OSS, input="What is 2+2?", max_output_tokens=3)
    assert response.output[0].type == "message" and isinstance(response.output_text, str)
    with pytest.raises(Exception) as info:
        client.chat.completions.create(model="@cf/nope/nothing", messages=HI)
    assert getattr(info.value, "status_code", None) == 400


async def test_responses_stream_sends_typed_events_ending_in_completed(service, no_eos):
    from flarelet.bindings.ai.compat import OpenAiRequest

    stream = await service.run(
        GPT_OSS, OpenAiRequest("responses", {"input": "hi", "max_output_tokens": 3, "stream": True})
    )
    body = b"".join([c async for c in stream]).decode()
    kinds = [line[len("event: ") :] for line in body.splitlines() if line.startswith("event: ")]
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    assert "response.output_text.delta" in kinds
    last = json.loads(body.strip().split("\n")[-1][len("data: ") :])
    assert last["response"]["usage"]["output_tokens"] == 3


async def test_openai_chat_route_answers_a_native_id_in_openai_shape(service, no_eos):
    from flarelet.bindings.ai.compat import OpenAiRequest

    result = await service.run(LLAMA, OpenAiRequest("chat", {"model": LLAMA, "messages": HI, "max_tokens": 2}))
    assert result["object"] == "chat.completion" and result["usage"]["completion_tokens"] == 2


async def test_a_mapped_folder_without_a_model_is_a_clear_error(settings, tmp_path):
    service = AiService(settings.replace(model_paths={LLAMA: tmp_path / "empty"}))
    try:
        with pytest.raises(errors.AiError) as info:
            await service.run(LLAMA, {"prompt": "hi"})
    finally:
        await service.aclose()
    assert info.value.code == 3000 and "not a Hugging Face model folder" in info.value.description


def test_an_org_slash_name_mapping_is_read_as_a_hugging_face_repo_id():
    from flarelet.bindings.ai.model_folders import is_hub_id

    assert is_hub_id("HuggingFaceTB/SmolLM2-360M-Instruct")
    assert not is_hub_id("/models/llama") and not is_hub_id("./models/llama") and not is_hub_id("models")
