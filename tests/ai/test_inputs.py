"""Every bad input gets Cloudflare's error (5006 naming the field, 3006 over a limit, 5007 for an
unknown model) from the service, before any model is loaded -- never a crash or a traceback."""

from __future__ import annotations

import base64

import numpy as np
import pytest

from flarelet.bindings.ai import errors
from flarelet.bindings.ai.asr import schemas
from flarelet.bindings.ai.catalog import MODELS
from flarelet.bindings.ai.service import AiService
from flarelet.bindings.ai.settings import AiSettings

from .conftest import BASE, TINY, TURBO, wav_bytes

LIMIT = 50_000


@pytest.fixture
def svc(tmp_path) -> AiService:
    # An empty cache dir: a test that reached the engine would start a conversion and fail the
    # "no model loaded" expectation below, so these tests prove validation happens first.
    return AiService(AiSettings(cache_dir=tmp_path, max_input_bytes=LIMIT, max_audio_seconds=2.0))


async def fails(svc: AiService, model: str, inputs, code: int) -> errors.AiError:
    with pytest.raises(errors.AiError) as info:
        await svc.run(model, inputs)
    exc = info.value
    assert exc.code == code, exc
    assert "Traceback" not in exc.description
    assert str(exc) == f"{exc.code}: {exc.description}"
    assert not (svc.settings.models_dir).exists(), "validation must fail before any model work"
    return exc


async def test_unknown_model_is_5007(svc):
    exc = await fails(svc, "@cf/openai/whisper-huge", {"audio": [1, 2, 3]}, 5007)
    assert exc.description == "No such model @cf/openai/whisper-huge or task"
    assert exc.status == 400
    await fails(svc, 42, {"audio": [1]}, 5007)


@pytest.mark.parametrize("model", [TINY, BASE])
@pytest.mark.parametrize(
    "inputs, where",
    [
        ({}, "required properties at '/' are 'audio'"),
        ({"text": "hi"}, "required properties at '/' are 'audio'"),
        ({"audio": "UklGRg=="}, "'/audio'"),
        ({"audio": 12}, "'/audio'"),
        ({"audio": None}, "'/audio'"),
        ({"audio": {"a": 1}}, "'/audio'"),
        ({"audio": [1, 2, 256]}, "'/audio/2'"),
        ({"audio": [0, -1]}, "'/audio/1'"),
        ({"audio": [0, 1.5]}, "'/audio/1'"),
        ({"audio": [0, "7"]}, "'/audio/1'"),
        ({"audio": [0, None]}, "'/audio/1'"),
        ({"audio": [True]}, "'/audio/0'"),
        ({"audio": [[1, 2]]}, "'/audio/0'"),
        ({"audio": []}, "'/audio' is empty"),
        (12, "'/'"),
        ("some text", "'/'"),
        ([1, 2, 3], "'/'"),
        (None, "'/'"),
    ],
)
async def test_classic_bad_inputs_are_5006_naming_the_field(svc, model, inputs, where):
    exc = await fails(svc, model, inputs, 5006)
    assert exc.description.startswith("AiError: Bad input: Error: ")
    assert where in exc.description
    assert exc.status == 400


@pytest.mark.parametrize(
    "inputs, where",
    [
        ({"task": "transcribe"}, "required properties at '/' are 'audio'"),
        ({"audio": "not base64 !!!"}, "'/audio' is not valid base64"),
        ({"audio": 5}, "'/audio'"),
        ({"audio": {"body": b"RIFF"}}, "required properties at '/audio' are 'body,contentType'"),
        ({"audio": {"contentType": "audio/wav"}}, "required properties at '/audio' are 'body,contentType'"),
        ({"audio": {"body": 5, "contentType": "audio/wav"}}, "'/audio/body'"),
        ({"audio": "", "task": "transcribe"}, "'/audio' is empty"),
        ({"audio": "UklGRg==", "task": "summarize"}, "'/task'"),
        ({"audio": "UklGRg==", "language": "klingon"}, "'/language'"),
        ({"audio": "UklGRg==", "language": 7}, "'/language'"),
        ({"audio": "UklGRg==", "vad_filter": "maybe"}, "'/vad_filter'"),
        ({"audio": "UklGRg==", "beam_size": 0}, "'/beam_size'"),
        ({"audio": "UklGRg==", "beam_size": schemas.MAX_BEAM_SIZE + 1}, "'/beam_size'"),
        ({"audio": "UklGRg==", "beam_size": "wide"}, "'/beam_size'"),
        ({"audio": "UklGRg==", "no_speech_threshold": 1.5}, "'/no_speech_threshold'"),
        ({"audio": "UklGRg==", "compression_ratio_threshold": -2}, "'/compression_ratio_threshold'"),
        ({"audio": "UklGRg==", "log_prob_threshold": 3}, "'/log_prob_threshold'"),
        ({"audio": "UklGRg==", "hallucination_silence_threshold": "x"}, "'/hallucination_silence_threshold'"),
        ({"audio": "UklGRg==", "initial_prompt": ["a"]}, "'/initial_prompt'"),
        ({"audio": "UklGRg==", "prefix": "x" * (schemas.MAX_PROMPT_CHARS + 1)}, "'/prefix'"),
        ({"audio": "UklGRg==", "condition_on_previous_text": "often"}, "'/condition_on_previous_text'"),
    ],
)
async def test_turbo_bad_inputs_are_5006_naming_the_field(svc, inputs, where):
    exc = await fails(svc, TURBO, inputs, 5006)
    assert where in exc.description, exc.description


@pytest.mark.parametrize("model", [TINY, TURBO])
async def test_bytes_that_are_not_audio_are_a_clear_5006(svc, model):
    junk = b"this is a text file, not a recording\n" * 20
    for inputs in ({"audio": list(junk)} if model != TURBO else {"audio": base64.b64encode(junk).decode()}, junk):
        exc = await fails(svc, model, inputs, 5006)
        assert "could not be decoded as audio" in exc.description
        assert "WAV, MP3" in exc.description


async def test_a_video_without_audio_stream_is_5006(svc, tmp_path):
    import io

    import av

    buf = io.BytesIO()
    with av.open(buf, "w", format="matroska") as out:
        stream = out.add_stream("mpeg4", rate=5)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        for i in range(3):
            frame = av.VideoFrame.from_ndarray(np.full((32, 32, 3), i * 40, np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    exc = await fails(svc, TINY, buf.getvalue(), 5006)
    assert "no audio stream" in exc.description


@pytest.mark.parametrize("model", [TINY, BASE, TURBO])
async def test_over_max_input_bytes_is_3006(svc, model):
    data = bytes(LIMIT + 1)
    forms = [data, {"audio": list(data)}, {"audio": bytearray(data)}, {"audio": memoryview(data)}]
    if model == TURBO:
        forms = [
            data,
            {"audio": base64.b64encode(data).decode()},
            {"audio": {"body": data, "contentType": "audio/wav"}},
        ]
    for inputs in forms:
        exc = await fails(svc, model, inputs, 3006)
        assert exc.status == 413
        assert "max_input_bytes" in exc.description


async def test_over_max_audio_seconds_is_3006(svc):
    three_seconds = wav_bytes(np.zeros(24_000, np.float32), rate=8000)
    assert len(three_seconds) < LIMIT
    exc = await fails(svc, TINY, {"audio": list(three_seconds)}, 3006)
    assert "longer than 2 s (max_audio_seconds)" in exc.description


def test_accepted_input_forms_parse_to_the_same_bytes():
    cfg = AiSettings(max_input_bytes=LIMIT)
    data = wav_bytes(np.zeros(1600, np.float32))
    tiny, turbo = MODELS[TINY], MODELS[TURBO]
    forms = [
        data,
        bytearray(data),
        memoryview(data),
        {"audio": list(data)},
        {"audio": data},
        {"audio": [float(b) for b in data]},
        {"audio": tuple(data)},
        {"audio": list(data), "extra": "ignored"},
    ]
    for inputs in forms:
        assert schemas.parse_inputs(tiny, inputs, cfg).audio == data
    b64 = base64.b64encode(data).decode()
    turbo_forms = [
        {"audio": b64},
        {"audio": base64.urlsafe_b64encode(data).decode().rstrip("=")},
        {"audio": {"body": data, "contentType": "audio/wav"}},
        {"audio": {"body": list(data), "contentType": "audio/wav"}},
        data,
    ]
    for inputs in turbo_forms:
        assert schemas.parse_inputs(turbo, inputs, cfg).audio == data


def test_turbo_options_are_parsed():
    cfg = AiSettings()
    req = schemas.parse_inputs(
        MODELS[TURBO],
        {
            "audio": "UklGRg==",
            "task": "translate",
            "language": "German",
            "vad_filter": "true",
            "initial_prompt": "Meeting notes.",
            "prefix": "So",
            "beam_size": 3,
            "condition_on_previous_text": False,
            "no_speech_threshold": 0.5,
            "compression_ratio_threshold": 2.0,
            "log_prob_threshold": -0.8,
            "hallucination_silence_threshold": 2,
        },
        cfg,
    )
    assert (req.task, req.language, req.vad_filter, req.beam_size) == ("translate", "de", True, 3)
    assert (req.initial_prompt, req.prefix, req.condition_on_previous_text) == ("Meeting notes.", "So", False)
    assert (req.no_speech_threshold, req.compression_ratio_threshold, req.log_prob_threshold) == (0.5, 2.0, -0.8)
    assert req.hallucination_silence_threshold == 2.0
    defaults = schemas.parse_inputs(MODELS[TURBO], {"audio": "UklGRg=="}, cfg)
    assert (
        defaults.task == "transcribe" and defaults.language is None and defaults.beam_size == schemas.DEFAULT_BEAM_SIZE
    )


def test_large_list_reports_the_first_bad_item():
    """A 2 MB file as a JSON list is validated in one numpy pass; a bad item is still named."""
    data = [int(x) for x in np.random.default_rng(0).integers(0, 256, 2_000_000)]
    cfg = AiSettings(max_input_bytes=10_000_000)
    assert len(schemas.parse_inputs(MODELS[TINY], {"audio": data}, cfg).audio) == 2_000_000
    data[1_999_998] = 999
    with pytest.raises(errors.AiError) as info:
        schemas.parse_inputs(MODELS[TINY], {"audio": data}, cfg)
    assert "'/audio/1999998'" in info.value.description
