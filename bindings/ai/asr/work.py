"""The work a transcription asks of the model, and a transcription in progress (:class:`Job`).

The long-form loop (:mod:`flarelet.bindings.ai.asr.transcribe`) is a generator: it yields one
:data:`Work` item at a time and is sent its result. A :class:`Job` holds such a generator and
the item it waits for, so the scheduler (:mod:`flarelet.bindings.ai.asr.scheduler`) can serve
the same kind of work for many jobs in one batch while each job reads as a plain sequential loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .options import TranscribeOptions
from .results import Transcription


@dataclass
class Window:
    """One encoded 30 s window: the encoder output and the decoder's cross-attention keys/values."""

    enc: Any  # [1, 1500, d]
    cross: Any  # decoder.CrossKV: keys and values of every decoder layer


@dataclass
class EncodeWork:
    mel: np.ndarray  # [n_mels, 3000]


@dataclass
class LanguageWork:
    window: Window


@dataclass
class DecodeWork:
    window: Window
    prompt: list[int]
    rules_begin: int
    temperature: float
    options: TranscribeOptions
    generator: Any


@dataclass
class AlignWork:
    window: Window
    sot_seq: list[int]
    text_tokens: list[int]
    num_frames: int
    #: the text tokens' probabilities too: a full-vocabulary output projection per token, which
    #: only hallucination_silence_threshold reads (no output field shows them)
    probabilities: bool = True


Work = EncodeWork | LanguageWork | DecodeWork | AlignWork
#: the order in which one round serves the work of many transcriptions (a window's life cycle)
STAGES: tuple[type, ...] = (EncodeWork, LanguageWork, DecodeWork, AlignWork)


class Job:
    """One transcription in progress: its step generator and the work it waits for."""

    __slots__ = ("steps", "pending", "finished", "_result", "_error")

    def __init__(self, steps) -> None:
        self.steps = steps
        self.pending: Any = None
        self.finished = False
        self._result: Transcription | None = None
        self._error: BaseException | None = None

    def advance(self, value: Any) -> None:
        """Send ``value`` (a work result, or an exception to raise inside) and take the next work."""
        try:
            if isinstance(value, BaseException):
                self.pending = self.steps.throw(value)
            else:
                self.pending = self.steps.send(value)
        except StopIteration as stop:
            self.finished, self.pending, self._result = True, None, stop.value
        except BaseException as exc:  # noqa: BLE001 -- the job's own failure, re-raised by result()
            self.finished, self.pending, self._error = True, None, exc

    def result(self) -> Transcription:
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result
