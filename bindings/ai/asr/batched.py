"""Batched long-form transcription (``[flarelet.ai] long_form = "batched"``), an option beside the
sequential loop of :mod:`flarelet.bindings.ai.asr.transcribe`.

faster-whisper's ``BatchedInferencePipeline`` idea on our scheduler: the VAD cuts the clip at
silences into chunks of at most 30 s (:func:`chunk_spans`), each chunk is transcribed as its own
:class:`~flarelet.bindings.ai.asr.work.Job` with nothing carried from the chunk before it
(``condition_on_previous_text`` off), and :class:`BatchedJob` hands all the chunks' jobs to the
scheduler at once, so their encoder windows, decoder steps and word alignments are served together
(one decoder weight read per step for every chunk). Timestamps are shifted back onto the clip's
clock; segments, words and ``seek`` are global.

Why it is not the default: a chunk does not see the text before it (no prompt), the VAD reads the
whole clip first, and on a CPU a decoder step's cost grows with every row (each row reads its own
window's cross-attention keys and values): the README's "Speed" section has the measurements. It
pays where rows are cheap -- on a GPU, and for long clips with many chunks.

The chunks' language: for a multilingual model asked to detect it, the first chunk detects it
alone and the other chunks start after, in that language (as faster-whisper's batched pipeline
uses one language per clip).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np

from .options import FRAMES_PER_SECOND, SAMPLE_RATE, TranscribeOptions
from .results import Segment, Transcription
from .work import Job, LanguageWork

#: The longest chunk: one Whisper window.
MAX_CHUNK_S = 30.0


def chunk_spans(
    speech: list[dict[str, int]], max_samples: int = int(MAX_CHUNK_S * SAMPLE_RATE)
) -> list[tuple[int, int]]:
    """Speech spans (samples) merged into chunks of at most ``max_samples``: a span joins the chunk
    before it while the chunk, silences between included, still fits (faster-whisper's
    ``merge_segments``). A span longer than ``max_samples`` is split (the VAD's
    ``max_speech_duration_s`` normally prevents it)."""
    chunks: list[tuple[int, int]] = []
    for span in speech:
        start, end = int(span["start"]), int(span["end"])
        while end - start > max_samples:
            chunks.append((start, start + max_samples))
            start += max_samples
        if chunks and end - chunks[-1][0] <= max_samples:
            chunks[-1] = (chunks[-1][0], end)
        else:
            chunks.append((start, end))
    return chunks


class _FirstPart(Job):
    """The first chunk's job: notes the language it detects, so the others can use it."""

    __slots__ = ("language",)

    def __init__(self, steps) -> None:
        super().__init__(steps)
        self.language: tuple[str, float] | None = None

    def advance(self, value: Any) -> None:
        if isinstance(self.pending, LanguageWork) and isinstance(value, tuple):
            self.language = value
        super().advance(value)


class BatchedJob:
    """One clip's transcription as one job per chunk; the scheduler advances :meth:`active`."""

    def __init__(
        self,
        audio: np.ndarray,
        chunks: list[tuple[int, int]],
        options: TranscribeOptions,
        steps: Callable[[np.ndarray, TranscribeOptions], Any],
        multilingual: bool,
    ) -> None:
        self.duration = audio.shape[0] / SAMPLE_RATE
        self.offsets = [start for start, _ in chunks]
        self._audio = audio
        self._chunks = chunks
        self._steps = steps
        self._options = dataclasses.replace(options, condition_on_previous_text=False, speech_spans=None)
        self.parts: list[Job] = []
        self._wait_language = multilingual and options.language is None and len(chunks) > 1
        if chunks:
            first = _FirstPart(self._start(0, self._options))
            self.parts.append(first)
            if not self._wait_language:
                self._start_rest(self._options)

    def _start(self, i: int, options: TranscribeOptions):
        start, end = self._chunks[i]
        return self._steps(self._audio[start:end], options)

    def _start_rest(self, options: TranscribeOptions) -> None:
        self.parts += [Job(self._start(i, options)) for i in range(1, len(self._chunks))]

    def active(self) -> list[Job]:
        """The chunks' jobs still running (the others start once the first knows its language)."""
        if self._wait_language:
            first = self.parts[0]
            assert isinstance(first, _FirstPart)
            if first.language is not None or first.finished:
                self._wait_language = False
                if first.language is not None:
                    self._start_rest(dataclasses.replace(self._options, language=first.language[0]))
                else:  # the first chunk failed before detecting: the rest cannot start
                    self._chunks = self._chunks[:1]
        return [p for p in self.parts if not p.finished]

    @property
    def finished(self) -> bool:
        return not self._wait_language and all(p.finished for p in self.parts)

    def result(self) -> Transcription:
        """The chunks' transcriptions on the clip's clock (re-raises a chunk's error)."""
        results = [p.result() for p in self.parts]
        segments: list[Segment] = []
        for offset, part in zip(self.offsets, results):
            shift = offset / SAMPLE_RATE
            frames = round(shift * FRAMES_PER_SECOND)
            for seg in part.segments:
                seg.id = len(segments)
                seg.seek += frames
                seg.start += shift
                seg.end += shift
                for word in seg.words:
                    word.start += shift
                    word.end += shift
                segments.append(seg)
        first = self.parts[0] if self.parts else None
        if isinstance(first, _FirstPart) and first.language is not None:
            language, probability = first.language
        elif results:
            language, probability = results[0].language, results[0].language_probability
        else:
            language, probability = self._options.language or "en", 1.0
        return Transcription(segments, language, probability, self.duration)
