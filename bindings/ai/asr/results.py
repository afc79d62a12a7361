"""What a transcription returns: segments of text with their timing, words and decoding scores.

:class:`Transcription` is the task's one result type, whichever backend made it; the output
shaping (:mod:`flarelet.bindings.ai.asr.output`) turns it into Cloudflare's JSON.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Word:
    word: str
    start: float
    end: float
    probability: float | None  # None: not computed (only hallucination_silence_threshold needs it)


@dataclass
class Segment:
    id: int
    seek: int
    start: float
    end: float
    text: str
    tokens: list[int]
    temperature: float
    avg_logprob: float
    compression_ratio: float
    no_speech_prob: float
    words: list[Word] = field(default_factory=list)


@dataclass
class Transcription:
    segments: list[Segment]
    language: str
    language_probability: float
    duration: float


@dataclass
class Decoded:
    """One decoding attempt of one 30 s window (the unit temperature fallback judges)."""

    tokens: list[int]  # generated tokens (forced <|0.00|>/prefix included), no eot
    sum_logprob: float
    avg_logprob: float
    no_speech_prob: float
    temperature: float
    compression_ratio: float
    text: str
