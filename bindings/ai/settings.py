"""Settings of the local Workers AI service: where weights live, limits, threads, queue.

Every limit is a named, documented setting so a user can raise it (long meetings) or lower it
(a shared CI box), and so tests can exercise it. Values come from, lowest priority first:

1. the defaults below;
2. the ``[flarelet.ai]`` table of ``wrangler.toml`` (reaches the plugin as
   ``options["flarelet"]["ai"]``), e.g.::

       [flarelet.ai]
       max_input_bytes = 10_000_000
       threads = 2
       models = { "@cf/openai/whisper-large-v3-turbo" = "/models/whisper-large-v3-turbo" }

3. environment variables (``FLARELET_CACHE``, ``FLARELET_AI_*``, see :data:`ENV_VARS`), because
   an environment variable is how one overrides a checked-in config for one run.

Importing this module is cheap (no torch, no transformers): the dev server reads settings at start.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

#: Cloudflare does not publish a byte limit for Whisper inputs; 25 MiB is the OpenAI Whisper API
#: limit and comfortably holds ~25 minutes of 128 kb/s MP3 or ~13 minutes of 16 kHz 16-bit WAV.
DEFAULT_MAX_INPUT_BYTES = 25 * 1024 * 1024
#: Decoded audio longer than this is refused (3006) before any model work; 30 minutes is a long
#: meeting and takes a few minutes on a 2-core CPU with the base model.
DEFAULT_MAX_AUDIO_SECONDS = 30 * 60.0
#: Threads for the encoder's large matrix products (the decoder's small per-token operations always
#: run on one). Two is the sweet spot on small machines: 1.6x faster encoding when the second core
#: is free, and never slower than one when it is busy, because OpenMP threads sleep rather than
#: spin (``OMP_WAIT_POLICY=PASSIVE``, set by flarelet.bindings.ai.asr.engine).
DEFAULT_THREADS = min(2, os.cpu_count() or 1)
#: Requests admitted beyond the first (transcribed together, up to ``max_batch`` per worker, or
#: waiting); one more is refused with 3040/429. Each holds its decoded audio (~4 MB a minute).
DEFAULT_QUEUE_SIZE = 32
#: Wall-clock limit of one request (queue wait + decoding + inference), then 3007/408.
DEFAULT_TIMEOUT_S = 600.0
#: Weight format on the CPU (flarelet.bindings.ai.asr.engine.QUANTIZE_MODES): "int8" (default) quantizes most
#: linear layers (fastest: per token the decoder is bound by reading its weights; the layers whose
#: inputs have outliers stay float, and the word error rate on the English test clips is no worse
#: than fp32's -- but single words can differ from fp32's, and a batch mate can move a word, since
#: activations are quantized per batch); "fp16" stores the weights in fp16 and computes in fp32 --
#: exact for Whisper's fp16-published weights, batch-independent, ~10 % slower; "none" = fp32.
#: Ignored on a GPU (fp16 there). README "Speed".
DEFAULT_QUANTIZE = "int8"
QUANTIZE_MODES = ("fp16", "int8", "none")
#: Which Whisper backend runs the models: "lean" (default) = flarelet's own encoder/decoder on the
#: checkpoint's weights (flarelet.bindings.ai.asr.engine: batching across requests, int8/fp16,
#: several times faster on a CPU); "transformers" = transformers' own WhisperForConditionalGeneration
#: and its generate (flarelet.bindings.ai.asr.transformers_engine): any checkpoint transformers
#: runs, at transformers' speed, one request at a time. README "Workers AI".
DEFAULT_ENGINE = "lean"
ENGINES = ("lean", "transformers")
#: How a clip longer than one 30 s window is transcribed: "sequential" (default) = Whisper's own
#: long-form loop, each window prompted with the text before it; "batched" = cut at silences (VAD)
#: into chunks of at most 30 s, decoded together as one batch (faster-whisper's batched pipeline:
#: flarelet.bindings.ai.asr.batched). Sequential stays the default: its transcripts were as good or
#: better on every long test clip, and on a CPU batching the chunks saves little. README "Speed".
DEFAULT_LONG_FORM = "sequential"
LONG_FORM_MODES = ("sequential", "batched")
#: Inference workers: threads sharing the loaded model, each transcribing its own batch. Two keep
#: both cores of a small machine busy under load (one encodes while the other decodes; the
#: encoder's threads are shared out between busy workers) -- bench/concurrency.py, README "Speed".
DEFAULT_WORKERS = 2
#: Requests one worker transcribes together: their windows' decoder steps run as one batch.
DEFAULT_MAX_BATCH = 8
#: How long a worker that was idle waits for more requests before starting a batch.
DEFAULT_BATCH_WINDOW_MS = 10.0

#: Environment variables read by :meth:`AiSettings.from_options` (name -> field).
ENV_VARS: dict[str, str] = {
    "FLARELET_CACHE": "cache_dir",
    "FLARELET_AI_MODELS": "model_paths",
    "FLARELET_AI_MAX_INPUT_BYTES": "max_input_bytes",
    "FLARELET_AI_MAX_AUDIO_SECONDS": "max_audio_seconds",
    "FLARELET_AI_THREADS": "threads",
    "FLARELET_AI_QUEUE_SIZE": "queue_size",
    "FLARELET_AI_TIMEOUT": "timeout_s",
    "FLARELET_AI_DEVICE": "device",
    "FLARELET_AI_QUANTIZE": "quantize",
    "FLARELET_AI_ENGINE": "engine",
    "FLARELET_AI_LONG_FORM": "long_form",
    "FLARELET_AI_WORKERS": "workers",
    "FLARELET_AI_MAX_BATCH": "max_batch",
    "FLARELET_AI_BATCH_WINDOW_MS": "batch_window_ms",
}

#: Per-model override: ``FLARELET_AI_MODEL__<id with non-alphanumerics as _>``; e.g.
#: ``FLARELET_AI_MODEL__CF_OPENAI_WHISPER_LARGE_V3_TURBO=/models/turbo``.
MODEL_ENV_PREFIX = "FLARELET_AI_MODEL__"

DEVICES = ("auto", "cpu", "cuda")

#: Keys of ``[flarelet.ai]`` that belong to the REST API (``flarelet.bindings.ai.rest``), not to these settings.
REST_KEYS = ("api_token", "api_tokens", "account_id")


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/flarelet`` or ``~/.cache/flarelet`` (converted weights live below it)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "flarelet"


def model_env_name(model_id: str) -> str:
    """The per-model environment variable for ``model_id`` (see :data:`MODEL_ENV_PREFIX`)."""
    slug = "".join(ch.upper() if ch.isalnum() else "_" for ch in model_id).strip("_")
    while "__" in slug:
        slug = slug.replace("__", "_")
    return MODEL_ENV_PREFIX + slug


class SettingsError(ValueError):
    """A setting has a value of the wrong kind; ``key`` names where it came from."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key
        self.message = message


@dataclass(frozen=True)
class AiSettings:
    """Everything the AI service needs to know; immutable so a service can be keyed by it."""

    cache_dir: Path = field(default_factory=default_cache_dir)
    #: model id -> local Hugging Face Whisper folder, replacing the bundled weights for that id.
    model_paths: Mapping[str, Path] = field(default_factory=dict)
    max_input_bytes: int = DEFAULT_MAX_INPUT_BYTES
    max_audio_seconds: float = DEFAULT_MAX_AUDIO_SECONDS
    threads: int = DEFAULT_THREADS
    queue_size: int = DEFAULT_QUEUE_SIZE
    timeout_s: float = DEFAULT_TIMEOUT_S
    device: str = "auto"
    quantize: str = DEFAULT_QUANTIZE
    engine: str = DEFAULT_ENGINE
    long_form: str = DEFAULT_LONG_FORM
    workers: int = DEFAULT_WORKERS
    max_batch: int = DEFAULT_MAX_BATCH
    batch_window_ms: float = DEFAULT_BATCH_WINDOW_MS

    def __post_init__(self) -> None:
        # Frozen dataclass: normalise through object.__setattr__ so callers may pass str paths.
        object.__setattr__(self, "cache_dir", Path(self.cache_dir).expanduser())
        object.__setattr__(
            self, "model_paths", {str(k): Path(v).expanduser() for k, v in dict(self.model_paths).items()}
        )
        _check_positive("max_input_bytes", self.max_input_bytes, int)
        _check_positive("max_audio_seconds", self.max_audio_seconds, (int, float))
        _check_positive("threads", self.threads, int)
        _check_positive("timeout_s", self.timeout_s, (int, float))
        if not isinstance(self.queue_size, int) or isinstance(self.queue_size, bool) or self.queue_size < 0:
            raise SettingsError("queue_size", f"must be an integer >= 0, got {self.queue_size!r}")
        if self.device not in DEVICES:
            raise SettingsError("device", f"must be one of {', '.join(DEVICES)}, got {self.device!r}")
        if self.quantize not in QUANTIZE_MODES:
            raise SettingsError("quantize", f"must be one of {', '.join(QUANTIZE_MODES)}, got {self.quantize!r}")
        if self.engine not in ENGINES:
            raise SettingsError("engine", f"must be one of {', '.join(ENGINES)}, got {self.engine!r}")
        if self.long_form not in LONG_FORM_MODES:
            raise SettingsError("long_form", f"must be one of {', '.join(LONG_FORM_MODES)}, got {self.long_form!r}")
        _check_positive("workers", self.workers, int)
        _check_positive("max_batch", self.max_batch, int)
        if (
            isinstance(self.batch_window_ms, bool)
            or not isinstance(self.batch_window_ms, (int, float))
            or not 0 <= self.batch_window_ms <= 10_000
        ):
            raise SettingsError(
                "batch_window_ms", f"must be a number of milliseconds in 0..10000, got {self.batch_window_ms!r}"
            )

    def __hash__(self) -> int:  # model_paths is a dict; hash what identifies the settings
        return hash(
            (
                self.cache_dir,
                tuple(sorted(self.model_paths.items())),
                self.max_input_bytes,
                self.max_audio_seconds,
                self.threads,
                self.queue_size,
                self.timeout_s,
                self.device,
                self.quantize,
                self.engine,
                self.long_form,
                self.workers,
                self.max_batch,
                self.batch_window_ms,
            )
        )

    @property
    def models_dir(self) -> Path:
        """Where converted weights are cached."""
        return self.cache_dir / "models"

    def replace(self, **changes: Any) -> AiSettings:
        return replace(self, **changes)

    @classmethod
    def from_options(
        cls, options: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
    ) -> AiSettings:
        """Build settings from harness ``options`` (``options["flarelet"]["ai"]``) and the environment.

        ``options`` may also be the ``[flarelet.ai]`` table itself. Raises :class:`SettingsError`
        naming the offending key.
        """
        environ = os.environ if environ is None else environ
        table = _ai_table(options or {})
        known = {f.name for f in fields(cls)}
        aliases = {"models": "model_paths", "cache": "cache_dir", "timeout": "timeout_s"}
        values: dict[str, Any] = {}
        for key, value in table.items():
            if key in REST_KEYS:
                continue
            name = aliases.get(key, key)
            if name not in known:
                raise SettingsError(f"flarelet.ai.{key}", f"unknown setting (known: {', '.join(sorted(known))})")
            values[name] = _coerce(f"flarelet.ai.{key}", name, value)

        for env_name, name in ENV_VARS.items():
            raw = environ.get(env_name)
            if raw is None or raw == "":
                continue
            if name == "model_paths":
                merged = dict(values.get("model_paths", {}))
                merged.update(_coerce(env_name, name, raw))
                values[name] = merged
            else:
                values[name] = _coerce(env_name, name, raw)

        per_model = {k: v for k, v in environ.items() if k.startswith(MODEL_ENV_PREFIX) and v}
        if per_model:
            from .catalog import MODELS  # cheap: a table of dataclasses

            merged = dict(values.get("model_paths", {}))
            by_env = {model_env_name(mid): mid for mid in MODELS}
            for env_name, path in per_model.items():
                if env_name not in by_env:
                    raise SettingsError(env_name, f"no such model (known: {', '.join(sorted(by_env))})")
                merged[by_env[env_name]] = Path(path)
            values["model_paths"] = merged
        return cls(**values)


def _ai_table(options: Mapping[str, Any]) -> Mapping[str, Any]:
    flarelet = options.get("flarelet")
    if isinstance(flarelet, Mapping):
        ai = flarelet.get("ai", {})
        if not isinstance(ai, Mapping):
            raise SettingsError("flarelet.ai", "must be a table")
        return ai
    # the table itself (tests, the REST helper)
    return {k: v for k, v in options.items() if k not in ("preload", "api_token", "flarelet")}


def _check_positive(name: str, value: Any, kind: type | tuple[type, ...]) -> None:
    # (int, float) first: ``kind`` is one or both of them, and the comparison needs a number
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not isinstance(value, kind) or value <= 0:
        raise SettingsError(name, f"must be a positive number, got {value!r}")


def _coerce(key: str, name: str, value: Any) -> Any:
    """Turn a config/env value into the field's type, or raise :class:`SettingsError`."""
    try:
        if name == "model_paths":
            if isinstance(value, str):
                value = json.loads(value)
            if not isinstance(value, Mapping) or not all(isinstance(v, (str, Path)) for v in value.values()):
                raise ValueError("expected a mapping of model id to folder path")
            return {str(k): Path(v) for k, v in value.items()}
        if name == "cache_dir":
            return Path(str(value))
        if name in ("max_input_bytes", "threads", "queue_size", "workers", "max_batch"):
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError("expected an integer")
            return int(str(value).replace("_", "")) if isinstance(value, str) else int(value)
        if name in ("max_audio_seconds", "timeout_s", "batch_window_ms"):
            if isinstance(value, bool):
                raise ValueError("expected a number")
            return float(value)
        if name in ("device", "quantize", "engine", "long_form"):
            return str(value).lower()
    except (TypeError, ValueError, json.JSONDecodeError) as exc:
        raise SettingsError(key, f"invalid value {value!r}: {exc}") from None
    return value
