"""Input validation for the Whisper models, with pydantic, and Cloudflare's error codes.

Two input families, as Cloudflare's published input schemas define them:

* classic (``@cf/openai/whisper``, ``-tiny-en``): ``{"audio": [0..255, ...]}`` -- the bytes of an
  encoded audio file as a list of integers -- or the raw bytes as the whole input (the REST binary
  body). Python callers may also pass ``bytes`` / ``bytearray`` / ``memoryview`` for ``audio``.
* turbo (``@cf/openai/whisper-large-v3-turbo``): ``{"audio": <base64 str> | {body, contentType},
  task, language, vad_filter, initial_prompt, prefix, beam_size, condition_on_previous_text,
  no_speech_threshold, compression_ratio_threshold, log_prob_threshold,
  hallucination_silence_threshold}``.

Every failure becomes an :class:`~flarelet.bindings.ai.errors.AiError`: 5006 ``AiError: Bad input: Error:
<what> at '/<json pointer>'`` naming the field, or 3006 when the audio is over
``max_input_bytes``. Unknown keys are ignored, as Cloudflare's schemas allow them.

Large ``audio`` lists (a 5 MB file is a 5-million-item list) are checked with numpy in one pass
instead of per item, and the first bad item is reported by index.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, WithJsonSchema, field_validator

from .. import errors
from ..errors import json_type
from ..settings import AiSettings
from ..spec import ModelSpec
from .languages import normalize_language

#: Greedy decoding by default: as accurate as 5 beams on clean speech and 2-3x faster on a CPU.
#: Callers of the turbo model may ask for beams.
DEFAULT_BEAM_SIZE = 1
#: Beam search cost grows linearly with beams; more than this only burns CPU.
MAX_BEAM_SIZE = 10
#: faster-whisper's defaults, which Cloudflare's turbo knobs mirror.
DEFAULT_NO_SPEECH_THRESHOLD = 0.6
DEFAULT_COMPRESSION_RATIO_THRESHOLD = 2.4
DEFAULT_LOG_PROB_THRESHOLD = -1.0
#: Prompts are cut to the last half context (223 tokens) by the engine; refuse absurd strings early.
MAX_PROMPT_CHARS = 10_000

BytesLike = (bytes, bytearray, memoryview)


@dataclass(frozen=True)
class AsrRequest:
    """A validated speech-recognition request: the encoded audio and the decoding options."""

    audio: bytes
    content_type: str | None = None
    task: Literal["transcribe", "translate"] = "transcribe"
    language: str | None = None  # Whisper code ("de"); None = detect
    vad_filter: bool = False
    initial_prompt: str | None = None
    prefix: str | None = None
    beam_size: int = DEFAULT_BEAM_SIZE
    condition_on_previous_text: bool = True
    no_speech_threshold: float | None = DEFAULT_NO_SPEECH_THRESHOLD
    compression_ratio_threshold: float | None = DEFAULT_COMPRESSION_RATIO_THRESHOLD
    log_prob_threshold: float | None = DEFAULT_LOG_PROB_THRESHOLD
    hallucination_silence_threshold: float | None = None


class _AudioTooLarge(Exception):
    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"audio is {size} bytes, over the limit of {limit} bytes (max_input_bytes)")


def _byte_list_to_bytes(value: Any, limit: int) -> bytes:
    """A list of integers 0..255 (or a bytes-like) -> bytes; ValueError names the first bad item."""
    if isinstance(value, BytesLike):
        data = bytes(value)
        if len(data) > limit:
            raise _AudioTooLarge(len(data), limit)
        return data
    if not isinstance(value, (list, tuple)):
        raise TypeError(f"expected an array of integers 0..255, got {json_type(value)}")
    if len(value) > limit:
        raise _AudioTooLarge(len(value), limit)
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError):  # ragged / nested
        arr = np.asarray(value, dtype=object)
    if arr.ndim == 1 and arr.dtype.kind in "iu" and (arr.size == 0 or (arr.min() >= 0 and arr.max() <= 255)):
        return arr.astype(np.uint8).tobytes()
    if (
        arr.ndim == 1
        and arr.dtype.kind == "f"
        and np.all(np.isfinite(arr))
        and np.all(arr == np.floor(arr))
        and (arr.size == 0 or (arr.min() >= 0 and arr.max() <= 255))
    ):
        return arr.astype(np.uint8).tobytes()  # JSON numbers like 12.0 are integers
    for i, item in enumerate(value):  # slow path: report the first offender precisely
        if isinstance(item, bool) or not isinstance(item, (int, float)):
            raise _ItemError(i, f"Type mismatch, '{json_type(item)}' not in 'number'")
        if item != int(item) or not 0 <= item <= 255:
            raise _ItemError(i, f"value {item!r} is not an integer between 0 and 255")
    raise TypeError("expected an array of integers 0..255")  # pragma: no cover (unreachable)


class _ItemError(ValueError):
    def __init__(self, index: int, message: str) -> None:
        super().__init__(message)
        self.index = index


#: ``audio`` is validated by :func:`_byte_list_to_bytes` (numpy, one pass); these annotations give
#: the OpenAPI document (``flarelet.bindings.ai.openapi``) the JSON Schema a client sees.
ByteArrayAudio = Annotated[
    Any,
    WithJsonSchema(
        {
            "type": "array",
            "description": (
                "An array of integers that represent the audio data constrained to 8-bit unsigned integer values"
            ),
            "items": {"type": "integer", "minimum": 0, "maximum": 255},
        }
    ),
]
TurboAudio = Annotated[
    Any,
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "description": "Base64 encoded value of the audio data."},
                {
                    "type": "object",
                    "properties": {
                        "body": {
                            "description": "The audio bytes (a ReadableStream in JS; bytes or an array of 0..255 here)"
                        },
                        "contentType": {"type": "string", "minLength": 1},
                    },
                    "required": ["body", "contentType"],
                },
            ]
        }
    ),
]


class ClassicInput(BaseModel):
    """``@cf/openai/whisper`` and ``-tiny-en``: ``{"audio": number[]}``."""

    model_config = ConfigDict(extra="ignore", arbitrary_types_allowed=True)
    audio: ByteArrayAudio


class StreamAudio(BaseModel):
    """Turbo's ``{body, contentType}`` form (a ReadableStream in JS; bytes for Python callers)."""

    model_config = ConfigDict(extra="ignore", arbitrary_types_allowed=True)
    body: Any
    contentType: str = Field(min_length=1)


class TurboInput(BaseModel):
    """``@cf/openai/whisper-large-v3-turbo`` inputs (workers-types 5.20261117.1)."""

    model_config = ConfigDict(extra="ignore", arbitrary_types_allowed=True)

    audio: TurboAudio
    task: Literal["transcribe", "translate"] = "transcribe"
    language: str | None = None
    vad_filter: bool = False
    initial_prompt: str | None = Field(default=None, max_length=MAX_PROMPT_CHARS)
    prefix: str | None = Field(default=None, max_length=MAX_PROMPT_CHARS)
    beam_size: int = Field(default=DEFAULT_BEAM_SIZE, ge=1, le=MAX_BEAM_SIZE)
    condition_on_previous_text: bool = True
    no_speech_threshold: float | None = Field(default=DEFAULT_NO_SPEECH_THRESHOLD, ge=0.0, le=1.0)
    compression_ratio_threshold: float | None = Field(default=DEFAULT_COMPRESSION_RATIO_THRESHOLD, gt=0.0)
    log_prob_threshold: float | None = Field(default=DEFAULT_LOG_PROB_THRESHOLD, le=0.0)
    hallucination_silence_threshold: float | None = Field(default=None, gt=0.0)

    @field_validator("language")
    @classmethod
    def _language(cls, value: str | None) -> str | None:
        if value is None or value.strip() == "":
            return None
        code = normalize_language(value)
        if code is None:
            raise ValueError(f"unsupported language {value!r}; use an ISO 639-1 code such as 'en', 'de', 'fr'")
        return code


def parse_inputs(spec: ModelSpec, inputs: Any, settings: AiSettings) -> AsrRequest:
    """Validate ``inputs`` for ``spec``; raise 5006 (bad input) or 3006 (too large)."""
    limit = settings.max_input_bytes
    try:
        if isinstance(inputs, BytesLike):  # the REST binary body, or a Python caller's bytes
            return _checked(AsrRequest(audio=_byte_list_to_bytes(inputs, limit)))
        if not isinstance(inputs, dict):
            raise errors.bad_input(
                f"Error: Type mismatch of '/', '{json_type(inputs)}' not in 'object' "
                "(expected an object with 'audio', or the audio file's bytes)"
            )
        if "audio" not in inputs:
            raise errors.bad_input("Error: required properties at '/' are 'audio'")
        if spec.flavor == "classic":
            return _parse_classic(inputs, limit)
        return _parse_turbo(inputs, limit)
    except _AudioTooLarge as exc:
        raise errors.too_large(str(exc)) from None


def _parse_classic(inputs: dict, limit: int) -> AsrRequest:
    ClassicInput.model_validate(inputs)
    value = inputs["audio"]
    if isinstance(value, str):
        raise errors.bad_input(
            "Error: Type mismatch of '/audio', 'string' not in 'array' "
            "(this model takes the file's bytes as an array of integers 0..255)"
        )
    try:
        data = _byte_list_to_bytes(value, limit)
    except _ItemError as exc:
        raise errors.bad_input(f"Error: {exc} at '/audio/{exc.index}'") from None
    except TypeError as exc:
        raise errors.bad_input(f"Error: {exc} at '/audio'") from None
    return _checked(AsrRequest(audio=data))


def _parse_turbo(inputs: dict, limit: int) -> AsrRequest:
    try:
        model = TurboInput.model_validate(inputs)
    except ValidationError as exc:
        raise errors.bad_input(_describe(exc)) from None
    value, content_type = model.audio, None
    if isinstance(value, str):
        if len(value) > limit * 4 // 3 + 4:
            raise _AudioTooLarge(len(value) * 3 // 4, limit)
        try:
            data = base64.b64decode(value.strip(), validate=True)
        except (binascii.Error, ValueError):
            # Also accept URL-safe base64 and missing padding, as browsers/SDKs produce both.
            try:
                cleaned = value.strip().replace("-", "+").replace("_", "/")
                data = base64.b64decode(cleaned + "=" * (-len(cleaned) % 4), validate=True)
            except (binascii.Error, ValueError):
                raise errors.bad_input("Error: '/audio' is not valid base64-encoded audio") from None
        if len(data) > limit:
            raise _AudioTooLarge(len(data), limit)
    elif isinstance(value, dict):
        try:
            stream = StreamAudio.model_validate(value)
        except ValidationError as exc:
            raise errors.bad_input(
                "Error: required properties at '/audio' are 'body,contentType' (" + _describe(exc, "/audio") + ")"
            ) from None
        content_type = stream.contentType
        try:
            data = _byte_list_to_bytes(stream.body, limit)
        except _ItemError as exc:
            raise errors.bad_input(f"Error: {exc} at '/audio/body/{exc.index}'") from None
        except TypeError as exc:
            raise errors.bad_input(f"Error: {exc} at '/audio/body'") from None
    elif isinstance(value, (*BytesLike, list, tuple)):  # Python callers; lenient like the classic form
        try:
            data = _byte_list_to_bytes(value, limit)
        except _ItemError as exc:
            raise errors.bad_input(f"Error: {exc} at '/audio/{exc.index}'") from None
    else:
        raise errors.bad_input(
            f"Error: Type mismatch of '/audio', '{json_type(value)}' not in 'string' (base64) "
            "or 'object' ({body, contentType})"
        )
    return _checked(
        AsrRequest(
            audio=data,
            content_type=content_type,
            task=model.task,
            language=model.language,
            vad_filter=model.vad_filter,
            initial_prompt=model.initial_prompt or None,
            prefix=model.prefix or None,
            beam_size=model.beam_size,
            condition_on_previous_text=model.condition_on_previous_text,
            no_speech_threshold=model.no_speech_threshold,
            compression_ratio_threshold=model.compression_ratio_threshold,
            log_prob_threshold=model.log_prob_threshold,
            hallucination_silence_threshold=model.hallucination_silence_threshold,
        )
    )


def _checked(request: AsrRequest) -> AsrRequest:
    if not request.audio:
        raise errors.bad_input("Error: '/audio' is empty (no audio data)")
    return request


def _describe(exc: ValidationError, base: str = "") -> str:
    """pydantic errors -> ``Error: <message> at '/<pointer>'``, joined like Cloudflare's validator."""
    parts = []
    for err in exc.errors(include_url=False):
        pointer = base + "/" + "/".join(str(p) for p in err["loc"]) if err["loc"] else base or "/"
        if err["type"] == "missing":
            parent = pointer.rsplit("/", 1)[0] or "/"
            parts.append(f"required properties at '{parent}' are '{err['loc'][-1]}'")
            continue
        msg = err["msg"]
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        parts.append(f"{msg} at '{pointer}'")
    return "Error: " + ", ".join(parts)
