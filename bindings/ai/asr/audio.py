"""Encoded audio bytes -> 16 kHz mono float32 samples, in memory, with PyAV.

Why PyAV: its wheel bundles FFmpeg's libraries, so every format ffmpeg reads (WAV, MP3, FLAC,
Ogg/Opus, M4A/AAC, WebM...) decodes from a ``BytesIO`` with no temp file and no ``ffmpeg``
binary on PATH; its resampler does the rate, layout and sample-format conversion Whisper needs.

Decoding trusts the end of the data over headers: a WAV whose header claims 30 minutes but holds
18 s (the file Cloudflare's own Whisper example fetches) decodes to 18 s, and a file cut short
keeps what was decoded before the damage. Bytes that are not audio give a clear 5006 error, audio
longer than ``max_audio_seconds`` a 3006 error -- found while decoding, without decoding the rest.
"""

from __future__ import annotations

import io
import logging

import numpy as np

from .. import errors

SAMPLE_RATE = 16_000

#: How errors name the audio: the JSON field it came in, or -- for a raw body (curl
#: ``--data-binary``, ``env.AI.run(model, bytes)``) -- the body itself, since that caller sent no field.
AUDIO_FIELD = "'/audio'"
RAW_BODY = "the request body"

log = logging.getLogger("flarelet.ai")


def source_of(inputs: object) -> str:
    """What errors call the audio of ``inputs`` (see :data:`RAW_BODY`)."""
    return RAW_BODY if isinstance(inputs, (bytes, bytearray, memoryview)) else AUDIO_FIELD


def decode_audio(data: bytes, max_seconds: float | None = None, source: str = AUDIO_FIELD) -> np.ndarray:
    """Decode ``data`` (any container/codec FFmpeg knows) to mono float32 in [-1, 1] at 16 kHz.

    Raises :class:`errors.AiError`: 5006 when the bytes hold no decodable audio, 3006 when the
    audio is longer than ``max_seconds``. ``source`` names the audio in those errors.
    """
    import av  # PyAV: imported here so importing this module stays cheap

    if not data:
        raise errors.bad_input(f"Error: {source} is empty (no audio data)")
    max_samples = None if max_seconds is None else int(max_seconds * SAMPLE_RATE)
    try:
        container = av.open(io.BytesIO(data), mode="r", metadata_errors="ignore")
    except (av.FFmpegError, ValueError, OSError) as exc:
        raise errors.bad_input(
            f"Error: {source} could not be decoded as audio ({_reason(exc)}); "
            "send the bytes of an audio file such as WAV, MP3, FLAC, Ogg/Opus, M4A or WebM"
        ) from None
    chunks: list[np.ndarray] = []
    total = 0
    try:
        stream = next((s for s in container.streams if s.type == "audio"), None)
        if stream is None:
            raise errors.bad_input(f"Error: {source} contains no audio stream")
        stream.thread_type = "AUTO"  # type: ignore[attr-defined]  # AudioStream forwards it to its codec; av's stubs miss it
        resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
        try:
            for frame in _frames(container, stream):
                frame.pts = None  # let the resampler count samples itself (broken timestamps happen)
                for out in resampler.resample(frame):
                    total += _append(chunks, out)
                if max_samples is not None and total > max_samples:
                    raise _too_long(max_seconds)
            for out in resampler.resample(None):  # flush
                total += _append(chunks, out)
        except av.FFmpegError as exc:
            if total == 0:
                raise errors.bad_input(f"Error: {source} could not be decoded as audio ({_reason(exc)})") from None
            # Damage after good audio (truncated upload, lying header): keep what decoded.
            log.info("audio decoding stopped early after %.2f s: %s", total / SAMPLE_RATE, _reason(exc))
    finally:
        container.close()
    if total == 0:
        raise errors.bad_input(f"Error: {source} decoded to no audio samples")
    if max_samples is not None and total > max_samples:
        raise _too_long(max_seconds)
    audio = np.concatenate(chunks) if len(chunks) > 1 else chunks[0]
    np.nan_to_num(audio, copy=False, nan=0.0, posinf=1.0, neginf=-1.0)
    np.clip(audio, -1.0, 1.0, out=audio)
    return audio


def _frames(container, stream):
    """Decode frames, skipping corrupt packets FFmpeg can resync past (mid-file glitches)."""
    import av

    bad_packets = 0
    for packet in container.demux(stream):
        try:
            yield from packet.decode()
        except av.InvalidDataError:
            bad_packets += 1
            if bad_packets > 100:
                raise


def _append(chunks: list[np.ndarray], frame) -> int:
    arr = frame.to_ndarray()
    arr = arr.reshape(-1).astype(np.float32, copy=False)
    if arr.size:
        chunks.append(arr)
    return arr.size


def _too_long(max_seconds: float | None) -> errors.AiError:
    return errors.too_large(f"audio is longer than {max_seconds:g} s (max_audio_seconds)")


def _reason(exc: Exception) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    return text.strip() or type(exc).__name__


def duration(samples: np.ndarray) -> float:
    """Seconds of 16 kHz audio."""
    return samples.shape[0] / SAMPLE_RATE
