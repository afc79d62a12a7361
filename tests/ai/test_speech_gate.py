"""The lazy silence gate (flarelet.bindings.ai.asr.vad.SpeechGate): right answers, and reading little on speech."""

from __future__ import annotations

import numpy as np

from flarelet.bindings.ai.asr import vad
from flarelet.bindings.ai.asr.audio import SAMPLE_RATE, decode_audio


class CountingVad:
    """The real Silero model, counting the 32 ms windows it is asked about."""

    def __init__(self) -> None:
        self.real = vad.get_vad()
        self.session = self.real.session
        self._lock = self.real._lock
        self.windows = 0

    def stream(self) -> vad.VadStream:
        counter = self
        stream = vad.VadStream(self.real)
        push = stream.push

        def counted(chunk: np.ndarray) -> float:
            counter.windows += 1
            return push(chunk)

        stream.push = counted  # type: ignore[method-assign]
        return stream


def test_gate_reads_only_until_it_hears_speech(clip):
    speech = decode_audio(clip("librivox_sonnet001.mp3"))  # 53 s, speech throughout
    counting = CountingVad()
    gate = vad.SpeechGate(speech, vad.GATE, counting)  # type: ignore[arg-type]
    assert gate.has_speech(0.0, 30.0) and gate.has_speech(22.5, 52.5) and gate.has_speech(45.0, 53.0)
    total = speech.shape[0] // vad.WINDOW
    assert counting.windows < total // 10, (counting.windows, total)  # the whole clip: ~1660 windows
    assert gate.found_any


def test_gate_on_silence_then_speech(clip):
    sentence = decode_audio(clip("jfk.flac"))
    rng = np.random.default_rng(0)
    quiet = (rng.standard_normal(40 * SAMPLE_RATE) * 0.001).astype(np.float32)  # 40 s of faint noise
    audio = np.concatenate([quiet, sentence])
    gate = vad.SpeechGate(audio)
    assert not gate.has_speech(0.0, 30.0)
    assert not gate.found_any
    assert gate.has_speech(30.0, 60.0)
    assert gate.has_speech(0.0, 60.0)  # overlapping questions reuse what was read


def test_gate_on_silence_only():
    gate = vad.SpeechGate(np.zeros(65 * SAMPLE_RATE, np.float32))
    assert not any(gate.has_speech(t, t + 30.0) for t in (0.0, 30.0, 60.0))
    assert not gate.found_any
