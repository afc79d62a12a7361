"""The long-form transcription loop: OpenAI Whisper's sequential algorithm (``whisper/transcribe.py``,
which faster-whisper follows), as a generator of model work.

* log-mel features of the whole clip, consumed in 30 s windows; the next window starts at the
  last complete timestamp (not at fixed 30 s strides, which cut words in two and cost accuracy);
* per window: the encoder once; language detection on the first window (multilingual models);
  a prompt of previous text (``condition_on_previous_text``, ``initial_prompt``) and ``prefix``;
  decoding with temperature fallback (:mod:`flarelet.bindings.ai.asr.fallback`); windows judged
  silent (``no_speech_prob`` over its threshold and a low log-probability) are skipped, which
  keeps silence from turning into invented words;
* the window's tokens cut into segments at timestamp pairs; word timestamps
  (:mod:`flarelet.bindings.ai.asr.alignment`); ``hallucination_silence_threshold``
  (:mod:`flarelet.bindings.ai.asr.hallucination`).

:func:`transcribe_steps` yields :data:`~flarelet.bindings.ai.asr.work.Work` items and is sent
their results (the scheduler does that, batching many transcriptions' work), so the algorithm
reads as one sequential loop. It returns the :class:`Transcription`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .. import errors
from .alignment import word_timestamp_steps
from .fallback import fallback_steps
from .hallucination import WindowSpan, last_word_end, skip_hallucinations
from .options import (
    FRAMES_PER_SECOND,
    HOP_LENGTH,
    INPUT_STRIDE,
    N_FRAMES,
    SAMPLE_RATE,
    TIME_PRECISION,
    TranscribeOptions,
    check_cancel,
)
from .results import Decoded, Segment, Transcription
from .work import EncodeWork, LanguageWork


def speech_test(spans: Any) -> Callable[[float, float], bool] | None:
    """``TranscribeOptions.speech_spans`` as a ``(start, end) -> bool`` test (None = no gate)."""
    if spans is None:
        return None
    if hasattr(spans, "has_speech"):
        return spans.has_speech
    spans = list(spans)
    return lambda lo, hi: any(start < hi and end > lo for start, end in spans)


def language_and_task(vocab: Any, options: TranscribeOptions) -> tuple[str | None, str]:
    """The requested language (None = detect) and task, checked against the model (5006)."""
    language = options.language
    if language is not None and vocab.multilingual and language not in vocab.lang_to_id:
        raise errors.bad_input(f"Error: language {language!r} is not supported by this model at '/language'")
    if not vocab.multilingual:
        if language not in (None, "en"):
            raise errors.bad_input(
                f"Error: this model is English-only; language {language!r} is not supported at '/language'"
            )
        return "en", "transcribe"
    return language, options.task


def split_segments(
    vocab: Any, result: Decoded, seek: int, segment_size: int, text_of: Callable[[list[int]], str]
) -> tuple[list[Segment], int, bool]:
    """The window's tokens as segments (cut at consecutive timestamps), the next ``seek`` and
    whether the window ended on a single timestamp (its speech ran to the window's end)."""
    tokens, tb = result.tokens, vocab.timestamp_begin
    time_offset = seek / FRAMES_PER_SECOND
    current: list[Segment] = []

    def add(start: float, end: float, toks: list[int]) -> None:
        current.append(
            Segment(
                id=0,
                seek=seek,
                start=start,
                end=end,
                text=text_of(toks),
                tokens=toks,
                temperature=result.temperature,
                avg_logprob=result.avg_logprob,
                compression_ratio=result.compression_ratio,
                no_speech_prob=result.no_speech_prob,
            )
        )

    is_ts = [t >= tb for t in tokens]
    single_timestamp_ending = len(is_ts) >= 2 and is_ts[-2:] == [False, True]
    consecutive = [i + 1 for i in range(len(is_ts) - 1) if is_ts[i] and is_ts[i + 1]]
    if not consecutive:
        duration = segment_size / FRAMES_PER_SECOND
        stamps = [t for t in tokens if t >= tb]
        if stamps and stamps[-1] != tb:
            duration = (stamps[-1] - tb) * TIME_PRECISION
        add(time_offset, time_offset + duration, tokens)
        return current, seek + segment_size, single_timestamp_ending
    slices = list(consecutive)
    if single_timestamp_ending:
        slices.append(len(tokens))
    last_slice = 0
    for current_slice in slices:
        sliced = tokens[last_slice:current_slice]
        add(time_offset + (sliced[0] - tb) * TIME_PRECISION, time_offset + (sliced[-1] - tb) * TIME_PRECISION, sliced)
        last_slice = current_slice
    if single_timestamp_ending:
        return current, seek + segment_size, True
    return current, seek + (tokens[last_slice - 1] - tb) * INPUT_STRIDE, False


def _silent(result: Decoded, options: TranscribeOptions) -> bool:
    if options.no_speech_threshold is None or result.no_speech_prob <= options.no_speech_threshold:
        return False
    return options.log_prob_threshold is None or result.avg_logprob <= options.log_prob_threshold


def transcribe_steps(engine: Any, audio: np.ndarray, options: TranscribeOptions):
    """Transcribe (or translate) 16 kHz mono float32 ``audio`` on ``engine``, window by window."""
    import torch

    vocab = engine.vocab
    duration = audio.shape[0] / SAMPLE_RATE
    language, task = language_and_task(vocab, options)
    mel = engine.log_mel(audio)
    content_frames = audio.shape[0] // HOP_LENGTH
    generator = torch.Generator(device=engine.device).manual_seed(options.seed)
    segments: list[Segment] = []
    all_tokens: list[int] = []
    prompt_reset_since = 0
    if options.initial_prompt:
        all_tokens.extend(vocab.encode_text(" " + options.initial_prompt.strip()))
    prefix = options.prefix.strip() if options.prefix else ""
    prefix_tokens = vocab.encode_text(" " + prefix) if prefix else []
    language_probability, last_speech, seek = 1.0, 0.0, 0
    has_speech = speech_test(options.speech_spans)
    while seek < content_frames:
        check_cancel(options)
        time_offset = seek / FRAMES_PER_SECOND
        segment_size = min(N_FRAMES, content_frames - seek)
        span = WindowSpan(
            seek, segment_size, time_offset, (seek + N_FRAMES) / FRAMES_PER_SECOND,
            segment_size / FRAMES_PER_SECOND, duration, content_frames,
        )  # fmt: skip
        if has_speech is not None and not has_speech(time_offset, time_offset + span.segment_duration):
            seek += segment_size  # no speech in this window: nothing to transcribe
            continue
        window = yield EncodeWork(mel[:, seek : seek + N_FRAMES])
        if language is None:
            language, language_probability = yield LanguageWork(window)
        sot_seq = vocab.sot_sequence(language, task)
        previous = all_tokens[prompt_reset_since:]
        prompt = [vocab.sot_prev, *previous[-(engine.n_text_ctx // 2 - 1) :]] if previous else []
        prompt += sot_seq
        rules_begin = len(prompt)
        if seek == 0 and prefix_tokens:
            prompt += [vocab.timestamp_begin, *prefix_tokens]
        result = yield from fallback_steps(window, prompt, rules_begin, options, generator)
        if _silent(result, options):
            seek += segment_size
            continue
        current, seek, single_ending = split_segments(
            vocab, result, span.previous_seek, segment_size, vocab.decode_text
        )
        if options.word_timestamps:
            threshold = options.hallucination_silence_threshold
            last_speech = yield from word_timestamp_steps(
                engine, current, window, sot_seq, segment_size, language, last_speech, threshold is not None
            )
            if not single_ending:
                end = last_word_end(current)
                if end is not None and end > time_offset:
                    seek = round(end * FRAMES_PER_SECOND)
            if threshold is not None:
                seek, current, skip_rest = skip_hallucinations(
                    current, threshold, seek, span, last_speech, single_ending
                )
                if skip_rest:
                    continue
                end = last_word_end(current)
                if end is not None:
                    last_speech = end
        for seg in current:  # drop empty segments (zero length or no text)
            if seg.start != seg.end and seg.text.strip():
                seg.id = len(segments)
                segments.append(seg)
                all_tokens.extend(seg.tokens)
        if not options.condition_on_previous_text or result.temperature > options.prompt_reset_on_temperature:
            prompt_reset_since = len(all_tokens)
        if seek <= span.previous_seek:  # never loop on the same window
            seek = span.previous_seek + segment_size
        window = result = None  # its cross-attention keys/values (MBs) are not needed any more
    return Transcription(segments, language or "en", language_probability, duration)
