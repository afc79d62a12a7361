"""The Whisper engine: a transformers ``WhisperForConditionalGeneration`` driven window by window.

``WhisperEngine.transcribe(audio, options) -> Transcription`` is the one entry point (kept small
and pure so it can be optimised -- batching, speed work -- without touching the service).

Why a decoding loop of our own instead of ``pipeline(...)`` / ``model.generate(...)`` long-form:
Cloudflare's turbo model answers with faster-whisper's fields (per-segment ``temperature``,
``avg_logprob``, ``compression_ratio``, ``no_speech_prob``; ``language_probability``; ``prefix``;
``hallucination_silence_threshold``), which transformers' generate does not expose. So this module
runs OpenAI Whisper's sequential long-form algorithm (``whisper/transcribe.py``, which
faster-whisper follows) on the transformers model:

* log-mel features of the whole clip (transformers' ``WhisperFeatureExtractor``), consumed in
  30 s windows; the next window starts at the last complete timestamp (never ``chunk_length_s``,
  which research/whisper-weights.md §6.1 shows is slower and less accurate);
* per window: encoder once; language detection on the first window (multilingual models); a
  prompt of previous text (``condition_on_previous_text``, ``initial_prompt``) and ``prefix``;
  greedy / sampled decoding with a KV cache (beam search through transformers' ``generate``) under
  Whisper's timestamp rules; temperature fallback on high compression ratio / low log-probability;
  windows judged silent (``no_speech_prob`` > threshold and low log-probability) are skipped,
  which is what keeps silence from turning into invented words;
* word timestamps from the model's alignment heads: a teacher-forced decoder pass returns the
  cross-attentions, normalised, median-filtered and aligned to audio frames by dynamic time
  warping (the method of transformers' ``return_token_timestamps``), then OpenAI's word merging and
  boundary heuristics.

torch and transformers are imported when an engine is first created, never at start-up.
"""

from __future__ import annotations

import copy
import logging
import math
import string
import threading
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from . import errors

log = logging.getLogger("flarelet.ai")

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
    speech_spans: Sequence[tuple[float, float]] | None = None
    cancel: threading.Event | None = None


@dataclass
class Word:
    word: str
    start: float
    end: float
    probability: float


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


def median_filter(x: np.ndarray, width: int) -> np.ndarray:
    """Median over a sliding window on the last axis, reflect-padded (as openai/whisper does)."""
    pad = width // 2
    if x.shape[-1] <= pad:
        return x
    padded = np.pad(x, [(0, 0)] * (x.ndim - 1) + [(pad, pad)], mode="reflect")
    windows = np.lib.stride_tricks.sliding_window_view(padded, width, axis=-1)
    return np.median(windows, axis=-1)


def dtw(cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Dynamic time warping path through ``cost`` [tokens, frames] (openai's ``dtw_cpu``).

    Vectorised along anti-diagonals (each cell needs only the two previous diagonals), with the
    same tie-breaking as the reference loop: diagonal only if strictly smallest, then up, else left.
    """
    n, m = cost.shape
    acc = np.full((n + 1, m + 1), np.inf, dtype=np.float32)
    trace = np.full((n + 1, m + 1), -1, dtype=np.int8)
    acc[0, 0] = 0.0
    cost = cost.astype(np.float32, copy=False)
    for d in range(2, n + m + 1):  # d = i + j with i in 1..n, j in 1..m
        i = np.arange(max(1, d - m), min(n, d - 1) + 1)
        j = d - i
        c0 = acc[i - 1, j - 1]
        c1 = acc[i - 1, j]
        c2 = acc[i, j - 1]
        t = np.where((c0 < c1) & (c0 < c2), 0, np.where((c1 < c0) & (c1 < c2), 1, 2)).astype(np.int8)
        best = np.where(t == 0, c0, np.where(t == 1, c1, c2))
        acc[i, j] = cost[i - 1, j - 1] + best
        trace[i, j] = t
    trace[0, :] = 2
    trace[:, 0] = 1
    i, j = n, m
    path = []
    while i > 0 or j > 0:
        path.append((i - 1, j - 1))
        t = trace[i, j]
        if t == 0:
            i, j = i - 1, j - 1
        elif t == 1:
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
# the engine
# ---------------------------------------------------------------------------------------------


class WhisperEngine:
    """One loaded Whisper model. Shared process-wide (several services may hold it), so
    :meth:`transcribe` is serialised by a lock: one CPU-bound inference at a time is also the
    fastest way to use a small machine."""

    def __init__(self, folder: Path, device: str = "auto", threads: int = 1, label: str = "") -> None:
        import torch
        import transformers
        from transformers import GenerationConfig, WhisperFeatureExtractor, WhisperForConditionalGeneration, WhisperTokenizer

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
        self.dtype = torch.float16 if self.device.type == "cuda" else torch.float32
        if self.device.type == "cpu":
            torch.set_num_threads(threads)
        self.threads = threads

        self.model = WhisperForConditionalGeneration.from_pretrained(
            self.folder, dtype=self.dtype, attn_implementation="sdpa", local_files_only=True
        ).to(self.device).eval()
        self.tokenizer = WhisperTokenizer.from_pretrained(self.folder, local_files_only=True)
        self.features = WhisperFeatureExtractor.from_pretrained(self.folder, local_files_only=True)
        gen = GenerationConfig.from_pretrained(self.folder, local_files_only=True)
        self.generation_config = gen
        cfg = self.model.config

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
        self.n_text_ctx = int(cfg.max_target_positions)
        self.median_filter_width = int(getattr(cfg, "median_filter_width", 7) or 7)
        suppress = set(int(t) for t in (gen.suppress_tokens or cfg.suppress_tokens or []))
        suppress |= {self.transcribe_id, self.translate_id, self.sot, self.sot_prev, self.sot_lm, self.no_speech}
        self.suppress_tokens = sorted(t for t in suppress if 0 <= t < self.vocab_size)
        self.begin_suppress = [int(t) for t in (gen.begin_suppress_tokens or [220, self.eot])]
        self._suppress_idx = torch.tensor(self.suppress_tokens, dtype=torch.long, device=self.device)
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

        self._cache_config = copy.deepcopy(cfg)
        self._cache_config.num_hidden_layers = cfg.decoder_layers
        self._lock = threading.Lock()

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
        padded = np.concatenate([audio.astype(np.float32, copy=False), np.zeros(N_FRAMES * HOP_LENGTH, np.float32)])
        feats = self.features(
            padded, sampling_rate=SAMPLE_RATE, padding=False, truncation=False, return_tensors="np",
            return_attention_mask=False,
        ).input_features[0]
        return feats

    def encode(self, mel_window: np.ndarray):
        torch = self.torch
        x = torch.from_numpy(np.ascontiguousarray(mel_window[None])).to(self.device, self.dtype)
        with torch.inference_mode():
            return self.model.model.encoder(x).last_hidden_state

    def _new_cache(self):
        from transformers.cache_utils import DynamicCache, EncoderDecoderCache

        return EncoderDecoderCache(DynamicCache(config=self._cache_config), DynamicCache(config=self._cache_config))

    def _decoder(self, ids: list[int] | Any, enc, cache=None, attentions: bool = False):
        torch = self.torch
        if not torch.is_tensor(ids):
            ids = torch.tensor([ids], dtype=torch.long, device=self.device)
        return self.model.model.decoder(
            input_ids=ids, encoder_hidden_states=enc, cache=cache, use_cache=cache is not None,
            output_attentions=attentions,
        )

    def _logits(self, hidden):
        return self.model.proj_out(hidden).float()

    def detect_language(self, enc) -> tuple[str, float]:
        torch = self.torch
        with torch.inference_mode():
            out = self._decoder([self.sot], enc)
            logits = self._logits(out.last_hidden_state[:, -1])[0]
        probs = torch.softmax(logits[self._lang_ids], dim=-1)
        best = int(torch.argmax(probs))
        code = list(self.lang_to_id)[best]
        return code, float(probs[best])

    # -- logit rules (openai's SuppressBlank, SuppressTokens, ApplyTimestampRules) -------------

    def _apply_rules(self, logits, generated: list[int], at_begin: bool, max_initial: int | None) -> None:
        """In-place on a [V] float tensor; ``generated`` = tokens after the sot sequence."""
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

    # -- one window ---------------------------------------------------------------------------

    def _decode_window(
        self, enc, prompt: list[int], rules_begin: int, temperature: float, options: TranscribeOptions,
        generator,
    ) -> _Decoded:
        """Greedy (temperature 0) or sampled decoding with a KV cache.

        ``prompt``: [startofprev + previous text] + sot sequence + forced tokens (<|0.00|> prefix).
        ``rules_begin``: index in ``prompt`` where the timestamp rules' token history starts.
        """
        torch = self.torch
        sot_index = prompt.index(self.sot)
        max_initial = round(options.max_initial_timestamp / TIME_PRECISION) if options.max_initial_timestamp else None
        sample_len = self.n_text_ctx // 2
        limit = min(self.n_text_ctx, len(prompt) + sample_len)
        generated = list(prompt[rules_begin:])
        forced = len(generated)
        cache = self._new_cache()
        sum_logprob = 0.0
        with torch.inference_mode():
            out = self._decoder(prompt, enc, cache)
            hidden = out.last_hidden_state[0, [sot_index, -1]]
            both = self._logits(hidden)
            no_speech_prob = float(torch.softmax(both[0], dim=-1)[self.no_speech])
            logits = both[1]
            length = len(prompt)
            while True:
                self._check(options)
                self._apply_rules(logits, generated, at_begin=len(generated) == forced, max_initial=max_initial if forced == 0 else None)
                logprobs = torch.log_softmax(logits, dim=-1)
                if temperature > 0:
                    probs = torch.softmax(logits / temperature, dim=-1)
                    token = int(torch.multinomial(probs, 1, generator=generator))
                else:
                    token = int(torch.argmax(logits))
                sum_logprob += float(logprobs[token])
                if token == self.eot or length >= limit:
                    break
                generated.append(token)
                out = self._decoder([token], enc, cache)
                logits = self._logits(out.last_hidden_state[0, -1])
                length += 1
        tokens = generated
        text = self.decode_text(tokens)
        n = len(tokens) - forced
        return _Decoded(
            tokens=tokens,
            sum_logprob=sum_logprob,
            avg_logprob=sum_logprob / (n + 1),
            no_speech_prob=no_speech_prob,
            temperature=temperature,
            compression_ratio=compression_ratio(text),
            text=text,
        )

    def _beam_window(self, enc, prompt: list[int], rules_begin: int, options: TranscribeOptions) -> _Decoded:
        """Beam search through transformers' generate, with the same logit rules."""
        torch = self.torch
        from transformers import LogitsProcessor, LogitsProcessorList, StoppingCriteria, StoppingCriteriaList
        from transformers.generation.utils import GenerationMixin

        engine = self
        forced = len(prompt) - rules_begin
        max_initial = round(options.max_initial_timestamp / TIME_PRECISION) if options.max_initial_timestamp else None

        class Rules(LogitsProcessor):
            def __call__(self, input_ids, scores):
                for b in range(scores.shape[0]):
                    generated = input_ids[b, rules_begin:].tolist()
                    engine._apply_rules(scores[b], generated, at_begin=len(generated) == forced,
                                        max_initial=max_initial if forced == 0 else None)
                return scores

        class Cancel(StoppingCriteria):
            def __call__(self, input_ids, scores, **kwargs):
                cancelled = options.cancel is not None and options.cancel.is_set()
                return torch.full((input_ids.shape[0],), cancelled, dtype=torch.bool, device=input_ids.device)

        sot_index = prompt.index(self.sot)
        with torch.inference_mode():
            head = self._decoder(prompt[: sot_index + 1], enc)
            no_speech_prob = float(torch.softmax(self._logits(head.last_hidden_state[0, -1]), -1)[self.no_speech])
            from transformers.modeling_outputs import BaseModelOutput

            out = GenerationMixin.generate(
                self.model,
                encoder_outputs=BaseModelOutput(last_hidden_state=enc),
                decoder_input_ids=torch.tensor([prompt], device=self.device),
                num_beams=options.beam_size,
                do_sample=False,
                length_penalty=1.0,
                max_length=min(self.n_text_ctx, len(prompt) + self.n_text_ctx // 2),
                logits_processor=LogitsProcessorList([Rules()]),
                stopping_criteria=StoppingCriteriaList([Cancel()]),
                suppress_tokens=None,
                begin_suppress_tokens=None,
                forced_decoder_ids=None,
                eos_token_id=self.eot,
                pad_token_id=self.eot,
                output_scores=True,
                return_dict_in_generate=True,
            )
        self._check(options)
        seq = out.sequences[0].tolist()
        trans = self.model.compute_transition_scores(out.sequences, out.scores, out.beam_indices, normalize_logits=False)[0]
        new = seq[len(prompt):]
        n_new = len(new)  # the eot's score counts in avg_logprob, as in openai/whisper
        if new and new[-1] == self.eot:
            new = new[:-1]
        sum_logprob = float(trans[:n_new][torch.isfinite(trans[:n_new])].sum())
        tokens = list(prompt[rules_begin:]) + new
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

    def _decode_with_fallback(self, enc, prompt, rules_begin, options, generator) -> _Decoded:
        attempts: list[_Decoded] = []
        for temperature in options.temperatures:
            if temperature == 0 and options.beam_size > 1:
                result = self._beam_window(enc, prompt, rules_begin, options)
            else:
                result = self._decode_window(enc, prompt, rules_begin, float(temperature), options, generator)
            attempts.append(result)
            needs_fallback = False
            if options.compression_ratio_threshold is not None and result.compression_ratio > options.compression_ratio_threshold:
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
        ok = [a for a in attempts if options.compression_ratio_threshold is None or a.compression_ratio <= options.compression_ratio_threshold]
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

    def _find_alignment(self, enc, sot_seq: list[int], text_tokens: list[int], num_frames: int, language: str):
        torch = self.torch
        tokens = [*sot_seq, self.no_timestamps, *text_tokens, self.eot]
        # Attention weights exist only in eager attention; switch for this one teacher-forced pass
        # (the engine runs on one thread, so nothing else sees the switch).
        previous = self.model.config._attn_implementation
        self.model.set_attn_implementation("eager")
        try:
            with torch.inference_mode():
                out = self._decoder(tokens, enc, attentions=True)
        finally:
            self.model.set_attn_implementation(previous)
        with torch.inference_mode():
            logits = self._logits(out.last_hidden_state[0, len(sot_seq):])[:, : self.eot]
            probs = torch.softmax(logits, dim=-1)
            text_probs = probs[torch.arange(len(text_tokens)), torch.tensor(text_tokens, dtype=torch.long)].tolist() if text_tokens else []
        cross = out.cross_attentions  # per layer: [1, heads, tokens, 1500] (softmax over frames)
        weights = np.stack([cross[l][0, h].float().cpu().numpy() for l, h in self.alignment_heads])
        weights = weights[:, :, : num_frames // 2]
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
        word_probs = [float(np.mean(text_probs[i:j])) if j > i else 0.0 for i, j in zip(boundaries[:-1], boundaries[1:])]
        return [
            _Timing(w, t, float(s), float(e), p)
            for w, t, s, e, p in zip(words, word_tokens, starts, ends, word_probs)
        ]

    def _add_word_timestamps(self, segments: list[Segment], enc, sot_seq, num_frames, language, last_speech: float) -> float:
        if not segments:
            return last_speech
        per_segment = [[t for t in s.tokens if t < self.eot] for s in segments]
        text_tokens = [t for seg in per_segment for t in seg]
        alignment = self._find_alignment(enc, sot_seq, text_tokens, num_frames, language)
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
                    words.append(Word(timing.word, round(time_offset + timing.start, 2), round(time_offset + timing.end, 2), timing.probability))
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

    # -- the long-form loop -------------------------------------------------------------------

    def transcribe(self, audio: np.ndarray, options: TranscribeOptions | None = None) -> Transcription:
        """Transcribe (or translate) 16 kHz mono float32 ``audio`` of any length."""
        with self._lock:
            return self._transcribe(audio, options or TranscribeOptions())

    def _transcribe(self, audio: np.ndarray, options: TranscribeOptions) -> Transcription:
        torch = self.torch
        duration = audio.shape[0] / SAMPLE_RATE
        language = options.language
        if language is not None and self.multilingual and language not in self.lang_to_id:
            raise errors.bad_input(f"Error: language {language!r} is not supported by this model at '/language'")
        if not self.multilingual:
            if language not in (None, "en"):
                raise errors.bad_input(f"Error: this model is English-only; language {language!r} is not supported at '/language'")
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
        prefix_tokens = self.encode_text(" " + options.prefix.strip()) if options.prefix and options.prefix.strip() else []
        language_probability = 1.0
        last_speech = 0.0
        seek = 0
        while seek < content_frames:
            self._check(options)
            time_offset = seek / FRAMES_PER_SECOND
            window_end = (seek + N_FRAMES) / FRAMES_PER_SECOND
            segment_size = min(N_FRAMES, content_frames - seek)
            segment_duration = segment_size / FRAMES_PER_SECOND
            if options.speech_spans is not None and not any(
                start < time_offset + segment_duration and end > time_offset for start, end in options.speech_spans
            ):
                seek += segment_size  # no speech in this window: nothing to transcribe
                continue
            enc = self.encode(mel[:, seek : seek + N_FRAMES])
            if language is None:
                language, language_probability = self.detect_language(enc)
            sot_seq = self.sot_sequence(language, task)

            previous = all_tokens[prompt_reset_since:]
            prompt: list[int] = []
            if previous:
                prompt = [self.sot_prev] + previous[-(self.n_text_ctx // 2 - 1) :]
            prompt += sot_seq
            rules_begin = len(prompt)
            if seek == 0 and prefix_tokens:
                prompt += [self.timestamp_begin] + prefix_tokens
            result = self._decode_with_fallback(enc, prompt, rules_begin, options, generator)

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
                        id=0, seek=previous_seek, start=start, end=end, text=self.decode_text(toks), tokens=toks,
                        temperature=result.temperature, avg_logprob=result.avg_logprob,
                        compression_ratio=result.compression_ratio, no_speech_prob=result.no_speech_prob,
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
                last_speech = self._add_word_timestamps(current, enc, sot_seq, segment_size, language, last_speech)
                if not single_timestamp_ending:
                    last_word_end = _last_word_end(current)
                    if last_word_end is not None and last_word_end > time_offset:
                        seek = round(last_word_end * FRAMES_PER_SECOND)
                threshold = options.hallucination_silence_threshold
                if threshold is not None:
                    seek, current, skip_rest = _skip_hallucinations(
                        current, threshold, seek, previous_seek, segment_size, time_offset, window_end,
                        segment_duration, last_speech, duration, content_frames, single_timestamp_ending,
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
        return Transcription(segments=segments, language=language or "en", language_probability=language_probability, duration=duration)


@dataclass
class _Timing:
    word: str
    tokens: list[int]
    start: float
    end: float
    probability: float


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
    if word.probability < 0.15:
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
    current, threshold, seek, previous_seek, segment_size, time_offset, window_end, segment_duration,
    last_speech, content_duration, content_frames, single_timestamp_ending,
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
            silence_before = segment.start - hal_last_end > threshold or segment.start < threshold or segment.start - time_offset < 2.0
            silence_after = hal_next_start - segment.end > threshold or _is_anomaly(following) or window_end - segment.end < 2.0
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

_engines: dict[tuple[str, str, int], WhisperEngine] = {}
_engines_lock = threading.Lock()
_stand_in_logged: set[str] = set()


def load_engine(folder: Path, device: str = "auto", threads: int = 1, label: str = "") -> WhisperEngine:
    """The engine for ``folder``, loaded once per process (dev-server reloads keep it)."""
    key = (str(Path(folder).resolve()), device, threads)
    with _engines_lock:
        engine = _engines.get(key)
        if engine is None:
            import time

            started = time.monotonic()
            engine = WhisperEngine(Path(folder), device=device, threads=threads, label=label)
            _engines[key] = engine
            log.info("Loaded Whisper model %s from %s in %.1f s (%s, %d thread(s))",
                     engine.label, folder, time.monotonic() - started, engine.device, threads)
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
        return load_engine(folder, settings.device, settings.threads, label=f"{spec.id} (local folder)")
    try:
        folder = ensure_weights(spec.weights, settings.models_dir)
    except WeightsError as exc:
        raise errors.internal(str(exc)) from None
    if spec.stand_in_for and spec.id not in _stand_in_logged:
        _stand_in_logged.add(spec.id)
        log.warning(
            "%s is served by Whisper %s as a stand-in (no %s weights offline); map it to a local folder "
            "with [flarelet.ai] models or FLARELET_AI_MODELS for the real model", spec.id, spec.weights, spec.stand_in_for,
        )
    return load_engine(folder, settings.device, settings.threads, label=f"whisper-{spec.weights}")
