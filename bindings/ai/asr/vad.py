"""Voice activity detection for ``vad_filter``: Silero VAD's ONNX model, offline.

The ``silero-vad`` wheel ships its models; we run ``silero_vad_16k_op15.onnx`` (the 16 kHz graph
alone: the same probabilities as ``silero_vad.onnx``, bit for bit, in ~9 MB less memory than the
two-rate graph) with onnxruntime on numpy
arrays (no torch JIT load, which costs seconds) and reuse silero's own
``get_speech_timestamps_from_probs`` for turning per-32 ms probabilities into speech spans. The
parameters are faster-whisper's ``VadOptions`` defaults -- Cloudflare's turbo ``vad_filter`` is
faster-whisper's -- so silences of 2 s or more are cut and 400 ms of padding kept around speech.

Speech is concatenated for transcription and :class:`TimestampMap` maps timestamps back onto
the original audio, so the caller's words line up with the file they sent.
"""

from __future__ import annotations

import bisect
import importlib.util
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SAMPLE_RATE = 16_000
WINDOW = 512  # samples per VAD step at 16 kHz
CONTEXT = 64  # samples of the previous window the v5 model expects in front
MODEL_FILE = "silero_vad_16k_op15.onnx"


@dataclass(frozen=True)
class VadOptions:
    threshold: float = 0.5
    min_speech_duration_ms: int = 0
    max_speech_duration_s: float = float("inf")
    min_silence_duration_ms: int = 2000
    speech_pad_ms: int = 400


#: Batched long-form's chunking (flarelet.bindings.ai.asr.batched): faster-whisper's batched
#: pipeline's settings -- short pauses (160 ms) are cut points, no span runs past one window.
CHUNKING = VadOptions(min_silence_duration_ms=160, max_speech_duration_s=30.0)
#: The silence gate (see flarelet.bindings.ai.asr.inference): lenient, so quiet speech is never gated away.
GATE = VadOptions(threshold=0.35, min_speech_duration_ms=100, min_silence_duration_ms=500, speech_pad_ms=400)


class SileroVad:
    """Silero VAD v5 through onnxruntime; one instance per process (see :func:`get_vad`)."""

    def __init__(self) -> None:
        import onnxruntime

        spec = importlib.util.find_spec("silero_vad")
        if spec is None or not spec.submodule_search_locations:
            raise RuntimeError("vad_filter needs the silero-vad package (pip install silero-vad)")
        path = Path(list(spec.submodule_search_locations)[0]) / "data" / MODEL_FILE
        opts = onnxruntime.SessionOptions()
        opts.inter_op_num_threads = 1
        opts.intra_op_num_threads = 1
        opts.log_severity_level = 3
        self.session = onnxruntime.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
        self._lock = threading.Lock()

    def probabilities(self, audio: np.ndarray) -> list[float]:
        """Speech probability of every 512-sample window (the last one zero-padded)."""
        stream = self.stream()
        return [stream.push(chunk) for chunk in _chunks(audio)]

    def stream(self) -> VadStream:
        """A fresh recurrent state: feed it consecutive 512-sample windows."""
        return VadStream(self)

    def speech_spans(self, audio: np.ndarray, options: VadOptions = VadOptions()) -> list[dict[str, int]]:
        """``[{"start": sample, "end": sample}, ...]`` of speech in ``audio``."""
        if audio.shape[0] == 0:
            return []
        probs = self.probabilities(audio)
        from_probs = _from_probs()
        return from_probs(
            probs,
            sampling_rate=SAMPLE_RATE,
            threshold=options.threshold,
            min_speech_duration_ms=options.min_speech_duration_ms,
            max_speech_duration_s=options.max_speech_duration_s,
            min_silence_duration_ms=options.min_silence_duration_ms,
            speech_pad_ms=options.speech_pad_ms,
            audio_length_samples=audio.shape[0],
        )


class VadStream:
    """Silero's recurrent state over consecutive windows (one per scan; not shared)."""

    def __init__(self, vad: SileroVad) -> None:
        self._vad = vad
        self._state = np.zeros((2, 1, 128), dtype=np.float32)
        self._context = np.zeros((1, CONTEXT), dtype=np.float32)
        self._sr = np.array(SAMPLE_RATE, dtype=np.int64)

    def push(self, chunk: np.ndarray) -> float:
        """The speech probability of the next ``WINDOW`` samples."""
        x = np.concatenate([self._context, chunk[None]], axis=1)
        with self._vad._lock:  # the session is shared by every request; keep it single-user
            out, self._state = self._vad.session.run(None, {"input": x, "state": self._state, "sr": self._sr})
        self._context = x[:, -CONTEXT:]
        return float(out.reshape(-1)[0])


def _chunks(audio: np.ndarray) -> np.ndarray:
    """``audio`` as ``[n, WINDOW]`` windows, the last one zero-padded."""
    n = audio.shape[0]
    padded = np.zeros(((n + WINDOW - 1) // WINDOW) * WINDOW, dtype=np.float32)
    padded[:n] = audio
    return padded.reshape(-1, WINDOW)


class SpeechGate:
    """The silence gate, lazily: "is there speech between ``start`` and ``end`` seconds?".

    Why lazy: computing the whole clip's speech spans up front costs ~0.5 % of real time on one
    core (0.33 s for a 63 s clip on this machine's CPU), and on a 2-core machine that core is taken
    from the encoder. A window of speech is known to hold speech a few hundred milliseconds into
    it, so the gate scans each question only until it finds speech (cached, so overlapping
    questions scan nothing twice); only silent stretches are read to the end -- which is exactly
    where the gate pays for itself.

    The rule is silero's span rule for :data:`GATE`, read locally: speech starts where the
    probability reaches ``threshold`` and lasts while it stays above ``threshold - 0.15``; a run of
    at least ``min_speech_duration_ms`` counts. ``speech_pad_ms`` widens the question (a span's
    padding may reach into the window). A scan that starts cold first feeds ``WARMUP`` windows of
    the preceding audio, so the recurrent state has context.
    """

    WARMUP = 16  # windows (0.5 s)

    def __init__(self, audio: np.ndarray, options: VadOptions = GATE, vad: SileroVad | None = None) -> None:
        self._vad = vad or get_vad()
        self._chunks = _chunks(audio)
        self._probs = np.full(self._chunks.shape[0], np.nan, dtype=np.float32)
        self._options = options
        self._min_run = max(1, -(-options.min_speech_duration_ms * SAMPLE_RATE // (1000 * WINDOW)))
        self._stream: VadStream | None = None
        self._next = 0  # the window the live stream would read next
        #: whether any question so far found speech (False after all: the clip is silent)
        self.found_any = False

    def _prob(self, i: int) -> float:
        if not np.isnan(self._probs[i]):
            return float(self._probs[i])
        if self._stream is None or self._next != i:  # cold start: warm the state up first
            self._stream = self._vad.stream()
            for j in range(max(0, i - self.WARMUP), i):
                self._stream.push(self._chunks[j])
        p = self._stream.push(self._chunks[i])
        self._probs[i] = p
        self._next = i + 1
        return p

    def has_speech(self, start: float, end: float) -> bool:
        pad = self._options.speech_pad_ms / 1000.0
        first = max(0, int((start - pad) * SAMPLE_RATE) // WINDOW)
        last = min(self._chunks.shape[0], -(-int((end + pad) * SAMPLE_RATE) // WINDOW))
        on, off = self._options.threshold, self._options.threshold - 0.15
        run = 0
        for i in range(first, last):
            p = self._prob(i)
            if run == 0:
                run = 1 if p >= on else 0
            else:
                run = run + 1 if p >= off else 0
            if run >= self._min_run:
                self.found_any = True
                return True
        return False


def _from_probs():
    """silero's span logic; its package import sets torch to 1 thread, so restore ours."""
    import torch

    threads = torch.get_num_threads()
    try:
        from silero_vad.utils_vad import get_speech_timestamps_from_probs
    finally:
        torch.set_num_threads(threads)
    return get_speech_timestamps_from_probs


_vad: SileroVad | None = None
_vad_lock = threading.Lock()


def get_vad() -> SileroVad:
    global _vad
    with _vad_lock:
        if _vad is None:
            _vad = SileroVad()
        return _vad


def collect(audio: np.ndarray, spans: list[dict[str, int]]) -> np.ndarray:
    if not spans:
        return np.zeros(0, dtype=np.float32)
    return np.concatenate([audio[s["start"] : s["end"]] for s in spans])


class TimestampMap:
    """Maps times in the concatenated speech back to times in the original audio."""

    def __init__(self, spans: list[dict[str, int]]) -> None:
        self.chunk_starts: list[float] = []  # start of each chunk in speech-only time
        self.chunk_ends: list[float] = []  # end of each chunk in speech-only time
        self.offsets: list[float] = []  # silence removed before each chunk
        removed = 0.0
        kept = 0.0
        previous_end = 0
        for s in spans:
            removed += (s["start"] - previous_end) / SAMPLE_RATE
            self.chunk_starts.append(kept)
            kept += (s["end"] - s["start"]) / SAMPLE_RATE
            self.offsets.append(removed)
            self.chunk_ends.append(kept)
            previous_end = s["end"]

    def _chunk(self, t: float, is_end: bool = False) -> int:
        i = bisect.bisect_left(self.chunk_ends, t) if is_end else bisect.bisect_right(self.chunk_ends, t)
        return min(i, len(self.offsets) - 1)

    def original(self, t: float, is_end: bool = False) -> float:
        if not self.offsets:
            return t
        return round(t + self.offsets[self._chunk(t, is_end)], 3)

    def span(self, start: float, end: float) -> tuple[float, float]:
        """A word's (start, end): both mapped through the chunk holding the word's middle, so a
        word aligned a few ms across a cut does not jump back over the removed silence."""
        if not self.offsets:
            return start, end
        i = self._chunk((start + end) / 2)
        lo, hi, off = self.chunk_starts[i], self.chunk_ends[i], self.offsets[i]
        s = min(max(start, lo), hi)
        e = min(max(end, s), hi)
        return round(s + off, 3), round(e + off, 3)
