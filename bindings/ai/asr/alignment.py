"""Word timestamps: where each word sits in the audio, from the decoder's cross-attention.

The method of openai-whisper's ``timing.py`` (and of transformers' ``return_token_timestamps``):
a teacher-forced decoder pass over the window's text returns the cross-attention weights of the
model's alignment heads; they are normalised, median-filtered and aligned to audio frames by
dynamic time warping; the token path is cut into words (:meth:`Vocabulary.split_words`), and
openai's heuristics then merge punctuation into words and trim words that run too long.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .options import FRAMES_PER_SECOND, HOP_LENGTH, INPUT_STRIDE, SAMPLE_RATE
from .results import Segment, Word
from .work import AlignWork, Window

PREPEND_PUNCTUATIONS = "\"'“¿([{-"
APPEND_PUNCTUATIONS = "\"'.。,，!！?？:：”)]}、"
SENTENCE_MARKS = ".。!！?？"

_MEDIAN7 = ((0, 5), (0, 3), (1, 6), (2, 4), (0, 1), (3, 5), (2, 6), (2, 3), (3, 6), (4, 5), (1, 4), (1, 3), (3, 4))


def median_filter(x: np.ndarray, width: int) -> np.ndarray:
    """Median over a sliding window on the last axis, reflect-padded (as openai/whisper does).

    Width 7 (every Whisper config) runs a 13-comparator median network on shifted views --
    several times faster than ``np.median`` over sliding windows, and the same values (a median
    of an odd count is one of the inputs).
    """
    pad = width // 2
    if x.shape[-1] <= pad:
        return x
    if width == 7 and x.ndim > 2:
        # a slice at a time: the network keeps ~8 arrays of its input's size alive (a 30 s
        # window's 8 heads x 150 tokens x 1500 frames: 7 MB each)
        return np.stack([median_filter(part, width) for part in x])
    padded = np.pad(x, [(0, 0)] * (x.ndim - 1) + [(pad, pad)], mode="reflect")
    if width == 7:
        n = x.shape[-1]
        p = [padded[..., k : k + n] for k in range(7)]
        for a, b in _MEDIAN7:
            low = np.minimum(p[a], p[b])
            p[b] = np.maximum(p[a], p[b])
            p[a] = low
        return p[3]
    windows = np.lib.stride_tricks.sliding_window_view(padded, width, axis=-1)
    return np.median(windows, axis=-1)


def dtw(cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Dynamic time warping path through ``cost`` [tokens, frames] (openai's ``dtw_cpu``).

    Vectorised along anti-diagonals, stored skewed (``D[i + j, i]``) so that each diagonal's
    three predecessors are plain slices of the two previous rows; same tie-breaking as the
    reference loop: diagonal only if strictly smallest, then up, else left. The choices are
    kept as two boolean planes (fewer array operations per diagonal than a trace of codes:
    ~1600 diagonals for a 30 s window, so each operation saved is ~2 ms).
    """
    n, m = cost.shape
    cost = cost.astype(np.float32, copy=False)
    acc = np.full((n + m + 1, n + 1), np.inf, dtype=np.float32)
    go_diag = np.zeros((n + m + 1, n + 1), dtype=bool)
    go_up = np.zeros((n + m + 1, n + 1), dtype=bool)
    skewed = np.full((n + m + 1, n + 1), np.inf, dtype=np.float32)
    ii, jj = np.meshgrid(np.arange(1, n + 1), np.arange(1, m + 1), indexing="ij")
    skewed[ii + jj, ii] = cost
    acc[0, 0] = 0.0
    for d in range(2, n + m + 1):  # d = i + j with i in 1..n, j in 1..m
        lo, hi = max(1, d - m), min(n, d - 1)
        c0 = acc[d - 2, lo - 1 : hi]  # acc[i-1, j-1]
        c1 = acc[d - 1, lo - 1 : hi]  # acc[i-1, j]
        c2 = acc[d - 1, lo : hi + 1]  # acc[i, j-1]
        diag = c0 < np.minimum(c1, c2)
        up = (c1 < c0) & (c1 < c2)
        best = np.where(up, c1, c2)
        np.copyto(best, c0, where=diag)
        np.add(skewed[d, lo : hi + 1], best, out=acc[d, lo : hi + 1])
        go_diag[d, lo : hi + 1] = diag
        go_up[d, lo : hi + 1] = up
    i, j = n, m
    path = []
    while i > 0 or j > 0:
        path.append((i - 1, j - 1))
        if i == 0:
            j -= 1
        elif j == 0:
            i -= 1
        elif go_diag[i + j, i]:
            i, j = i - 1, j - 1
        elif go_up[i + j, i]:
            i -= 1
        else:
            j -= 1
    arr = np.array(path[::-1]).T
    return arr[0], arr[1]


@dataclass
class Timing:
    word: str
    tokens: list[int]
    start: float
    end: float
    probability: float | None


def align_rows(engine: Any, works: Sequence[AlignWork], threads: int | None = None) -> list[tuple[np.ndarray, Any]]:
    """Teacher-forced decoder pass of each row's text: the alignment heads' cross-attention
    ``[heads, tokens, frames]`` and each text token's probability, where the work asks for
    them (else None; batched over rows)."""
    import torch

    from .decoder import DecodeBatch

    vocab = engine.vocab
    seqs = [[*w.sot_seq, vocab.no_timestamps, *w.text_tokens, vocab.eot] for w in works]
    out: list[tuple[np.ndarray, list[float] | None]] = []
    with torch.inference_mode():
        batch = DecodeBatch(
            engine.lean, [w.window.cross for w in works], max(len(s) for s in seqs), threads or engine.threads
        )
        hidden, maps = batch.forward_prompts(seqs, engine.alignment_layers)
        for b, (w, seq) in enumerate(zip(works, seqs)):
            start = len(w.sot_seq)
            n = len(w.text_tokens)
            if n and w.probabilities:
                logits = batch.logits(hidden[b, start : start + n])[:, : vocab.eot]
                probs = torch.softmax(logits, dim=-1)
                idx = torch.tensor(w.text_tokens, dtype=torch.long, device=probs.device)
                text_probs = probs[torch.arange(n, device=probs.device), idx].tolist()
            else:
                text_probs = None
            weights = torch.stack([maps[layer][b][h, : len(seq)] for layer, h in engine.alignment_heads])
            out.append((weights[:, :, : w.num_frames // 2].float().cpu().numpy(), text_probs))
    return out


def word_timings(
    vocab: Any,
    weights: np.ndarray,
    text_probs: list[float] | None,
    sot_seq: list[int],
    text_tokens: list[int],
    language: str,
    median_width: int = 7,
) -> list[Timing]:
    """Words with start/end (seconds into the window) from the alignment heads' ``weights``."""
    # Renormalising the truncated softmax == softmax over the kept frames (openai's order).
    weights = weights / np.maximum(weights.sum(axis=-1, keepdims=True), 1e-10)
    std = weights.std(axis=-2, keepdims=True)
    mean = weights.mean(axis=-2, keepdims=True)
    weights = (weights - mean) / np.maximum(std, 1e-10)
    weights = median_filter(weights, median_width)
    matrix = weights.mean(axis=0)[len(sot_seq) : -1]
    text_idx, time_idx = dtw(-matrix)

    words, word_tokens = vocab.split_words(text_tokens + [vocab.eot], language)
    if len(word_tokens) <= 1:
        return []
    boundaries = np.pad(np.cumsum([len(t) for t in word_tokens[:-1]]), (1, 0))
    jumps = np.pad(np.diff(text_idx), (1, 0), constant_values=1).astype(bool)
    jump_times = time_idx[jumps] / (FRAMES_PER_SECOND / INPUT_STRIDE)
    starts = jump_times[boundaries[:-1]]
    ends = jump_times[boundaries[1:]]
    word_probs: list[float | None] = [
        None if text_probs is None else float(np.mean(text_probs[i:j])) if j > i else 0.0
        for i, j in zip(boundaries[:-1], boundaries[1:])
    ]
    return [Timing(w, t, float(s), float(e), p) for w, t, s, e, p in zip(words, word_tokens, starts, ends, word_probs)]


def merge_punctuations(alignment: list[Timing]) -> None:
    """Attach opening punctuation to the next word and closing punctuation to the previous one."""
    i, j = len(alignment) - 2, len(alignment) - 1
    while i >= 0:
        prev, follow = alignment[i], alignment[j]
        if prev.word.startswith(" ") and prev.word.strip() in PREPEND_PUNCTUATIONS:
            follow.word = prev.word + follow.word
            follow.tokens = prev.tokens + follow.tokens
            prev.word, prev.tokens = "", []
        else:
            j = i
        i -= 1
    i, j = 0, 1
    while j < len(alignment):
        prev, follow = alignment[i], alignment[j]
        if not prev.word.endswith(" ") and follow.word in APPEND_PUNCTUATIONS:
            prev.word = prev.word + follow.word
            prev.tokens = prev.tokens + follow.tokens
            follow.word, follow.tokens = "", []
        else:
            i = j
        j += 1


def word_timestamp_steps(
    engine: Any,
    segments: list[Segment],
    window: Window,
    sot_seq: list[int],
    num_frames: int,
    language: str,
    last_speech: float,
    probabilities: bool = True,
):
    """Word timings for the window's segments (a generator yielding one :class:`AlignWork`);
    sets each segment's ``words`` and returns the end of the last speech heard."""
    if not segments:
        return last_speech
    eot = engine.vocab.eot
    per_segment = [[t for t in s.tokens if t < eot] for s in segments]
    text_tokens = [t for seg in per_segment for t in seg]
    weights, text_probs = yield AlignWork(window, sot_seq, text_tokens, num_frames, probabilities)
    alignment = word_timings(
        engine.vocab, weights, text_probs, sot_seq, text_tokens, language, engine.median_filter_width
    )
    median, max_duration = _clip_long_words(alignment)
    merge_punctuations(alignment)
    time_offset = segments[0].seek * HOP_LENGTH / SAMPLE_RATE
    index = 0
    for segment, tokens in zip(segments, per_segment):
        saved = 0
        words: list[Word] = []
        while index < len(alignment) and saved < len(tokens):
            timing = alignment[index]
            if timing.word:
                start, end = round(time_offset + timing.start, 2), round(time_offset + timing.end, 2)
                words.append(Word(timing.word, start, end, timing.probability))
            saved += len(timing.tokens)
            index += 1
        if words:
            _fit_segment(segment, words, last_speech, median, max_duration)
            last_speech = segment.end
        segment.words = words
    return last_speech


def _clip_long_words(alignment: list[Timing]) -> tuple[float, float]:
    """Sentence marks longer than twice the median word are cut short; returns (median, max)."""
    durations = np.array([t.end - t.start for t in alignment])
    durations = durations[durations.nonzero()]
    median = min(0.7, float(np.median(durations))) if len(durations) else 0.0
    max_duration = median * 2
    if len(durations):
        for i in range(1, len(alignment)):
            if alignment[i].end - alignment[i].start > max_duration:
                if alignment[i].word in SENTENCE_MARKS:
                    alignment[i].end = alignment[i].start + max_duration
                elif alignment[i - 1].word in SENTENCE_MARKS:
                    alignment[i].start = alignment[i].end - max_duration
    return median, max_duration


def _fit_segment(segment: Segment, words: list[Word], last_speech: float, median: float, max_duration: float) -> None:
    """openai's boundary heuristics: a first word after a pause is not stretched over it, and the
    segment and its first/last words agree on where they start and end."""
    if words[0].end - last_speech > median * 4 and (
        words[0].end - words[0].start > max_duration
        or (len(words) > 1 and words[1].end - words[0].start > max_duration * 2)
    ):
        if len(words) > 1 and words[1].end - words[1].start > max_duration:
            boundary = max(words[1].end / 2, words[1].end - max_duration)
            words[0].end = words[1].start = boundary
        words[0].start = max(0.0, words[0].end - max_duration)
    if segment.start < words[0].end and segment.start - 0.5 > words[0].start:
        words[0].start = max(0.0, min(words[0].end - median, segment.start))
    else:
        segment.start = words[0].start
    if segment.end > words[-1].start and segment.end + 0.5 < words[-1].end:
        words[-1].end = max(words[-1].start + median, segment.end)
    else:
        segment.end = words[-1].end
