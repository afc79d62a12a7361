"""Whisper's audio encoder as a lean torch module, and reading a Hugging Face folder's weights.

Why not ``WhisperForConditionalGeneration``: importing transformers' model classes pulls in its
generation and compilation machinery (torch._dynamo, sympy: ~85 MB of resident memory before a
single weight is loaded), and its loader maps ``model.safetensors`` so that the file stays
resident beside the weights actually used. The engine needs two forward passes; this module and
:mod:`flarelet.bindings.ai.asr.decoder` are those passes, operation for operation as transformers computes them
(``tests/ai/test_speed_levers.py`` checks the outputs against transformers' model), reading the
same folder: ``config.json`` + ``model.safetensors`` (or sharded safetensors; other formats go
through transformers once).
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .decoder import int8_linear


def open_state(folder: Path) -> MutableMapping[str, torch.Tensor]:
    """The model's tensors by transformers' names (``model.encoder.conv1.weight``, ...): for
    safetensors folders a :class:`~flarelet.bindings.ai.asr.state_file.LazyState` that reads each
    tensor when a module takes it (close it when done), so loading never holds the whole float
    model; other formats (``pytorch_model.bin``, ...) through transformers, once, in memory."""
    from .state_file import LazyState, safetensors_files

    folder = Path(folder)
    files = safetensors_files(folder)
    if files is not None:
        return LazyState(files)
    from transformers import WhisperForConditionalGeneration

    model = WhisperForConditionalGeneration.from_pretrained(folder, dtype=torch.float32, local_files_only=True)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


class _EncoderLayer(nn.Module):
    def __init__(
        self, sd: Mapping[str, torch.Tensor], prefix: str, d: int, heads: int, int8_skip: Sequence[str] | None
    ) -> None:
        super().__init__()
        self.heads = heads
        self.head_dim = d // heads
        self.scaling = self.head_dim**-0.5

        def linear(name: str) -> nn.Module:
            int8 = int8_skip is not None and not any(name.endswith(x) for x in int8_skip)
            return _linear(sd, prefix + name, int8)

        self.ln1 = _norm(sd, prefix + "self_attn_layer_norm", d)
        self.q_proj = linear("self_attn.q_proj")
        self.k_proj = linear("self_attn.k_proj")
        self.v_proj = linear("self_attn.v_proj")
        self.out_proj = linear("self_attn.out_proj")
        self.ln2 = _norm(sd, prefix + "final_layer_norm", d)
        self.fc1 = linear("fc1")
        self.fc2 = linear("fc2")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, d = x.shape
        h = self.ln1(x)
        shape = (B, T, self.heads, self.head_dim)
        # transformers' order: the query is scaled after its projection, attention unscaled
        q = (self.q_proj(h) * self.scaling).view(shape).transpose(1, 2)
        k = self.k_proj(h).view(shape).transpose(1, 2)
        v = self.v_proj(h).view(shape).transpose(1, 2)
        a = F.scaled_dot_product_attention(q, k, v, scale=1.0)
        x = x + self.out_proj(a.transpose(1, 2).reshape(B, T, d))
        x = x + self.fc2(F.gelu(self.fc1(self.ln2(x))))
        if x.dtype == torch.float16:  # as transformers does, so fp16 cannot overflow to inf
            limit = torch.finfo(x.dtype).max - 1000
            x = torch.clamp(x, min=-limit, max=limit)
        return x


class LeanEncoder(nn.Module):
    """Whisper's encoder: two convolutions, sinusoidal positions, pre-norm transformer layers.

    ``int8_skip``: None for float linear layers (the state dict's dtype); else int8 dynamically
    quantized ones (CPU), each quantized as it is read, except those whose name ends with one of
    ``int8_skip`` (see engine.ENCODER_FLOAT_LAYERS)."""

    def __init__(self, sd: Mapping[str, torch.Tensor], config: Any, int8_skip: Sequence[str] | None = None) -> None:
        super().__init__()
        d = int(config.d_model)
        p = "model.encoder."
        w1, w2 = sd[p + "conv1.weight"], sd[p + "conv2.weight"]
        self.conv1 = nn.Conv1d(w1.shape[1], d, kernel_size=3, padding=1, device="meta")
        self.conv2 = nn.Conv1d(d, d, kernel_size=3, stride=2, padding=1, device="meta")
        self.conv1.weight, self.conv1.bias = _param(w1), _param(sd[p + "conv1.bias"])
        self.conv2.weight, self.conv2.bias = _param(w2), _param(sd[p + "conv2.bias"])
        self.positions = _param(sd[p + "embed_positions.weight"])
        self.layers = nn.ModuleList(
            [
                _EncoderLayer(sd, f"{p}layers.{i}.", d, int(config.encoder_attention_heads), int8_skip)
                for i in range(int(config.encoder_layers))
            ]
        )
        self.ln = _norm(sd, p + "layer_norm", d)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """``[B, n_mels, 3000]`` log-mel frames -> ``[B, 1500, d]``."""
        x = F.gelu(self.conv1(features))
        x = F.gelu(self.conv2(x))
        x = x.permute(0, 2, 1) + self.positions
        for layer in self.layers:
            x = layer(x)
        return self.ln(x)


def _param(t: torch.Tensor) -> nn.Parameter:
    return nn.Parameter(t, requires_grad=False)


def _linear(sd: Mapping[str, torch.Tensor], name: str, int8: bool = False) -> nn.Module:
    w = sd[name + ".weight"]
    b = sd.get(name + ".bias")
    if int8:
        return int8_linear(w, b)
    layer = nn.Linear(w.shape[1], w.shape[0], bias=b is not None, device="meta")
    layer.weight = _param(w)
    if b is not None:
        layer.bias = _param(b)
    return layer


def _norm(sd: Mapping[str, torch.Tensor], name: str, d: int) -> nn.LayerNorm:
    norm = nn.LayerNorm(d, device="meta")
    norm.weight, norm.bias = _param(sd[name + ".weight"]), _param(sd[name + ".bias"])
    return norm
