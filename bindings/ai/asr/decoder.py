"""Whisper's text decoder, lean: incremental, batched decoding on the transformers weights.

Why not call ``WhisperDecoder.forward`` per token (what ``generate`` does): on a small CPU model the
per-token cost is mostly framework overhead -- cache objects, mask builders, output dataclasses,
three separate q/k/v projections -- and the 51864-wide output projection. This module runs the same
arithmetic with

* fused projections: self-attention q/k/v in one linear, cross-attention k/v in one linear, and
  the ``1/sqrt(head_dim)`` query scaling folded into the weights (a power of two, so exact);
* static key/value caches (one tensor per batch, written in place, no concatenation per token);
* cross-attention keys/values computed once per 30 s window (:meth:`LeanDecoder.cross_kv`) and
  kept with the window, so temperature fallback and the word-timestamp pass reuse them;
* rows that decode against *different* windows in one batch (several requests, one pass): the
  projections, the feed-forward layers and the output projection -- the weight-bound parts --
  run once for all rows; only cross-attention, which reads each row's own window, runs per row;
* weights stored as the ``quantize`` setting says: fp32; fp16 with fp32 arithmetic (fbgemm's fp16
  GEMM; exact for Whisper's fp16-published weights and half the bytes -- at one row per step the
  decoder is bound by reading its weights, 73 MB a token for tiny.en in fp32); or int8 dynamic
  quantization (a quarter of the bytes, small accuracy cost; layer norms folded into the int8
  layers they feed, :func:`fold_layer_norm`);
* in those two CPU formats, a token's pass through all layers is one TorchScript graph
  (:mod:`flarelet.bindings.ai.asr.token_step`): the same kernels without ~100 Python-level calls a token.

In fp32 the results equal transformers' decoder (same operations; the folded scaling is exact),
which ``tests/ai/test_speed_levers.py`` checks.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterable, Mapping, MutableMapping, Sequence
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn

from . import token_step


def _dynamic_qconfig():
    try:
        from torch.ao.quantization import per_channel_dynamic_qconfig
    except ImportError as exc:  # a torch without torch.ao.quantization
        raise RuntimeError(f"int8 quantization is not available in this torch: {exc}") from None
    engines = torch.backends.quantized.supported_engines
    if "fbgemm" not in engines and "x86" not in engines:
        raise RuntimeError("int8 quantization needs torch's fbgemm/x86 CPU backend")
    return per_channel_dynamic_qconfig


def _dynamic_linear(weight: torch.Tensor, bias: torch.Tensor | None, dtype: torch.dtype) -> nn.Module:
    """A dynamic quantized linear module around ``weight`` (``qint8`` per-channel quantized, or
    float for the fp16 format), packed once. ``from_float`` would first pack a placeholder weight
    of the full size (a transient copy as large as the layer): built here from a 1x1 one."""
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

    out_f, in_f = weight.shape
    with warnings.catch_warnings():  # torch.ao.quantization announces its successor (torchao)
        warnings.simplefilter("ignore")
        layer = DynamicLinear(1, 1, bias_=bias is not None, dtype=dtype)
        layer.set_weight_bias(weight, None if bias is None else bias.detach().float().clone())
    layer.in_features, layer.out_features = in_f, out_f
    return layer


def quantize_rows(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``weight`` ``[out, in]`` quantized as ``per_channel_dynamic_qconfig`` quantizes a linear
    layer's weight in ``from_float`` (per output row, symmetric int8): ``(int8 values, scales,
    zero points)``. Rows are independent, so a matrix may be quantized a block of rows at a time
    (:func:`quantize_blocks`)."""
    from torch.ao.nn.quantized.modules.utils import _quantize_weight

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        observer = _dynamic_qconfig().weight()
        w = weight.detach().float()
        observer(w)
        scales, zero_points = observer.calculate_qparams()
        q = _quantize_weight(w, observer)
    return q.int_repr(), scales.to(torch.double), zero_points.to(torch.int64)


def quantize_blocks(blocks: Iterable[torch.Tensor], out_f: int, in_f: int) -> torch.Tensor:
    """A per-channel ``qint8`` weight ``[out_f, in_f]`` from float row blocks (``[n, in_f]``
    tensors, in order, ``out_f`` rows in all): each block is quantized and let go before the next
    is made, so a large weight (the vocab x d output projection) never exists in float all at
    once. The same values as quantizing the whole matrix (per-row quantization, tested)."""
    values = torch.empty(out_f, in_f, dtype=torch.int8)
    scales = torch.empty(out_f, dtype=torch.double)
    zero_points = torch.empty(out_f, dtype=torch.int64)
    row = 0
    for block in blocks:
        n = block.shape[0]
        values[row : row + n], scales[row : row + n], zero_points[row : row + n] = quantize_rows(block)
        row += n
    if row != out_f:
        raise ValueError(f"quantize_blocks: {row} rows given, {out_f} expected")
    return torch._make_per_channel_quantized_tensor(values, scales, zero_points, 0)


def int8_linear(weight: torch.Tensor, bias: torch.Tensor | None) -> nn.Module:
    """An int8 dynamically quantized linear layer for ``weight`` ``[out, in]`` (fbgemm):
    weights int8 per output channel (what ``from_float`` with ``per_channel_dynamic_qconfig``
    makes), activations quantized per call. ``weight`` is read, not copied."""
    out_f, in_f = weight.shape
    return _dynamic_linear(quantize_blocks([weight], out_f, in_f), bias, torch.qint8)


def fp16_linear(weight: torch.Tensor, bias: torch.Tensor | None) -> nn.Module:
    """A linear layer with fp16 weights and fp32 arithmetic (fbgemm's fp16 GEMM): half the weight
    memory traffic of fp32, and exact for Whisper's weights, which are published in fp16."""
    _dynamic_qconfig()
    return _dynamic_linear(weight.detach().float(), bias, torch.float16)


def fold_layer_norm(
    ln: nn.LayerNorm, weight: torch.Tensor, bias: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``linear(ln(x))`` as ``linear'(plain_ln(x))``: the norm's scale and shift moved into the
    linear layer (``W' = W diag(gamma)``, ``b' = b + W beta``). Algebraically the same; done before
    int8 quantization because gamma is what gives a normalised activation its outlier channels
    (up to 17x in Whisper), and per-tensor int8 activations lose the small channels beside them."""
    w = weight * ln.weight[None, :]
    b = weight @ ln.bias
    return w, b if bias is None else b + bias


def _plain_norm(ln: nn.LayerNorm) -> nn.LayerNorm:
    return nn.LayerNorm(ln.normalized_shape, eps=ln.eps, elementwise_affine=False)


#: Decoder layers kept in float under ``linears="int8"``: the cross-attention key/value projection
#: (fp32: it runs once per 30 s window, as one large product, not per token, so int8 saves nothing
#: there, and its input -- the encoder's output -- has outlier channels) and the feed-forward output
#: layer (fp16 weights, exact: its input, after GELU, has outliers too). Pooled word error rate on 8
#: English clips, tiny.en: fp32 4.9 %, all-int8 8.2 % (one sonnet window skips two lines), these
#: two in float 4.2 % (README "Speed").
INT8_FLOAT_LAYERS = ("ckv", "fc2")


class _Layer(nn.Module):
    """One decoder layer: projections fused, in fp32, fp16 or int8 (layer norms folded into the
    int8 layers they feed, see :func:`fold_layer_norm`; :data:`INT8_FLOAT_LAYERS` stay fp16)."""

    def __init__(self, sd: MutableMapping[str, torch.Tensor], prefix: str, d: int, heads: int, kind: str) -> None:
        super().__init__()

        # taken out of the state dict as they are used, so fp32 sources go as soon as converted
        def w(name: str) -> torch.Tensor:
            return sd.pop(prefix + name + ".weight")

        def b(name: str) -> torch.Tensor:
            return sd.pop(prefix + name + ".bias")

        s = (d // heads) ** -0.5  # 1/8 for 64-wide heads: folding it into the weights is exact
        make = {"int8": int8_linear, "fp16": fp16_linear, "fp32": _linear}[kind]
        make_float = fp16_linear if kind == "int8" else make
        ln1, ln2, ln3 = (
            _norm(sd, prefix + "self_attn_layer_norm"),
            _norm(sd, prefix + "encoder_attn_layer_norm"),
            _norm(sd, prefix + "final_layer_norm"),
        )
        fc2_w, fc2_b = w("fc2"), b("fc2")
        zeros = torch.zeros_like(fc2_b)  # the key projections' absent biases
        qkv_w = torch.cat([w("self_attn.q_proj") * s, w("self_attn.k_proj"), w("self_attn.v_proj")])
        qkv_b = torch.cat([b("self_attn.q_proj") * s, zeros, b("self_attn.v_proj")])
        cq_w, cq_b = w("encoder_attn.q_proj") * s, b("encoder_attn.q_proj") * s
        fc1_w, fc1_b = w("fc1"), b("fc1")
        if kind == "int8":
            qkv_w, qkv_b = fold_layer_norm(ln1, qkv_w, qkv_b)
            cq_w, cq_b = fold_layer_norm(ln2, cq_w, cq_b)
            fc1_w, fc1_b = fold_layer_norm(ln3, fc1_w, fc1_b)
            ln1, ln2, ln3 = _plain_norm(ln1), _plain_norm(ln2), _plain_norm(ln3)
        self.ln1, self.ln2, self.ln3 = ln1, ln2, ln3
        self.qkv = make(qkv_w, qkv_b)
        self.cq = make(cq_w, cq_b)
        # cross-attention keys/values read the encoder output (no norm in front)
        kv_w = torch.cat([w("encoder_attn.k_proj"), w("encoder_attn.v_proj")])
        kv_b = torch.cat([zeros, b("encoder_attn.v_proj")])
        self.ckv = (_linear if "ckv" in INT8_FLOAT_LAYERS and kind == "int8" else make)(kv_w, kv_b)
        self.out1 = make(w("self_attn.out_proj"), b("self_attn.out_proj"))
        self.out2 = make(w("encoder_attn.out_proj"), b("encoder_attn.out_proj"))
        self.fc1 = make(fc1_w, fc1_b)
        self.fc2 = (make_float if "fc2" in INT8_FLOAT_LAYERS else make)(fc2_w, fc2_b)
        self.bind()

    def bind(self) -> None:
        """(Re)bind the per-token functions (:func:`direct`) to this layer's modules."""
        self.f_qkv, self.f_out1, self.f_cq = direct(self.qkv), direct(self.out1), direct(self.cq)
        self.f_out2, self.f_fc1, self.f_fc2 = direct(self.out2), direct(self.fc1), direct(self.fc2)


def direct(module: nn.Module):
    """``module`` as a plain function of its input: for torch's dynamic quantized linear layers,
    their kernel bound to the packed weights -- the module wrapper costs ~10 us a call (attribute
    lookups, hooks, a dtype check), a sixth of what a small layer's kernel takes at one token per
    step. Float modules are returned as they are (so ``.to(device)`` keeps working for them)."""
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

    if not isinstance(module, DynamicLinear):
        return module
    packed = module._packed_params._packed_params
    if module._packed_params.dtype == torch.qint8:
        op = torch.ops.quantized.linear_dynamic
        return lambda x: op(x, packed, True)  # reduce_range=True, as the module does
    op16 = torch.ops.quantized.linear_dynamic_fp16
    return lambda x: op16(x, packed)


def _linear(weight: torch.Tensor, bias: torch.Tensor | None) -> nn.Linear:
    out_f, in_f = weight.shape
    layer = nn.Linear(in_f, out_f, bias=bias is not None, device="meta")
    layer.weight = nn.Parameter(weight.detach(), requires_grad=False)
    if bias is not None:
        layer.bias = nn.Parameter(bias.detach(), requires_grad=False)
    return layer


def _norm(sd: Mapping[str, torch.Tensor], name: str) -> nn.LayerNorm:
    weight = sd[name + ".weight"]
    norm = nn.LayerNorm(weight.shape[0], device="meta")
    norm.weight = nn.Parameter(weight, requires_grad=False)
    norm.bias = nn.Parameter(sd[name + ".bias"], requires_grad=False)
    return norm


#: rows of the vocab x d token embedding converted at a time while loading (1.5 MB of fp32 for d=384)
TABLE_BLOCK_ROWS = 1024


def _shape(sd: Mapping[str, torch.Tensor], key: str) -> tuple[int, ...]:
    """A tensor's shape without reading it where ``sd`` can say (a lazy state dict)."""
    shape = getattr(sd, "shape", None)
    return tuple(shape(key)) if shape is not None else tuple(sd[key].shape)


def _row_blocks(sd: Mapping[str, torch.Tensor], key: str) -> Iterable[torch.Tensor]:
    """A large tensor a block of rows at a time: read alone from the file when ``sd`` can
    (:class:`~flarelet.bindings.ai.asr.state_file.LazyState`), else sliced from memory."""
    n = _shape(sd, key)[0]
    rows = getattr(sd, "rows", None)
    if rows is not None:
        for start in range(0, n, TABLE_BLOCK_ROWS):
            yield rows(key, start, min(n, start + TABLE_BLOCK_ROWS))
        return
    whole = sd[key]
    for start in range(0, n, TABLE_BLOCK_ROWS):
        yield whole[start : start + TABLE_BLOCK_ROWS]


def _fp16_table(sd: Mapping[str, torch.Tensor], key: str) -> torch.Tensor:
    """The token embedding in fp16 (exact: Whisper's weights are published in fp16), converted a
    block of rows at a time."""
    table = torch.empty(_shape(sd, key), dtype=torch.float16)
    row = 0
    for block in _row_blocks(sd, key):
        table[row : row + block.shape[0]] = block
        row += block.shape[0]
    return table


def _embedding(sd: Mapping[str, torch.Tensor], key: str) -> Any:
    """The token embedding lookup when the output projection has its own (int8 / fp16) copy of
    the table: rows read from the weights file on demand where the state dict can say where they
    lie (:class:`~flarelet.bindings.ai.asr.state_file.RowFile`: the exact float rows, without 40 MB
    of fp16 table resident for tiny.en, 51 MB for base), else an fp16 table in memory (exact:
    Whisper's weights are published in fp16)."""
    from .state_file import RowFile

    entry = getattr(sd, "entry", lambda _key: None)(key)
    if entry is not None and entry.dtype in (torch.float32, torch.float16, torch.bfloat16):
        return RowFile(entry)
    return nn.Embedding.from_pretrained(_fp16_table(sd, key), freeze=True)


def _int8_projection(sd: Mapping[str, torch.Tensor], key: str, ln: nn.LayerNorm) -> nn.Module:
    """The output projection as an int8 layer with the final layer norm folded in
    (:func:`fold_layer_norm`), quantized a block of rows at a time (its rows are independent:
    the same values as folding and quantizing the whole matrix, tested)."""
    shape = _shape(sd, key)
    biases: list[torch.Tensor] = []

    def folded() -> Iterable[torch.Tensor]:
        for block in _row_blocks(sd, key):
            w, b = fold_layer_norm(ln, block.float(), None)
            biases.append(b)
            yield w

    qweight = quantize_blocks(folded(), shape[0], shape[1])
    return _dynamic_linear(qweight, torch.cat(biases), torch.qint8)


class LeanDecoder(nn.Module):
    """Whisper's text decoder from a transformers-format state dict (``model.decoder.*``; the
    entries it converts are taken out of ``sd``, so their float originals can go).

    ``linears``: ``"fp32"``, ``"fp16"`` or ``"int8"`` for the layers' projections and feed-forward
    layers. ``proj``: the output projection (tied to the token embedding, vocab x d: the largest
    weight read per token) in ``"fp32"``, ``"fp16"`` (fp16 weights, fp32 arithmetic; exact for
    Whisper's fp16-published weights) or ``"int8"``. Unless fp32, embedding lookups read their
    rows from the weights file (:func:`_embedding`), or else from an fp16 copy of the table.
    The weights are taken from ``sd`` (a dict or a lazy
    :class:`~flarelet.bindings.ai.asr.state_file.LazyState`) as they are converted.
    """

    def __init__(
        self, sd: MutableMapping[str, torch.Tensor], config: Any, linears: str = "fp32", proj: str = "fp32"
    ) -> None:
        super().__init__()
        p = "model.decoder."
        self.d = int(config.d_model)
        self.heads = int(config.decoder_attention_heads)
        self.head_dim = self.d // self.heads
        self.n_ctx = int(config.max_target_positions)
        self.linears, self.proj_kind = linears, proj
        with torch.no_grad():
            self.positions = nn.Parameter(sd[p + "embed_positions.weight"], requires_grad=False)
            self.ln = _norm(sd, p + "layer_norm")
            # a ModuleList (registered as a submodule) that the type checker sees as the _Layers it holds
            self.layers = cast(
                "Sequence[_Layer]",
                nn.ModuleList(
                    [
                        _Layer(sd, f"{p}layers.{i}.", self.d, self.heads, linears)
                        for i in range(int(config.decoder_layers))
                    ]
                ),
            )
            table_key = p + "embed_tokens.weight"
            # the output projection is tied to the embedding unless the folder says otherwise
            out_key = "proj_out.weight" if "proj_out.weight" in sd else table_key
            if proj == "fp32":
                table = sd.pop(table_key)
                self.embed: Any = nn.Embedding.from_pretrained(table, freeze=True)
                self.proj: nn.Module = _linear(sd.pop(out_key, table), None)
            else:
                self.embed = _embedding(sd, table_key)
                if proj == "int8":
                    self.proj = _int8_projection(sd, out_key, self.ln)
                    self.ln = _plain_norm(self.ln)
                else:
                    self.proj = fp16_linear(sd.pop(out_key), None)
                sd.pop(table_key, None)
                sd.pop(out_key, None)
        self.plan = token_step.StepPlan.of(self.layers)  # one scripted graph per token, where the kernels allow

    # -- per window -------------------------------------------------------------------------------

    def cross_kv(self, enc: torch.Tensor) -> CrossKV:
        """Cross-attention keys and values of one encoder output ``[1, frames, d]``."""
        _, frames, _ = enc.shape
        keys_t = values = None
        # layer by layer into the final layout (not all layers' products stacked, then permuted
        # into copies: that held three copies of an 18 MB result at once for tiny.en)
        for li, layer in enumerate(self.layers):
            kv = layer.ckv(enc[0]).view(frames, 2, self.heads, self.head_dim)
            if keys_t is None or values is None:
                n = len(self.layers)
                keys_t = kv.new_empty(n, self.heads, self.head_dim, frames)  # [layers, heads, head_dim, frames]
                values = kv.new_empty(n, self.heads, frames, self.head_dim)  # [layers, heads, frames, head_dim]
            keys_t[li] = kv[:, 0].permute(1, 2, 0)
            values[li] = kv[:, 1].permute(1, 0, 2)
            del kv
        assert keys_t is not None and values is not None
        return CrossKV(keys_t=keys_t, values=values)

    # -- forward ----------------------------------------------------------------------------------

    def forward_tokens(
        self,
        ids: torch.Tensor,
        positions: torch.Tensor,
        cache_k: torch.Tensor,
        cache_v: torch.Tensor,
        cross: Sequence[CrossKV],
        mask: torch.Tensor | None,
        kv_len: int,
        attention_layers: Sequence[int] = (),
        position: int | None = None,
    ) -> tuple[torch.Tensor, dict[int, list[torch.Tensor]]]:
        """Run ``ids`` ``[B, T]`` through the decoder; returns the final hidden states ``[B, T, d]``.

        ``positions`` ``[B, T]``: absolute positions (where keys/values are written in the caches
        ``[layers, B, heads, ctx, head_dim]``). ``T > 1`` is a prefill from position 0. Attention
        reads the first ``kv_len`` cache slots, through ``mask`` ``[B, 1, T, kv_len]`` (True =
        attend) when given, else all of them (``T == 1``) or causally (prefill). ``cross[b]`` is row ``b``'s
        :meth:`cross_kv`. For layers in
        ``attention_layers`` the cross-attention weights (per row ``[heads, T, frames]``) are
        returned too (the word-timestamp alignment heads). ``position``: for ``T == 1``, the one
        position every row is at, when they all are (the cache write is then a plain slice).
        """
        B, T = ids.shape
        x = self.embed(ids).to(self.positions.dtype) + self.positions[positions]
        maps: dict[int, list[torch.Tensor]] = {}
        rows = torch.arange(B, device=ids.device) if T == 1 and position is None else None
        shared = all(c is cross[0] for c in cross)  # beams of one window
        for li, layer in enumerate(self.layers):
            h = layer.ln1(x)
            qkv = layer.f_qkv(h).view(B, T, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
            q, k, v = qkv[0], qkv[1], qkv[2]
            ck, cv = cache_k[li], cache_v[li]
            if T == 1 and position is not None:
                ck[:, :, position] = k[:, :, 0]
                cv[:, :, position] = v[:, :, 0]
            elif T == 1:
                ck[rows, :, positions[:, 0]] = k[:, :, 0]
                cv[rows, :, positions[:, 0]] = v[:, :, 0]
            else:
                ck[:, :, :T] = k
                cv[:, :, :T] = v
            a = F.scaled_dot_product_attention(
                q, ck[:, :, :kv_len], cv[:, :, :kv_len], attn_mask=mask, is_causal=mask is None and T > 1, scale=1.0
            )
            x = x + layer.f_out1(a.transpose(1, 2).reshape(B, T, self.d))

            h = layer.ln2(x)
            q = layer.f_cq(h).view(B, T, self.heads, self.head_dim).transpose(1, 2)
            # Cross-attention as two matrix products over keys stored transposed: at one query per
            # row this reads each window's keys and values once, straight through (the fused
            # attention kernel walks them in blocks: 1.4x slower here, where these reads are a
            # third of a token's cost).
            if li in attention_layers:
                outs = []
                maps[li] = []
                for b in range(B):
                    w = torch.softmax(q[b] @ cross[b].keys_t[li], dim=-1)
                    maps[li].append(w)
                    outs.append(w @ cross[b].values[li])
                a = torch.stack(outs)
            elif B == 1 or shared:
                a = torch.softmax(q @ cross[0].keys_t[li], dim=-1) @ cross[0].values[li]
            else:
                a = torch.stack(
                    [torch.softmax(q[b] @ cross[b].keys_t[li], dim=-1) @ cross[b].values[li] for b in range(B)]
                )
            x = x + layer.f_out2(a.transpose(1, 2).reshape(B, T, self.d))

            h = layer.ln3(x)
            x = x + layer.f_fc2(F.gelu(layer.f_fc1(h)))
        return self.ln(x), maps

    def forward_token(
        self,
        ids: torch.Tensor,
        positions: torch.Tensor,
        cache_k: torch.Tensor,
        cache_v: torch.Tensor,
        cross: Sequence[CrossKV],
        mask: torch.Tensor | None,
        kv_len: int,
        position: int | None = None,
    ) -> torch.Tensor:
        """One token per row: ``ids``/``positions`` ``[B]`` -> final hidden states ``[B, d]``;
        :meth:`forward_tokens`' arithmetic, as one TorchScript graph where :attr:`plan` allows
        (:mod:`flarelet.bindings.ai.asr.token_step`), else eagerly."""
        plan = self.plan
        fn = token_step.SCRIPTED if plan is not None else None
        if fn is None or plan is None:
            hidden, _ = self.forward_tokens(
                ids[:, None], positions[:, None], cache_k, cache_v, cross, mask, kv_len, position=position
            )
            return hidden[:, 0]
        shared = len(cross) == 1 or all(c is cross[0] for c in cross)
        rows = cross[:1] if shared else cross
        x = self.embed(ids).to(self.positions.dtype) + self.positions[positions]
        with torch.jit.optimized_execution(False):  # see token_step.SCRIPTED
            x = fn(
                x,
                positions,
                -1 if position is None else position,
                mask,
                kv_len,
                cache_k,
                cache_v,
                [c.keys_t for c in rows],
                [c.values for c in rows],
                plan.packed,
                plan.int8,
                plan.norms,
                self.heads,
                plan.eps,
            )
        return self.ln(x)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.proj(hidden).float()


class StepPolicy:
    """Whether a decoding step splits its output projection (vocab x d: the largest weight a step
    reads) across the extra threads now: measured, not assumed.

    Why measured: a step is bound by memory reads, and a second core that is free brings its own
    bandwidth, so on an idle machine the split step is faster (tiny.en: 5.7 -> 5.1 ms a step, median);
    but while anything else keeps that core busy, the split waits for a time slice and the step takes
    1.5x as long. So each mode's step time is tracked (a moving average of the mode in use), the
    fastest is used, and the others are re-tried in turn for a few steps out of every
    ``PROBE_EVERY``, so a change in the machine's load is noticed within a second or so of
    decoding. One policy per batch size (rows cost differently). Splitting the layers too (their
    cross-attention reads and small int8 products) was slower even on an idle machine -- 7.3 ms a
    step, 14.9 vs 11.8 ms at 4 rows: with threads that sleep between operations, waking them for
    each small operation costs more than the split saves -- so it is not a mode.
    """

    PROBE_EVERY = 64
    PROBE_STEPS = 3  # the first warms the other mode up; the mean of the rest replaces its average
    ALPHA = 0.2  # moving average of the mode in use

    def __init__(self, modes: int = 2) -> None:
        self.avg: list[float | None] = [None] * modes
        self.steps = 0
        self._probe: list[float] = []

    def _probing(self) -> bool:
        return self.steps % self.PROBE_EVERY < self.PROBE_STEPS

    def _best(self) -> int:
        return min(range(len(self.avg)), key=lambda m: self.avg[m] or 0.0)

    def choose(self) -> int:
        self.steps += 1
        for mode, avg in enumerate(self.avg):
            if avg is None:  # measure each mode once to start with
                return mode
        best = self._best()
        if not self._probing():
            return best
        others = [m for m in range(len(self.avg)) if m != best]
        return others[(self.steps // self.PROBE_EVERY) % len(others)]

    def record(self, mode: int, seconds: float) -> None:
        old = self.avg[mode]
        if old is None:
            self.avg[mode] = seconds
        elif self._probing():
            phase = self.steps % self.PROBE_EVERY
            if phase == 0:
                self._probe = []
            else:
                self._probe.append(seconds)
            if phase == self.PROBE_STEPS - 1 and self._probe:  # a fresh measurement, not a blend
                self.avg[mode] = sum(self._probe) / len(self._probe)
        else:
            self.avg[mode] = old + self.ALPHA * (seconds - old)


NARROW, WIDE_PROJ = 0, 1
#: one per batch size and process: all decoding shares the machine whose load it measures
_STEP_POLICIES: dict[int, StepPolicy] = {}


def step_policy(rows: int) -> StepPolicy:
    return _STEP_POLICIES.setdefault(min(rows, 8), StepPolicy())


class _threads:
    """``torch.set_num_threads(n)`` for a block, then back (OpenMP's setting is per OS thread, so
    this touches only the calling worker)."""

    __slots__ = ("n", "prev")

    def __init__(self, n: int) -> None:
        self.n = n
        self.prev = 0

    def __enter__(self) -> None:
        if self.n > 1:
            self.prev = torch.get_num_threads()
            if self.prev != self.n:
                torch.set_num_threads(self.n)

    def __exit__(self, *exc: object) -> None:
        if self.n > 1 and self.prev != self.n:
            torch.set_num_threads(self.prev)


class CrossKV:
    """One window's cross-attention keys (transposed) and values, for every decoder layer."""

    __slots__ = ("keys_t", "values")

    def __init__(self, keys_t: torch.Tensor, values: torch.Tensor) -> None:
        self.keys_t = keys_t  # [layers, heads, head_dim, frames]
        self.values = values  # [layers, heads, frames, head_dim]

    @property
    def dtype(self) -> torch.dtype:
        return self.values.dtype

    @property
    def device(self) -> torch.device:
        return self.values.device


class DecodeBatch:
    """Key/value caches of ``B`` rows decoding together, each against its own window."""

    def __init__(self, lean: LeanDecoder, cross: Sequence[CrossKV], max_len: int, threads: int = 1) -> None:
        """``threads``: CPU threads for the wide operations -- whole prompts (many tokens at once),
        and per step the output projection when :class:`StepPolicy` finds that faster -- while the
        per-token layers stay on one (the engine's thread policy)."""
        self.lean = lean
        self.threads = threads if lean.positions.device.type == "cpu" else 1
        self.cross = list(cross)
        self.B = len(self.cross)
        ref = self.cross[0]
        shape = (len(lean.layers), self.B, lean.heads, min(max_len, lean.n_ctx), lean.head_dim)
        # zeros, not empty: rows at different lengths attend through a mask, and a masked slot
        # still enters the product with weight 0 -- 0 x NaN (leftover memory) is NaN
        self.k = torch.zeros(shape, dtype=ref.dtype, device=ref.device)
        self.v = torch.zeros(shape, dtype=ref.dtype, device=ref.device)
        self.lengths = torch.zeros(self.B, dtype=torch.long, device=ref.device)
        self.device = ref.device

    def forward_prompts(
        self, prompts: Sequence[Sequence[int]], attention_layers: Sequence[int] = ()
    ) -> tuple[torch.Tensor, dict[int, list[torch.Tensor]]]:
        """Feed each row's whole prompt from position 0 (rows padded to the longest); returns the
        hidden states ``[B, P, d]`` and the cross-attention maps of ``attention_layers``."""
        B = self.B
        P = max(len(p) for p in prompts)
        ids = torch.zeros(B, P, dtype=torch.long)
        for i, p in enumerate(prompts):
            ids[i, : len(p)] = torch.tensor(list(p), dtype=torch.long)
        ids = ids.to(self.device)
        lengths = torch.tensor([len(p) for p in prompts], dtype=torch.long, device=self.device)
        positions = torch.arange(P, device=self.device).expand(B, P)
        mask = None
        if bool((lengths != P).any()):
            causal = torch.ones(P, P, dtype=torch.bool, device=self.device).tril()
            keys = torch.arange(P, device=self.device)[None, :] < lengths[:, None]
            # padding queries would see no key at all (NaN); let them see themselves
            mask = (causal[None] & keys[:, None, :]) | torch.eye(P, dtype=torch.bool, device=self.device)[None]
            mask = mask[:, None]
        with _threads(self.threads):
            hidden, maps = self.lean.forward_tokens(
                ids, positions, self.k, self.v, self.cross, mask, P, attention_layers
            )
        self.lengths = lengths
        return hidden, maps

    def logits(self, hidden: torch.Tensor, wide: bool = True) -> torch.Tensor:
        with _threads(self.threads if wide else 1):
            return self.lean.logits(hidden)

    def prefill(self, prompts: Sequence[Sequence[int]], pick: Sequence[Sequence[int]]) -> torch.Tensor:
        """Feed each row's prompt; return the logits ``[B, len(pick[b]), vocab]`` at the positions
        ``pick[b]`` of row ``b`` (all rows pick the same number of positions)."""
        hidden, _ = self.forward_prompts(prompts)
        index = torch.tensor([list(p) for p in pick], dtype=torch.long, device=self.device)
        return self.logits(hidden[torch.arange(self.B, device=self.device)[:, None], index])

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        """Feed one token per row ``[B]``; return the next logits ``[B, vocab]``."""
        # rows that finished stay until the batch shrinks; keep their (ignored) writes in bounds
        pos = self.lengths.clamp(max=self.k.shape[3] - 1)
        K = int(pos.max()) + 1
        mask = None
        uniform = self.B == 1 or not bool((pos != K - 1).any())
        if not uniform:  # rows at different lengths
            mask = (torch.arange(K, device=self.device)[None, :] <= pos[:, None])[:, None, None, :]
        policy = step_policy(self.B) if self.threads > 1 else None
        mode = policy.choose() if policy is not None else NARROW
        started = time.perf_counter()
        hidden = self.lean.forward_token(
            tokens, pos, self.k, self.v, self.cross, mask, K, position=K - 1 if uniform else None
        )
        logits = self.logits(hidden, mode == WIDE_PROJ)
        if policy is not None:
            policy.record(mode, time.perf_counter() - started)
        self.lengths = pos + 1
        return logits

    def reorder(self, sources: Sequence[int]) -> None:
        """Row ``b`` continues from row ``sources[b]`` (beam search): copy the caches over."""
        idx = torch.tensor(list(sources), dtype=torch.long, device=self.device)
        K = int(self.lengths.max())
        self.k[:, :, :, :K] = self.k[:, idx, :, :K]
        self.v[:, :, :, :K] = self.v[:, idx, :, :K]
        self.lengths = self.lengths.index_select(0, idx)
        self.cross = [self.cross[i] for i in sources]

    def keep(self, rows: Sequence[int]) -> None:
        """Drop finished rows, so the remaining ones stop paying for them."""
        idx = torch.tensor(list(rows), dtype=torch.long, device=self.device)
        self.k = self.k.index_select(1, idx)
        self.v = self.v.index_select(1, idx)
        self.lengths = self.lengths.index_select(0, idx)
        self.cross = [self.cross[i] for i in rows]
        self.B = len(self.cross)
