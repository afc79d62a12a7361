"""Test aids for code that calls ``env.AI``: :class:`FakeAi`, :class:`RecordingAi` and cassettes.

flarelet's ``env.AI`` runs the real Whisper models, so a test *can* use the real thing (and the
examples' tests do). These aids are for the other tests: fast ones that must not load a model,
ones that need an exact transcript or a failure on demand, and ones replaying what the real
model said once. None of them is ever used unless a test asks for it by name.

* :class:`FakeAi` is the real :class:`~flarelet.bindings.ai.binding.Ai` binding with a fake service behind
  it. Inputs go through the *real* checks -- the catalog (5007 for an unknown model) and the
  pydantic input schemas (5006/3006), and by default the audio is decoded with PyAV as the real
  service does (5006 for bytes that are not audio) -- so a worker that would fail on Cloudflare
  fails here with the same ``InferenceUpstreamError``. Outputs are canned per model (a default
  transcript, a dict, a function of the call, an ``AiError`` to raise) and every output is
  checked against the model's output schema (:mod:`flarelet.bindings.ai.asr.output_schemas`). Each call is
  kept in ``fake.calls`` for assertions.
* :class:`RecordingAi` wraps a real binding and writes each output to a JSON *cassette*, keyed
  by the model and a hash of the validated input; :meth:`FakeAi.from_cassette` replays it.
* :func:`cassette_binding` picks one of the two from the ``FLARELET_AI_RECORD`` environment
  variable: record once with the real model (``FLARELET_AI_RECORD=1 pytest``), replay after.

Nothing here imports torch or transformers.
"""

from __future__ import annotations

import contextvars
import dataclasses
import hashlib
import json
import os
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import catalog, errors
from .asr import schemas
from .asr.output_schemas import validate_output
from .binding import Ai, InferenceUpstreamError
from .settings import AiSettings

__all__ = [
    "AiCall",
    "CassetteMiss",
    "FakeAi",
    "RecordingAi",
    "cassette_binding",
    "cassette_key",
    "record_mode",
    "DEFAULT_TEXT",
    "RECORD_ENV",
]

#: The transcript :class:`FakeAi` returns when a test sets none: says plainly where it came from.
DEFAULT_TEXT = "This is a canned transcription from FakeAi."
#: ``FLARELET_AI_RECORD=1`` makes :func:`cassette_binding` record with the real model.
RECORD_ENV = "FLARELET_AI_RECORD"
CASSETTE_VERSION = 1

#: what a canned response may be: an output, an error to raise, or a function of the call
Canned = Mapping[str, Any] | errors.AiError | Callable[["AiCall"], Any]

_active_call: contextvars.ContextVar[AiCall | None] = contextvars.ContextVar("flarelet_fake_ai_call", default=None)


@dataclass
class AiCall:
    """One ``env.AI.run`` call as a test sees it afterwards."""

    model: str
    #: the inputs exactly as the worker passed them
    inputs: Any
    #: the options (third argument and keyword arguments)
    options: dict[str, Any]
    #: the validated request (audio bytes and decoding options); ``None`` if validation failed
    request: schemas.AsrRequest | None = None
    #: seconds of audio, when the audio was decoded
    duration: float | None = None
    #: what ``run`` returned, or the error it raised
    output: Any = None
    error: BaseException | None = None

    @property
    def audio(self) -> bytes | None:
        """The encoded audio the worker sent (whatever form it used: byte list, base64, bytes)."""
        return self.request.audio if self.request is not None else None


class CassetteMiss(LookupError):
    """A replayed cassette has no recording for this call (new audio or options): record again."""


def record_mode(environ: Mapping[str, str] | None = None) -> bool:
    """Whether ``FLARELET_AI_RECORD`` asks for recording (``1``, ``true``, ``yes``, ``on``)."""
    value = (os.environ if environ is None else environ).get(RECORD_ENV, "")
    return value.strip().lower() in ("1", "true", "yes", "on")


# -- keys -----------------------------------------------------------------------------------------


def _request_fingerprint(model: str, request: schemas.AsrRequest) -> dict[str, Any]:
    """What identifies a call: the model, the audio's hash and every decoding option."""
    fields = dataclasses.asdict(request)
    audio = fields.pop("audio")
    return {"model": model, "audio_sha256": hashlib.sha256(audio).hexdigest(), "audio_bytes": len(audio), **fields}


def cassette_key(model: str, request: schemas.AsrRequest) -> str:
    """The cassette key of a call: sha256 of its fingerprint (same audio and options, same key,
    whichever input form carried the audio)."""
    blob = json.dumps(_request_fingerprint(model, request), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


# -- cassette files -------------------------------------------------------------------------------


def _load_cassette(path: Path) -> dict[str, dict[str, Any]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"cassette {path} is not valid JSON: {exc}") from None
    if (
        not isinstance(data, dict)
        or data.get("flarelet_cassette") != CASSETTE_VERSION
        or not isinstance(data.get("entries"), dict)
    ):
        raise ValueError(f"cassette {path} is not a flarelet cassette (version {CASSETTE_VERSION})")
    entries: dict[str, dict[str, Any]] = data["entries"]
    for key, entry in entries.items():
        if "output" in entry:
            try:
                validate_output(entry["input"]["model"], entry["output"])
            except ValueError as exc:
                raise ValueError(f"cassette {path}, entry {key[:12]}: {exc}") from None
        elif not isinstance(entry.get("error"), dict):
            raise ValueError(f"cassette {path}, entry {key[:12]}: neither an output nor an error")
    return entries


def _write_cassette(path: Path, entries: Mapping[str, Any]) -> None:
    """Write atomically (temp file + rename): an interrupted run never leaves half a cassette."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = (
        json.dumps(
            {"flarelet_cassette": CASSETTE_VERSION, "entries": dict(sorted(entries.items()))},
            indent=1,
            ensure_ascii=False,
        )
        + "\n"
    )
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "x", encoding="utf-8") as handle:  # plain open: the umask's permissions
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _error_entry(exc: InferenceUpstreamError | errors.AiError) -> dict[str, Any]:
    if isinstance(exc, errors.AiError):
        return {"code": exc.code, "status": exc.status, "description": exc.description, "name": exc.name}
    code = getattr(exc, "code", None)
    description = exc.message.split(": ", 1)[1] if code is not None and ": " in exc.message else exc.message
    return {"code": code, "status": getattr(exc, "httpCode", None), "description": description, "name": exc.name}


# -- canned outputs -------------------------------------------------------------------------------


def canned_output(spec: catalog.ModelSpec, text: str, duration: float | None, language: str = "en") -> dict[str, Any]:
    """A schema-valid output for ``spec`` saying ``text``, its words spread evenly over the audio."""
    from .asr.output import to_vtt  # numpy only; no model code

    length = duration if duration and duration > 0 else float(max(1, len(text.split())))
    tokens = text.split()
    step = length / max(1, len(tokens))
    words: list[dict[str, Any]]
    if spec.flavor == "classic":
        words = [
            {"word": w, "start": float(np.float32(i * step)), "end": float(np.float32((i + 1) * step))}
            for i, w in enumerate(tokens)
        ]
        return {
            "text": text.strip(),
            "word_count": len(words),
            "words": words,
            "vtt": to_vtt([(w["start"], w["end"], w["word"]) for w in words]),
        }
    words = [
        {"word": " " + w, "start": round(i * step, 2), "end": round((i + 1) * step, 2)} for i, w in enumerate(tokens)
    ]
    segment = {
        "start": 0.0,
        "end": round(length, 2),
        "text": " " + text.strip(),
        "temperature": 0.0,
        "avg_logprob": 0.0,
        "compression_ratio": 1.0,
        "no_speech_prob": 0.0,
        "words": words,
    }
    return {
        "transcription_info": {
            "language": language,
            "language_probability": 1.0,
            "duration": length,
            "duration_after_vad": length,
        },
        "text": text.strip(),
        "word_count": len(words),
        "segments": [segment] if tokens else [],
        "vtt": to_vtt([(w["start"], w["end"], w["word"]) for w in words]),
    }


class _FakeService:
    """Stands where :class:`~flarelet.bindings.ai.service.AiService` stands behind :class:`Ai`: same checks, canned
    answers."""

    def __init__(self, owner: FakeAi, settings: AiSettings, decode_audio: bool) -> None:
        self.owner = owner
        self.settings = settings
        self.decode_audio = decode_audio

    async def run(self, model: str, inputs: Any) -> dict:
        spec = catalog.resolve(model)  # 5007, exactly as the real service
        request = schemas.parse_inputs(spec, inputs, self.settings)  # 5006 / 3006
        call = _active_call.get()
        if call is not None:
            call.request = request
        duration = None
        if self.decode_audio:
            from .asr import audio as audio_mod

            samples = audio_mod.decode_audio(  # 5006 / 3006, worded as the real service words them
                request.audio, self.settings.max_audio_seconds, audio_mod.source_of(inputs)
            )
            duration = audio_mod.duration(samples)
            if call is not None:
                call.duration = duration
        return self.owner._answer(spec, request, call, duration)

    def models(self) -> list[dict]:
        return [spec.search_entry() for spec in catalog.MODELS.values()]


class FakeAi(Ai):
    """A Workers AI binding for tests that answers without a model (see the module docstring).

    ``responses`` maps a model id to its answer: an output dict (checked against the model's
    output schema now), an :class:`~flarelet.bindings.ai.errors.AiError` to raise (``errors.timeout()``,
    ``errors.out_of_capacity()``...), or a function ``f(call: AiCall)`` returning either (checked
    when called). Models without an entry answer ``text`` (default :data:`DEFAULT_TEXT`) in the
    model's full output shape, words spread over the decoded audio's duration.

    ``decode_audio=False`` skips decoding the audio with PyAV (the schema checks still run), for
    tests that send placeholder bytes on purpose.
    """

    def __init__(
        self,
        responses: Mapping[str, Canned] | None = None,
        *,
        text: str = DEFAULT_TEXT,
        language: str = "en",
        decode_audio: bool = True,
        settings: AiSettings | None = None,
    ) -> None:
        super().__init__(_FakeService(self, settings or AiSettings.from_options(), decode_audio))  # type: ignore[arg-type]
        self.text = text
        self.language = language
        self.calls: list[AiCall] = []
        self._responses: dict[str, Canned] = {}
        self._cassette: dict[str, dict[str, Any]] | None = None
        self._cassette_path: Path | None = None
        for model, answer in (responses or {}).items():
            self.set_response(model, answer)

    @classmethod
    def from_cassette(cls, path: str | os.PathLike[str], **kwargs: Any) -> FakeAi:
        """Replay the outputs (and errors) recorded in ``path`` by :class:`RecordingAi`.

        A call with no recording raises :class:`CassetteMiss` (record again); inputs are still
        checked, so bad input fails as the real binding would without a recording.
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(
                f"no AI cassette at {path}: record it once with the real model ({RECORD_ENV}=1 pytest ...)"
            )
        fake = cls(**kwargs)
        fake._cassette = _load_cassette(path)
        fake._cassette_path = path
        return fake

    # -- configuring ------------------------------------------------------------------------------
    def set_response(self, model: str, answer: Canned) -> None:
        """Answer ``model`` with ``answer`` from now on (see the class docstring for the forms)."""
        spec = catalog.MODELS.get(model)
        if spec is None:
            raise ValueError(
                f"FakeAi: {model!r} is not a Workers AI model served here (known: {', '.join(catalog.MODELS)})"
            )
        if isinstance(answer, Mapping):
            answer = validate_output(spec, answer)
        elif not isinstance(answer, errors.AiError) and not callable(answer):
            raise TypeError(
                f"FakeAi: the answer for {model} must be an output dict, an AiError or a function, "
                f"got {type(answer).__name__}"
            )
        self._responses[model] = answer

    def reset(self) -> None:
        """Forget the recorded calls."""
        self.calls.clear()

    @property
    def last_call(self) -> AiCall:
        if not self.calls:
            raise AssertionError("env.AI.run was never called")
        return self.calls[-1]

    # -- the binding ------------------------------------------------------------------------------
    async def run(self, model: str, inputs: Any = None, options: Mapping[str, Any] | None = None, **kwargs: Any) -> Any:
        opts = dict(options) if isinstance(options, Mapping) else {}
        call = AiCall(model=model, inputs=inputs, options={**opts, **kwargs})
        self.calls.append(call)
        token = _active_call.set(call)
        try:
            result = await super().run(model, inputs, options, **kwargs)
        except BaseException as exc:
            call.error = exc
            raise
        finally:
            _active_call.reset(token)
        call.output = result
        return result

    def _answer(
        self, spec: catalog.ModelSpec, request: schemas.AsrRequest, call: AiCall | None, duration: float | None
    ) -> dict:
        if self._cassette is not None:
            entry = self._cassette.get(cassette_key(spec.id, request))
            if entry is None:
                raise CassetteMiss(
                    f"cassette {self._cassette_path} has no recording of {spec.id} for this input "
                    f"({len(request.audio)} audio bytes, sha256 {hashlib.sha256(request.audio).hexdigest()[:12]}); "
                    f"record it with the real model: {RECORD_ENV}=1 pytest ..."
                )
            if "error" in entry:
                e = entry["error"]
                raise errors.AiError(
                    int(e["code"]), int(e["status"]), str(e["description"]), str(e.get("name") or "AiError")
                )
            return entry["output"]
        answer = self._responses.get(spec.id)
        if answer is None:
            return canned_output(spec, self.text, duration, self.language)
        if callable(answer) and not isinstance(answer, (Mapping, errors.AiError)):
            answer = answer(call if call is not None else AiCall(spec.id, None, {}, request, duration))
            if not isinstance(answer, errors.AiError):
                answer = validate_output(spec, answer)
        if isinstance(answer, errors.AiError):
            raise answer
        return json.loads(json.dumps(answer))  # a fresh copy per call: a worker may mutate its result

    def __repr__(self) -> str:
        source = f"cassette {self._cassette_path}" if self._cassette is not None else "canned outputs"
        return f"<FakeAi ({source}), {len(self.calls)} call(s)>"


class RecordingAi:
    """Wraps a real ``env.AI`` binding and saves what it returns to a cassette for :meth:`FakeAi.from_cassette`.

    Every call goes to the real model; its output -- or its error, such as 5006 for audio that
    does not decode -- is written to ``path`` (merged with what the file already holds) right
    away, so an interrupted test run keeps what it recorded. Calls are kept in ``calls`` as with
    :class:`FakeAi`.
    """

    def __init__(self, real: Ai, path: str | os.PathLike[str]) -> None:
        self.real = real
        self.path = Path(path)
        self.calls: list[AiCall] = []
        self._lock = threading.Lock()
        self._entries: dict[str, dict[str, Any]] = _load_cassette(self.path) if self.path.is_file() else {}
        service = getattr(real, "_service", None)
        self._settings: AiSettings = getattr(service, "settings", None) or AiSettings.from_options()

    async def run(self, model: str, inputs: Any = None, options: Mapping[str, Any] | None = None, **kwargs: Any) -> Any:
        opts = dict(options) if isinstance(options, Mapping) else {}
        call = AiCall(model=model, inputs=inputs, options={**opts, **kwargs})
        self.calls.append(call)
        key = None
        try:
            spec = catalog.resolve(model)
            call.request = schemas.parse_inputs(
                spec, dict(inputs) if isinstance(inputs, Mapping) else inputs, self._settings
            )
            key = cassette_key(spec.id, call.request)
        except errors.AiError:
            pass  # the real binding refuses it the same way; nothing worth recording
        try:
            result = await self.real.run(model, inputs, options, **kwargs)
        except InferenceUpstreamError as exc:
            call.error = exc
            if key is not None:
                self._save(key, call, {"error": _error_entry(exc)})
            raise
        except BaseException as exc:
            call.error = exc
            raise
        call.output = result
        if key is not None:
            self._save(key, call, {"output": json.loads(json.dumps(result))})
        return result

    def _save(self, key: str, call: AiCall, outcome: dict[str, Any]) -> None:
        assert call.request is not None
        entry = {"input": _request_fingerprint(call.model, call.request), **outcome}
        with self._lock:
            self._entries[key] = entry
            _write_cassette(self.path, self._entries)

    async def models(self, params: Mapping[str, Any] | None = None) -> list[Any]:
        return await self.real.models(params)

    def __getattr__(self, name: str) -> Any:  # lastRequestId and friends come from the real binding
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.real, name)

    def __repr__(self) -> str:
        return f"<RecordingAi to {self.path}, {len(self.calls)} call(s)>"


def cassette_binding(real: Ai, path: str | os.PathLike[str], record: bool | None = None) -> FakeAi | RecordingAi:
    """Record with the real binding when ``record`` (default: :func:`record_mode`), else replay ``path``."""
    if record is None:
        record = record_mode()
    return RecordingAi(real, path) if record else FakeAi.from_cassette(path)
