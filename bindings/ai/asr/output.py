"""Shape a :class:`~flarelet.bindings.ai.asr.results.Transcription` exactly as Cloudflare returns it.

The shapes Cloudflare's models return (its published output schemas and example responses):

* classic ``@cf/openai/whisper`` / ``-tiny-en``: ``{text, word_count, words: [{word, start, end}],
  vtt}``; ``text`` is the words joined and trimmed; each ``word`` is trimmed and keeps attached
  punctuation ("sorry."); times are float32 values widened to double (``0.5600000023841858``),
  as Cloudflare's own example shows.
* turbo ``@cf/openai/whisper-large-v3-turbo``: adds ``segments`` (start, end, text, temperature,
  avg_logprob, compression_ratio, no_speech_prob, words) and ``transcription_info`` (language,
  language_probability, duration, duration_after_vad); segment ``text`` and every ``word`` keep
  their leading space (faster-whisper style); times are rounded to 2 decimals.
* ``vtt``: ``WEBVTT`` then one cue per word, ``MM:SS.mmm --> MM:SS.mmm`` (``HH:`` added past an
  hour, as WebVTT requires), the cue text being the word as it appears in ``words``.

All word times are made monotonic and clamped into ``[0, duration]`` here, whatever the
alignment heuristics produced, so consumers can rely on them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .results import Segment, Transcription


def _f32(x: float) -> float:
    return float(np.float32(x))


def _clean_times(segments: list[Segment], duration: float) -> None:
    """Clamp into [0, duration] and make word starts/ends non-decreasing across the transcript."""
    last = 0.0
    for seg in segments:
        seg.start = min(max(seg.start, 0.0), duration)
        seg.end = min(max(seg.end, seg.start), duration)
        for w in seg.words:
            w.start = min(max(w.start, last, 0.0), duration)
            w.end = min(max(w.end, w.start), duration)
            last = w.end
        if seg.words:
            seg.start = min(seg.start, seg.words[0].start)
            seg.end = max(seg.end, seg.words[-1].end)


def vtt_time(seconds: float) -> str:
    ms = int(round(max(seconds, 0.0) * 1000))
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, millis = divmod(rest, 1000)
    if hours:
        return f"{hours:02d}:{minutes:02d}:{secs:02d}.{millis:03d}"
    return f"{minutes:02d}:{secs:02d}.{millis:03d}"


def to_vtt(cues: list[tuple[float, float, str]]) -> str:
    out = ["WEBVTT", ""]
    for start, end, text in cues:
        text = text.replace("-->", "->")  # the cue separator may not appear in a payload
        if not text.strip():
            continue
        out.append(f"{vtt_time(start)} --> {vtt_time(end)}")
        out.append(text)
        out.append("")
    return "\n".join(out) + "\n"


def classic(result: Transcription) -> dict[str, Any]:
    _clean_times(result.segments, result.duration)
    words: list[dict[str, Any]] = []
    raw = []
    for seg in result.segments:
        for w in seg.words:
            word = w.word.strip()
            if word:
                raw.append(w.word)
                words.append({"word": word, "start": _f32(w.start), "end": _f32(w.end)})
    # Cloudflare's text is the words (with their own leading spaces) joined and trimmed.
    text = "".join(raw).strip() if words else "".join(seg.text for seg in result.segments).strip()
    return {
        "text": text,
        "word_count": len(words) if words else len(text.split()),
        "words": words,
        "vtt": to_vtt([(w["start"], w["end"], w["word"]) for w in words]),
    }


def turbo(result: Transcription, duration_after_vad: float | None = None) -> dict[str, Any]:
    _clean_times(result.segments, result.duration)
    segments = []
    cues: list[tuple[float, float, str]] = []
    count = 0
    for seg in result.segments:
        words: list[dict[str, Any]] = [
            {"word": w.word, "start": round(w.start, 2), "end": round(w.end, 2)} for w in seg.words if w.word.strip()
        ]
        count += len(words) if words else len(seg.text.split())
        cues += [(w["start"], w["end"], w["word"]) for w in words]
        segments.append(
            {
                "start": round(seg.start, 2),
                "end": round(seg.end, 2),
                "text": seg.text,
                "temperature": seg.temperature,
                "avg_logprob": seg.avg_logprob,
                "compression_ratio": seg.compression_ratio,
                "no_speech_prob": seg.no_speech_prob,
                "words": words,
            }
        )
    return {
        "transcription_info": {
            "language": result.language,
            "language_probability": round(result.language_probability, 4),
            "duration": result.duration,
            "duration_after_vad": result.duration if duration_after_vad is None else duration_after_vad,
        },
        "text": "".join(seg.text for seg in result.segments).strip(),
        "word_count": count,
        "segments": segments,
        "vtt": to_vtt(cues),
    }
