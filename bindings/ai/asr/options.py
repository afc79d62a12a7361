"""What a transcription is asked to do (:class:`TranscribeOptions`) and Whisper's fixed audio clock.

Whisper hears 16 kHz audio as log-mel frames every 10 ms, in windows of 30 s (3000 frames); the
encoder halves the frames (1500 positions, 20 ms each), and a timestamp token counts those 20 ms
steps. Every module of the task reads these constants from here.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

SAMPLE_RATE = 16_000
HOP_LENGTH = 160
N_FRAMES = 3000  # mel frames in one 30 s window
FRAMES_PER_SECOND = SAMPLE_RATE // HOP_LENGTH  # 100
INPUT_STRIDE = 2  # mel frames per encoder position
TIME_PRECISION = 0.02  # seconds per timestamp token / encoder position


class Cancelled(Exception):
    """The request's cancel event was set (timeout or client gone): stop decoding."""


@dataclass
class TranscribeOptions:
    """Decoding options (faster-whisper's names and defaults unless noted)."""

    task: str = "transcribe"
    language: str | None = None
    initial_prompt: str | None = None
    prefix: str | None = None
    beam_size: int = 1
    condition_on_previous_text: bool = True
    temperatures: Sequence[float] = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
    compression_ratio_threshold: float | None = 2.4
    log_prob_threshold: float | None = -1.0
    no_speech_threshold: float | None = 0.6
    word_timestamps: bool = True
    hallucination_silence_threshold: float | None = None
    prompt_reset_on_temperature: float = 0.5
    max_initial_timestamp: float = 1.0
    #: seed of the sampler used by temperature fallback, so results are reproducible
    seed: int = 0
    #: where speech is, in seconds (from a VAD); 30 s windows with none are skipped unseen, since
    #: Whisper invents words ("you", "Thanks for watching") for silence and noise. None = no gate.
    #: May also be an object with ``has_speech(start, end) -> bool`` (:class:`vad.SpeechGate`,
    #: which scans lazily).
    speech_spans: Sequence[tuple[float, float]] | Any | None = None
    cancel: threading.Event | None = None


def check_cancel(options: TranscribeOptions) -> None:
    """Raise :class:`Cancelled` once the request's cancel event is set."""
    if options.cancel is not None and options.cancel.is_set():
        raise Cancelled()
