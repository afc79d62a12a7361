"""``@cf/openai/whisper-large-v3-turbo`` (served by Whisper base unless mapped to a folder):
its output shape and every decoding option."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
import webvtt

from flarelet.bindings.ai.asr.audio import SAMPLE_RATE, decode_audio

from .conftest import TURBO, wav_bytes, wer

pytestmark = pytest.mark.slow

ENGLISH_WORDS = {"the", "of", "this", "was", "is", "and", "a", "as", "has", "very", "used"}


def check_turbo_shape(result: dict, duration: float) -> None:
    assert set(result) == {"transcription_info", "text", "word_count", "segments", "vtt"}
    info = result["transcription_info"]
    assert set(info) == {"language", "language_probability", "duration", "duration_after_vad"}
    assert 0.0 <= info["language_probability"] <= 1.0
    assert info["duration"] == pytest.approx(duration, abs=1e-3)
    assert 0.0 <= info["duration_after_vad"] <= info["duration"] + 1e-6
    assert result["text"] == result["text"].strip()
    assert result["text"] == "".join(s["text"] for s in result["segments"]).strip()
    words = [w for s in result["segments"] for w in s["words"]]
    assert result["word_count"] == len(words)
    last = 0.0
    for seg in result["segments"]:
        assert set(seg) == {
            "start",
            "end",
            "text",
            "temperature",
            "avg_logprob",
            "compression_ratio",
            "no_speech_prob",
            "words",
        }
        assert seg["text"].startswith(" "), "segment text keeps its leading space (faster-whisper style)"
        assert 0.0 <= seg["start"] <= seg["end"] <= duration + 1e-6
        assert seg["temperature"] in (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
        assert seg["avg_logprob"] <= 0.0 and seg["compression_ratio"] > 0.0 and 0.0 <= seg["no_speech_prob"] <= 1.0
        for w in seg["words"]:
            assert set(w) == {"word", "start", "end"}
            assert w["word"].startswith(" ") or info["language"] in ("zh", "ja")
            assert last - 1e-6 <= w["start"] <= w["end"] <= duration + 1e-6
            assert seg["start"] - 1e-6 <= w["start"] and w["end"] <= seg["end"] + 1e-6
            last = w["end"]
    captions = webvtt.from_buffer(io.StringIO(result["vtt"])).captions
    assert len(captions) == len(words)
    assert [c.text.strip() for c in captions] == [w["word"].strip() for w in words]
    assert result["vtt"].startswith("WEBVTT\n\n00:")
    assert "\n" + words[0]["word"] + "\n" in result["vtt"], "cue text keeps the word's leading space"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


async def test_shape_and_english(transcribe, manifest, clip):
    result = await transcribe(TURBO, "jfk.flac")
    check_turbo_shape(result, 11.0)
    assert result["transcription_info"]["language"] == "en"
    assert result["transcription_info"]["duration_after_vad"] == 11.0
    assert wer(manifest["jfk.flac"]["reference"], result["text"]) <= 0.05


@pytest.mark.parametrize(
    "name, language, threshold", [("picovoice_test_fr.wav", "fr", 0.30), ("picovoice_test_es.wav", "es", 0.45)]
)
async def test_language_detection(name, language, threshold, transcribe, manifest, clip):
    result = await transcribe(TURBO, name)
    check_turbo_shape(result, decode_audio(clip(name)).shape[0] / SAMPLE_RATE)
    assert result["transcription_info"]["language"] == language
    assert result["transcription_info"]["language_probability"] > 0.5
    assert wer(manifest[name]["reference"], result["text"]) <= threshold


@pytest.mark.parametrize("name, language", [("picovoice_test_de.wav", "de"), ("picovoice_test_es.wav", "es")])
async def test_translate_gives_english(name, language, transcribe, clip):
    original = await transcribe(TURBO, name)
    result = await transcribe(TURBO, name, task="translate")
    check_turbo_shape(result, decode_audio(clip(name)).shape[0] / SAMPLE_RATE)
    assert result["transcription_info"]["language"] == language  # the spoken language
    assert result["text"] != original["text"]
    words = {w.strip(".,").lower() for w in result["text"].split()}
    assert len(words & ENGLISH_WORDS) >= 2, result["text"]


async def test_forced_language(transcribe):
    forced = await transcribe(TURBO, "jfk.flac", language="en")
    assert forced["transcription_info"]["language"] == "en"
    assert forced["transcription_info"]["language_probability"] == 1.0
    german = await transcribe(TURBO, "jfk.flac", language="German")
    assert german["transcription_info"]["language"] == "de"
    assert german["text"] != forced["text"]


async def test_initial_prompt_conditions_spelling(transcribe):
    """Without context base writes "Hester Prin"; a prompt naming her gives "Prynne"."""
    plain = await transcribe(TURBO, "librispeech_1221-135766-0002.wav")
    prompted = await transcribe(TURBO, "librispeech_1221-135766-0002.wav", initial_prompt="Hester Prynne and Pearl.")
    assert "Prynne" not in plain["text"]
    assert "Prynne" in prompted["text"]
    assert "Pearl" not in prompted["text"]  # the prompt conditions; it is not output


async def test_prefix_starts_the_output(transcribe):
    result = await transcribe(TURBO, "jfk.flac", prefix="And so, my dear fellow")
    assert result["text"].startswith("And so, my dear fellow Americans")


async def test_beam_search(transcribe, manifest):
    result = await transcribe(TURBO, "jfk.flac", beam_size=3)
    check_turbo_shape(result, 11.0)
    assert wer(manifest["jfk.flac"]["reference"], result["text"]) <= 0.05


async def test_thresholds_and_hallucination_option_accepted(transcribe, manifest):
    result = await transcribe(
        TURBO,
        "jfk.flac",
        condition_on_previous_text=False,
        no_speech_threshold=0.5,
        compression_ratio_threshold=2.0,
        log_prob_threshold=-0.9,
        hallucination_silence_threshold=1.0,
    )
    check_turbo_shape(result, 11.0)
    assert wer(manifest["jfk.flac"]["reference"], result["text"]) <= 0.05


async def test_vad_filter_drops_silence_and_keeps_original_times(service, clip, manifest):
    """Two sentences separated and surrounded by 8 s of silence: VAD cuts ~20 s, timestamps map back."""
    a = decode_audio(clip("librispeech_1089-134686-0001.wav"))
    b = decode_audio(clip("librispeech_1221-135766-0002.wav"))
    gap = np.zeros(8 * SAMPLE_RATE, np.float32)
    audio = np.concatenate([gap, a, gap, b, gap])
    duration = audio.shape[0] / SAMPLE_RATE
    result = await service.run(TURBO, {"audio": b64(wav_bytes(audio)), "vad_filter": True, "language": "en"})
    check_turbo_shape(result, duration)
    info = result["transcription_info"]
    assert info["duration"] == pytest.approx(duration, abs=1e-3)
    speech = (a.shape[0] + b.shape[0]) / SAMPLE_RATE
    assert speech <= info["duration_after_vad"] < speech + 4.0  # silence removed, 0.4 s padding kept
    reference = (
        manifest["librispeech_1089-134686-0001.wav"]["reference"]
        + " "
        + manifest["librispeech_1221-135766-0002.wav"]["reference"]
    )
    assert wer(reference, result["text"]) <= 0.15
    words = [w for s in result["segments"] for w in s["words"]]
    assert 7.0 <= words[0]["start"] <= 9.5  # the first word is where it was spoken, not at 0
    second = 8 + a.shape[0] / SAMPLE_RATE + 8
    yet = next(w for w in words if w["word"].strip().lower() == "yet")
    assert second - 1.0 <= yet["start"] <= second + 1.5


async def test_vad_filter_on_silence(service):
    result = await service.run(
        TURBO, {"audio": b64(wav_bytes(np.zeros(5 * SAMPLE_RATE, np.float32))), "vad_filter": True}
    )
    assert result["text"] == "" and result["segments"] == [] and result["word_count"] == 0
    assert result["transcription_info"]["duration"] == 5.0
    assert result["transcription_info"]["duration_after_vad"] == 0.0


async def test_stream_form_and_raw_bytes(service, clip, transcribe):
    data = clip("jfk.flac")
    expected = (await transcribe(TURBO, "jfk.flac"))["text"]
    stream = await service.run(TURBO, {"audio": {"body": data, "contentType": "audio/flac"}})
    raw = await service.run(TURBO, data)
    assert stream["text"] == raw["text"] == expected
