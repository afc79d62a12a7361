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

import concurrent.futures
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import errors, output
from .catalog import ModelSpec
from .engine import Cancelled, Job, Transcription, TranscribeOptions, WhisperEngine
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


def speech_gate(samples: np.ndarray, request: AsrRequest) -> list[dict[str, int]]:
    """The VAD pass a request needs: ``vad_filter``'s speech spans, or the silence gate's.

    Needs no model, so the service runs it on its own thread beside the model's work (for the
    gate, even beside the encoding of the request's first window)."""
    from . import vad

    return vad.get_vad().speech_spans(samples, vad.VadOptions() if request.vad_filter else vad.GATE)


@dataclass
class Prepared:
    """A request ready for the engine: its transcription :class:`Job` (None when there is nothing
    to transcribe) and what :func:`finish` needs to give Cloudflare's shape."""

    spec: ModelSpec
    request: AsrRequest
    job: Job | None
    duration: float
    duration_after_vad: float
    spans: "concurrent.futures.Future[list[dict[str, int]]] | list[dict[str, int]]"
    mapping: Any = None  # vad.TimestampMap for vad_filter


def prepare(
    spec: ModelSpec,
    engine: WhisperEngine,
    samples: np.ndarray,
    request: AsrRequest,
    cancel: threading.Event | None,
    spans: "concurrent.futures.Future[list[dict[str, int]]] | None" = None,
) -> Prepared:
    """Start ``request``'s transcription: the :class:`Job` that :meth:`WhisperEngine.run_round`
    advances (alone, or batched with other requests' jobs).

    ``spans``: :func:`speech_gate`'s result being computed elsewhere; None = compute it here. The
    silence gate's spans may still be pending -- the engine waits for them only after encoding
    the first window -- while ``vad_filter`` needs them now (it cuts the audio).
    """
    from . import vad

    options = options_for(request, cancel)
    duration = samples.shape[0] / SAMPLE_RATE
    if spans is None:
        spans = _done(speech_gate(samples, request))
    if request.vad_filter:
        found = spans.result()
        speech = vad.collect(samples, found)
        if speech.shape[0] == 0:
            return Prepared(spec, request, None, duration, 0.0, found)
        job = Job(engine.transcribe_steps(speech, options))
        return Prepared(spec, request, job, duration, speech.shape[0] / SAMPLE_RATE, found, vad.TimestampMap(found))
    if spans.done() and not spans.result():  # no speech at all: the model is not asked
        return Prepared(spec, request, None, duration, duration, spans.result())
    options.speech_spans = _SecondsSpans(spans)
    return Prepared(spec, request, Job(engine.transcribe_steps(samples, options)), duration, duration, spans)


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
        spans = prepared.spans.result() if isinstance(prepared.spans, concurrent.futures.Future) else prepared.spans
        if not request.vad_filter and not spans:
            result = silent  # the gate found no speech (after the first window was encoded)
        if prepared.mapping is not None:
            _restore_times(result, prepared.mapping)
            result.duration = prepared.duration
    if prepared.spec.flavor == "turbo":
        return output.turbo(result, prepared.duration_after_vad)
    return output.classic(result)


def transcribe_request(
    spec: ModelSpec, engine: WhisperEngine, samples: np.ndarray, request: AsrRequest, cancel: threading.Event | None
) -> dict:
    """One request start to finish on the calling thread (no batching; the VAD pass runs on a
    helper thread beside the first window's encoding)."""
    prepared = prepare(spec, engine, samples, request, cancel, _vad_executor().submit(speech_gate, samples, request))
    if prepared.job is not None:
        while not prepared.job.finished:
            engine.run_round([prepared.job])
    return finish(prepared)


class _SecondsSpans:
    """The gate's sample spans as (start, end) seconds, once the VAD thread has them."""

    def __init__(self, spans: "concurrent.futures.Future[list[dict[str, int]]]") -> None:
        self._future = spans

    def done(self) -> bool:
        return self._future.done()

    def result(self) -> list[tuple[float, float]]:
        return [(s["start"] / SAMPLE_RATE, s["end"] / SAMPLE_RATE) for s in self._future.result()]


_vad_pool: concurrent.futures.ThreadPoolExecutor | None = None
_vad_pool_lock = threading.Lock()


def _vad_executor() -> concurrent.futures.ThreadPoolExecutor:
    global _vad_pool
    with _vad_pool_lock:
        if _vad_pool is None:
            _vad_pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="flarelet-vad")
        return _vad_pool


def _done(value: Any) -> "concurrent.futures.Future[Any]":
    future: concurrent.futures.Future[Any] = concurrent.futures.Future()
    future.set_result(value)
    return future


def _restore_times(result: Transcription, mapping) -> None:
    for seg in result.segments:
        for w in seg.words:
            w.start, w.end = mapping.span(w.start, w.end)
        if seg.words:
            seg.start, seg.end = seg.words[0].start, seg.words[-1].end
        else:
            seg.start, seg.end = mapping.span(seg.start, seg.end)
