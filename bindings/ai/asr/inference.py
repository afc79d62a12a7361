"""One validated request through the engine: VAD, transcription, Cloudflare's shape.

Runs on the service's worker thread. Kept apart from :mod:`flarelet.bindings.ai.service` (queueing,
timeouts) and :mod:`flarelet.bindings.ai.asr.engine` (the model) so each can change alone.

Silero VAD is used twice, for different reasons:

* ``vad_filter`` (turbo input): cut the non-speech out before transcribing, as faster-whisper
  does, and map timestamps back (``duration_after_vad`` reports what was kept); the spans of the
  whole clip are needed first, so the service computes them on its VAD thread;
* always, as a *silence gate* (:class:`vad.SpeechGate`, lenient settings): 30 s windows with no
  speech at all are not decoded, and audio with no speech returns an empty transcript without
  touching the model. Whisper otherwise "hears" words in silence and noise ("you", "Thanks for
  watching", Japanese subtitles credits) -- the model's own no-speech probability does not
  catch these, because it is confident about them. The gate asks lazily, window by window, and
  stops reading at the first speech, so on speech it costs a few milliseconds per window.
"""

from __future__ import annotations

import concurrent.futures
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import errors
from ..spec import ModelSpec
from . import output
from .options import Cancelled, TranscribeOptions
from .results import Transcription
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


def filter_spans(samples: np.ndarray, request: AsrRequest) -> list[dict[str, int]]:
    """``vad_filter``'s speech spans (faster-whisper's VAD options), in samples.

    Needs no model, so the service runs it on its own thread before the request queues."""
    from . import vad

    return vad.get_vad().speech_spans(samples, vad.VadOptions())


def chunk_speech(samples: np.ndarray) -> list[dict[str, int]]:
    """Batched long-form's speech spans (:data:`vad.CHUNKING`), in samples; like
    :func:`filter_spans`, computed on the service's VAD thread."""
    from . import vad

    return vad.get_vad().speech_spans(samples, vad.CHUNKING)


@dataclass
class Prepared:
    """A request ready for the engine: its transcription :class:`Job` (None when there is nothing
    to transcribe) and what :func:`finish` needs to give Cloudflare's shape."""

    spec: ModelSpec
    request: AsrRequest
    job: Any  # the engine's job (work.Job, or the transformers backend's); None: nothing to run
    duration: float
    duration_after_vad: float
    gate: Any = None  # vad.SpeechGate (no vad_filter)
    mapping: Any = None  # vad.TimestampMap for vad_filter

    @property
    def finished(self) -> bool:
        return self.job is None or self.job.finished


def prepare(
    spec: ModelSpec,
    engine: Any,
    samples: np.ndarray,
    request: AsrRequest,
    cancel: threading.Event | None,
    spans: concurrent.futures.Future[list[dict[str, int]]] | None = None,
    long_form: str = "sequential",
) -> Prepared:
    """Start ``request``'s transcription: the :class:`Job` that :meth:`WhisperEngine.run_round`
    advances (alone, or batched with other requests' jobs).

    ``spans``: for ``vad_filter``, :func:`filter_spans` being computed elsewhere (for batched
    long-form without it, :func:`chunk_speech`; None = compute it here). Otherwise the silence
    gate asks its questions as the engine goes. ``long_form``: ``AiSettings.long_form``; batched
    needs an engine that can start a :class:`~flarelet.bindings.ai.asr.batched.BatchedJob`
    (the lean one), others transcribe sequentially.
    """
    from . import vad

    options = options_for(request, cancel)
    duration = samples.shape[0] / SAMPLE_RATE
    if long_form == "batched" and hasattr(engine, "start_batched"):
        # vad_filter's spans (faster-whisper's filter) or the chunking VAD's; either way the
        # chunks are stretches of the clip, so timestamps need no mapping back
        if spans is not None:
            found = spans.result()
        else:
            found = filter_spans(samples, request) if request.vad_filter else chunk_speech(samples)
        kept = sum(s["end"] - s["start"] for s in found) / SAMPLE_RATE
        after_vad = kept if request.vad_filter else duration  # (without vad_filter nothing is cut)
        if not found:
            return Prepared(spec, request, None, duration, after_vad)
        return Prepared(spec, request, engine.start_batched(samples, found, options), duration, after_vad)
    if request.vad_filter:
        found = spans.result() if spans is not None else filter_spans(samples, request)
        speech = vad.collect(samples, found)
        if speech.shape[0] == 0:
            return Prepared(spec, request, None, duration, 0.0)
        job = engine.start(speech, options)
        return Prepared(spec, request, job, duration, speech.shape[0] / SAMPLE_RATE, mapping=vad.TimestampMap(found))
    gate = vad.SpeechGate(samples)
    options.speech_spans = gate
    return Prepared(spec, request, engine.start(samples, options), duration, duration, gate=gate)


def finish(prepared: Prepared) -> dict:
    """The finished job's :class:`Transcription` in the model's output shape (or its error)."""
    request = prepared.request
    silent = Transcription([], request.language or "en", 1.0 if request.language else 0.0, prepared.duration)
    if prepared.job is None:
        result = silent
    else:
        try:
            result = prepared.job.result()
        except Cancelled:
            raise errors.aborted() from None
        if prepared.gate is not None and not prepared.gate.found_any:
            result = silent  # the gate found no speech: the model was never asked
        if prepared.mapping is not None:
            _restore_times(result, prepared.mapping)
            result.duration = prepared.duration
    if prepared.spec.flavor == "turbo":
        return output.turbo(result, prepared.duration_after_vad)
    return output.classic(result)


def transcribe_request(
    spec: ModelSpec,
    engine: Any,
    samples: np.ndarray,
    request: AsrRequest,
    cancel: threading.Event | None,
    long_form: str = "sequential",
) -> dict:
    """One request start to finish on the calling thread (no batching with other requests)."""
    prepared = prepare(spec, engine, samples, request, cancel, long_form=long_form)
    if prepared.job is not None:
        while not prepared.job.finished:
            engine.run_round([prepared.job])
    return finish(prepared)


def _restore_times(result: Transcription, mapping) -> None:
    for seg in result.segments:
        for w in seg.words:
            w.start, w.end = mapping.span(w.start, w.end)
        if seg.words:
            seg.start, seg.end = seg.words[0].start, seg.words[-1].end
        else:
            seg.start, seg.end = mapping.span(seg.start, seg.end)
