"""Audio decoding (PyAV, in memory) to 16 kHz mono float32: formats, headers, damage, limits."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys

import av
import numpy as np
import pytest

from flarelet.bindings.ai import errors
from flarelet.bindings.ai.asr.audio import SAMPLE_RATE, decode_audio

from .conftest import wav_bytes

SPEECH = "librispeech_1221-135766-0002.wav"  # 4.825 s, 16 kHz mono


def test_test_audio_is_the_attributed_copy_and_stays_in_the_repository(audio_dir, manifest):
    """Every clip in tests/data/audio is listed in its manifest with the sha256 of its source, is
    attributed in its README, and resolves inside the repository (the one link points at the docs
    example's copy of the Katie file)."""
    repo = audio_dir.parents[2]
    clips = sorted(p.name for p in audio_dir.iterdir() if p.name not in {"README.md", "manifest.json"})
    assert clips == sorted(manifest)
    readme = (audio_dir / "README.md").read_text(encoding="utf-8")
    for name in clips:
        path = audio_dir / name
        assert path.resolve().is_relative_to(repo), path
        assert hashlib.sha256(path.read_bytes()).hexdigest() == manifest[name]["sha256"], name
        assert f"`{name}`" in readme and manifest[name]["license"], name


def encode(
    samples: np.ndarray,
    rate: int,
    container: str,
    codec: str,
    layout: str = "mono",
    out_rate: int | None = None,
    sample_format: str | None = None,
) -> bytes:
    """Encode float samples with PyAV into ``container``/``codec`` bytes (test input only)."""
    out_rate = out_rate or rate
    buf = io.BytesIO()
    with av.open(buf, "w", format=container) as out:
        stream = out.add_stream(codec, rate=out_rate, layout=layout)
        if sample_format:
            stream.format = sample_format
        channels = 2 if layout == "stereo" else 1
        data = np.tile(samples[None, :], (channels, 1)).astype(np.float32)
        frame = av.AudioFrame.from_ndarray(data, format="fltp", layout=layout)
        frame.sample_rate = rate
        resampler = av.AudioResampler(format=stream.format.name, layout=layout, rate=out_rate)
        for f in resampler.resample(frame) + resampler.resample(None):
            for packet in stream.encode(f):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buf.getvalue()


@pytest.fixture(scope="module")
def speech(clip) -> np.ndarray:
    return decode_audio(clip(SPEECH))


@pytest.mark.parametrize(
    "container, codec, layout, rate, fmt",
    [
        ("wav", "pcm_s16le", "mono", 16000, None),
        ("wav", "pcm_s24le", "stereo", 44100, None),
        ("mp3", "libmp3lame", "stereo", 44100, None),
        ("flac", "flac", "stereo", 44100, "s32"),
        ("ogg", "libopus", "mono", 48000, None),
        ("webm", "libopus", "stereo", 48000, None),
        ("ipod", "aac", "stereo", 44100, None),  # .m4a
        ("adts", "aac", "mono", 22050, None),  # raw .aac
    ],
)
def test_formats_decode_to_16k_mono_float(speech, container, codec, layout, rate, fmt):
    data = encode(speech, SAMPLE_RATE, container, codec, layout=layout, out_rate=rate, sample_format=fmt)
    audio = decode_audio(data)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert abs(audio.shape[0] / SAMPLE_RATE - speech.shape[0] / SAMPLE_RATE) < 0.12  # codec priming/padding
    assert np.abs(audio).max() <= 1.0
    # Same sound: the loudness matches the original within a few dB (lossy codecs, resampling).
    rms = lambda x: float(np.sqrt(np.mean(x.astype(np.float64) ** 2)))  # noqa: E731
    assert 0.7 < rms(audio) / rms(speech) < 1.4


def test_lying_wav_header_trusts_the_data(clip, manifest):
    """The file Cloudflare's docs fetch claims 30 minutes in its header and holds 18.343 s."""
    bad = decode_audio(clip("enrollment_audio_katie.wav"))
    good = decode_audio(clip("enrollment_audio_katie_quickstart_copy.wav"))
    assert bad.shape[0] == good.shape[0] == 293_486
    assert abs(bad.shape[0] / SAMPLE_RATE - manifest["enrollment_audio_katie.wav"]["duration_s"]) < 0.01
    assert np.corrcoef(bad, good)[0, 1] > 0.999
    # ...and the 30-minute claim does not trip a 60 s limit.
    assert decode_audio(clip("enrollment_audio_katie.wav"), max_seconds=60).shape[0] == 293_486


def test_stereo_24bit_44k_flac(clip):
    audio = decode_audio(clip("jfk.flac"))
    assert audio.shape[0] == 11 * SAMPLE_RATE


def test_stereo_mp3(clip):
    audio = decode_audio(clip("librivox_sonnet001.mp3"))
    assert 53.2 < audio.shape[0] / SAMPLE_RATE < 53.4


def test_truncated_file_keeps_what_decoded(clip):
    data = clip("librivox_sonnet001.mp3")
    half = decode_audio(data[: len(data) // 2])
    assert 20 < half.shape[0] / SAMPLE_RATE < 33
    wav = clip("librispeech_1221-135766-0002.wav")
    cut = decode_audio(wav[: 44 + 32_000])  # header + 1 s of 16-bit samples
    assert cut.shape[0] == 16_000


@pytest.mark.parametrize(
    "data",
    [b"", b"\x00" * 4096, b"hello world " * 500, b"RIFF\x00\x00\x00\x00WAVEjunk", b"\xff\xfb\x90\x00" * 3, b"ID3"],
)
def test_non_audio_is_5006(data):
    with pytest.raises(errors.AiError) as info:
        decode_audio(data)
    assert info.value.code == 5006
    assert "'/audio'" in info.value.description


def test_max_seconds_is_3006_without_decoding_everything(clip):
    with pytest.raises(errors.AiError) as info:
        decode_audio(clip("librivox_sonnet001.mp3"), max_seconds=10)
    assert info.value.code == 3006 and info.value.status == 413
    assert "max_audio_seconds" in info.value.description


def test_silence_and_extremes(speech):
    assert not np.any(decode_audio(wav_bytes(np.zeros(16000, np.float32))))
    loud = decode_audio(wav_bytes(np.ones(16000, np.float32)))
    assert np.all(np.isfinite(loud)) and np.abs(loud).max() <= 1.0


def test_no_ffmpeg_binary_needed(clip, tmp_path):
    """PyAV's bundled libraries decode; an empty PATH (no ffmpeg binary) changes nothing."""
    src = tmp_path / "a.mp3"
    src.write_bytes(clip("whatstheweatherlike.mp3"))
    code = (
        "import sys, pathlib; from flarelet.bindings.ai.asr.audio import decode_audio; "
        f"a = decode_audio(pathlib.Path({str(src)!r}).read_bytes()); print(a.shape[0])"
    )
    env = {**os.environ, "PATH": ""}
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
    )
    assert int(out.stdout.strip()) == 32_480
