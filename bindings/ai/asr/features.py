"""Log-mel features: what Whisper's encoder reads, computed as transformers computes them.

``LogMel.from_folder(folder)(audio)`` runs ``WhisperFeatureExtractor._torch_extract_fbank_features``
operation for operation (so the features are identical, which the tests check against the
extractor), on the whole clip at once and without its padding and batching copies. The model's
own ``n_fft`` and mel filters are used, so 80- and 128-bin models (large-v3) both work. The
filters are computed here (:func:`mel_filters`, Slaney's formula as transformers and librosa
compute it) from ``preprocessor_config.json``, so the engine needs no transformers import.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from .options import HOP_LENGTH, N_FRAMES


def _hz_to_mel(freq: np.ndarray) -> np.ndarray:
    """Slaney's mel scale: linear below 1 kHz, logarithmic above."""
    mels = 3.0 * freq / 200.0
    log_region = freq >= 1000.0
    mels[log_region] = 15.0 + np.log(freq[log_region] / 1000.0) * (27.0 / np.log(6.4))
    return mels


def _mel_to_hz(mels: np.ndarray) -> np.ndarray:
    freq = 200.0 * mels / 3.0
    log_region = mels >= 15.0
    freq[log_region] = 1000.0 * np.exp((np.log(6.4) / 27.0) * (mels[log_region] - 15.0))
    return freq


def mel_filters(n_fft: int, n_mels: int, sampling_rate: int, max_frequency: float = 8000.0) -> np.ndarray:
    """Whisper's mel filter bank ``[1 + n_fft // 2, n_mels]`` (float64): triangular filters
    evenly spaced on Slaney's mel scale from 0 Hz to ``max_frequency``, area-normalised -- the
    arithmetic of transformers' ``mel_filter_bank(..., norm="slaney", mel_scale="slaney")``, in
    the same order, so the values are bit-identical (tested)."""
    bins = 1 + n_fft // 2
    mel_edges = np.linspace(_hz_to_mel(np.array([0.0]))[0], _hz_to_mel(np.array([max_frequency]))[0], n_mels + 2)
    filter_freqs = _mel_to_hz(mel_edges)
    fft_freqs = np.linspace(0, sampling_rate // 2, bins)
    diff = np.diff(filter_freqs)
    slopes = np.expand_dims(filter_freqs, 0) - np.expand_dims(fft_freqs, 1)
    down = -slopes[:, :-2] / diff[:-1]
    up = slopes[:, 2:] / diff[1:]
    filters = np.maximum(np.zeros(1), np.minimum(down, up))
    filters *= np.expand_dims(2.0 / (filter_freqs[2 : n_mels + 2] - filter_freqs[:n_mels]), 0)
    return filters


class LogMel:
    """The log-mel transform of one model (``filters``: ``[1 + n_fft // 2, n_mels]``)."""

    def __init__(self, n_fft: int, n_mels: int, filters: np.ndarray, dither: float = 0.0) -> None:
        import torch

        if dither:
            raise ValueError(f"feature extractor dither={dither} is not supported")
        self.n_fft = int(n_fft)
        self.n_mels = int(n_mels)
        self._window = torch.hann_window(self.n_fft)
        self._filters = torch.from_numpy(np.asarray(filters, dtype=np.float32))

    @classmethod
    def from_folder(cls, folder: Path) -> LogMel:
        """From ``preprocessor_config.json`` (``WhisperFeatureExtractor``'s defaults for keys it
        leaves out)."""
        raw = json.loads((Path(folder) / "preprocessor_config.json").read_text(encoding="utf-8"))
        n_fft, n_mels = int(raw.get("n_fft", 400)), int(raw.get("feature_size", 80))
        filters = mel_filters(n_fft, n_mels, int(raw.get("sampling_rate", 16000)))
        return cls(n_fft, n_mels, filters, float(raw.get("dither", 0.0)))

    @classmethod
    def of_extractor(cls, extractor: Any) -> LogMel:
        """From a transformers ``WhisperFeatureExtractor``."""
        return cls(extractor.n_fft, extractor.feature_size, extractor.mel_filters, extractor.dither)

    def __call__(self, audio: np.ndarray) -> np.ndarray:
        """Log-mel ``[n_mels, frames]`` of the clip followed by 30 s of silence (so every window,
        the last one too, has 3000 frames)."""
        import torch

        padded = np.concatenate([audio.astype(np.float32, copy=False), np.zeros(N_FRAMES * HOP_LENGTH, np.float32)])
        with torch.inference_mode():
            stft = torch.stft(
                torch.from_numpy(padded), self.n_fft, HOP_LENGTH, window=self._window, return_complex=True
            )
            del padded
            # transformers' operations in its order; in place where a copy would only be freed
            # again (same values: ``x ** 2`` and ``pow_(2)``, ``maximum(x, m)`` and
            # ``clamp_(min=m)`` compute the same thing), so a long clip's spectrogram exists in
            # as few copies as possible at once
            magnitudes = stft[..., :-1].abs()
            del stft
            magnitudes.pow_(2)
            mel = self._filters.T @ magnitudes
            del magnitudes
            log_spec = mel.clamp_(min=1e-10).log10_()
            log_spec.clamp_(min=log_spec.max() - 8.0)
            return log_spec.add_(4.0).div_(4.0).numpy()
