"""Both Whisper backends on every standard checkpoint shape, built here from ``WhisperConfig`` with
random weights (no download): an English-only model, a distil-whisper-style model (4 encoder
layers, a 2-layer decoder), a large-v3-style model (128 mel bins). The lean engine loads each, and
under Whisper's timestamp rules its greedy tokens are transformers' ``generate``'s, token for
token. Vocabularies come from the bundled tiny.en / base weights' tokenizers (the weights cache)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from flarelet.bindings.ai.asr.engine import load_engine
from flarelet.bindings.ai.asr.options import N_FRAMES, TranscribeOptions
from flarelet.bindings.ai.asr.weights import ensure_weights

pytestmark = pytest.mark.slow

#: name -> (bundled vocabulary, WhisperConfig overrides)
SHAPES = {
    "english-only": ("tiny.en", {"encoder_layers": 2, "decoder_layers": 2}),
    "distil-2-layer-decoder": ("base", {"encoder_layers": 4, "decoder_layers": 2}),
    "large-v3-128-mels": ("base", {"encoder_layers": 2, "decoder_layers": 2, "num_mel_bins": 128}),
}
TOKENS = 40  # greedy tokens compared


def build_checkpoint(folder: Path, vocabulary: Path, overrides: dict, seed: int) -> Path:
    """A random-weight Whisper checkpoint of the given shape, in Hugging Face's folder layout."""
    import torch
    from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperForConditionalGeneration, WhisperTokenizer

    bundled = WhisperConfig.from_pretrained(vocabulary)
    config = WhisperConfig(
        vocab_size=bundled.vocab_size,
        d_model=64,
        encoder_attention_heads=4,
        decoder_attention_heads=4,
        encoder_ffn_dim=128,
        decoder_ffn_dim=128,
        max_source_positions=1500,
        max_target_positions=448,
        decoder_start_token_id=bundled.decoder_start_token_id,
        eos_token_id=bundled.eos_token_id,
        pad_token_id=bundled.pad_token_id,
        bos_token_id=bundled.bos_token_id,
        suppress_tokens=bundled.suppress_tokens,
        begin_suppress_tokens=bundled.begin_suppress_tokens,
        init_std=0.2,  # well-separated logits: no near-ties for float rounding to flip
        **overrides,
    )
    torch.manual_seed(seed)
    WhisperForConditionalGeneration(config).eval().save_pretrained(folder, safe_serialization=True)
    gen = json.loads((vocabulary / "generation_config.json").read_text())
    last = config.decoder_layers - 1
    gen["alignment_heads"] = [[last, h] for h in range(config.decoder_attention_heads)]
    (folder / "generation_config.json").write_text(json.dumps(gen))
    WhisperTokenizer.from_pretrained(vocabulary).save_pretrained(folder)
    WhisperFeatureExtractor(feature_size=config.num_mel_bins).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory, ai_settings) -> dict[str, Path]:
    out = {}
    for i, (name, (vocab, overrides)) in enumerate(SHAPES.items()):
        vocabulary = ensure_weights(vocab, ai_settings.models_dir)
        out[name] = build_checkpoint(tmp_path_factory.mktemp(name), vocabulary, overrides, seed=i)
    return out


@pytest.fixture(scope="module")
def speech(clip) -> np.ndarray:
    from flarelet.bindings.ai.asr.audio import decode_audio

    return decode_audio(clip("jfk.flac"))


@pytest.mark.parametrize("name", list(SHAPES))
def test_lean_and_transformers_backends_agree_token_for_token(name, checkpoints, speech):
    """Greedy decoding, no logit rules: the lean decoder's argmax tokens are transformers'
    ``generate``'s on the same features, for TOKENS tokens (the rules are the same code on both
    backends' logits and are tested on their own: test_logit_rules.py, test_convert.py)."""
    import torch
    from transformers.generation.utils import GenerationMixin

    from flarelet.bindings.ai.asr.decoder import DecodeBatch

    folder = checkpoints[name]
    lean = load_engine(folder, "cpu", 1, quantize="none")
    hf = load_engine(folder, "cpu", 1, backend="transformers")
    assert lean.log_mel.n_mels == hf.config.num_mel_bins == SHAPES[name][1].get("num_mel_bins", 80)
    mel = lean.log_mel(speech)[:, :N_FRAMES]
    features, _ = hf._features(speech)
    assert np.allclose(features[0].numpy(), mel, atol=1e-4)  # the same features, too
    prompt = [*lean.vocab.sot_sequence("en", "transcribe"), lean.vocab.no_timestamps]
    with torch.inference_mode():
        enc = hf.model.model.encoder(features)
        out = GenerationMixin.generate(
            hf.model,
            encoder_outputs=enc,
            decoder_input_ids=torch.tensor([prompt]),
            do_sample=False,
            num_beams=1,
            max_new_tokens=TOKENS,
            min_new_tokens=TOKENS,  # no early end-of-text: compare TOKENS tokens
            suppress_tokens=None,
            begin_suppress_tokens=None,
            forced_decoder_ids=None,
        )
        theirs = out[0, len(prompt) :].tolist()
        batch = DecodeBatch(lean.lean, [lean.window(lean.encode(mel)).cross], len(prompt) + TOKENS + 1)
        logits = batch.prefill([prompt], [[len(prompt) - 1]])[0, 0]
        ours: list[int] = []
        while len(ours) < TOKENS:
            if len(ours) < TOKENS:  # min_new_tokens: end-of-text is masked until then
                logits[lean.vocab.eot] = -float("inf")
            ours.append(int(torch.argmax(logits)))
            logits = batch.step(torch.tensor([ours[-1]]))[0]
    assert len(theirs) == TOKENS
    assert ours == theirs


@pytest.mark.parametrize("name", list(SHAPES))
def test_both_backends_transcribe_any_shape_in_cloudflares_output(name, checkpoints, speech):
    """Random weights say nothing sensible, but the whole path runs: segments, words, fields."""
    from flarelet.bindings.ai.asr import output

    for backend in ("lean", "transformers"):
        engine = load_engine(
            checkpoints[name], "cpu", 1, quantize="int8" if backend == "lean" else "none", backend=backend
        )
        result = engine.transcribe(speech, TranscribeOptions(language="en", temperatures=(0.0,)))
        shaped = output.turbo(result, result.duration)
        assert shaped["transcription_info"]["language"] == "en"
        assert all(0.0 <= s["start"] <= s["end"] <= result.duration + 0.5 for s in shaped["segments"]), backend


def test_transformers_backend_refuses_options_generate_lacks_with_5006(checkpoints, speech):
    from flarelet.bindings.ai.errors import AiError

    hf = load_engine(checkpoints["english-only"], "cpu", 1, backend="transformers")
    for options, field in (
        (TranscribeOptions(prefix="And so"), "'/prefix'"),
        (TranscribeOptions(hallucination_silence_threshold=1.0), "'/hallucination_silence_threshold'"),
    ):
        with pytest.raises(AiError) as info:
            hf.transcribe(speech, options)
        assert info.value.code == 5006 and field in info.value.description


def test_a_folder_that_is_not_whisper_is_refused_clearly_by_both_backends(tmp_path):
    from flarelet.bindings.ai.errors import AiError

    (tmp_path / "config.json").write_text('{"model_type": "bert"}')
    for backend in ("lean", "transformers"):
        with pytest.raises(AiError) as info:
            load_engine(tmp_path, "cpu", 1, backend=backend)
        assert "is not a Whisper checkpoint (model_type 'bert'" in info.value.description
