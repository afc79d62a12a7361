"""One decoding step through all of the decoder's layers as a single TorchScript graph.

Why: at one token per row and step, tiny.en's four decoder layers are ~100 small operations, each
a few microseconds of kernel wrapped in ~15-20 us of Python and dispatcher. Run eagerly a step's
layers took 5-6 ms on this 2-core CPU; as one scripted graph 3.1-3.7 ms, with bit-identical
results (the same kernels in the same order; ``tests/ai/test_speed_levers.py`` compares the two).

It covers the CPU weight formats (``quantize = "int8"`` or ``"fp16"``: every per-token linear
layer is one of fbgemm's packed kernels); fp32 and GPU decoding stay eager in
:meth:`flarelet.bindings.ai.asr.decoder.LeanDecoder.forward_tokens`. TorchScript is deprecated in favour of
``torch.compile``, which needs a C++ toolchain at run time and recompiles as the key/value length
grows every step; torch is pinned, and if scripting ever fails the eager path is used (logged once).

No ``from __future__ import annotations`` here: TorchScript reads the annotations.
"""

import logging
import warnings
from typing import Any

import torch
import torch.nn.functional as F

log = logging.getLogger("flarelet.ai")

#: packed kernels per decoder layer, in order: self-attention q/k/v (fused), its output,
#: cross-attention query, its output, feed-forward in, feed-forward out
LINEARS = ("qkv", "out1", "cq", "out2", "fc1", "fc2")

#: The packed-weights annotations below name ``torch.classes.quantized.LinearPackedParamsBase``, a TorchScript class
#: that exists only at run time (mypy cannot see it: hence the ignores). TorchScript reads these annotations from
#: the source and needs that exact class: an alias to ``Any`` makes scripting fail and the decoder run eagerly.


def _linear(
    x: torch.Tensor,
    packed: torch.classes.quantized.LinearPackedParamsBase,  # type: ignore[name-defined]
    int8: bool,
) -> torch.Tensor:
    if int8:
        return torch.ops.quantized.linear_dynamic(x, packed, True)  # reduce_range, as the module does
    return torch.ops.quantized.linear_dynamic_fp16(x, packed)


def token_layers(
    x: torch.Tensor,
    positions: torch.Tensor,
    position: int,
    mask: torch.Tensor | None,
    kv_len: int,
    cache_k: torch.Tensor,
    cache_v: torch.Tensor,
    keys_t: list[torch.Tensor],
    values: list[torch.Tensor],
    packed: list[torch.classes.quantized.LinearPackedParamsBase],  # type: ignore[name-defined]
    int8: list[bool],
    norms: list[torch.Tensor | None],
    heads: int,
    eps: float,
) -> torch.Tensor:
    """``x`` ``[B, d]`` (embedded tokens) through every layer; the arithmetic of
    ``LeanDecoder.forward_tokens`` for one token per row. ``position`` >= 0: every row writes its
    keys/values there; else row ``b`` writes at ``positions[b]``. ``keys_t``/``values``: one entry
    shared by all rows, or one per row. ``packed``/``norms``: 6 kernels / 6 norm tensors (or None)
    per layer; ``int8[j]``: whether kernel ``j`` is int8 (else fp16)."""
    B = x.shape[0]
    d = x.shape[1]
    head_dim = d // heads
    rows = torch.arange(B)
    for li in range(cache_k.shape[0]):
        p = li * 6
        h = F.layer_norm(x, [d], norms[p], norms[p + 1], eps)
        t = _linear(h, packed[p], int8[0]).view(B, 3, heads, head_dim)
        ck = cache_k[li]
        cv = cache_v[li]
        if position >= 0:
            ck[:, :, position] = t[:, 1]
            cv[:, :, position] = t[:, 2]
        else:
            ck[rows, :, positions] = t[:, 1]
            cv[rows, :, positions] = t[:, 2]
        a = F.scaled_dot_product_attention(
            t[:, 0].unsqueeze(2), ck[:, :, :kv_len], cv[:, :, :kv_len], attn_mask=mask, scale=1.0
        )
        x = x + _linear(a.reshape(B, d), packed[p + 1], int8[1])

        h = F.layer_norm(x, [d], norms[p + 2], norms[p + 3], eps)
        q = _linear(h, packed[p + 2], int8[2]).view(B, heads, 1, head_dim)
        if len(keys_t) == 1:
            a = torch.softmax(q @ keys_t[0][li], dim=-1) @ values[0][li]
        else:
            outs: list[torch.Tensor] = []
            for b in range(B):
                outs.append(torch.softmax(q[b] @ keys_t[b][li], dim=-1) @ values[b][li])
            a = torch.stack(outs)
        x = x + _linear(a.reshape(B, d), packed[p + 3], int8[3])

        h = F.layer_norm(x, [d], norms[p + 4], norms[p + 5], eps)
        x = x + _linear(F.gelu(_linear(h, packed[p + 4], int8[4])), packed[p + 5], int8[5])
    return x


def _script() -> Any:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "torch.jit.script is deprecated" (see the module doc)
            return torch.jit.script(token_layers)
    except Exception as exc:  # a torch without TorchScript: the eager path does the same work
        log.warning("decoder: TorchScript step unavailable (%s); decoding eagerly", exc)
        return None


#: :func:`token_layers` scripted, or None where TorchScript fails. Scripted at import, not on first
#: use: TorchScript reads this file's source again, which must still be the one imported. Call it
#: under ``torch.jit.optimized_execution(False)`` (a per-thread setting): the gain is the Python and
#: dispatch it skips, not graph rewriting, and the plain graph runs exactly the eager step's kernels
#: in order.
SCRIPTED: Any = _script()


class StepPlan:
    """A decoder's per-layer kernels and norms, flattened as :func:`token_layers` takes them."""

    __slots__ = ("packed", "int8", "norms", "eps")

    def __init__(self, packed: list, int8: list[bool], norms: list[torch.Tensor | None], eps: float) -> None:
        self.packed = packed
        self.int8 = int8
        self.norms = norms
        self.eps = eps

    @classmethod
    def of(cls, layers: Any) -> "StepPlan | None":
        """The plan for ``layers`` (decoder layers with ``qkv`` ... ``fc2`` and ``ln1``..``ln3``),
        or None unless every per-token linear is an fbgemm dynamic kernel (int8 or fp16)."""
        from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

        packed: list = []
        kinds: list[list[bool]] = []
        norms: list[torch.Tensor | None] = []
        eps = None
        for layer in layers:
            mods = [getattr(layer, name) for name in LINEARS]
            if not all(isinstance(m, DynamicLinear) for m in mods):
                return None
            packed += [m._packed_params._packed_params for m in mods]
            kinds.append([m._packed_params.dtype == torch.qint8 for m in mods])
            for ln in (layer.ln1, layer.ln2, layer.ln3):
                norms += [ln.weight, ln.bias]
                if eps is not None and ln.eps != eps:
                    return None
                eps = ln.eps
        if not kinds or eps is None or any(k != kinds[0] for k in kinds):
            return None
        return cls(packed, kinds[0], norms, float(eps))
