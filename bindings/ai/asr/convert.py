"""Convert a CTranslate2 Whisper model into a Hugging Face ``WhisperForConditionalGeneration`` folder.

The conversion is exact: float16 -> float32 is lossless, nothing is transposed (linear weights are
``[out, in]`` in both formats), fused q/k/v and k/v tensors are split by rows, and the k-projection
biases CTranslate2 stores as zeros are dropped (asserted zero). Greedy decoding on the converted
folder gives the same token ids as CTranslate2 on the same features (tests/ai/test_convert.py).
The name mapping is :func:`build_state_dict`; the config and tokenizer pitfalls are said where they are handled.

Needs numpy, safetensors and transformers' config/tokenizer/feature-extractor classes -- not torch.

Output folder::

    model.safetensors          fp32 (loads as fp32 by default; fp16 files load as fp16 in transformers 5)
    config.json                WhisperConfig inferred from tensor shapes + token ids
    generation_config.json     mirrors openai/whisper-*: alignment heads, suppress lists, lang/task ids
    tokenizer.json, tokenizer_config.json   CT2's tokenizer + 1501 timestamp tokens, specials registered
    preprocessor_config.json   WhisperFeatureExtractor (80 mel bins, 16 kHz, 30 s windows)
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .ct2_format import Ct2Model

#: Bump when the output folder's content changes, so caches from older converters are redone.
CONVERTER_VERSION = 1

Step = Callable[[str], None]


class ConversionError(RuntimeError):
    """The CTranslate2 model does not look like a Whisper model we can convert exactly."""


@dataclass(frozen=True)
class WhisperDims:
    d_model: int
    n_mels: int
    encoder_layers: int
    decoder_layers: int
    encoder_heads: int
    decoder_heads: int
    encoder_ffn: int
    decoder_ffn: int
    vocab_size: int
    max_source_positions: int
    max_target_positions: int

    @property
    def multilingual(self) -> bool:
        return self.vocab_size >= 51865


def infer_dims(model: Ct2Model) -> WhisperDims:
    """Model dimensions from tensor shapes (the CT2 file has no config for them)."""
    if model.spec_name and model.spec_name != "WhisperSpec":
        raise ConversionError(f"not a Whisper model: spec {model.spec_name!r}")

    def layers(prefix: str) -> int:
        pat = re.compile(rf"^{prefix}/layer_(\d+)/")
        found = [int(m.group(1)) for name in model.variables if (m := pat.match(name))]
        if not found:
            raise ConversionError(f"no {prefix} layers")
        return max(found) + 1

    conv1 = model.get("encoder/conv1/weight")
    return WhisperDims(
        d_model=conv1.shape[0],
        n_mels=conv1.shape[1],
        encoder_layers=layers("encoder"),
        decoder_layers=layers("decoder"),
        encoder_heads=int(model.scalar("encoder/num_heads")),
        decoder_heads=int(model.scalar("decoder/num_heads")),
        encoder_ffn=model.get("encoder/layer_0/ffn/linear_0/weight").shape[0],
        decoder_ffn=model.get("decoder/layer_0/ffn/linear_0/weight").shape[0],
        vocab_size=model.get("decoder/embeddings/weight").shape[0],
        max_source_positions=model.get("encoder/position_encodings/encodings").shape[0],
        max_target_positions=model.get("decoder/position_encodings/encodings").shape[0],
    )


def build_state_dict(model: Ct2Model, dims: WhisperDims, step: Step = lambda _: None) -> dict[str, np.ndarray]:
    """The HF state dict (float32 numpy arrays): each CTranslate2 tensor under its transformers name."""
    d = dims.d_model
    out: dict[str, np.ndarray] = {}
    f32 = model.float32

    def linear(src: str, dst: str, bias: bool = True) -> None:
        out[f"{dst}.weight"] = f32(f"{src}/weight")
        if bias:
            out[f"{dst}.bias"] = f32(f"{src}/bias")

    def norm(src: str, dst: str) -> None:
        out[f"{dst}.weight"] = f32(f"{src}/gamma")
        out[f"{dst}.bias"] = f32(f"{src}/beta")

    def zero_bias(values: np.ndarray, what: str) -> None:
        if np.any(values != 0):
            raise ConversionError(f"{what}: CTranslate2 key bias is not zero; HF Whisper has none")

    def fused_qkv(src: str, dst: str) -> None:
        w, b = f32(f"{src}/linear_0/weight"), f32(f"{src}/linear_0/bias")
        if w.shape[0] != 3 * d:
            raise ConversionError(f"{src}/linear_0/weight has shape {w.shape}, expected ({3 * d}, {d})")
        out[f"{dst}.q_proj.weight"], out[f"{dst}.k_proj.weight"], out[f"{dst}.v_proj.weight"] = (
            w[:d],
            w[d : 2 * d],
            w[2 * d :],
        )
        zero_bias(b[d : 2 * d], src)
        out[f"{dst}.q_proj.bias"], out[f"{dst}.v_proj.bias"] = b[:d], b[2 * d :]
        linear(f"{src}/linear_1", f"{dst}.out_proj")

    def ffn(src: str, dst: str) -> None:
        linear(f"{src}/linear_0", f"{dst}.fc1")
        linear(f"{src}/linear_1", f"{dst}.fc2")
        norm(f"{src}/layer_norm", f"{dst}.final_layer_norm")

    enc, dec = "model.encoder", "model.decoder"
    linear("encoder/conv1", f"{enc}.conv1")
    linear("encoder/conv2", f"{enc}.conv2")
    out[f"{enc}.embed_positions.weight"] = f32("encoder/position_encodings/encodings")
    for i in range(dims.encoder_layers):
        step(f"encoder layer {i}")
        src, dst = f"encoder/layer_{i}", f"{enc}.layers.{i}"
        fused_qkv(f"{src}/self_attention", f"{dst}.self_attn")
        norm(f"{src}/self_attention/layer_norm", f"{dst}.self_attn_layer_norm")
        ffn(f"{src}/ffn", dst)
    norm("encoder/layer_norm", f"{enc}.layer_norm")

    embed = f32("decoder/embeddings/weight")
    out[f"{dec}.embed_tokens.weight"] = embed
    if "decoder/projection/weight" in model.variables or "decoder/projection/weight" in model.aliases:
        if not np.array_equal(f32("decoder/projection/weight"), embed):
            raise ConversionError("output projection is not tied to the embeddings")
    if "decoder/projection/bias" in model.variables:
        raise ConversionError("output projection has a bias; HF Whisper has none")
    out[f"{dec}.embed_positions.weight"] = f32("decoder/position_encodings/encodings")
    for i in range(dims.decoder_layers):
        step(f"decoder layer {i}")
        src, dst = f"decoder/layer_{i}", f"{dec}.layers.{i}"
        fused_qkv(f"{src}/self_attention", f"{dst}.self_attn")
        norm(f"{src}/self_attention/layer_norm", f"{dst}.self_attn_layer_norm")
        linear(f"{src}/attention/linear_0", f"{dst}.encoder_attn.q_proj")
        kv_w, kv_b = f32(f"{src}/attention/linear_1/weight"), f32(f"{src}/attention/linear_1/bias")
        out[f"{dst}.encoder_attn.k_proj.weight"], out[f"{dst}.encoder_attn.v_proj.weight"] = kv_w[:d], kv_w[d:]
        zero_bias(kv_b[:d], f"{src}/attention")
        out[f"{dst}.encoder_attn.v_proj.bias"] = kv_b[d:]
        linear(f"{src}/attention/linear_2", f"{dst}.encoder_attn.out_proj")
        norm(f"{src}/attention/layer_norm", f"{dst}.encoder_attn_layer_norm")
        ffn(f"{src}/ffn", dst)
    norm("decoder/layer_norm", f"{dec}.layer_norm")
    # Views into the (read-only) model buffer would keep it alive; make each tensor its own array.
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in out.items()}


@dataclass(frozen=True)
class TokenIds:
    eot: int
    sot: int
    translate: int
    transcribe: int
    startoflm: int
    startofprev: int
    nospeech: int
    notimestamps: int
    languages: dict[str, int]  # "<|en|>" -> id

    @property
    def timestamp_begin(self) -> int:
        return self.notimestamps + 1


def read_token_ids(tokenizer_json: Mapping[str, Any]) -> TokenIds:
    added = {t["content"]: t["id"] for t in tokenizer_json["added_tokens"]}

    def need(name: str) -> int:
        if name not in added:
            raise ConversionError(f"tokenizer.json has no {name}")
        return added[name]

    sot, translate = need("<|startoftranscript|>"), need("<|translate|>")
    languages = {tok: i for tok, i in added.items() if sot < i < translate}
    return TokenIds(
        eot=need("<|endoftext|>"),
        sot=sot,
        translate=translate,
        transcribe=need("<|transcribe|>"),
        startoflm=need("<|startoflm|>"),
        startofprev=need("<|startofprev|>"),
        nospeech=added.get("<|nospeech|>", added.get("<|nocaptions|>", translate + 4)),
        notimestamps=need("<|notimestamps|>"),
        languages=languages,
    )


def build_tokenizer(tokenizer_file: Path, ids: TokenIds, dims: WhisperDims, vocabulary: list[str] | None):
    """A ``WhisperTokenizer`` whose ids match the model's vocabulary exactly.

    The control/language tokens are registered as special (``extra_special_tokens``): without that
    ``timestamp_begin`` is computed from the wrong id and every timestamp shifts.
    The 1501 ``<|0.00|>``...``<|30.00|>`` tokens are appended as non-special added tokens, as in
    today's hub tokenizers, so ``len(tokenizer) == vocab_size``.
    """
    from tokenizers import AddedToken
    from transformers import WhisperTokenizer

    data = json.loads(Path(tokenizer_file).read_text(encoding="utf-8"))
    specials = [t["content"] for t in sorted(data["added_tokens"], key=lambda t: t["id"]) if t["id"] != ids.eot]
    tokenizer = WhisperTokenizer(
        tokenizer_file=str(tokenizer_file),
        unk_token="<|endoftext|>",
        bos_token="<|endoftext|>",
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        extra_special_tokens=specials,
        model_max_length=1024,
        errors="replace",
    )
    present = set(tokenizer.get_vocab())
    timestamps = [f"<|{i * 0.02:.2f}|>" for i in range(1501)]
    missing = [t for t in timestamps if t not in present]
    if missing:
        tokenizer.add_tokens(
            [AddedToken(t, lstrip=False, rstrip=False, normalized=False, special=False) for t in missing]
        )
    if len(tokenizer) != dims.vocab_size:
        raise ConversionError(f"tokenizer has {len(tokenizer)} tokens, the model {dims.vocab_size}")
    if (
        tokenizer.all_special_ids[-1] != ids.notimestamps
        or tokenizer.convert_tokens_to_ids("<|0.00|>") != ids.timestamp_begin
    ):
        raise ConversionError("special tokens are not registered in Whisper's order")
    if vocabulary is not None:
        got = tokenizer.convert_ids_to_tokens(list(range(dims.vocab_size)))
        bad = [i for i, (a, b) in enumerate(zip(got, vocabulary)) if a != b]
        if len(vocabulary) != dims.vocab_size or bad:
            raise ConversionError(f"tokenizer disagrees with vocabulary at ids {bad[:5]} (of {len(vocabulary)})")
    return tokenizer


def read_vocabulary(folder: Path) -> list[str] | None:
    """CT2's ``vocabulary.txt`` (one token a line) or ``vocabulary.json`` (newer CT2)."""
    txt, js = folder / "vocabulary.txt", folder / "vocabulary.json"
    if js.is_file():
        return json.loads(js.read_text(encoding="utf-8"))
    if txt.is_file():
        lines = txt.read_text(encoding="utf-8").split("\n")
        return lines[:-1] if lines and lines[-1] == "" else lines
    return None


def build_config(dims: WhisperDims, ids: TokenIds, ct2_config: Mapping[str, Any]) -> Any:
    from transformers import WhisperConfig

    if dims.multilingual:
        bos, eos, pad, start = ids.eot, ids.eot, ids.eot, ids.sot
    else:
        bos, eos, pad, start = ids.sot, ids.eot, ids.eot, ids.sot
    return WhisperConfig(
        vocab_size=dims.vocab_size,
        num_mel_bins=dims.n_mels,
        encoder_layers=dims.encoder_layers,
        encoder_attention_heads=dims.encoder_heads,
        decoder_layers=dims.decoder_layers,
        decoder_attention_heads=dims.decoder_heads,
        encoder_ffn_dim=dims.encoder_ffn,
        decoder_ffn_dim=dims.decoder_ffn,
        d_model=dims.d_model,
        max_source_positions=dims.max_source_positions,
        max_target_positions=dims.max_target_positions,
        activation_function="gelu",
        scale_embedding=False,
        tie_word_embeddings=True,
        bos_token_id=bos,
        eos_token_id=eos,
        pad_token_id=pad,
        decoder_start_token_id=start,
        suppress_tokens=list(ct2_config.get("suppress_ids", [])),
        begin_suppress_tokens=list(ct2_config.get("suppress_ids_begin", [220, ids.eot])),
        architectures=["WhisperForConditionalGeneration"],
        dtype="float32",
    )


def build_generation_config(dims: WhisperDims, ids: TokenIds, ct2_config: Mapping[str, Any]) -> dict[str, Any]:
    """``generation_config.json`` as openai/whisper-* publish it (written as plain JSON: exact keys)."""
    gen: dict[str, Any] = {
        "alignment_heads": [list(map(int, h)) for h in ct2_config.get("alignment_heads", [])],
        "begin_suppress_tokens": list(ct2_config.get("suppress_ids_begin", [220, ids.eot])),
        "bos_token_id": ids.eot,
        "decoder_start_token_id": ids.sot,
        "eos_token_id": ids.eot,
        "pad_token_id": ids.eot,
        "max_initial_timestamp_index": 50,
        "max_length": dims.max_target_positions,
        "no_timestamps_token_id": ids.notimestamps,
        "prev_sot_token_id": ids.startofprev,
        "return_timestamps": False,
        "suppress_tokens": list(ct2_config.get("suppress_ids", [])),
        "is_multilingual": dims.multilingual,
        "num_beams": 1,
    }
    if dims.multilingual:
        gen["forced_decoder_ids"] = [[1, None], [2, ids.transcribe]]
        gen["lang_to_id"] = dict(ids.languages)
        gen["task_to_id"] = {"transcribe": ids.transcribe, "translate": ids.translate}
    else:
        gen["bos_token_id"] = ids.sot
        gen["forced_decoder_ids"] = [[1, ids.notimestamps]]
    return gen


def convert(
    model: Ct2Model,
    source_dir: Path,
    out_dir: Path,
    step: Step = lambda _: None,
) -> dict[str, Any]:
    """Write the HF folder for ``model`` (whose config/tokenizer live in ``source_dir``) into ``out_dir``.

    ``out_dir`` must exist and be empty (the caller makes it a temp dir and renames it; see
    :mod:`flarelet.bindings.ai.asr.weights`). Returns a summary (dims, token ids, tensor count).
    """
    from safetensors.numpy import save_file
    from transformers import WhisperFeatureExtractor

    ct2_config = json.loads((source_dir / "config.json").read_text(encoding="utf-8"))
    tokenizer_json = json.loads((source_dir / "tokenizer.json").read_text(encoding="utf-8"))
    step("reading dimensions")
    dims = infer_dims(model)
    ids = read_token_ids(tokenizer_json)
    step("tokenizer")
    tokenizer = build_tokenizer(source_dir / "tokenizer.json", ids, dims, read_vocabulary(source_dir))
    state = build_state_dict(model, dims, step)
    step("writing model.safetensors")
    weights = out_dir / "model.safetensors"
    save_file(state, str(weights), metadata={"format": "pt"})
    os.chmod(weights, 0o644)  # safetensors writes 0600; the cache may be shared
    step("writing config, tokenizer, feature extractor")
    build_config(dims, ids, ct2_config).save_pretrained(out_dir)
    (out_dir / "generation_config.json").write_text(
        json.dumps(build_generation_config(dims, ids, ct2_config), indent=2) + "\n", encoding="utf-8"
    )
    tokenizer.save_pretrained(out_dir)
    WhisperFeatureExtractor(
        feature_size=dims.n_mels, sampling_rate=16000, hop_length=160, n_fft=400, chunk_length=30
    ).save_pretrained(out_dir)
    return {
        "dims": dims.__dict__,
        "multilingual": dims.multilingual,
        "tensors": len(state),
        "sot": ids.sot,
        "notimestamps": ids.notimestamps,
    }
