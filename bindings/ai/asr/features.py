"""Log-mel features: what Whisper's encoder reads, computed as transformers computes them.

``LogMel(feature_extractor)(audio)`` runs ``WhisperFeatureExtractor._torch_extract_fbank_features``
operation for operation (so the features are identical, which the tests check against the
extractor), on the whole clip at once and without its padding and batching copies. The model's
own ``n_fft`` and mel filters are used, so 80- and 128-bin models (large-v3) both work.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .options import HOP_LENGTH, N_FRAMES


class LogMel:
    """The log-mel transform of one model's feature extractor."""

    def __init__(self, extractor: Any) -> None:
        import torch

        if extractor.dither:
            raise ValueError(f"feature extractor dither={extractor.dither} is not supported")
        self.n_fft = int(extractor.n_fft)
        self.n_mels = int(extractor.feature_size)
        self._window = torch.hann_window(self.n_fft)
        self._filters = torch.from_numpy(np.asarray(extractor.mel_filters, dtype=np.float32))

    def __call__(self, audio: np.ndarray) -> np.ndarray:
        """Log-mel ``[n_mels, frames]`` of the clip followed by 30 s of silence (so every window,
        the last one too, has 3000 frames)."""
        import torch

        padded = np.concatenate([audio.astype(np.float32, copy=False), np.zeros(N_FRAMES * HOP_LENGTH, np.float32)])
        with torch.inference_mode():
            stft = torch.stft(
                torch.from_numpy(padded), self.n_fft, HOP_LENGTH, window=self._window, return_complex=True
            )
            magnitudes = (stft[..., :-1].abs() ** 2).contiguous()
            del stft
            mel = self._filters.T @ magnitudes
            del magnitudes
            log_spec = torch.clamp(mel, min=1e-10).log10()
            log_spec = torch.maximum(log_spec, log_spec.max() - 8.0)
            return ((log_spec + 4.0) / 4.0).numpy()
