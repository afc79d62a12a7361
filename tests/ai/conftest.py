"""Fixtures for the Workers AI tests: real speech from ``tests/data/audio``, the real models, WER.

* ``audio_dir`` / ``manifest`` / ``clip(name)``: the recordings in ``tests/data/audio`` (attribution
  and licence per clip in its README) and their reference transcripts.
* ``service``: one :class:`AiService` for the whole session (default settings: weights converted
  once into ``$FLARELET_CACHE`` or ``~/.cache/flarelet`` and reused by later runs), so each model
  loads once per session.
* ``transcribe(model, clip, **inputs)``: runs a clip through the service, memoised, so several
  tests can check different properties of the same transcription without re-running it.
* ``wer(reference, hypothesis)``: jiwer WER after the normalisation in ``tests/data/audio/README.md``.
* ``synth(text)``: espeak-ng speech as 16 kHz WAV bytes (for long, known-text audio).
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
import subprocess
import wave
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from flarelet.bindings.ai.service import AiService
from flarelet.bindings.ai.settings import AiSettings

TINY = "@cf/openai/whisper-tiny-en"
BASE = "@cf/openai/whisper"
TURBO = "@cf/openai/whisper-large-v3-turbo"


@pytest.fixture(scope="session")
def manifest(audio_dir: Path) -> dict[str, dict[str, Any]]:
    data = json.loads((audio_dir / "manifest.json").read_text(encoding="utf-8"))
    return {entry["file"]: entry for entry in data["files"]}


@pytest.fixture(scope="session")
def clip(audio_dir: Path) -> Callable[[str], bytes]:
    def read(name: str) -> bytes:
        return (audio_dir / name).read_bytes()

    return read


# -- word error rate -------------------------------------------------------------------------------

_NUMBERS = {
    "0": "zero",
    "1": "one",
    "2": "two",
    "3": "three",
    "4": "four",
    "5": "five",
    "6": "six",
    "7": "seven",
    "8": "eight",
    "9": "nine",
    "10": "ten",
    "11": "eleven",
    "12": "twelve",
}
_SPELLING = {"dishonoured": "dishonored", "colour": "color", "honour": "honor"}


def normalize(text: str) -> str:
    """As ``tests/data/audio/README.md`` says: lowercase, no punctuation, Mr.->mister, for ever->forever,
    British->American spelling, digits->words."""
    t = text.lower().replace("’", "'")
    t = re.sub(r"\bmr\.?(?=\s)", "mister", t)
    t = re.sub(r"\bmrs\.?(?=\s)", "missus", t)
    t = re.sub(r"[-–—]", " ", t)
    t = re.sub(r"[^\w\s']", " ", t)
    t = re.sub(r"(?<!\w)'|'(?!\w)", " ", t)  # quotes, not apostrophes inside words
    words = [_NUMBERS.get(w, _SPELLING.get(w, w)) for w in t.split()]
    return re.sub(r"\bfor ever\b", "forever", " ".join(words))


def wer(reference: str, hypothesis: str) -> float:
    import jiwer

    ref, hyp = normalize(reference), normalize(hypothesis)
    if not ref:
        return 0.0 if not hyp else 1.0
    return float(jiwer.wer(ref, hyp or "<empty>"))


def cer(reference: str, hypothesis: str) -> float:
    import jiwer

    strip = lambda s: re.sub(r"[\s\W]+", "", s)  # noqa: E731
    return float(jiwer.cer(strip(reference), strip(hypothesis) or "-"))


@pytest.fixture(scope="session")
def wer_fn() -> Callable[[str, str], float]:
    return wer


# -- the real service ------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def ai_settings() -> AiSettings:
    return AiSettings.from_options({})


@pytest.fixture(scope="session")
def service(ai_settings: AiSettings) -> AiService:
    return AiService(ai_settings)


def inputs_for(model: str, data: bytes, **extra: Any) -> dict[str, Any]:
    """The documented input form of ``model`` for the file ``data``."""
    if model == TURBO:
        return {"audio": base64.b64encode(data).decode("ascii"), **extra}
    return {"audio": list(data), **extra}


#: the Whisper backends (settings ``engine``) the real-speech tests run on
ENGINES = ("lean", "transformers")


@pytest.fixture(scope="session")
def engine_services(ai_settings: AiSettings) -> dict[str, AiService]:
    return {}


@pytest.fixture(scope="session", params=ENGINES)
def transcribe_on(
    request: pytest.FixtureRequest,
    service: AiService,
    engine_services: dict[str, AiService],
    clip: Callable[[str], bytes],
) -> Callable[..., Awaitable[dict]]:
    """:func:`transcribe` on each backend in turn (``transcribe_on.engine`` says which)."""
    engine = request.param
    if engine == service.settings.engine:
        svc = service
    else:
        svc = engine_services.setdefault(engine, AiService(service.settings.replace(engine=engine)))
    memo: dict[tuple, dict] = {}

    async def run(model: str, name: str, **extra: Any) -> dict:
        key = (model, name, json.dumps(extra, sort_keys=True))
        if key not in memo:
            memo[key] = await svc.run(model, inputs_for(model, clip(name), **extra))
        return memo[key]

    run.engine = engine  # type: ignore[attr-defined]
    return run


@pytest.fixture(scope="session")
def transcribe(service: AiService, clip: Callable[[str], bytes]) -> Callable[..., Awaitable[dict]]:
    memo: dict[tuple, dict] = {}

    async def run(model: str, name: str, **extra: Any) -> dict:
        key = (model, name, json.dumps(extra, sort_keys=True))
        if key not in memo:
            memo[key] = await service.run(model, inputs_for(model, clip(name), **extra))
        return memo[key]

    return run


# -- synthetic audio -------------------------------------------------------------------------------


def wav_bytes(samples: np.ndarray, rate: int = 16000) -> bytes:
    pcm = (np.clip(samples, -1, 1) * 32767).astype("<i2")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    return buf.getvalue()


@pytest.fixture(scope="session")
def synth(tmp_path_factory) -> Callable[[str], np.ndarray]:
    """espeak-ng speech of ``text`` as 16 kHz float32 samples."""
    if shutil.which("espeak-ng") is None:
        # scripts/setup installs it, so under CI a missing espeak-ng is a failure, not a skip
        (pytest.fail if os.environ.get("CI") else pytest.skip)("espeak-ng is not installed (scripts/setup installs it)")
    folder = tmp_path_factory.mktemp("espeak")

    def make(text: str, voice: str = "en-us", speed: int = 150) -> np.ndarray:
        out = folder / f"s{abs(hash((text, voice, speed)))}.wav"
        subprocess.run(
            ["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(out), text],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        from flarelet.bindings.ai.asr.audio import decode_audio

        return decode_audio(out.read_bytes())

    return make
