"""The Whisper engine: a Hugging Face Whisper model folder, driven window by window.

``WhisperEngine.transcribe(audio, options) -> Transcription`` is the one entry point (kept small
and pure so it can be optimised -- batching, speed work -- without touching the service).

Why a decoding loop of our own instead of ``pipeline(...)`` / ``model.generate(...)`` long-form:
Cloudflare's turbo model answers with faster-whisper's fields (per-segment ``temperature``,
``avg_logprob``, ``compression_ratio``, ``no_speech_prob``; ``language_probability``; ``prefix``;
``hallucination_silence_threshold``), which transformers' generate does not expose. So this module
runs OpenAI Whisper's sequential long-form algorithm (``whisper/transcribe.py``, which
faster-whisper follows) on the model:

* log-mel features of the whole clip (transformers' ``WhisperFeatureExtractor`` arithmetic), consumed in
  30 s windows; the next window starts at the last complete timestamp (never ``chunk_length_s``,
  which research/whisper-weights.md §6.1 shows is slower and less accurate);
* per window: encoder once; language detection on the first window (multilingual models); a
  prompt of previous text (``condition_on_previous_text``, ``initial_prompt``) and ``prefix``;
  greedy / sampled / beam decoding with a KV cache under Whisper's timestamp rules; temperature
  fallback on high compression ratio / low log-probability; windows judged silent
  (``no_speech_prob`` > threshold and low log-probability) are skipped, which is what keeps
  silence from turning into invented words;
* word timestamps from the model's alignment heads: a teacher-forced decoder pass returns the
  cross-attentions, normalised, median-filtered and aligned to audio frames by dynamic time
  warping (the method of transformers' ``return_token_timestamps``), then OpenAI's word merging and
  boundary heuristics.

Speed (README "Speed"): the encoder and decoder are lean torch modules on the folder's weights
(:mod:`flarelet.bindings.ai.asr.encoder`, :mod:`flarelet.bindings.ai.asr.decoder`: fused projections, static caches, fp16 or
int8 weights per ``quantize``), not transformers' model classes. :meth:`WhisperEngine.transcribe_steps`
is the long-form algorithm as a generator of model work (:data:`Work`), so :meth:`WhisperEngine.run_round`
can serve many transcriptions at once: one batched decoder pass for all their windows (the service's
dynamic batching); :meth:`WhisperEngine.transcribe` runs one alone.

torch and transformers are imported when an engine is first created, never at start-up.
"""

from __future__ import annotations

import logging
import math
import os
import string
import threading
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import errors

log = logging.getLogger("flarelet.ai")

# OpenMP threads that wait for work *sleep* instead of spinning. The encoder runs its big matrix
# products on ``threads`` threads; with the default spin-wait, two threads on a 2-core machine
# where anything else runs are 1.5x *slower* than one (10-28x with transformers' per-token
# decoding, research/whisper-weights.md §6.2); sleeping, they are never worse than one thread and
# 1.6x faster when the second core is free. Read once, when torch loads (so: before our import of
# it; a value the user set wins).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

SAMPLE_RATE = 16_000
HOP_LENGTH = 160
N_FRAMES = 3000  # mel frames in one 30 s window
FRAMES_PER_SECOND = SAMPLE_RATE // HOP_LENGTH  # 100
INPUT_STRIDE = 2  # mel frames per encoder position
TIME_PRECISION = 0.02  # seconds per timestamp token / encoder position
PREPEND_PUNCTUATIONS = "\"'“¿([{-"
APPEND_PUNCTUATIONS = "\"'.。,，!！?？:：”)]}、"
_ANOMALY_PUNCTUATION = "\"'“¿([{-\"'.。,，!！?？:：”)]}、"
NO_SPACE_LANGUAGES = {"zh", "ja", "th", "lo", "my", "yue"}
#: ``quantize`` modes (CPU): "none" = fp32, the transformers model's arithmetic; "fp16" = the
#: decoder's weights stored in fp16 and multiplied in fp32 (exact for Whisper's weights, which are
#: published in fp16; the decoder is bound by weight reads, so it halves them); "int8" (default) =
#: dynamic int8 linear layers in most of the decoder and the encoder (fastest; see
#: decoder.INT8_FLOAT_LAYERS and ENCODER_FLOAT_LAYERS for the layers kept in float).
QUANTIZE_MODES = ("int8", "fp16", "none")
#: Encoder linear layers kept in float under ``quantize="int8"``: the feed-forward output layers
#: see a few activation channels in the hundreds (the rest ~1), which per-tensor int8 activations
#: would crush. Word error rate on the English test clips, tiny.en: fp32 4.4 %, all-int8 6.2 %,
#: int8 with these in float 4.0 % (README "Speed").
ENCODER_FLOAT_LAYERS = ("fc2",)


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
class _Decoded:
    tokens: list[int]  # generated tokens (forced <|0.00|>/prefix included), no eot
    sum_logprob: float
    avg_logprob: float
    no_speech_prob: float
    temperature: float
    compression_ratio: float
    text: str


def compression_ratio(text: str) -> float:
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0


# ---------------------------------------------------------------------------------------------
# alignment helpers (numpy): median filter and dynamic time warping
# ---------------------------------------------------------------------------------------------


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


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte <-> printable-unicode table used by Whisper's byte-level BPE."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


# ---------------------------------------------------------------------------------------------
# the work a transcription asks the model for (see WhisperEngine.transcribe_steps)
# ---------------------------------------------------------------------------------------------


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


class _Row:
    """Per-row state of batched decoding (one DecodeWork)."""

    __slots__ = (
        "work",
        "generated",
        "forced",
        "limit",
        "length",
        "sum_logprob",
        "last_ts",
        "max_initial",
        "no_speech_prob",
        "done",
        "error",
    )

    def __init__(self, work: DecodeWork, engine: WhisperEngine) -> None:
        self.work = work
        self.generated = list(work.prompt[work.rules_begin :])
        self.forced = len(self.generated)
        self.limit = min(engine.n_text_ctx, len(work.prompt) + engine.n_text_ctx // 2)
        self.length = len(work.prompt)
        self.sum_logprob = 0.0
        stamps = [t for t in self.generated if t >= engine.timestamp_begin]
        self.last_ts = stamps[-1] if stamps else None
        opt = work.options
        mi = round(opt.max_initial_timestamp / TIME_PRECISION) if opt.max_initial_timestamp else None
        self.max_initial = mi if self.forced == 0 else None
        self.no_speech_prob = 0.0
        self.done = False
        self.error: BaseException | None = None


class WhisperEngine:
    """One loaded Whisper model.

    Thread-safe for inference: all per-request state lives in the transcription generators and
    the per-batch caches, so several service workers may share one engine (and its weights).
    """

    def __init__(
        self, folder: Path, device: str = "auto", threads: int = 1, label: str = "", quantize: str = "none"
    ) -> None:
        import torch
        import transformers
        from transformers import GenerationConfig, WhisperConfig, WhisperFeatureExtractor, WhisperTokenizer

        from .decoder import LeanDecoder
        from .encoder import LeanEncoder, read_state_dict

        transformers.utils.logging.set_verbosity_error()  # harmless 5.x deprecation chatter (research §7.6)
        transformers.utils.logging.disable_progress_bar()
        self.torch = torch
        self.folder = Path(folder)
        self.label = label or self.folder.name
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if device == "cuda" and not torch.cuda.is_available():
            raise errors.internal("device 'cuda' requested but torch sees no CUDA device")
        self.device = torch.device(device)
        # fp16 on a GPU (Whisper's own inference dtype); fp32 on the CPU, where fp16 is emulated.
        self.dtype = torch.float16 if self.device.type == "cuda" else torch.float32
        self.threads = threads
        self._set_threads(1)

        cfg = WhisperConfig.from_pretrained(self.folder, local_files_only=True)
        self.config = cfg
        self.tokenizer = WhisperTokenizer.from_pretrained(self.folder, local_files_only=True)
        self.features = WhisperFeatureExtractor.from_pretrained(self.folder, local_files_only=True)
        if self.features.dither:
            raise errors.internal(f"{self.folder}: feature extractor dither={self.features.dither} is not supported")
        self._window = torch.hann_window(self.features.n_fft)
        self._mel_filters = torch.from_numpy(np.asarray(self.features.mel_filters, dtype=np.float32))
        gen = GenerationConfig.from_pretrained(self.folder, local_files_only=True)
        self.generation_config = gen

        # Weight formats are a CPU lever (fbgemm kernels); on a GPU the whole model runs in fp16.
        if quantize not in QUANTIZE_MODES:
            raise ValueError(f"quantize must be one of {', '.join(QUANTIZE_MODES)}, not {quantize!r}")
        self.quantize = quantize if self.device.type == "cpu" else "none"
        with torch.inference_mode(False), torch.no_grad():
            state = read_state_dict(self.folder)
            self.encoder = LeanEncoder(state, cfg)
            if self.quantize == "int8":
                self.lean = LeanDecoder(state, cfg, linears="int8", proj="int8")
                self.encoder.quantize(skip=ENCODER_FLOAT_LAYERS)
            elif self.quantize == "fp16":
                self.lean = LeanDecoder(state, cfg, linears="fp16", proj="fp16")
            else:
                self.lean = LeanDecoder(state, cfg)
            del state
            if self.device.type != "cpu":  # fp16 weights and activations on the GPU
                self.encoder = self.encoder.to(self.device, self.dtype)
                self.lean = self.lean.to(self.device, self.dtype)
            self.encoder.eval()
            self.lean.eval()

        tok = self.tokenizer.convert_tokens_to_ids
        self.eot = int(gen.eos_token_id if isinstance(gen.eos_token_id, int) else gen.eos_token_id[0])
        self.sot = int(gen.decoder_start_token_id)
        self.no_timestamps = int(gen.no_timestamps_token_id)
        self.timestamp_begin = self.no_timestamps + 1
        self.sot_prev = int(getattr(gen, "prev_sot_token_id", None) or tok("<|startofprev|>"))
        self.sot_lm = int(tok("<|startoflm|>"))
        nospeech = tok("<|nospeech|>")
        if nospeech is None or nospeech == self.tokenizer.unk_token_id:
            nospeech = tok("<|nocaptions|>")
        self.no_speech = int(nospeech)
        self.vocab_size = int(cfg.vocab_size)
        self.multilingual = bool(getattr(gen, "is_multilingual", cfg.vocab_size >= 51865))
        self.lang_to_id: dict[str, int] = {
            k.strip("<|>"): int(v) for k, v in (getattr(gen, "lang_to_id", None) or {}).items()
        }
        task_to_id = getattr(gen, "task_to_id", None) or {}
        self.transcribe_id = int(task_to_id.get("transcribe", tok("<|transcribe|>")))
        self.translate_id = int(task_to_id.get("translate", tok("<|translate|>")))
        heads = getattr(gen, "alignment_heads", None)
        if not heads:  # fall back to the last half of the decoder layers, all heads (as openai does)
            half = cfg.decoder_layers // 2
            heads = [[l, h] for l in range(half, cfg.decoder_layers) for h in range(cfg.decoder_attention_heads)]
        self.alignment_heads = [(int(l), int(h)) for l, h in heads]
        self._alignment_layers = frozenset(l for l, _ in self.alignment_heads)
        self.n_text_ctx = int(cfg.max_target_positions)
        self.median_filter_width = int(getattr(cfg, "median_filter_width", 7) or 7)
        suppress = set(int(t) for t in (gen.suppress_tokens or cfg.suppress_tokens or []))
        suppress |= {self.transcribe_id, self.translate_id, self.sot, self.sot_prev, self.sot_lm, self.no_speech}
        self.suppress_tokens = sorted(t for t in suppress if 0 <= t < self.vocab_size)
        self.begin_suppress = [int(t) for t in (gen.begin_suppress_tokens or [220, self.eot])]
        self._suppress_idx = torch.tensor(self.suppress_tokens, dtype=torch.long, device=self.device)
        self._suppress_all_idx = torch.tensor(
            sorted(set(self.suppress_tokens) | {self.no_timestamps}), dtype=torch.long, device=self.device
        )
        self._begin_suppress_idx = torch.tensor(self.begin_suppress, dtype=torch.long, device=self.device)
        self._lang_ids = torch.tensor(list(self.lang_to_id.values()), dtype=torch.long, device=self.device)

        # Byte-level token table: exact text decoding and Whisper's unicode-aware word splitting.
        byte_decoder = {c: b for b, c in _bytes_to_unicode().items()}
        pieces = self.tokenizer.convert_ids_to_tokens(list(range(self.vocab_size)))
        self._token_bytes: list[bytes] = []
        for i, piece in enumerate(pieces):
            piece = piece or ""
            if i >= self.eot:
                self._token_bytes.append(b"")  # specials and timestamps carry no text
            else:
                self._token_bytes.append(bytes(byte_decoder.get(ch, 0) for ch in piece))

    # -- small helpers ------------------------------------------------------------------------

    def decode_text(self, tokens: Sequence[int]) -> str:
        return b"".join(self._token_bytes[t] for t in tokens if t < self.eot).decode("utf-8", errors="replace")

    def encode_text(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=False))

    def sot_sequence(self, language: str | None, task: str) -> list[int]:
        if not self.multilingual:
            return [self.sot]
        seq = [self.sot]
        if language is not None:
            seq.append(self.lang_to_id[language])
        seq.append(self.translate_id if task == "translate" else self.transcribe_id)
        return seq

    def _check(self, options: TranscribeOptions) -> None:
        if options.cancel is not None and options.cancel.is_set():
            raise Cancelled()

    # -- model calls --------------------------------------------------------------------------

    def log_mel(self, audio: np.ndarray) -> np.ndarray:
        """Log-mel of the clip followed by 30 s of silence (so every window has 3000 frames)."""
        torch = self.torch
        padded = np.concatenate([audio.astype(np.float32, copy=False), np.zeros(N_FRAMES * HOP_LENGTH, np.float32)])
        # transformers' WhisperFeatureExtractor._torch_extract_fbank_features, operation for
        # operation (so the features are identical), without its padding/batching copies.
        with torch.inference_mode():
            stft = torch.stft(
                torch.from_numpy(padded), self.features.n_fft, HOP_LENGTH, window=self._window, return_complex=True
            )
            magnitudes = (stft[..., :-1].abs() ** 2).contiguous()
            del stft
            mel = self._mel_filters.T @ magnitudes
            del magnitudes
            log_spec = torch.clamp(mel, min=1e-10).log10()
            log_spec = torch.maximum(log_spec, log_spec.max() - 8.0)
            return ((log_spec + 4.0) / 4.0).numpy()

    def encode(self, mel_window: np.ndarray):
        """Encoder output ``[1, 1500, d]`` of one window of log-mel frames ``[n_mels, 3000]``."""
        torch = self.torch
        x = torch.from_numpy(np.ascontiguousarray(mel_window[None])).to(self.device, self.dtype)
        with torch.inference_mode():
            return self.encoder(x)

    def encode_windows(self, mels: Sequence[np.ndarray], threads: int | None = None) -> list[Window]:
        """Encode windows; on a GPU several at once, on the CPU one by one (batching an encoder
        pass buys nothing there and multiplies its activation memory)."""
        torch = self.torch
        chunk = 8 if self.device.type == "cuda" else 1
        out: list[Window] = []
        with torch.inference_mode():
            for i in range(0, len(mels), chunk):
                x = torch.from_numpy(np.ascontiguousarray(np.stack(mels[i : i + chunk]))).to(self.device, self.dtype)
                self._set_threads(threads or self.threads)
                try:
                    enc = self.encoder(x)
                    # the cross-attention keys/values: one more large product per window
                    for b in range(enc.shape[0]):
                        e = enc[b : b + 1]
                        out.append(Window(e, self.lean.cross_kv(e)))
                finally:
                    self._set_threads(1)
        return out

    def _set_threads(self, n: int) -> None:
        """Thread policy (CPU): the encoder's large products on ``threads`` threads, everything
        else -- the decoder's small per-token operations, which cannot be split profitably -- on
        one (torch's setting is process-wide and cheap to change)."""
        if self.device.type == "cpu" and self.torch.get_num_threads() != n:
            self.torch.set_num_threads(n)

    def window(self, enc) -> Window:
        with self.torch.inference_mode():
            return Window(enc, self.lean.cross_kv(enc))

    def detect_languages(self, windows: Sequence[Window]) -> list[tuple[str, float]]:
        """Language and its probability for each window (one batched decoder step on ``sot``)."""
        from .decoder import DecodeBatch

        torch = self.torch
        with torch.inference_mode():
            batch = DecodeBatch(self.lean, [w.cross for w in windows], 1)
            logits = batch.prefill([[self.sot]] * len(windows), [[0]] * len(windows))[:, 0]
            probs = torch.softmax(logits[:, self._lang_ids], dim=-1)
            best = torch.argmax(probs, dim=-1).tolist()
        codes = list(self.lang_to_id)
        return [(codes[b], float(probs[i, b])) for i, b in enumerate(best)]

    def detect_language(self, enc) -> tuple[str, float]:
        return self.detect_languages([self.window(enc)])[0]

    # -- logit rules (openai's SuppressBlank, SuppressTokens, ApplyTimestampRules) -------------

    def _apply_rules(self, logits, generated: list[int], at_begin: bool, max_initial: int | None) -> None:
        """In-place on a [V] float tensor; ``generated`` = tokens after the sot sequence.

        The reference implementation (one row, used by beam search); :meth:`_apply_rules_rows`
        is the same rules for a batch."""
        torch = self.torch
        neg = -math.inf
        if at_begin:
            logits[self._begin_suppress_idx] = neg
        logits[self._suppress_idx] = neg
        logits[self.no_timestamps] = neg
        tb = self.timestamp_begin
        last_ts = len(generated) >= 1 and generated[-1] >= tb
        penultimate_ts = len(generated) < 2 or generated[-2] >= tb
        if last_ts:
            if penultimate_ts:
                logits[tb:] = neg
            else:
                logits[: self.eot] = neg
        timestamps = [t for t in generated if t >= tb]
        if timestamps:
            last = timestamps[-1] if (last_ts and not penultimate_ts) else timestamps[-1] + 1
            logits[tb:last] = neg
        if not generated:
            logits[:tb] = neg
            if max_initial is not None:
                logits[tb + max_initial + 1 :] = neg
        logprobs = torch.log_softmax(logits, dim=-1)
        if torch.logsumexp(logprobs[tb:], dim=-1) > torch.max(logprobs[:tb]):
            logits[:tb] = neg

    def _apply_rules_rows(self, logits, rows: Sequence[_Row | None]) -> None:
        """The timestamp rules on ``logits`` ``[B, V]`` in place; ``rows[b]`` is None for a row that
        is finished (its logits are ignored)."""
        torch = self.torch
        neg = -math.inf
        tb = self.timestamp_begin
        logits[:, self._suppress_all_idx] = neg
        for b, row in enumerate(rows):
            if row is None:
                continue
            g = row.generated
            n = len(g)
            if n == row.forced:
                logits[b, self._begin_suppress_idx] = neg
            last_ts = n >= 1 and g[-1] >= tb
            penultimate_ts = n < 2 or g[-2] >= tb
            if last_ts:
                if penultimate_ts:
                    logits[b, tb:] = neg
                else:
                    logits[b, : self.eot] = neg
            if row.last_ts is not None:
                last = row.last_ts if (last_ts and not penultimate_ts) else row.last_ts + 1
                logits[b, tb:last] = neg
            if n == 0:
                logits[b, :tb] = neg
                if row.max_initial is not None:
                    logits[b, tb + row.max_initial + 1 :] = neg
        # "timestamp probability mass beats every text token" -> force a timestamp. Comparing in
        # logit space is the same test as openai's in log-probability space (same offset both sides).
        ts_mass = torch.logsumexp(logits[:, tb:], dim=-1)
        text_max = logits[:, :tb].max(dim=-1).values
        for b, force in enumerate((ts_mass > text_max).tolist()):  # (a masked fill scans every row)
            if force:
                logits[b, :tb] = neg

    # -- decoding -----------------------------------------------------------------------------

    def decode_rows(self, works: Sequence[DecodeWork], threads: int | None = None) -> list[_Decoded | BaseException]:
        """Greedy (temperature 0) or sampled decoding of several windows in one batch.

        Every row follows its own prompt, temperature, sampler and stopping point; the batch
        shrinks as rows finish. A row whose request is cancelled stops with :class:`Cancelled`.
        """
        from .decoder import DecodeBatch

        torch = self.torch
        rows = [_Row(w, self) for w in works]
        results: list[_Decoded | BaseException | None] = [None] * len(rows)
        with torch.inference_mode():
            batch = DecodeBatch(
                self.lean, [w.window.cross for w in works], max(r.limit for r in rows), threads or self.threads
            )
            picks = [[w.prompt.index(self.sot), len(w.prompt) - 1] for w in works]
            both = batch.prefill([w.prompt for w in works], picks)
            no_speech = torch.softmax(both[:, 0], dim=-1)[:, self.no_speech].tolist()
            for row, p in zip(rows, no_speech):
                row.no_speech_prob = float(p)
            logits = both[:, 1].contiguous()
            members: list[int] = list(range(len(rows)))  # batch position -> row index
            while True:
                view: list[_Row | None] = []
                for i in members:
                    row = rows[i]
                    if not row.done and row.work.options.cancel is not None and row.work.options.cancel.is_set():
                        row.done, row.error = True, Cancelled()
                    view.append(None if row.done else row)
                self._apply_rules_rows(logits, view)
                lse = torch.logsumexp(logits, dim=-1)
                chosen = torch.argmax(logits, dim=-1)
                for b, row in enumerate(view):
                    if row is not None and row.work.temperature > 0:
                        probs = torch.softmax(logits[b] / row.work.temperature, dim=-1)
                        chosen[b] = torch.multinomial(probs, 1, generator=row.work.generator)[0]
                logprob = (logits.gather(1, chosen[:, None])[:, 0] - lse).tolist()
                tokens = chosen.tolist()
                feed: list[int] = []
                for b, row in enumerate(view):
                    if row is None:
                        feed.append(self.eot)
                        continue
                    token = tokens[b]
                    row.sum_logprob += logprob[b]
                    if token == self.eot or row.length >= row.limit:
                        row.done = True
                        feed.append(self.eot)
                        continue
                    row.generated.append(token)
                    if token >= self.timestamp_begin:
                        row.last_ts = token
                    row.length += 1
                    feed.append(token)
                alive = [b for b, i in enumerate(members) if not rows[i].done]
                if not alive:
                    break
                if len(alive) <= (3 * len(members)) // 4:  # shrink the batch once a quarter is done
                    batch.keep(alive)
                    members = [members[b] for b in alive]
                    feed = [feed[b] for b in alive]
                logits = batch.step(torch.tensor(feed, dtype=torch.long, device=self.device))
        for i, row in enumerate(rows):
            if row.error is not None:
                results[i] = row.error
                continue
            text = self.decode_text(row.generated)
            n = len(row.generated) - row.forced
            results[i] = _Decoded(
                tokens=row.generated,
                sum_logprob=row.sum_logprob,
                avg_logprob=row.sum_logprob / (n + 1),
                no_speech_prob=row.no_speech_prob,
                temperature=row.work.temperature,
                compression_ratio=compression_ratio(text),
                text=text,
            )
        return results  # type: ignore[return-value]

    def _decode_window(
        self,
        enc,
        prompt: list[int],
        rules_begin: int,
        temperature: float,
        options: TranscribeOptions,
        generator,
    ) -> _Decoded:
        """One window, one row (``enc`` = :meth:`encode`'s output); see :meth:`decode_rows`.

        ``prompt``: [startofprev + previous text] + sot sequence + forced tokens (<|0.00|> prefix).
        ``rules_begin``: index in ``prompt`` where the timestamp rules' token history starts.
        """
        window = enc if isinstance(enc, Window) else self.window(enc)
        result = self.decode_rows([DecodeWork(window, prompt, rules_begin, temperature, options, generator)])[0]
        if isinstance(result, BaseException):
            raise result
        return result

    def beam_window(self, work: DecodeWork) -> _Decoded:
        """Beam search over one window (openai's ``BeamSearchDecoder``, patience 1, ranked by
        log-probability / length -- what faster-whisper does), the beams as rows of one batch."""
        from .decoder import DecodeBatch

        torch = self.torch
        options = work.options
        beams = options.beam_size
        prompt = work.prompt
        rules = [_Row(work, self) for _ in range(beams)]
        limit = rules[0].limit
        sequences: list[list[int]] = [list(prompt) for _ in range(beams)]
        sum_logprobs = [0.0] * beams
        finished: dict[tuple[int, ...], float] = {}
        with torch.inference_mode():
            batch = DecodeBatch(self.lean, [work.window.cross] * beams, limit, self.threads)
            both = batch.prefill([prompt] * beams, [[prompt.index(self.sot), len(prompt) - 1]] * beams)
            no_speech_prob = float(torch.softmax(both[0, 0], dim=-1)[self.no_speech])
            logits = both[:, 1].contiguous()
            length = len(prompt)
            while True:
                self._check(options)
                for row, seq in zip(rules, sequences):
                    row.generated = seq[work.rules_begin :]
                    stamps = [t for t in row.generated if t >= self.timestamp_begin]
                    row.last_ts = stamps[-1] if stamps else None
                self._apply_rules_rows(logits, rules)
                logprobs = torch.log_softmax(logits, dim=-1)
                top_lp, top_tok = logprobs.topk(beams + 1, dim=-1)
                scores: dict[tuple[int, ...], float] = {}
                sources: dict[tuple[int, ...], int] = {}
                for j in range(beams):
                    for lp, tok in zip(top_lp[j].tolist(), top_tok[j].tolist()):
                        seq = (*sequences[j], tok)
                        scores[seq] = sum_logprobs[j] + lp
                        sources[seq] = j
                next_seqs: list[list[int]] = []
                next_sources: list[int] = []
                next_sums: list[float] = []
                newly: dict[tuple[int, ...], float] = {}
                for seq in sorted(scores, key=scores.__getitem__, reverse=True):
                    if seq[-1] == self.eot:
                        newly[seq] = scores[seq]
                    else:
                        next_seqs.append(list(seq))
                        next_sources.append(sources[seq])
                        next_sums.append(scores[seq])
                        if len(next_seqs) == beams:
                            break
                for seq in sorted(newly, key=newly.__getitem__, reverse=True):
                    if len(finished) >= beams:
                        break
                    finished[seq] = newly[seq]
                sequences, sum_logprobs = next_seqs, next_sums
                length += 1
                if len(finished) >= beams or length >= limit:
                    break
                batch.reorder(next_sources)
                tokens = torch.tensor([seq[-1] for seq in sequences], dtype=torch.long, device=self.device)
                logits = batch.step(tokens)
        if len(finished) < beams:  # not enough finished beams: take the best running ones
            for j in sorted(range(len(sequences)), key=lambda j: sum_logprobs[j], reverse=True):
                finished[(*sequences[j], self.eot)] = sum_logprobs[j]
                if len(finished) >= beams:
                    break

        # rank by log-probability / length of the sampled tokens (openai's MaximumLikelihoodRanker)
        def rank(item: tuple[tuple[int, ...], float]) -> float:
            seq, score = item
            return score / max(1, len(seq) - len(prompt) - 1)

        best, sum_logprob = max(finished.items(), key=rank)
        new = [t for t in best[len(prompt) :] if t != self.eot]
        tokens = list(prompt[work.rules_begin :]) + new
        text = self.decode_text(tokens)
        return _Decoded(
            tokens=tokens,
            sum_logprob=sum_logprob,
            avg_logprob=sum_logprob / (len(new) + 1),
            no_speech_prob=no_speech_prob,
            temperature=0.0,
            compression_ratio=compression_ratio(text),
            text=text,
        )

    def _fallback_steps(self, window: Window, prompt, rules_begin, options, generator):
        """Decode with temperature fallback (a generator yielding :class:`DecodeWork`)."""
        attempts: list[_Decoded] = []
        for temperature in options.temperatures:
            result = yield DecodeWork(window, prompt, rules_begin, float(temperature), options, generator)
            attempts.append(result)
            needs_fallback = False
            if (
                options.compression_ratio_threshold is not None
                and result.compression_ratio > options.compression_ratio_threshold
            ):
                needs_fallback = True
            if options.log_prob_threshold is not None and result.avg_logprob < options.log_prob_threshold:
                needs_fallback = True
            if (
                options.no_speech_threshold is not None
                and result.no_speech_prob > options.no_speech_threshold
                and options.log_prob_threshold is not None
                and result.avg_logprob < options.log_prob_threshold
            ):
                needs_fallback = False  # silence: do not retry, the window will be skipped
            if not needs_fallback:
                return result
        # Every temperature failed: keep the most likely result that is not repetitive (faster-whisper).
        ok = [
            a
            for a in attempts
            if options.compression_ratio_threshold is None or a.compression_ratio <= options.compression_ratio_threshold
        ]
        return max(ok or attempts, key=lambda a: a.avg_logprob)

    # -- word timestamps ----------------------------------------------------------------------

    def _split_words(self, tokens: list[int], language: str) -> tuple[list[str], list[list[int]]]:
        """openai's ``split_to_word_tokens`` on byte-level tokens (tokens end with eot)."""
        full = b"".join(self._token_bytes[t] for t in tokens).decode("utf-8", errors="replace")
        words: list[str] = []
        word_tokens: list[list[int]] = []
        current: list[int] = []
        offset = 0
        for t in tokens:
            current.append(t)
            if t >= self.eot:
                decoded = "<|endoftext|>" if t == self.eot else ""
                words.append(decoded)
                word_tokens.append(current)
                current = []
                continue
            decoded = b"".join(self._token_bytes[x] for x in current).decode("utf-8", errors="replace")
            if "\ufffd" not in decoded or full[offset + decoded.index("\ufffd")] == "\ufffd":
                words.append(decoded)
                word_tokens.append(current)
                current = []
                offset += len(decoded)
        if language in NO_SPACE_LANGUAGES:
            return words, word_tokens
        merged_words: list[str] = []
        merged_tokens: list[list[int]] = []
        for sub, sub_tokens in zip(words, word_tokens):
            special = sub_tokens[0] >= self.eot
            if special or sub.startswith(" ") or sub.strip() in string.punctuation or not merged_words:
                merged_words.append(sub)
                merged_tokens.append(list(sub_tokens))
            else:
                merged_words[-1] += sub
                merged_tokens[-1].extend(sub_tokens)
        return merged_words, merged_tokens

    def align_rows(
        self, works: Sequence[AlignWork], threads: int | None = None
    ) -> list[tuple[np.ndarray, list[float] | None]]:
        """Teacher-forced decoder pass of each row's text: the alignment heads' cross-attention
        ``[heads, tokens, frames]`` and each text token's probability, where the work asks for
        them (else None; batched over rows)."""
        from .decoder import DecodeBatch

        torch = self.torch
        seqs = [[*w.sot_seq, self.no_timestamps, *w.text_tokens, self.eot] for w in works]
        out: list[tuple[np.ndarray, list[float] | None]] = []
        with torch.inference_mode():
            batch = DecodeBatch(
                self.lean, [w.window.cross for w in works], max(len(s) for s in seqs), threads or self.threads
            )
            hidden, maps = batch.forward_prompts(seqs, self._alignment_layers)
            for b, (w, seq) in enumerate(zip(works, seqs)):
                start = len(w.sot_seq)
                n = len(w.text_tokens)
                if n and w.probabilities:
                    logits = batch.logits(hidden[b, start : start + n])[:, : self.eot]
                    probs = torch.softmax(logits, dim=-1)
                    idx = torch.tensor(w.text_tokens, dtype=torch.long, device=probs.device)
                    text_probs = probs[torch.arange(n, device=probs.device), idx].tolist()
                else:
                    text_probs = None
                weights = torch.stack([maps[l][b][h, : len(seq)] for l, h in self.alignment_heads])
                out.append((weights[:, :, : w.num_frames // 2].float().cpu().numpy(), text_probs))
        return out

    def _alignment_from(
        self,
        weights: np.ndarray,
        text_probs: list[float] | None,
        sot_seq: list[int],
        text_tokens: list[int],
        language: str,
    ) -> list[_Timing]:
        # Renormalising the truncated softmax == softmax over the kept frames (openai's order).
        weights = weights / np.maximum(weights.sum(axis=-1, keepdims=True), 1e-10)
        std = weights.std(axis=-2, keepdims=True)
        mean = weights.mean(axis=-2, keepdims=True)
        weights = (weights - mean) / np.maximum(std, 1e-10)
        weights = median_filter(weights, self.median_filter_width)
        matrix = weights.mean(axis=0)[len(sot_seq) : -1]
        text_idx, time_idx = dtw(-matrix)

        words, word_tokens = self._split_words(text_tokens + [self.eot], language)
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
        return [
            _Timing(w, t, float(s), float(e), p) for w, t, s, e, p in zip(words, word_tokens, starts, ends, word_probs)
        ]

    def _word_timestamp_steps(
        self,
        segments: list[Segment],
        window: Window,
        sot_seq,
        num_frames,
        language,
        last_speech: float,
        probabilities: bool = True,
    ):
        """Word timings for the window's segments (a generator yielding one :class:`AlignWork`)."""
        if not segments:
            return last_speech
        per_segment = [[t for t in s.tokens if t < self.eot] for s in segments]
        text_tokens = [t for seg in per_segment for t in seg]
        weights, text_probs = yield AlignWork(window, sot_seq, text_tokens, num_frames, probabilities)
        alignment = self._alignment_from(weights, text_probs, sot_seq, text_tokens, language)
        durations = np.array([t.end - t.start for t in alignment])
        durations = durations[durations.nonzero()]
        median = min(0.7, float(np.median(durations))) if len(durations) else 0.0
        max_duration = median * 2
        if len(durations):
            marks = ".。!！?？"
            for i in range(1, len(alignment)):
                if alignment[i].end - alignment[i].start > max_duration:
                    if alignment[i].word in marks:
                        alignment[i].end = alignment[i].start + max_duration
                    elif alignment[i - 1].word in marks:
                        alignment[i].start = alignment[i].end - max_duration
        _merge_punctuations(alignment)
        time_offset = segments[0].seek * HOP_LENGTH / SAMPLE_RATE
        index = 0
        for segment, tokens in zip(segments, per_segment):
            saved = 0
            words: list[Word] = []
            while index < len(alignment) and saved < len(tokens):
                timing = alignment[index]
                if timing.word:
                    words.append(
                        Word(
                            timing.word,
                            round(time_offset + timing.start, 2),
                            round(time_offset + timing.end, 2),
                            timing.probability,
                        )
                    )
                saved += len(timing.tokens)
                index += 1
            if words:
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
                last_speech = segment.end
            segment.words = words
        return last_speech

    # -- running transcriptions ---------------------------------------------------------------

    def transcribe(self, audio: np.ndarray, options: TranscribeOptions | None = None) -> Transcription:
        """Transcribe (or translate) 16 kHz mono float32 ``audio`` of any length."""
        job = Job(self.transcribe_steps(audio, options or TranscribeOptions()))
        self.run_round([job])
        while not job.finished:
            self.run_round([job])
        return job.result()

    def run_round(self, jobs: Sequence[Job], threads: int | None = None) -> None:
        """Advance every unfinished job by (about) one window, serving their work in batches.

        Stage by stage -- encode, language, decode, align -- each stage's work from all jobs runs
        as one batch, and a job that moves on to a later stage joins that stage in the same round.
        A job's error (cancellation, a bad option) finishes that job only. ``threads``: the
        encoder's threads for this round (default: the engine's).
        """
        for job in jobs:
            if job.pending is None and not job.finished:
                job.advance(None)
        for stage in STAGES:
            group = [j for j in jobs if not j.finished and isinstance(j.pending, stage)]
            while group:
                results = self._serve(stage, [j.pending for j in group], threads)
                for job, result in zip(group, results):
                    job.advance(result)
                # temperature fallback asks for another decode of the same window: serve it now
                group = (
                    [j for j in group if not j.finished and isinstance(j.pending, stage)] if stage is DecodeWork else []
                )

    def _serve(self, stage: type, works: list, threads: int | None = None) -> list:
        try:
            if stage is EncodeWork:
                return self.encode_windows([w.mel for w in works], threads)
            if stage is LanguageWork:
                return self.detect_languages([w.window for w in works])
            if stage is AlignWork:
                return self.align_rows(works, threads)
            results: list = [None] * len(works)
            rows = [i for i, w in enumerate(works) if not (w.temperature == 0 and w.options.beam_size > 1)]
            for i, w in enumerate(works):
                if i not in rows:
                    try:
                        results[i] = self.beam_window(w)
                    except BaseException as exc:  # noqa: BLE001 -- handed to that job only
                        results[i] = exc
            if rows:
                for i, r in zip(rows, self.decode_rows([works[i] for i in rows], threads)):
                    results[i] = r
            return results
        except Exception as exc:  # noqa: BLE001 -- a failed batch fails each of its jobs
            return [exc] * len(works)

    def transcribe_steps(self, audio: np.ndarray, options: TranscribeOptions):
        """OpenAI Whisper's sequential long-form transcription as a generator of model work.

        It yields :data:`Work` items and is sent their results (:meth:`run_round` does that), so
        the algorithm reads as one sequential loop while many transcriptions share batches.
        Returns the :class:`Transcription`.
        """
        torch = self.torch
        duration = audio.shape[0] / SAMPLE_RATE
        language = options.language
        if language is not None and self.multilingual and language not in self.lang_to_id:
            raise errors.bad_input(f"Error: language {language!r} is not supported by this model at '/language'")
        if not self.multilingual:
            if language not in (None, "en"):
                raise errors.bad_input(
                    f"Error: this model is English-only; language {language!r} is not supported at '/language'"
                )
            language = "en"
        task = options.task if self.multilingual else "transcribe"

        mel = self.log_mel(audio)
        content_frames = audio.shape[0] // HOP_LENGTH
        generator = torch.Generator(device=self.device).manual_seed(options.seed)

        segments: list[Segment] = []
        all_tokens: list[int] = []
        prompt_reset_since = 0
        if options.initial_prompt:
            all_tokens.extend(self.encode_text(" " + options.initial_prompt.strip()))
        prefix_tokens = (
            self.encode_text(" " + options.prefix.strip()) if options.prefix and options.prefix.strip() else []
        )
        language_probability = 1.0
        last_speech = 0.0
        seek = 0
        has_speech = _speech_test(options.speech_spans)
        while seek < content_frames:
            self._check(options)
            time_offset = seek / FRAMES_PER_SECOND
            window_end = (seek + N_FRAMES) / FRAMES_PER_SECOND
            segment_size = min(N_FRAMES, content_frames - seek)
            segment_duration = segment_size / FRAMES_PER_SECOND
            if has_speech is not None and not has_speech(time_offset, time_offset + segment_duration):
                seek += segment_size  # no speech in this window: nothing to transcribe
                continue
            window = yield EncodeWork(mel[:, seek : seek + N_FRAMES])
            if language is None:
                language, language_probability = yield LanguageWork(window)
            sot_seq = self.sot_sequence(language, task)

            previous = all_tokens[prompt_reset_since:]
            prompt: list[int] = []
            if previous:
                prompt = [self.sot_prev] + previous[-(self.n_text_ctx // 2 - 1) :]
            prompt += sot_seq
            rules_begin = len(prompt)
            if seek == 0 and prefix_tokens:
                prompt += [self.timestamp_begin] + prefix_tokens
            result = yield from self._fallback_steps(window, prompt, rules_begin, options, generator)

            if options.no_speech_threshold is not None:
                skip = result.no_speech_prob > options.no_speech_threshold
                if options.log_prob_threshold is not None and result.avg_logprob > options.log_prob_threshold:
                    skip = False
                if skip:
                    seek += segment_size
                    continue

            previous_seek = seek
            tokens = result.tokens
            current: list[Segment] = []

            def add(start: float, end: float, toks: list[int]) -> None:
                current.append(
                    Segment(
                        id=0,
                        seek=previous_seek,
                        start=start,
                        end=end,
                        text=self.decode_text(toks),
                        tokens=toks,
                        temperature=result.temperature,
                        avg_logprob=result.avg_logprob,
                        compression_ratio=result.compression_ratio,
                        no_speech_prob=result.no_speech_prob,
                    )
                )

            tb = self.timestamp_begin
            is_ts = [t >= tb for t in tokens]
            single_timestamp_ending = len(is_ts) >= 2 and is_ts[-2:] == [False, True]
            consecutive = [i + 1 for i in range(len(is_ts) - 1) if is_ts[i] and is_ts[i + 1]]
            if consecutive:
                slices = list(consecutive)
                if single_timestamp_ending:
                    slices.append(len(tokens))
                last_slice = 0
                for current_slice in slices:
                    sliced = tokens[last_slice:current_slice]
                    start = time_offset + (sliced[0] - tb) * TIME_PRECISION
                    end = time_offset + (sliced[-1] - tb) * TIME_PRECISION
                    add(start, end, sliced)
                    last_slice = current_slice
                if single_timestamp_ending:
                    seek += segment_size
                else:
                    seek += (tokens[last_slice - 1] - tb) * INPUT_STRIDE
            else:
                seg_duration = segment_duration
                stamps = [t for t in tokens if t >= tb]
                if stamps and stamps[-1] != tb:
                    seg_duration = (stamps[-1] - tb) * TIME_PRECISION
                add(time_offset, time_offset + seg_duration, tokens)
                seek += segment_size

            if options.word_timestamps:
                last_speech = yield from self._word_timestamp_steps(
                    current,
                    window,
                    sot_seq,
                    segment_size,
                    language,
                    last_speech,
                    probabilities=options.hallucination_silence_threshold is not None,
                )
                if not single_timestamp_ending:
                    last_word_end = _last_word_end(current)
                    if last_word_end is not None and last_word_end > time_offset:
                        seek = round(last_word_end * FRAMES_PER_SECOND)
                threshold = options.hallucination_silence_threshold
                if threshold is not None:
                    seek, current, skip_rest = _skip_hallucinations(
                        current,
                        threshold,
                        seek,
                        previous_seek,
                        segment_size,
                        time_offset,
                        window_end,
                        segment_duration,
                        last_speech,
                        duration,
                        content_frames,
                        single_timestamp_ending,
                    )
                    if skip_rest:
                        continue
                    end = _last_word_end(current)
                    if end is not None:
                        last_speech = end

            for seg in current:  # drop empty segments (zero length or no text)
                if seg.start == seg.end or not seg.text.strip():
                    continue
                seg.id = len(segments)
                segments.append(seg)
                all_tokens.extend(t for t in seg.tokens)
            if not options.condition_on_previous_text or result.temperature > options.prompt_reset_on_temperature:
                prompt_reset_since = len(all_tokens)
            if seek <= previous_seek:  # never loop on the same window
                seek = previous_seek + segment_size
            window = result = None  # its cross-attention keys/values (MBs) are not needed any more
        return Transcription(
            segments=segments, language=language or "en", language_probability=language_probability, duration=duration
        )


def _speech_test(spans: Any):
    """``TranscribeOptions.speech_spans`` as a ``(start, end) -> bool`` test (None = no gate)."""
    if spans is None:
        return None
    if hasattr(spans, "has_speech"):
        return spans.has_speech
    spans = list(spans)
    return lambda lo, hi: any(start < hi and end > lo for start, end in spans)


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


@dataclass
class _Timing:
    word: str
    tokens: list[int]
    start: float
    end: float
    probability: float | None


def _merge_punctuations(alignment: list[_Timing]) -> None:
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


def _last_word_end(segments: list[Segment]) -> float | None:
    for seg in reversed(segments):
        if seg.words:
            return seg.words[-1].end
    return None


def _word_anomaly(word: Word) -> float:
    duration = word.end - word.start
    score = 0.0
    if word.probability is not None and word.probability < 0.15:
        score += 1.0
    if duration < 0.133:
        score += (0.133 - duration) * 15
    if duration > 2.0:
        score += duration - 2.0
    return score


def _is_anomaly(segment: Segment | None) -> bool:
    if segment is None or not segment.words:
        return False
    words = [w for w in segment.words if w.word not in _ANOMALY_PUNCTUATION][:8]
    score = sum(_word_anomaly(w) for w in words)
    return score >= 3 or score + 0.01 >= len(words)


def _next_words_segment(segments: list[Segment]) -> Segment | None:
    return next((s for s in segments if s.words), None)


def _skip_hallucinations(
    current,
    threshold,
    seek,
    previous_seek,
    segment_size,
    time_offset,
    window_end,
    segment_duration,
    last_speech,
    content_duration,
    content_frames,
    single_timestamp_ending,
):
    """openai's ``hallucination_silence_threshold`` handling; returns (seek, segments, skip_window)."""
    if not single_timestamp_ending:
        last_word_end = _last_word_end(current)
        if last_word_end is not None and last_word_end > time_offset:
            remaining = window_end - last_word_end
            seek = round(last_word_end * FRAMES_PER_SECOND) if remaining > threshold else previous_seek + segment_size
    first = _next_words_segment(current)
    if first is not None and _is_anomaly(first):
        gap = first.start - time_offset
        if gap > threshold:
            return previous_seek + round(gap * FRAMES_PER_SECOND), [], True
    hal_last_end = last_speech
    for si, segment in enumerate(current):
        if not segment.words:
            continue
        if _is_anomaly(segment):
            following = _next_words_segment(current[si + 1 :])
            hal_next_start = following.words[0].start if following is not None else time_offset + segment_duration
            silence_before = (
                segment.start - hal_last_end > threshold
                or segment.start < threshold
                or segment.start - time_offset < 2.0
            )
            silence_after = (
                hal_next_start - segment.end > threshold or _is_anomaly(following) or window_end - segment.end < 2.0
            )
            if silence_before and silence_after:
                seek = round(max(time_offset + 1, segment.start) * FRAMES_PER_SECOND)
                if content_duration - segment.end < threshold:
                    seek = content_frames
                current = current[:si]
                break
        hal_last_end = segment.end
    return seek, current, False


# ---------------------------------------------------------------------------------------------
# process-wide model cache
# ---------------------------------------------------------------------------------------------

_engines: dict[tuple[str, str, int, str], WhisperEngine] = {}
_engines_lock = threading.Lock()
_stand_in_logged: set[str] = set()


def load_engine(
    folder: Path, device: str = "auto", threads: int = 1, label: str = "", quantize: str = "none"
) -> WhisperEngine:
    """The engine for ``folder``, loaded once per process (dev-server reloads keep it).

    ``quantize="none"`` (the default here) is fp32, transformers' arithmetic; the service passes
    its ``quantize`` setting (int8 weights by default, see :mod:`flarelet.bindings.ai.settings`).
    """
    key = (str(Path(folder).resolve()), device, threads, quantize)
    with _engines_lock:
        engine = _engines.get(key)
        if engine is None:
            import time

            started = time.monotonic()
            engine = WhisperEngine(Path(folder), device=device, threads=threads, label=label, quantize=quantize)
            _engines[key] = engine
            log.info(
                "Loaded Whisper model %s from %s in %.1f s (%s, %d thread(s), quantize=%s)",
                engine.label,
                folder,
                time.monotonic() - started,
                engine.device,
                threads,
                engine.quantize,
            )
        return engine


def get_engine(spec, settings) -> WhisperEngine:
    """Resolve ``spec``'s weights (a user folder, or the bundled weights converted once) and load them."""
    from .weights import WeightsError, ensure_weights

    local = settings.model_paths.get(spec.id)
    if local is not None:
        folder = Path(local)
        if not (folder / "config.json").is_file():
            raise errors.internal(
                f"the folder {folder} configured for {spec.id} is not a Hugging Face Whisper model folder (no config.json)"
            )
        return load_engine(
            folder,
            settings.device,
            settings.threads,
            label=f"{spec.id} (local folder)",
            quantize=getattr(settings, "quantize", "none"),
        )
    try:
        folder = ensure_weights(spec.weights, settings.models_dir)
    except WeightsError as exc:
        raise errors.internal(str(exc)) from None
    if spec.stand_in_for and spec.id not in _stand_in_logged:
        _stand_in_logged.add(spec.id)
        log.warning(
            "%s is served by Whisper %s as a stand-in (no %s weights offline); map it to a local folder "
            "with [flarelet.ai] models or FLARELET_AI_MODELS for the real model",
            spec.id,
            spec.weights,
            spec.stand_in_for,
        )
    return load_engine(
        folder,
        settings.device,
        settings.threads,
        label=f"whisper-{spec.weights}",
        quantize=getattr(settings, "quantize", "none"),
    )
