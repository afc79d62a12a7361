"""``flarelet.bindings.ai.asr.output_schemas`` agrees with Cloudflare's published output schemas and the engine."""

from __future__ import annotations

import base64
import io
import wave
from typing import Any

import pytest
from pydantic import BaseModel

from flarelet.bindings.ai import catalog
from flarelet.bindings.ai.asr import models as asr_models
from flarelet.bindings.ai.asr.output_schemas import OUTPUT_MODELS, OutputSchemaError, output_model, validate_output


def published_keys(schema: dict[str, Any]) -> dict[str, Any]:
    """Property names, nested, of a JSON schema from the catalog."""
    out: dict[str, Any] = {}
    for name, sub in schema.get("properties", {}).items():
        if sub.get("type") == "array":
            sub = sub.get("items", {})
        out[name] = published_keys(sub) if sub.get("type") == "object" else None
    return out


def model_keys(model: type[BaseModel]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        nested = [
            a
            for a in getattr(info.annotation, "__args__", (info.annotation,))
            if isinstance(a, type) and issubclass(a, BaseModel)
        ]
        inner = [
            b
            for a in getattr(info.annotation, "__args__", ())
            for b in getattr(a, "__args__", ())
            if isinstance(b, type) and issubclass(b, BaseModel)
        ]
        sub = (nested or inner or [None])[0]
        out[name] = model_keys(sub) if sub is not None else None
    return out


@pytest.mark.parametrize("flavor", ["classic", "turbo"])
def test_same_fields_as_cloudflares_schema(flavor: str) -> None:
    schema = asr_models.CLASSIC_OUTPUT_SCHEMA if flavor == "classic" else asr_models.TURBO_OUTPUT_SCHEMA
    assert model_keys(OUTPUT_MODELS[flavor]) == published_keys(schema)
    required = [n for n, f in OUTPUT_MODELS[flavor].model_fields.items() if f.is_required()]
    assert required == schema["required"] == ["text"]


def test_each_catalog_model_has_an_output_model() -> None:
    for model_id, spec in catalog.MODELS.items():
        if spec.task.name != "Automatic Speech Recognition":  # asr's output models are Whisper's only
            continue
        assert output_model(model_id) is OUTPUT_MODELS[spec.flavor]


@pytest.mark.parametrize(
    "bad, where",
    [
        ({"text": "x", "word_count": "3"}, "word_count"),
        ({"text": "x", "words": [{"word": "x", "start": 0, "end": 1, "score": 1}]}, "words.0.score"),
        ({"text": None}, "text"),
        ([], "returns an object"),
    ],
)
def test_refusals_name_the_field(bad: Any, where: str) -> None:
    with pytest.raises(OutputSchemaError, match=where.replace(".", r"\.")):
        validate_output("@cf/openai/whisper", bad)


def test_unknown_model() -> None:
    from flarelet.bindings.ai.errors import AiError

    with pytest.raises(AiError, match="5007"):
        validate_output("@cf/nope", {"text": ""})


def _first_seconds(wav_bytes: bytes, seconds: float) -> bytes:
    with wave.open(io.BytesIO(wav_bytes)) as src:
        params = src.getparams()
        frames = src.readframes(int(src.getframerate() * seconds))
    out = io.BytesIO()
    with wave.open(out, "wb") as dst:
        dst.setparams(params)
        dst.writeframes(frames)
    return out.getvalue()


@pytest.mark.slow
@pytest.mark.parametrize("model", ["@cf/openai/whisper-tiny-en", "@cf/openai/whisper-large-v3-turbo"])
async def test_real_outputs_validate(model: str, sample_wav: bytes) -> None:
    from flarelet.bindings.ai.binding import Ai
    from flarelet.bindings.ai.service import get_service

    clip = _first_seconds(sample_wav, 4.0)
    inputs = {"audio": base64.b64encode(clip).decode()} if "turbo" in model else {"audio": list(clip)}
    result = await Ai(get_service()).run(model, inputs)
    assert result["text"].lower().startswith("hello")
    assert validate_output(model, result)["text"] == result["text"]
