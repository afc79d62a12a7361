"""``scripts/whisper_to_ggml.py``: flarelet's converted Whisper folder -> whisper.cpp's model file.

Fast: a small random checkpoint built here (transformers' own ``WhisperForConditionalGeneration``, so
the tensor names are the ones a real folder has) is converted, read back by our reader, and loaded by
whisper.cpp itself (pywhispercpp, in the ``test`` extra). whisper.cpp accepts a file with *no*
tensors ("assuming empty model for testing"), so "it loaded" alone proves nothing: its load log must
count every byte we wrote, and its hyper-parameters and token bytes must be ours.
Slow: the real tiny.en converted exactly (no value rounded) transcribes jfk.flac word for word.
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest

# every test here builds (or converts) a checkpoint with transformers: ~3.5 s, so out of the fast subset
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]


def _load_converter():
    spec = importlib.util.spec_from_file_location("whisper_to_ggml", REPO / "scripts" / "whisper_to_ggml.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("whisper_to_ggml", module)
    spec.loader.exec_module(module)
    return module


conv = _load_converter()

ENCODER_LAYERS, DECODER_LAYERS = 2, 1
#: byte-level BPE tokens beyond the 256 single bytes: a leading space (Ġ) and UTF-8 "é" (Ã©)
EXTRA_TOKENS = ["Ġhello", "Ã©t", "ĠĠ"]


def whisper_cpp_names(encoder_layers: int, decoder_layers: int) -> set[str]:
    """The tensors whisper.cpp's loader creates (and requires), written out independently of the converter."""
    names = {
        "encoder.positional_embedding",
        "encoder.conv1.weight",
        "encoder.conv1.bias",
        "encoder.conv2.weight",
        "encoder.conv2.bias",
        "encoder.ln_post.weight",
        "encoder.ln_post.bias",
        "decoder.positional_embedding",
        "decoder.token_embedding.weight",
        "decoder.ln.weight",
        "decoder.ln.bias",
    }
    block = ["mlp_ln.weight", "mlp_ln.bias", "mlp.0.weight", "mlp.0.bias", "mlp.2.weight", "mlp.2.bias"]
    block += ["attn_ln.weight", "attn_ln.bias", "attn.query.weight", "attn.query.bias", "attn.key.weight"]
    block += ["attn.value.weight", "attn.value.bias", "attn.out.weight", "attn.out.bias"]
    cross = [p.replace("attn", "cross_attn", 1) for p in block if "attn" in p]
    for i in range(encoder_layers):
        names |= {f"encoder.blocks.{i}.{p}" for p in block}
    for i in range(decoder_layers):
        names |= {f"decoder.blocks.{i}.{p}" for p in block + cross}
    return names


def _byte_alphabet() -> list[str]:
    """GPT-2's 256 byte characters, in its id order (printable bytes first)."""
    decoder = conv._byte_decoder()
    return sorted(decoder, key=lambda c: (ord(c) >= 256, ord(c)))


def build_folder(folder: Path, seed: int = 0) -> Path:
    """A random-weight English-only Whisper folder in flarelet's converted layout (small widths)."""
    import torch
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    config = WhisperConfig(
        vocab_size=51864,  # English-only: whisper.cpp places its special tokens from n_vocab
        d_model=64,
        encoder_layers=ENCODER_LAYERS,
        decoder_layers=DECODER_LAYERS,
        encoder_attention_heads=4,
        decoder_attention_heads=4,
        encoder_ffn_dim=256,  # whisper.cpp's MLP is 4 x d_model wide
        decoder_ffn_dim=256,
        max_source_positions=1500,
        max_target_positions=448,
        num_mel_bins=80,
    )
    torch.manual_seed(seed)
    WhisperForConditionalGeneration(config).eval().save_pretrained(folder, safe_serialization=True)
    tokens = _byte_alphabet() + EXTRA_TOKENS
    tokenizer = {"model": {"type": "BPE", "vocab": {t: i for i, t in enumerate(tokens)}, "merges": []}}
    (folder / "tokenizer.json").write_text(json.dumps(tokenizer), encoding="utf-8")
    preprocessor = {"feature_size": 80, "n_fft": 400, "sampling_rate": 16000, "hop_length": 160}
    (folder / "preprocessor_config.json").write_text(json.dumps(preprocessor))
    return folder


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return build_folder(tmp_path_factory.mktemp("random-whisper"))


def _safetensors(folder: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return load_file(str(folder / "model.safetensors"))


def test_ggml_file_holds_every_tensor_under_whisper_cpp_names_in_its_types(checkpoint, tmp_path):
    report = conv.convert(checkpoint, tmp_path / "m.bin")
    model = conv.read_ggml(tmp_path / "m.bin")
    config = json.loads((checkpoint / "config.json").read_text())
    assert model.hparams == {
        "n_vocab": 51864,
        "n_audio_ctx": 1500,
        "n_audio_state": 64,
        "n_audio_head": 4,
        "n_audio_layer": ENCODER_LAYERS,
        "n_text_ctx": 448,
        "n_text_state": 64,
        "n_text_head": 4,
        "n_text_layer": DECODER_LAYERS,
        "n_mels": config["num_mel_bins"],
        "ftype": 1,
    }
    assert set(model.tensors) == whisper_cpp_names(ENCODER_LAYERS, DECODER_LAYERS)
    assert report.tensors == len(model.tensors)
    hf = {k.removeprefix("model."): v for k, v in _safetensors(checkpoint).items()}
    # spot checks of the mapping, each against the transformers tensor it must come from
    pairs = {
        "encoder.blocks.1.attn.query.weight": "encoder.layers.1.self_attn.q_proj.weight",
        "encoder.blocks.0.mlp.2.weight": "encoder.layers.0.fc2.weight",
        "decoder.blocks.0.cross_attn.key.weight": "decoder.layers.0.encoder_attn.k_proj.weight",
        "decoder.blocks.0.cross_attn_ln.bias": "decoder.layers.0.encoder_attn_layer_norm.bias",
        "decoder.token_embedding.weight": "decoder.embed_tokens.weight",
        "encoder.ln_post.weight": "encoder.layer_norm.weight",
        "encoder.conv2.weight": "encoder.conv2.weight",
    }
    for ours, theirs in pairs.items():
        expected = hf[theirs].astype(np.float16 if hf[theirs].ndim >= 2 else np.float32)
        assert np.array_equal(model.tensors[ours], expected), ours
    kept_f32 = {
        "encoder.positional_embedding",
        "decoder.positional_embedding",
        "encoder.conv1.bias",
        "encoder.conv2.bias",
    }
    for name, array in model.tensors.items():
        assert model.types[name] == (conv.F32 if array.ndim == 1 or name in kept_f32 else conv.F16), name
    assert model.tensors["encoder.conv1.bias"].shape == (64, 1) and model.types["encoder.conv1.bias"] == conv.F32
    assert model.tensors["encoder.conv1.weight"].shape == (64, 80, 3)
    # random fp32 weights are not all f16 numbers: the report says how many were rounded
    assert report.rounded > 0


def test_ggml_vocabulary_is_the_tokens_bytes_and_filters_are_the_extractors(checkpoint, tmp_path):
    from transformers import WhisperFeatureExtractor

    conv.convert(checkpoint, tmp_path / "m.bin")
    model = conv.read_ggml(tmp_path / "m.bin")
    assert model.vocab[0] == b"!" and model.vocab[188] == b"\x00"  # GPT-2's order: printable bytes first
    assert sorted(model.vocab[:256]) == [bytes([b]) for b in range(256)]
    assert model.vocab[256:] == [b" hello", "ét".encode(), b"  "]
    extractor = WhisperFeatureExtractor(feature_size=80)
    assert model.filters.shape == (80, 201)
    assert np.array_equal(model.filters, extractor.mel_filters.T.astype(np.float32))


def test_whisper_cpp_loads_every_byte_of_the_converted_file_and_runs_it(checkpoint, tmp_path, capfd):
    import _pywhispercpp as pw
    from pywhispercpp.model import Model

    path = tmp_path / "m.bin"
    conv.convert(checkpoint, path)
    ours = conv.read_ggml(path)
    capfd.readouterr()
    model = Model(str(path), n_threads=1, print_progress=False)  # its load log goes to file descriptor 2
    text = capfd.readouterr().err
    assert "WARN" not in text and "error" not in text.lower() and "failed" not in text.lower(), text
    sizes = [float(m) for m in re.findall(r"model size\s*=\s*([\d.]+) MB", text)]
    assert sizes == [round(sum(a.nbytes for a in ours.tensors.values()) / 1e6, 2)], text
    ctx = model._ctx
    assert pw.whisper_model_n_vocab(ctx) == 51864
    assert pw.whisper_model_n_audio_layer(ctx) == ENCODER_LAYERS
    assert pw.whisper_model_n_text_layer(ctx) == DECODER_LAYERS
    assert pw.whisper_model_n_audio_state(ctx) == 64
    assert pw.whisper_model_n_text_ctx(ctx) == 448
    assert pw.whisper_model_ftype(ctx) == 1
    assert not pw.whisper_is_multilingual(ctx)
    assert pw.whisper_token_to_bytes(ctx, 256) == b" hello"
    assert pw.whisper_token_to_bytes(ctx, 257) == "ét".encode()
    # the graph runs on these weights (random weights: any text, bounded by max_tokens)
    noise = np.random.default_rng(0).normal(0, 0.1, 16000).astype(np.float32)
    segments = model.transcribe(noise, max_tokens=8, temperature_inc=0.0, no_timestamps=True, single_segment=True)
    assert isinstance(segments, list)


def test_converter_refuses_a_key_bias_whisper_cpp_cannot_hold(checkpoint, tmp_path):
    from safetensors.numpy import save_file

    folder = tmp_path / "biased"
    folder.mkdir()
    for item in checkpoint.iterdir():
        (folder / item.name).write_bytes(item.read_bytes())
    tensors = _safetensors(checkpoint)
    tensors["model.encoder.layers.0.self_attn.k_proj.bias"] = np.ones(64, np.float32)
    save_file(tensors, str(folder / "model.safetensors"))
    with pytest.raises(conv.GgmlConversionError, match="k_proj.bias"):
        conv.convert(folder, tmp_path / "m.bin")
    assert not (tmp_path / "m.bin").exists() and not list(tmp_path.glob(".tmp-*"))  # nothing half-written
    tensors["model.encoder.layers.0.self_attn.k_proj.bias"] = np.zeros(64, np.float32)  # zero: dropped
    save_file(tensors, str(folder / "model.safetensors"))
    assert conv.convert(folder, tmp_path / "m.bin").tensors == len(whisper_cpp_names(ENCODER_LAYERS, DECODER_LAYERS))


def test_reader_rejects_a_truncated_file(checkpoint, tmp_path):
    path = tmp_path / "m.bin"
    conv.convert(checkpoint, path)
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises((conv.GgmlConversionError, ValueError)):
        conv.read_ggml(path)


@pytest.mark.slow
def test_bundled_tiny_en_converts_exactly_and_whisper_cpp_transcribes_jfk(
    ai_settings, clip, manifest, tmp_path, wer_fn
):
    """The same weights: tiny.en's f16 values fit f16 exactly (0 rounded), and whisper.cpp on the file
    transcribes jfk.flac as the reference says (WER 0), so layouts, filters and vocabulary are right."""
    from pywhispercpp.model import Model

    from flarelet.bindings.ai.asr.audio import decode_audio
    from flarelet.bindings.ai.asr.weights import ensure_weights

    folder = ensure_weights("tiny.en", ai_settings.models_dir)
    report = conv.convert(folder, tmp_path / "tiny.en.bin")
    assert report.rounded == 0 and report.tensors == len(whisper_cpp_names(4, 4))
    model = Model(str(report.path), redirect_whispercpp_logs_to=None, n_threads=1, language="en", print_progress=False)
    samples = decode_audio(clip("jfk.flac"))
    text = " ".join(s.text.strip() for s in model.transcribe(samples))
    assert wer_fn(manifest["jfk.flac"]["reference"], text) == 0.0, text
    words = model.transcribe(samples, token_timestamps=True, max_len=1, split_on_word=True)
    assert len(words) >= 20 and all(w.t0 <= w.t1 for w in words)
    assert wer_fn(manifest["jfk.flac"]["reference"], " ".join(w.text.strip() for w in words)) == 0.0
