"""Automatic speech recognition (Whisper) as a model task of the local Workers AI service.

The core (:mod:`flarelet.bindings.ai.service`) calls this object through the
:class:`~flarelet.bindings.ai.tasks.Task` protocol; everything Whisper-specific sits behind it:
input schemas (:mod:`.schemas`), audio decoding (:mod:`.audio`), VAD (:mod:`.vad`), the engine
(:mod:`.engine`) and output shaping (:mod:`.output`), joined by :mod:`.inference`.

Importing this module is cheap (catalog data only); the rest is imported on first use.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from ..settings import AiSettings
from ..spec import ModelSpec
from .models import ASR_TASK, MODELS


@dataclass
class SpeechInput:
    """A validated request and its decoded audio (16 kHz mono float32)."""

    request: Any  # schemas.AsrRequest
    samples: Any  # np.ndarray
    long_form: str = "sequential"  # AiSettings.long_form


class SpeechRecognition:
    """The Whisper task."""

    info = ASR_TASK

    def parse_inputs(self, spec: ModelSpec, inputs: Any, settings: AiSettings) -> SpeechInput:
        from . import audio, schemas  # pydantic and PyAV: cheap, but keep start-up import-free

        request = schemas.parse_inputs(spec, inputs, settings)
        samples = audio.decode_audio(request.audio, settings.max_audio_seconds, audio.source_of(inputs))
        return SpeechInput(request, samples, settings.long_form)

    def side_work(self, request: SpeechInput) -> Callable[[], Any] | None:
        """``vad_filter`` and batched long-form need the whole clip's speech spans before
        transcribing starts."""
        from . import inference

        if request.request.vad_filter:
            return functools.partial(inference.filter_spans, request.samples, request.request)
        if request.long_form == "batched":
            return functools.partial(inference.chunk_speech, request.samples)
        return None

    def load(self, spec: ModelSpec, settings: AiSettings) -> Any:
        from . import engine

        return engine.get_engine(spec, settings)

    def start(self, model: Any, spec: ModelSpec, request: SpeechInput, cancel: threading.Event, side: Future | None):
        from . import inference

        return inference.prepare(spec, model, request.samples, request.request, cancel, side, request.long_form)

    def run_round(self, model: Any, jobs: Sequence[Any], threads: int) -> None:
        model.run_round([prepared.job for prepared in jobs], threads)

    def finish(self, job: Any) -> dict:
        from . import inference

        return inference.finish(job)

    def input_model(self, spec: ModelSpec) -> Any:
        from . import schemas

        return schemas.TurboInput if spec.flavor == "turbo" else schemas.ClassicInput


TASK = SpeechRecognition()


def register() -> None:
    """Serve the Whisper models (called by :mod:`flarelet.bindings.ai.catalog` on its import)."""
    from .. import catalog

    catalog.register(TASK, MODELS)
