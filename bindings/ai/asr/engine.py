"""The lean Whisper engine: one Hugging Face Whisper model folder, loaded into our own torch modules.

:class:`WhisperEngine` holds what one loaded model needs -- the encoder and decoder modules
(:mod:`flarelet.bindings.ai.asr.encoder`, :mod:`flarelet.bindings.ai.asr.decoder`: fused
projections, static caches, fp16 or int8 weights per ``quantize``), the vocabulary, the log-mel
transform and the logit rules -- and answers the model calls of the transcription work: encode
windows, detect languages, decode rows (:mod:`~flarelet.bindings.ai.asr.decoding`,
:mod:`~flarelet.bindings.ai.asr.beam`), align words (:mod:`~flarelet.bindings.ai.asr.alignment`).
The algorithm around those calls lives in :mod:`~flarelet.bindings.ai.asr.transcribe` (the
long-form loop) and :mod:`~flarelet.bindings.ai.asr.scheduler` (batching many transcriptions).

Why our own modules and loop instead of transformers' ``generate``: Cloudflare's turbo model
answers with faster-whisper's fields (per-segment ``temperature``, ``avg_logprob``,
``compression_ratio``, ``no_speech_prob``; ``language_probability``; ``prefix``;
``hallucination_silence_threshold``), which ``generate`` does not expose, and the lean modules
are several times faster on a CPU (README "Speed"). The ``transformers`` backend
(``engine = "transformers"``) runs transformers' own model instead.

torch and transformers are imported when an engine is first created, never at start-up.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .. import errors
from . import alignment, batched, beam, decoding, scheduler, transcribe
from .options import TranscribeOptions
from .results import Decoded, Transcription
from .work import AlignWork, DecodeWork, Job, Window

log = logging.getLogger("flarelet.ai")

# OpenMP threads that wait for work *sleep* instead of spinning. The encoder runs its big matrix
# products on ``threads`` threads; with the default spin-wait, two threads on a 2-core machine
# where anything else runs are 1.5x *slower* than one (and far slower with per-token decoding);
# sleeping, they are never worse than one thread and 1.6x faster when the second core is free.
# Read once, when torch loads (so: before our import of it; a value the user set wins).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

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


class WhisperEngine:
    """One loaded Whisper model.

    Thread-safe for inference: all per-request state lives in the transcription generators and
    the per-batch caches, so several service workers may share one engine (and its weights).
    """

    def __init__(
        self, folder: Path, device: str = "auto", threads: int = 1, label: str = "", quantize: str = "none"
    ) -> None:
        import torch

        from .features import LogMel
        from .logit_rules import LogitRules
        from .model_files import GenerationSettings, ModelConfig, load_tokenizer
        from .vocabulary import Vocabulary

        self.torch = torch
        self.folder = Path(folder)
        self.label = label or self.folder.name
        self.device = _device(torch, device)
        # fp16 on a GPU (Whisper's own inference dtype); fp32 on the CPU, where fp16 is emulated.
        self.dtype = torch.float16 if self.device.type == "cuda" else torch.float32
        self.threads = threads
        self._set_threads(1)
        # the folder's JSON files read directly (transformers' classes cost ~45 MB; model_files.py)
        try:
            self.config = cfg = ModelConfig.from_folder(self.folder)
            self.generation_config = gen = GenerationSettings.from_folder(self.folder)
            self.vocab = Vocabulary(load_tokenizer(self.folder), gen, cfg)
            self.log_mel = LogMel.from_folder(self.folder)
        except (ValueError, TypeError, KeyError) as exc:
            raise errors.internal(f"{self.folder}: {exc}") from None
        self._load_modules(quantize)
        heads = getattr(gen, "alignment_heads", None)
        if not heads:  # fall back to the last half of the decoder layers, all heads (as openai does)
            half = cfg.decoder_layers // 2
            heads = [[n, h] for n in range(half, cfg.decoder_layers) for h in range(cfg.decoder_attention_heads)]
        self.alignment_heads = [(int(n), int(h)) for n, h in heads]
        self.alignment_layers = frozenset(n for n, _ in self.alignment_heads)
        self.n_text_ctx = int(cfg.max_target_positions)
        self.median_filter_width = int(getattr(cfg, "median_filter_width", 7) or 7)
        suppress = [int(t) for t in (gen.suppress_tokens or cfg.suppress_tokens or [])]
        begin_suppress = [int(t) for t in (gen.begin_suppress_tokens or [220, self.vocab.eot])]
        self.rules = LogitRules(self.vocab, suppress, begin_suppress, self.device)
        self._lang_ids = torch.tensor(list(self.vocab.lang_to_id.values()), dtype=torch.long, device=self.device)

    def _load_modules(self, quantize: str) -> None:
        """The encoder and decoder on the folder's weights, in the ``quantize`` format (a CPU
        lever, fbgemm kernels; on a GPU the whole model runs in fp16)."""
        from .decoder import LeanDecoder
        from .encoder import LeanEncoder, open_state

        torch, cfg = self.torch, self.config
        if quantize not in QUANTIZE_MODES:
            raise ValueError(f"quantize must be one of {', '.join(QUANTIZE_MODES)}, not {quantize!r}")
        self.quantize = quantize if self.device.type == "cpu" else "none"
        # Tensor by tensor (a lazy state dict over the file): each weight is read when its module
        # converts it and let go after, so loading never holds the float model beside its
        # int8 / fp16 form (the peak while loading was the file's pages + fp32 + int8 copies).
        state = open_state(self.folder)
        try:
            with torch.inference_mode(False), torch.no_grad():
                int8_skip = ENCODER_FLOAT_LAYERS if self.quantize == "int8" else None
                self.encoder = LeanEncoder(state, cfg, int8_skip=int8_skip)
                if self.quantize == "int8":
                    self.lean = LeanDecoder(state, cfg, linears="int8", proj="int8")
                elif self.quantize == "fp16":
                    self.lean = LeanDecoder(state, cfg, linears="fp16", proj="fp16")
                else:
                    self.lean = LeanDecoder(state, cfg)
        finally:
            close = getattr(state, "close", None)
            if close is not None:
                close()
            del state
        with torch.inference_mode(False), torch.no_grad():
            if self.device.type != "cpu":  # fp16 weights and activations on the GPU
                self.encoder = self.encoder.to(self.device, self.dtype)
                self.lean = self.lean.to(self.device, self.dtype)
            self.encoder.eval()
            self.lean.eval()

    # -- model calls ------------------------------------------------------------------------------

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
            logits = batch.prefill([[self.vocab.sot]] * len(windows), [[0]] * len(windows))[:, 0]
            probs = torch.softmax(logits[:, self._lang_ids], dim=-1)
            best = torch.argmax(probs, dim=-1).tolist()
        codes = list(self.vocab.lang_to_id)
        return [(codes[b], float(probs[i, b])) for i, b in enumerate(best)]

    def decode_rows(self, works: Sequence[DecodeWork], threads: int | None = None) -> list[Decoded | BaseException]:
        return decoding.decode_rows(self, works, threads)

    def beam_window(self, work: DecodeWork) -> Decoded:
        return beam.beam_window(self, work)

    def align_rows(self, works: Sequence[AlignWork], threads: int | None = None) -> list[tuple[np.ndarray, Any]]:
        return alignment.align_rows(self, works, threads)

    # -- transcriptions ---------------------------------------------------------------------------

    def transcribe_steps(self, audio: np.ndarray, options: TranscribeOptions):
        """The long-form loop on this model (:func:`flarelet.bindings.ai.asr.transcribe.transcribe_steps`)."""
        return transcribe.transcribe_steps(self, audio, options)

    def start(self, audio: np.ndarray, options: TranscribeOptions) -> Job:
        """A transcription of ``audio`` that :meth:`run_round` advances (the backend interface)."""
        return Job(self.transcribe_steps(audio, options))

    def start_batched(self, audio: np.ndarray, speech: list[dict[str, int]], options: TranscribeOptions):
        """Batched long-form (:mod:`flarelet.bindings.ai.asr.batched`): ``audio`` cut into chunks
        of at most 30 s around the VAD's ``speech`` spans, transcribed together."""
        chunks = batched.chunk_spans(speech)
        return batched.BatchedJob(audio, chunks, options, self.transcribe_steps, self.vocab.multilingual)

    def run_round(self, jobs: Sequence[Job], threads: int | None = None) -> None:
        scheduler.run_round(self, jobs, threads)

    def transcribe(self, audio: np.ndarray, options: TranscribeOptions | None = None) -> Transcription:
        """Transcribe (or translate) 16 kHz mono float32 ``audio`` of any length."""
        return scheduler.transcribe(self, audio, options)


def check_folder(folder: Path) -> None:
    """Refuse, with a clear message, a folder that is not a Hugging Face Whisper checkpoint (any
    standard Whisper shape loads: tiny ... large-v3's 128 mel bins, distil-whisper's decoders)."""
    import json

    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise errors.internal(f"{folder} is not a Hugging Face Whisper model folder (config.json: {exc})") from None
    if config.get("model_type") != "whisper":
        raise errors.internal(
            f"{folder} is not a Whisper checkpoint (model_type {config.get('model_type')!r} in config.json)"
        )
    missing = [n for n in ("generation_config.json", "preprocessor_config.json") if not (folder / n).is_file()]
    if not any((folder / n).is_file() for n in ("tokenizer.json", "vocab.json")):
        missing.append("tokenizer.json or vocab.json")
    if missing:
        raise errors.internal(f"{folder}: a Whisper folder needs {', '.join(missing)} (save them with the model)")


def _device(torch: Any, device: str) -> Any:
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise errors.internal("device 'cuda' requested but torch sees no CUDA device")
    return torch.device(device)


# ---------------------------------------------------------------------------------------------
# process-wide model cache
# ---------------------------------------------------------------------------------------------

#: the Whisper backends (settings ``engine``): classes with the same interface (``start``,
#: ``run_round``, ``transcribe``), imported on first use
BACKENDS = {"lean": "WhisperEngine", "transformers": "TransformersEngine"}

_engines: dict[tuple[str, str, int, str, str], Any] = {}
_engines_lock = threading.Lock()
_stand_in_logged: set[str] = set()


def load_engine(
    folder: Path,
    device: str = "auto",
    threads: int = 1,
    label: str = "",
    quantize: str = "none",
    backend: str = "lean",
) -> Any:
    """The engine for ``folder``, loaded once per process (dev-server reloads keep it).

    ``backend``: "lean" (:class:`WhisperEngine`) or "transformers"
    (:class:`~flarelet.bindings.ai.asr.transformers_engine.TransformersEngine`).
    ``quantize="none"`` (the default here) is fp32, transformers' arithmetic; the service passes
    its ``quantize`` setting (int8 weights by default, see :mod:`flarelet.bindings.ai.settings`).
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
    check_folder(Path(folder))
    key = (str(Path(folder).resolve()), device, threads, quantize, backend)
    with _engines_lock:
        engine = _engines.get(key)
        if engine is None:
            import time

            # said before, not only after: a first request waits here for seconds
            log.info(
                "Loading Whisper model %s from %s (once per process; --preload does it at start)...",
                label or Path(folder).name,
                folder,
            )
            started = time.monotonic()
            engine = _backend_class(backend)(
                Path(folder), device=device, threads=threads, label=label, quantize=quantize
            )
            _engines[key] = engine
            log.info(
                "Loaded Whisper model %s from %s in %.1f s (%s engine, %s, %d thread(s), quantize=%s)",
                engine.label,
                folder,
                time.monotonic() - started,
                backend,
                engine.device,
                threads,
                engine.quantize,
            )
        return engine


def _backend_class(backend: str) -> type:
    if backend == "transformers":
        from .transformers_engine import TransformersEngine

        return TransformersEngine
    return WhisperEngine


def get_engine(spec, settings) -> Any:
    """Resolve ``spec``'s weights (a user folder, or the bundled weights converted once) and load
    them on the backend ``settings.engine`` names."""
    from .weights import WeightsError, ensure_weights

    options = {
        "quantize": getattr(settings, "quantize", "none"),
        "backend": getattr(settings, "engine", "lean"),
    }
    local = settings.model_paths.get(spec.id)
    if local is not None:
        folder = Path(local)
        if not (folder / "config.json").is_file():
            raise errors.internal(
                f"the folder {folder} configured for {spec.id} is not a Hugging Face Whisper model folder "
                "(no config.json)"
            )
        return load_engine(folder, settings.device, settings.threads, label=f"{spec.id} (local folder)", **options)
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
    return load_engine(folder, settings.device, settings.threads, label=f"whisper-{spec.weights}", **options)
