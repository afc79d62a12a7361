"""Pydantic models of what the Whisper models return, to check outputs that did not come from the engine.

The engine's outputs are shaped by :mod:`flarelet.bindings.ai.asr.output`; these models describe the same
shapes as Cloudflare publishes them (``models.CLASSIC_OUTPUT_SCHEMA`` / ``TURBO_OUTPUT_SCHEMA``),
so a canned or recorded output given to
:class:`flarelet.bindings.ai.fake.FakeAi` can be refused when a real ``env.AI.run`` could never return it.

As in Cloudflare's schemas only ``text`` is required. Two things are stricter than the published
JSON Schema, on purpose, because these models check hand-written test data:

* unknown keys are refused (``"txt"`` instead of ``"text"`` is a typo, not a valid output);
* values are not coerced (``"1.5"`` is not a number), as a JSON Schema validator would refuse it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from .. import catalog

_STRICT = ConfigDict(extra="forbid", strict=True)


class Word(BaseModel):
    """One word with its times in seconds (``words[]`` of both output families)."""

    model_config = _STRICT
    word: str | None = None
    start: float | None = None
    end: float | None = None


class ClassicOutput(BaseModel):
    """``@cf/openai/whisper`` and ``-tiny-en``: ``{text, word_count?, words?, vtt?}``."""

    model_config = _STRICT
    text: str
    word_count: float | None = None
    words: list[Word] | None = None
    vtt: str | None = None


class TranscriptionInfo(BaseModel):
    model_config = _STRICT
    language: str | None = None
    language_probability: float | None = None
    duration: float | None = None
    duration_after_vad: float | None = None


class Segment(BaseModel):
    model_config = _STRICT
    start: float | None = None
    end: float | None = None
    text: str | None = None
    temperature: float | None = None
    avg_logprob: float | None = None
    compression_ratio: float | None = None
    no_speech_prob: float | None = None
    words: list[Word] | None = None


class TurboOutput(BaseModel):
    """``@cf/openai/whisper-large-v3-turbo``: adds ``transcription_info`` and ``segments``."""

    model_config = _STRICT
    transcription_info: TranscriptionInfo | None = None
    text: str
    word_count: float | None = None
    segments: list[Segment] | None = None
    vtt: str | None = None


#: catalog flavor -> output model
OUTPUT_MODELS: dict[str, type[BaseModel]] = {"classic": ClassicOutput, "turbo": TurboOutput}


class OutputSchemaError(ValueError):
    """An output that model could never return; the message lists every problem with its path."""


def output_model(model: str | catalog.ModelSpec) -> type[BaseModel]:
    """The pydantic model of ``model``'s output (raises ``AiError`` 5007 for an unknown id)."""
    spec = model if isinstance(model, catalog.ModelSpec) else catalog.resolve(model)
    return OUTPUT_MODELS[spec.flavor]


def validate_output(model: str | catalog.ModelSpec, output: Any) -> dict[str, Any]:
    """Check ``output`` against ``model``'s output schema; returns it as a plain ``dict``.

    Raises :class:`OutputSchemaError` naming each bad field (``words.0.start: Input should be a
    valid number``).
    """
    spec = model if isinstance(model, catalog.ModelSpec) else catalog.resolve(model)
    if not isinstance(output, Mapping):
        raise OutputSchemaError(f"{spec.id} returns an object, got {type(output).__name__}")
    try:
        output_model(spec).model_validate(_plain(output))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(root)'}: {err['msg']}" for err in exc.errors(include_url=False)
        )
        raise OutputSchemaError(f"not a valid {spec.id} output: {problems}") from None
    return _plain(output)


def _plain(value: Any) -> Any:
    """JsDict/JsonObject and tuples -> plain dicts and lists (what JSON would carry)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
