"""Tests for the Whisper worker: with the real local model, with FakeAi, and with a cassette.

* The real model (`@pytest.mark.slow`): what Cloudflare's tooling cannot do offline -- env.AI
  really transcribes the sample file. Skip with `-m "not slow"`.
* `FakeAi` (bindings/ai/fake.py): no model; the inputs are still checked by the real schemas and
  the audio decoded, the output is canned and schema-valid, and each call is kept for asserts.
* A cassette (`cassettes/whisper.json`): the real model's answer, recorded once with
  `FLARELET_AI_RECORD=1 python -m pytest examples/whisper`, replayed by FakeAi afterwards.
"""

from pathlib import Path

import pytest

from flarelet.bindings.ai import errors
from flarelet.bindings.ai.asr.output_schemas import validate_output
from flarelet.bindings.ai.fake import FakeAi

SAMPLE = Path(__file__).resolve().parent.parent / "public" / "enrollment_audio_katie.wav"


@pytest.mark.slow
async def test_transcribes_the_sample_with_the_real_model(worker):
    resp = await worker.fetch("/")
    assert resp.status == 200
    body = await resp.json()
    assert body["input"] == {"audio": []}
    result = body["response"]
    validate_output("@cf/openai/whisper", result)  # Cloudflare's output shape
    text = result["text"].lower()
    assert text.startswith("hello, it is a good day for me to teach you the sound of my voice")
    assert text.endswith("thank you and goodbye.")
    assert result["word_count"] == len(result["words"]) > 50
    assert result["vtt"].startswith("WEBVTT")
    assert all(0 <= w["start"] <= w["end"] <= 18.4 for w in result["words"])


async def test_with_fake_ai(worker):
    fake = FakeAi(text="Hello from the test.")
    with worker.override(AI=fake):
        resp = await worker.fetch("/")
    assert resp.status == 200
    result = (await resp.json())["response"]
    assert result["text"] == "Hello from the test."
    assert result["word_count"] == 4
    # What the worker sent: the sample file's bytes, fetched from its own origin, as a byte list.
    call = fake.last_call
    assert call.model == "@cf/openai/whisper"
    assert call.audio == SAMPLE.read_bytes()
    assert isinstance(call.inputs["audio"], list)
    assert call.duration == pytest.approx(18.34, abs=0.01)


@pytest.mark.flarelet(bindings=lambda: {"AI": FakeAi()})
async def test_model_is_chosen_by_query(worker, env):
    resp = await worker.fetch("/?model=@cf/openai/whisper-tiny-en")
    assert resp.status == 200
    assert [c.model for c in env.AI.calls] == ["@cf/openai/whisper-tiny-en"]


@pytest.mark.flarelet(bindings=lambda: {"AI": FakeAi()})
async def test_unknown_model_fails_as_on_cloudflare(worker, env, caplog):
    resp = await worker.fetch("/?model=@cf/openai/whisper-huge")
    assert resp.status == 500  # the worker does not catch InferenceUpstreamError
    assert env.AI.last_call.error.message == "5007: No such model @cf/openai/whisper-huge or task"
    assert "InferenceUpstreamError" in caplog.text or "NoSuchModel" in caplog.text


async def test_capacity_errors_can_be_simulated(worker):
    fake = FakeAi({"@cf/openai/whisper": errors.out_of_capacity()})
    with worker.override(AI=fake):
        resp = await worker.fetch("/")
    assert resp.status == 500
    assert fake.last_call.error.code == 3040


@pytest.mark.flarelet(ai_cassette="cassettes/whisper.json")
async def test_replays_the_recorded_transcript(worker):
    resp = await worker.fetch("/")
    assert resp.status == 200
    result = (await resp.json())["response"]
    assert result["text"].startswith("Hello, it is a good day")
    assert result["word_count"] == len(result["words"])
