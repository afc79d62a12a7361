"""``hallucination_silence_threshold``: drop invented segments that sit in silence.

openai-whisper's rule: a segment whose words look wrong (improbable, very short or very long --
:func:`is_anomaly`) and that has silence longer than the threshold on both sides is cut, and the
next window starts after it. Needs word timestamps and their probabilities.
"""

from __future__ import annotations

from dataclasses import dataclass

from .options import FRAMES_PER_SECOND
from .results import Segment, Word

_ANOMALY_PUNCTUATION = "\"'“¿([{-\"'.。,，!！?？:：”)]}、"


@dataclass
class WindowSpan:
    """Where the long-form loop stands in the clip, in frames (``seek``) and seconds."""

    previous_seek: int
    segment_size: int
    time_offset: float
    window_end: float
    segment_duration: float
    content_duration: float
    content_frames: int


def last_word_end(segments: list[Segment]) -> float | None:
    for seg in reversed(segments):
        if seg.words:
            return seg.words[-1].end
    return None


def word_anomaly(word: Word) -> float:
    duration = word.end - word.start
    score = 0.0
    if word.probability is not None and word.probability < 0.15:
        score += 1.0
    if duration < 0.133:
        score += (0.133 - duration) * 15
    if duration > 2.0:
        score += duration - 2.0
    return score


def is_anomaly(segment: Segment | None) -> bool:
    if segment is None or not segment.words:
        return False
    words = [w for w in segment.words if w.word not in _ANOMALY_PUNCTUATION][:8]
    score = sum(word_anomaly(w) for w in words)
    return score >= 3 or score + 0.01 >= len(words)


def _next_words_segment(segments: list[Segment]) -> Segment | None:
    return next((s for s in segments if s.words), None)


def skip_hallucinations(
    current: list[Segment],
    threshold: float,
    seek: int,
    span: WindowSpan,
    last_speech: float,
    single_timestamp_ending: bool,
) -> tuple[int, list[Segment], bool]:
    """Returns (seek, the segments kept, whether to skip the rest of the window)."""
    if not single_timestamp_ending:
        end = last_word_end(current)
        if end is not None and end > span.time_offset:
            remaining = span.window_end - end
            seek = round(end * FRAMES_PER_SECOND) if remaining > threshold else span.previous_seek + span.segment_size
    first = _next_words_segment(current)
    if first is not None and is_anomaly(first):
        gap = first.start - span.time_offset
        if gap > threshold:
            return span.previous_seek + round(gap * FRAMES_PER_SECOND), [], True
    hal_last_end = last_speech
    for si, segment in enumerate(current):
        if not segment.words:
            continue
        if is_anomaly(segment):
            following = _next_words_segment(current[si + 1 :])
            hal_next_start = (
                following.words[0].start if following is not None else span.time_offset + span.segment_duration
            )
            silence_before = (
                segment.start - hal_last_end > threshold
                or segment.start < threshold
                or segment.start - span.time_offset < 2.0
            )
            silence_after = (
                hal_next_start - segment.end > threshold or is_anomaly(following) or span.window_end - segment.end < 2.0
            )
            if silence_before and silence_after:
                seek = round(max(span.time_offset + 1, segment.start) * FRAMES_PER_SECOND)
                if span.content_duration - segment.end < threshold:
                    seek = span.content_frames
                current = current[:si]
                break
        hal_last_end = segment.end
    return seek, current, False
