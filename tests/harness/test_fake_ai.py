"""``FakeAi``: the real binding's input checks and errors, schema-valid canned outputs, a call log.

The error cases are sent to the real ``env.AI`` binding too (they all fail before any model is
loaded, so this is fast) and the two errors must be identical.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any

import pytest

from flarelet.bindings.ai import errors
from flarelet.bindings.ai.asr.output_schemas import OutputSchemaError, validate_output
from flarelet.bindings.ai.binding import Ai, InferenceUpstreamError
from flarelet.bindings.ai.catalog import MODELS
from flarelet.bindings.ai.fake import DEFAULT_TEXT, AiCall, FakeAi
from flarelet.bindings.ai.service import AiService
from flarelet.bindings.ai.settings import AiSettings
from flarelet.bindings.jsobject import JsDict

BASE = "@cf/openai/whisper"
TINY = "@cf/openai/whisper-tiny-en"
TURBO = "@cf/openai/whisper-large-v3-turbo"
SETTINGS = AiSettings.from_options({}, environ={})


@pytest.fixture
async def real_ai() -> AsyncIterator[Ai]:
    service = AiService(SETTINGS)
    yield Ai(service)
    await service.aclose()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def bad_calls(wav: bytes) -> list[tuple[str, Any, dict[str, Any]]]:
    return [
        ("@cf/openai/whisper-huge", {"audio": [1, 2]}, {}),
        (BASE, {}, {}),
        (BASE, {"audio": "not a list"}, {}),
        (BASE, {"audio": [1, 300, 2]}, {}),
        (BASE, {"audio": [1, "x"]}, {}),
        (BASE, "a bare string", {}),
        (BASE, {"audio": list(b"these bytes are not audio at all")}, {}),
        (TINY, {"audio": []}, {}),
        (TURBO, {"audio": "%%% not base64 %%%"}, {}),
        (TURBO, {"audio": b64(wav), "beam_size": 0}, {}),
        (TURBO, {"audio": b64(wav), "language": "klingon"}, {}),
        (TURBO, {"audio": b64(wav), "task": "summarize"}, {}),
        (TURBO, {"audio": {"body": list(wav[:100])}}, {}),
        (TURBO, {"audio": b64(wav), "stream": True}, {}),
        (BASE, {"audio": list(wav)}, {"returnRawResponse": True}),
    ]


@pytest.mark.parametrize("index", range(15))
async def test_bad_input_fails_exactly_as_the_real_binding(index: int, real_ai: Ai, sample_wav: bytes) -> None:
    model, inputs, options = bad_calls(sample_wav)[index]
    with pytest.raises(InferenceUpstreamError) as real:
        await real_ai.run(model, inputs, options)
    fake = FakeAi(settings=SETTINGS)
    with pytest.raises(InferenceUpstreamError) as faked:
        await fake.run(model, inputs, options)
    assert (faked.value.message, faked.value.name, faked.value.code, faked.value.httpCode) == (
        real.value.message,
        real.value.name,
        real.value.code,
        real.value.httpCode,
    )
    assert (fake.lastRequestHttpStatusCode, fake.lastRequestInternalStatusCode) == (
        real_ai.lastRequestHttpStatusCode,
        real_ai.lastRequestInternalStatusCode,
    )
    assert fake.last_call.error is faked.value


@pytest.mark.parametrize("change", [{"max_input_bytes": 1000}, {"max_audio_seconds": 5.0}])
async def test_limits_are_the_real_ones(change: dict, sample_wav: bytes) -> None:
    settings = SETTINGS.replace(**change)
    service = AiService(settings)
    try:
        with pytest.raises(InferenceUpstreamError) as real:
            await Ai(service).run(BASE, {"audio": list(sample_wav)})
    finally:
        await service.aclose()
    with pytest.raises(InferenceUpstreamError) as faked:
        await FakeAi(settings=settings).run(BASE, {"audio": list(sample_wav)})
    assert faked.value.code == real.value.code == 3006
    assert faked.value.message == real.value.message


#: FakeAi cans speech-recognition answers; text and embedding ids are not faked.
ASR_MODELS = sorted(m for m, spec in MODELS.items() if spec.task.name == "Automatic Speech Recognition")


@pytest.mark.parametrize("model", ASR_MODELS)
async def test_default_output_is_schema_valid_and_spans_the_audio(model: str, sample_wav: bytes) -> None:
    fake = FakeAi()
    inputs = {"audio": b64(sample_wav)} if MODELS[model].flavor == "turbo" else {"audio": list(sample_wav)}
    result = await fake.run(model, inputs)
    assert isinstance(result, JsDict) and result.text == DEFAULT_TEXT
    validate_output(model, result)
    assert result["word_count"] == len(DEFAULT_TEXT.split())
    assert result["vtt"].startswith("WEBVTT\n")
    words = result["words"] if "words" in result else result["segments"][0]["words"]
    assert words[0]["start"] == 0 and words[-1]["end"] == pytest.approx(18.34, abs=0.01)
    assert fake.last_call.duration == pytest.approx(18.34, abs=0.01)
    if MODELS[model].flavor == "turbo":
        assert result.transcription_info.duration == pytest.approx(18.34, abs=0.01)


async def test_calls_are_recorded(sample_wav: bytes) -> None:
    fake = FakeAi(text="one two")
    await fake.run(TINY, {"audio": list(sample_wav)}, {"gateway": {"id": "g"}})
    await fake.run(TURBO, {"audio": {"body": sample_wav, "contentType": "audio/wav"}, "language": "de"})
    assert [c.model for c in fake.calls] == [TINY, TURBO]
    first, second = fake.calls
    assert first.options == {"gateway": {"id": "g"}}
    assert first.audio == second.audio == sample_wav
    assert second.request is not None and second.request.language == "de" and second.request.content_type == "audio/wav"
    assert first.output.text == "one two" and first.error is None
    fake.reset()
    assert fake.calls == []
    with pytest.raises(AssertionError, match="never called"):
        _ = fake.last_call


async def test_canned_dicts_are_checked_and_copied(sample_wav: bytes) -> None:
    fake = FakeAi({BASE: {"text": "exact words", "word_count": 2}})
    first = await fake.run(BASE, {"audio": list(sample_wav)})
    assert first == {"text": "exact words", "word_count": 2}
    first["text"] = "mutated by the worker"
    assert (await fake.run(BASE, {"audio": list(sample_wav)})).text == "exact words"
    with pytest.raises(OutputSchemaError, match="txt"):
        FakeAi({BASE: {"txt": "typo"}})
    with pytest.raises(OutputSchemaError, match="segments"):
        FakeAi({BASE: {"text": "classic models have no segments", "segments": []}})
    with pytest.raises(ValueError, match="not a Workers AI model"):
        FakeAi({"@cf/meta/llama": {"text": "x"}})
    with pytest.raises(TypeError, match="output dict, an AiError or a function"):
        FakeAi({BASE: "just text"})  # type: ignore[dict-item]


async def test_functions_and_errors_as_answers(sample_wav: bytes) -> None:
    def answer(call: AiCall) -> dict:
        return {"text": f"{call.model} got {len(call.audio or b'')} bytes"}

    fake = FakeAi({TINY: answer, BASE: errors.timeout("simulated")})
    assert (await fake.run(TINY, sample_wav)).text == f"{TINY} got {len(sample_wav)} bytes"
    with pytest.raises(InferenceUpstreamError) as exc:
        await fake.run(BASE, sample_wav)
    assert (exc.value.code, exc.value.httpCode, exc.value.message) == (3007, 408, "3007: Request timeout: simulated")
    fake.set_response(TINY, lambda call: {"text": 42})
    with pytest.raises(OutputSchemaError, match="text"):
        await fake.run(TINY, sample_wav)


async def test_decode_audio_false_accepts_placeholder_bytes() -> None:
    fake = FakeAi(decode_audio=False)
    result = await fake.run(BASE, {"audio": [1, 2, 3]})
    assert result.text == DEFAULT_TEXT
    assert fake.last_call.duration is None
    with pytest.raises(InferenceUpstreamError, match="5006"):  # the schema checks still run
        await fake.run(BASE, {"audio": [1, 999]})


async def test_models_is_the_catalog(real_ai: Ai) -> None:
    fake = FakeAi(settings=SETTINGS)
    assert await fake.models() == await real_ai.models()
    assert [m.name for m in await fake.models({"search": "whisper-tiny"})] == [TINY]


async def test_is_never_the_default(project) -> None:
    from flarelet.testing import Worker

    (project / "wrangler.toml").write_text((project / "wrangler.toml").read_text() + '\n[ai]\nbinding = "AI"\n')
    async with Worker.from_config(project) as worker:
        assert type(worker.env.AI) is Ai
