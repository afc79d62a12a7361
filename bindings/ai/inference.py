"""One validated request through the engine: VAD, transcription, Cloudflare's shape.

Runs on the service's worker thread. Kept apart from :mod:`bindings.ai.service` (queueing,
timeouts) and :mod:`bindings.ai.engine` (the model) so each can change alone.

Silero VAD is used twice, for different reasons:

* ``vad_filter`` (turbo input): cut the non-speech out before transcribing, as faster-whisper
  does, and map timestamps back (``duration_after_vad`` reports what was kept);
* always, as a *silence gate* (:data:`GATE`, lenient settings): 30 s windows with no speech at
  all are not decoded, and audio with no speech returns an empty transcript without touching
  the model. Whisper otherwise "hears" words in silence and noise ("you", "Thanks for
  watching", Japanese subtitles credits) -- the model's own no-speech probability does not
  catch these, because it is confident about them. The gate costs ~1% of real time.
"""

from __future__ import annotations

import threading

import numpy as np

from . import errors, output
from .catalog import ModelSpec
from .engine import Cancelled, Transcription, TranscribeOptions, WhisperEngine
from .schemas import AsrRequest

SAMPLE_RATE = 16_000


def options_for(request: AsrRequest, cancel: threading.Event | None) -> TranscribeOptions:
    return TranscribeOptions(
        task=request.task,
        language=request.language,
        initial_prompt=request.initial_prompt,
        prefix=request.prefix,
        beam_size=request.beam_size,
        condition_on_previous_text=request.condition_on_previous_text,
        compression_ratio_threshold=request.compression_ratio_threshold,
        log_prob_threshold=request.log_prob_threshold,
        no_speech_threshold=request.no_speech_threshold,
        hallucination_silence_threshold=request.hallucination_silence_threshold,
        word_timestamps=True,
        cancel=cancel,
    )


def transcribe_request(
    spec: ModelSpec, engine: WhisperEngine, samples: np.ndarray, request: AsrRequest, cancel: threading.Event | None
) -> dict:
    from . import vad

    options = options_for(request, cancel)
    duration = samples.shape[0] / SAMPLE_RATE
    duration_after_vad = duration
    silent = Transcription([], request.language or "en", 1.0 if request.language else 0.0, duration)
    try:
        if request.vad_filter:
            spans = vad.get_vad().speech_spans(samples)
            speech = vad.collect(samples, spans)
            duration_after_vad = speech.shape[0] / SAMPLE_RATE
            if speech.shape[0] == 0:
                result = silent
            else:
                result = engine.transcribe(speech, options)
                _restore_times(result, vad.TimestampMap(spans))
                result.duration = duration
        else:
            gate = vad.get_vad().speech_spans(samples, vad.GATE)
            if not gate:
                result = silent
            else:
                options.speech_spans = [(s["start"] / SAMPLE_RATE, s["end"] / SAMPLE_RATE) for s in gate]
                result = engine.transcribe(samples, options)
    except Cancelled:
        raise errors.aborted() from None
    if spec.flavor == "turbo":
        return output.turbo(result, duration_after_vad)
    return output.classic(result)


def _restore_times(result: Transcription, mapping) -> None:
    for seg in result.segments:
        for w in seg.words:
            w.start, w.end = mapping.span(w.start, w.end)
        if seg.words:
            seg.start, seg.end = seg.words[0].start, seg.words[-1].end
        else:
            seg.start, seg.end = mapping.span(seg.start, seg.end)
