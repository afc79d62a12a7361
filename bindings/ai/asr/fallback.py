"""Temperature fallback: decode a window again, hotter, while the result looks wrong.

openai-whisper's rule (faster-whisper's too): an attempt fails on a high gzip compression
ratio (repetition loops) or a low average log-probability -- unless the window looks silent, in
which case it is kept and the long-form loop skips it. When every temperature fails, the most
likely attempt that is not repetitive wins.
"""

from __future__ import annotations

import zlib

from .options import TranscribeOptions
from .results import Decoded
from .work import DecodeWork, Window


def compression_ratio(text: str) -> float:
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0


def needs_fallback(result: Decoded, options: TranscribeOptions) -> bool:
    too_repetitive = (
        options.compression_ratio_threshold is not None
        and result.compression_ratio > options.compression_ratio_threshold
    )
    unlikely = options.log_prob_threshold is not None and result.avg_logprob < options.log_prob_threshold
    silent = (
        options.no_speech_threshold is not None and result.no_speech_prob > options.no_speech_threshold and unlikely
    )
    return (too_repetitive or unlikely) and not silent  # silence: not retried, the window is skipped


def fallback_steps(window: Window, prompt: list[int], rules_begin: int, options: TranscribeOptions, generator):
    """Decode with temperature fallback (a generator yielding :class:`DecodeWork`, returning the
    chosen :class:`Decoded`)."""
    attempts: list[Decoded] = []
    for temperature in options.temperatures:
        result = yield DecodeWork(window, prompt, rules_begin, float(temperature), options, generator)
        attempts.append(result)
        if not needs_fallback(result, options):
            return result
    threshold = options.compression_ratio_threshold
    ok = [a for a in attempts if threshold is None or a.compression_ratio <= threshold]
    return max(ok or attempts, key=lambda a: a.avg_logprob)
