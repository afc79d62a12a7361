"""Batched long-form (``[flarelet.ai] long_form = "batched"``): chunks cut at silences, decoded
together, on the clip's clock (flarelet.bindings.ai.asr.batched)."""

from __future__ import annotations

import numpy as np
import pytest

from flarelet.bindings.ai.asr.audio import decode_audio
from flarelet.bindings.ai.asr.batched import chunk_spans
from flarelet.bindings.ai.service import AiService
from flarelet.bindings.ai.settings import AiSettings, SettingsError

from .conftest import BASE, TINY, inputs_for, wer

SR = 16_000


def spans(*pairs: tuple[float, float]) -> list[dict[str, int]]:
    return [{"start": int(a * SR), "end": int(b * SR)} for a, b in pairs]


def test_chunks_merge_speech_spans_up_to_one_window_as_faster_whisper_batched_does():
    found = spans((1, 10), (12, 25), (26, 32), (40, 45), (46, 50))  # 1..32 would be 31 s
    assert chunk_spans(found) == [(1 * SR, 25 * SR), (26 * SR, 50 * SR)]


def test_a_span_longer_than_a_window_is_split_into_windows():
    assert chunk_spans(spans((0, 70))) == [(0, 30 * SR), (30 * SR, 60 * SR), (60 * SR, 70 * SR)]


def test_no_speech_means_no_chunks():
    assert chunk_spans([]) == []


def test_long_form_setting_is_checked_and_read_from_the_environment():
    assert AiSettings.from_options({}, environ={}).long_form == "sequential"
    assert AiSettings.from_options({}, environ={"FLARELET_AI_LONG_FORM": "Batched"}).long_form == "batched"
    assert AiSettings.from_options({"long_form": "batched"}, environ={}).long_form == "batched"
    with pytest.raises(SettingsError, match="long_form"):
        AiSettings.from_options({"long_form": "parallel"}, environ={})


@pytest.fixture(scope="module")
def batched_service(ai_settings: AiSettings) -> AiService:
    return AiService(ai_settings.replace(long_form="batched"))


@pytest.mark.slow
async def test_batched_sonnet_is_as_accurate_with_global_word_times(batched_service, clip, manifest):
    name = "librivox_sonnet001.mp3"
    data = clip(name)
    duration = decode_audio(data).shape[0] / SR
    result = await batched_service.run(TINY, inputs_for(TINY, data))
    score = wer(manifest[name]["reference"], result["text"])
    print(f"WER batched tiny.en {name}: {score:.3f}")
    assert score <= 0.20  # the sequential test's bound (test_transcription)
    words = result["words"]
    starts = [w["start"] for w in words]
    assert starts == sorted(starts)  # one clock across chunks, in order
    assert all(0 <= w["start"] <= w["end"] <= duration + 0.5 for w in words)
    assert words[-1]["end"] > duration - 5  # the last chunk's words sit at the clip's end, not at 0..30 s


@pytest.mark.slow
def test_batched_multilingual_chunks_share_the_first_chunks_language(batched_service, clip):
    """Two German sentences 10 s apart (two chunks), language not given: the first chunk detects
    German and the second is decoded in it, as faster-whisper's batched pipeline uses one language."""
    from flarelet.bindings.ai.asr import engine as engine_mod
    from flarelet.bindings.ai.asr import vad
    from flarelet.bindings.ai.asr.options import TranscribeOptions
    from flarelet.bindings.ai.catalog import resolve

    german = decode_audio(clip("picovoice_test_de.wav"))
    gap = np.zeros(SR * 10, dtype=np.float32)
    audio = np.concatenate([german, gap, german, gap, german])
    eng = engine_mod.get_engine(resolve(BASE), batched_service.settings)
    found = vad.get_vad().speech_spans(audio, vad.CHUNKING)
    job = eng.start_batched(audio, found, TranscribeOptions())
    assert len(job.active()) == 1  # the others wait for the language
    while not job.finished:
        eng.run_round([job])
    result = job.result()
    assert len(job.parts) >= 2
    assert result.language == "de"
    assert all(p.result().language == "de" for p in job.parts)
    assert result.segments[-1].end > audio.shape[0] / SR - 12
