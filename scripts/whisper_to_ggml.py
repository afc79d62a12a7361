#!/usr/bin/env python3
"""Convert a Hugging Face Whisper folder (what ``flarelet.bindings.ai.asr.convert`` writes) into a
whisper.cpp model file (ggml), so whisper.cpp runs on exactly the weights flarelet and faster-whisper run.

Usage::

    .venv/bin/python scripts/whisper_to_ggml.py <converted folder> <out.bin>
    .venv/bin/python scripts/whisper_to_ggml.py --model tiny.en      # the cached folder -> its cached ggml file

Why our own converter: whisper.cpp's converters need the ``openai/whisper`` repository (for its mel
filters) or a PyTorch checkpoint; flarelet has neither, only the converted folder. This one needs
numpy, safetensors and ``transformers.audio_utils`` (not torch).

The file (all integers little-endian int32, in this order):

1. magic ``0x67676d6c`` ("ggml");
2. hyper-parameters: ``n_vocab, n_audio_ctx, n_audio_state, n_audio_head, n_audio_layer, n_text_ctx,
   n_text_state, n_text_head, n_text_layer, n_mels, ftype`` (``ftype`` 1: the big tensors in f16);
3. mel filters: ``n_mel, n_freq`` then ``n_mel * n_freq`` float32 -- the feature extractor's own
   (Slaney-scale, Slaney-normalised, 0-8 kHz), whisper.cpp computes its log-mel with them;
4. vocabulary: a count, then per token its length and its bytes, token ids 0.. in order. Only the
   byte-level BPE tokens are written (the tokenizer's model vocabulary); whisper.cpp names the special
   and timestamp tokens above them itself from ``n_vocab``;
5. tensors until the end of the file: ``n_dims, len(name), ttype``, the dimensions innermost first
   (ggml's order: numpy's shape reversed), the name, the data (ttype 0 = f32, 1 = f16).

Tensor names are openai/whisper's (``encoder.blocks.0.attn.query.weight``, ...), which is what
whisper.cpp looks up; it rejects a file with an unknown, missing or mis-shaped tensor (but accepts
one with no tensors at all, as an empty test model). Types follow whisper.cpp's loader: matrices,
convolution kernels and the token embedding f16; vectors, convolution biases (stored
``[n_state, 1]``) and both positional embeddings f32. Only f16 files are written: the weights are
f16 anyway, and whisper.cpp 1.8's CPU convolution (``im2col``) aborts on the f32 kernels of an
all-f32 file. The keys' projections have no bias in Whisper (transformers has none; one that is
present must be zero). The output projection is the token embedding (tied) and is not stored.

Whisper's weights are published in f16 and flarelet's folder holds them as float32 widened from f16,
so the f16 file holds the same numbers: :func:`convert` counts the values f16 cannot hold exactly
(``ConversionReport.rounded``: 0 for the bundled models).
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np

MAGIC = 0x67676D6C
F32, F16 = 0, 1
#: Bump when the written file changes, so cached files from an older converter are redone.
GGML_CONVERTER_VERSION = 1

HPARAMS = (
    "n_vocab",
    "n_audio_ctx",
    "n_audio_state",
    "n_audio_head",
    "n_audio_layer",
    "n_text_ctx",
    "n_text_state",
    "n_text_head",
    "n_text_layer",
    "n_mels",
    "ftype",
)

#: transformers' names inside a layer -> openai/whisper's (self-attention in the encoder; the
#: decoder's ``encoder_attn`` is its cross-attention)
_LAYER_PARTS = {
    "self_attn.q_proj": "attn.query",
    "self_attn.k_proj": "attn.key",
    "self_attn.v_proj": "attn.value",
    "self_attn.out_proj": "attn.out",
    "self_attn_layer_norm": "attn_ln",
    "encoder_attn.q_proj": "cross_attn.query",
    "encoder_attn.k_proj": "cross_attn.key",
    "encoder_attn.v_proj": "cross_attn.value",
    "encoder_attn.out_proj": "cross_attn.out",
    "encoder_attn_layer_norm": "cross_attn_ln",
    "fc1": "mlp.0",
    "fc2": "mlp.2",
    "final_layer_norm": "mlp_ln",
}
_TOP = {
    "encoder.conv1.weight": "encoder.conv1.weight",
    "encoder.conv1.bias": "encoder.conv1.bias",
    "encoder.conv2.weight": "encoder.conv2.weight",
    "encoder.conv2.bias": "encoder.conv2.bias",
    "encoder.embed_positions.weight": "encoder.positional_embedding",
    "encoder.layer_norm.weight": "encoder.ln_post.weight",
    "encoder.layer_norm.bias": "encoder.ln_post.bias",
    "decoder.embed_tokens.weight": "decoder.token_embedding.weight",
    "decoder.embed_positions.weight": "decoder.positional_embedding",
    "decoder.layer_norm.weight": "decoder.ln.weight",
    "decoder.layer_norm.bias": "decoder.ln.bias",
}
#: kept in f32 in an f16 file, as whisper.cpp's loader expects
_ALWAYS_F32 = {
    "encoder.conv1.bias",
    "encoder.conv2.bias",
    "encoder.positional_embedding",
    "decoder.positional_embedding",
}


class GgmlConversionError(ValueError):
    """The folder is not a Whisper checkpoint this converter can write exactly."""


@dataclass
class ConversionReport:
    path: Path
    hparams: dict[str, int]
    tensors: int = 0
    #: values that f16 could not hold exactly (0: the f16 file is the same weights)
    rounded: int = 0
    bytes: int = 0


@dataclass
class GgmlModel:
    """A whisper.cpp model file read back (:func:`read_ggml`)."""

    hparams: dict[str, int]
    filters: np.ndarray
    vocab: list[bytes]
    tensors: dict[str, np.ndarray] = field(default_factory=dict)
    types: dict[str, int] = field(default_factory=dict)


def ggml_name(hf_name: str) -> str | None:
    """openai/whisper's name for a transformers tensor name; None for the tied output projection."""
    name = hf_name.removeprefix("model.")
    if name == "proj_out.weight":
        return None
    if name in _TOP:
        return _TOP[name]
    parts = name.split(".")
    if len(parts) >= 5 and parts[0] in ("encoder", "decoder") and parts[1] == "layers":
        inner = ".".join(parts[3:-1])
        if inner in _LAYER_PARTS:
            return f"{parts[0]}.blocks.{parts[2]}.{_LAYER_PARTS[inner]}.{parts[-1]}"
    raise GgmlConversionError(f"unexpected tensor {hf_name!r}")


def hyperparameters(config: dict, ftype: int = F16) -> dict[str, int]:
    if config.get("d_model") is None or config.get("model_type", "whisper") != "whisper":
        raise GgmlConversionError("config.json is not a Whisper config")
    return {
        "n_vocab": int(config["vocab_size"]),
        "n_audio_ctx": int(config["max_source_positions"]),
        "n_audio_state": int(config["d_model"]),
        "n_audio_head": int(config["encoder_attention_heads"]),
        "n_audio_layer": int(config["encoder_layers"]),
        "n_text_ctx": int(config["max_target_positions"]),
        "n_text_state": int(config["d_model"]),
        "n_text_head": int(config["decoder_attention_heads"]),
        "n_text_layer": int(config["decoder_layers"]),
        "n_mels": int(config["num_mel_bins"]),
        "ftype": ftype,
    }


def mel_filters(folder: Path) -> np.ndarray:
    """``[n_mels, 1 + n_fft // 2]`` float32: the filters ``WhisperFeatureExtractor`` builds from this
    folder's ``preprocessor_config.json`` (the same call with the same arguments)."""
    from transformers.audio_utils import mel_filter_bank

    pre = json.loads((folder / "preprocessor_config.json").read_text())
    bank = mel_filter_bank(
        num_frequency_bins=1 + int(pre.get("n_fft", 400)) // 2,
        num_mel_filters=int(pre["feature_size"]),
        min_frequency=0.0,
        max_frequency=8000.0,
        sampling_rate=int(pre.get("sampling_rate", 16000)),
        norm="slaney",
        mel_scale="slaney",
    )
    return np.ascontiguousarray(bank.T, dtype=np.float32)


def _byte_decoder() -> dict[str, int]:
    """GPT-2's byte-level BPE alphabet reversed: each of its 256 characters -> the byte it stands for."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars, extra = {}, 0
    for b in range(256):
        if b in printable:
            chars[chr(b)] = b
        else:
            chars[chr(256 + extra)] = b
            extra += 1
    return chars


def vocabulary(folder: Path) -> list[bytes]:
    """Token id -> bytes for the tokenizer's BPE vocabulary (ids 0..n-1, none missing)."""
    model = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))["model"]
    if model.get("type") != "BPE":
        raise GgmlConversionError(f"tokenizer model {model.get('type')!r} is not byte-level BPE")
    by_id = {int(i): token for token, i in model["vocab"].items()}
    if sorted(by_id) != list(range(len(by_id))):
        raise GgmlConversionError("tokenizer vocabulary ids are not 0..n-1")
    decoder = _byte_decoder()
    out = []
    for i in range(len(by_id)):
        try:
            out.append(bytes(decoder[c] for c in by_id[i]))
        except KeyError as exc:
            raise GgmlConversionError(f"token {i} {by_id[i]!r} is not byte-level BPE text") from exc
    return out


def _tensors(folder: Path) -> Iterator[tuple[str, np.ndarray]]:
    from safetensors import safe_open

    with safe_open(str(folder / "model.safetensors"), framework="numpy") as f:
        keys = list(f.keys())
        tied = "proj_out.weight" in keys
        for key in keys:
            name = ggml_name(key)
            if name is None:
                continue
            array = f.get_tensor(key)
            if name.endswith(".key.bias"):  # Whisper's key projections have no bias
                if np.any(array):
                    raise GgmlConversionError(f"{key} is not zero: whisper.cpp has no key bias")
                continue
            yield name, array
        if tied:
            out, emb = f.get_tensor("proj_out.weight"), f.get_tensor(_hf_embedding(keys))
            if not np.array_equal(out, emb):
                raise GgmlConversionError("proj_out.weight differs from the token embedding (whisper.cpp ties them)")


def _hf_embedding(keys: list[str]) -> str:
    return next(k for k in keys if k.removeprefix("model.") == "decoder.embed_tokens.weight")


def tensor_type(name: str, ndim: int, ftype: int) -> int:
    """The type whisper.cpp's loader expects for this tensor in a file of ``ftype``."""
    if ftype == F32 or ndim < 2 or name in _ALWAYS_F32:
        return F32
    return F16


def _write_tensor(out: BinaryIO, name: str, data: np.ndarray) -> None:
    raw = name.encode()
    ttype = F16 if data.dtype == np.float16 else F32
    out.write(struct.pack("<iii", data.ndim, len(raw), ttype))
    out.write(struct.pack(f"<{data.ndim}i", *reversed(data.shape)))
    out.write(raw)
    out.write(np.ascontiguousarray(data).astype(data.dtype.newbyteorder("<"), copy=False).tobytes())


def convert(folder: Path, out_path: Path) -> ConversionReport:
    """Write ``out_path`` (atomically: a temporary file beside it, then renamed) from ``folder``."""
    folder, out_path = Path(folder), Path(out_path)
    config = json.loads((folder / "config.json").read_text())
    hparams = hyperparameters(config)
    filters = mel_filters(folder)
    if filters.shape[0] != hparams["n_mels"]:
        raise GgmlConversionError(f"{filters.shape[0]} mel filters for a {hparams['n_mels']}-bin model")
    vocab = vocabulary(folder)
    if len(vocab) > hparams["n_vocab"]:
        raise GgmlConversionError(f"{len(vocab)} tokens for n_vocab={hparams['n_vocab']}")
    report = ConversionReport(out_path, hparams)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".tmp-{out_path.name}-", dir=out_path.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(struct.pack("<I", MAGIC))
            out.write(struct.pack(f"<{len(HPARAMS)}i", *(hparams[k] for k in HPARAMS)))
            out.write(struct.pack("<ii", *filters.shape))
            out.write(filters.astype("<f4").tobytes())
            out.write(struct.pack("<i", len(vocab)))
            for token in vocab:
                out.write(struct.pack("<i", len(token)))
                out.write(token)
            for name, array in _tensors(folder):
                if name in ("encoder.conv1.bias", "encoder.conv2.bias"):
                    array = array.reshape(-1, 1)
                if tensor_type(name, array.ndim, hparams["ftype"]) == F16:
                    half = array.astype(np.float16)
                    report.rounded += int(np.count_nonzero(half.astype(array.dtype) != array))
                    array = half
                else:
                    array = array.astype(np.float32, copy=False)
                _write_tensor(out, name, array)
                report.tensors += 1
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would keep the cache file from other users of the cache
        os.replace(tmp, out_path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    report.bytes = out_path.stat().st_size
    return report


def read_ggml(path: Path) -> GgmlModel:
    """Read a whisper.cpp model file back (the inverse of :func:`convert`), checking its framing."""
    data = Path(path).read_bytes()
    pos = 0

    def take(fmt: str) -> tuple:
        nonlocal pos
        values = struct.unpack_from(fmt, data, pos)
        pos += struct.calcsize(fmt)
        return values

    (magic,) = take("<I")
    if magic != MAGIC:
        raise GgmlConversionError(f"bad magic {magic:#x}")
    hparams = dict(zip(HPARAMS, take(f"<{len(HPARAMS)}i")))
    n_mel, n_freq = take("<ii")
    filters = np.frombuffer(data, "<f4", n_mel * n_freq, pos).reshape(n_mel, n_freq)
    pos += filters.nbytes
    (n_tokens,) = take("<i")
    vocab = []
    for _ in range(n_tokens):
        (n,) = take("<i")
        vocab.append(data[pos : pos + n])
        pos += n
    model = GgmlModel(hparams, filters, vocab)
    while pos < len(data):
        n_dims, n_name, ttype = take("<iii")
        dims = take(f"<{n_dims}i")
        name = data[pos : pos + n_name].decode()
        pos += n_name
        dtype = {F32: "<f4", F16: "<f2"}[ttype]
        count = int(np.prod(dims))
        model.tensors[name] = np.frombuffer(data, dtype, count, pos).reshape(tuple(reversed(dims)))
        model.types[name] = ttype
        pos += model.tensors[name].nbytes
    if pos != len(data):
        raise GgmlConversionError("truncated tensor data")
    return model


def cached_ggml(model: str) -> Path:
    """The ggml file of a bundled model (``tiny.en`` / ``base``), converted once and kept beside its
    converted folder in flarelet's models cache (``<folder>.ggml-f16-v1.bin``; never in the repository)."""
    from flarelet.bindings.ai.asr.weights import ensure_weights
    from flarelet.bindings.ai.settings import AiSettings

    folder = ensure_weights(model, AiSettings.from_options({}).models_dir)
    path = folder.parent / f"{folder.name}.ggml-f16-v{GGML_CONVERTER_VERSION}.bin"
    if not path.is_file():
        report = convert(folder, path)
        print(
            f"converted {folder.name} to ggml: {report.tensors} tensors, {report.bytes / 1e6:.1f} MB, "
            f"{report.rounded} values rounded -> {path}",
            file=sys.stderr,
        )
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", nargs="?", type=Path, help="a converted Hugging Face Whisper folder")
    parser.add_argument("out", nargs="?", type=Path, help="the ggml file to write")
    parser.add_argument("--model", choices=("tiny.en", "base"), help="convert a bundled model into the cache instead")
    args = parser.parse_args(argv)
    if args.model:
        print(cached_ggml(args.model))
        return 0
    if args.folder is None or args.out is None:
        parser.error("give a folder and an output file, or --model")
    report = convert(args.folder, args.out)
    print(f"{report.path}: {report.tensors} tensors, {report.bytes / 1e6:.1f} MB, {report.rounded} values rounded")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
