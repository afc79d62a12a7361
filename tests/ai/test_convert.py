"""CTranslate2 -> transformers conversion: exact, cached once, atomic, torch-free.

Exactness is checked against CTranslate2 itself on the same log-mel features: greedy token ids
(plain and with Whisper's timestamp rules) and the no-speech probability must be identical.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from flarelet.bindings.ai.asr import weights
from flarelet.bindings.ai.asr.convert import CONVERTER_VERSION
from flarelet.bindings.ai.asr.weights import (
    BUNDLED,
    MARKER,
    REQUIRED_FILES,
    WeightsError,
    ensure_weights,
    is_complete,
    target_dir,
)

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow

CLIPS = {
    "tiny.en": [("jfk.flac", "en"), ("katiesteve_mono.wav", "en")],
    "base": [("picovoice_test_de.wav", "de"), ("jfk.flac", "en")],
}


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> dict[str, Path]:
    """Fresh conversions of both bundled models (not the user's cache)."""
    models_dir = tmp_path_factory.mktemp("models")
    return {name: ensure_weights(name, models_dir, progress=False) for name in BUNDLED}


@pytest.fixture(scope="module")
def ct2_dirs(tmp_path_factory) -> dict[str, Path]:
    """CTranslate2 model folders: tiny.en as shipped; base with its two parts concatenated."""
    out = {}
    for name, bundled in BUNDLED.items():
        if len(bundled.parts) == 1:
            out[name] = bundled.meta_dir
            continue
        folder = tmp_path_factory.mktemp(f"ct2-{name}")
        for f in ("config.json", "tokenizer.json", "vocabulary.txt"):
            os.symlink(bundled.meta_dir / f, folder / f)
        (folder / "model.bin").write_bytes(weights.read_bundled_bytes(bundled))
        out[name] = folder
    return out


def test_folder_contents(converted):
    from transformers import GenerationConfig, WhisperConfig, WhisperTokenizer

    for name, folder in converted.items():
        assert folder.name == f"whisper-{name}-{BUNDLED[name].version_tag}-c{CONVERTER_VERSION}"
        assert is_complete(folder)
        for f in REQUIRED_FILES:
            assert (folder / f).is_file()
        assert stat.S_IMODE((folder / "model.safetensors").stat().st_mode) == 0o644
        info = json.loads((folder / MARKER).read_text())
        assert info["sha256"] == BUNDLED[name].sha256 and info["converter_version"] == CONVERTER_VERSION
        cfg = WhisperConfig.from_pretrained(folder)
        gen = GenerationConfig.from_pretrained(folder)
        tok = WhisperTokenizer.from_pretrained(folder)
        assert len(tok) == cfg.vocab_size
        assert tok.convert_tokens_to_ids("<|0.00|>") == gen.no_timestamps_token_id + 1
        assert tok.convert_tokens_to_ids("<|30.00|>") == cfg.vocab_size - 1
        assert len(gen.alignment_heads) == 8
        if name == "base":
            assert gen.is_multilingual and gen.lang_to_id["<|de|>"] == 50261 and gen.task_to_id["translate"] == 50358
            assert (cfg.d_model, cfg.encoder_layers, cfg.vocab_size) == (512, 6, 51865)
        else:
            assert not gen.is_multilingual and cfg.decoder_start_token_id == 50257
            assert (cfg.d_model, cfg.encoder_layers, cfg.vocab_size) == (384, 4, 51864)


@pytest.mark.parametrize("name", list(BUNDLED))
def test_greedy_ids_equal_ctranslate2(name, converted, ct2_dirs, clip):
    """Same features in, same tokens out: plain greedy, greedy under timestamp rules, no-speech prob."""
    import ctranslate2
    import torch
    from transformers import WhisperForConditionalGeneration
    from transformers.generation.utils import GenerationMixin

    from flarelet.bindings.ai.asr.audio import decode_audio
    from flarelet.bindings.ai.asr.engine import load_engine
    from flarelet.bindings.ai.asr.options import TranscribeOptions
    from flarelet.bindings.ai.asr.work import DecodeWork

    # One CT2 thread: its OpenMP pool spinning beside torch's would only slow both down.
    ct = ctranslate2.models.Whisper(str(ct2_dirs[name]), device="cpu", compute_type="float32", intra_threads=1)
    engine = load_engine(converted[name])
    hf = WhisperForConditionalGeneration.from_pretrained(converted[name]).eval()
    for n, (clip_name, language) in enumerate(CLIPS[name]):
        mel = engine.log_mel(decode_audio(clip(clip_name)))[:, :3000]
        features = ctranslate2.StorageView.from_array(np.ascontiguousarray(mel[None]))
        sot = engine.vocab.sot_sequence(language, "transcribe")

        # 1. plain greedy, no timestamps: CT2 generate vs transformers generate (first clip)
        prompt = sot + [engine.vocab.no_timestamps]
        ct_ids = ct.generate(
            features, [prompt], beam_size=1, max_length=448, suppress_blank=True, suppress_tokens=[-1]
        )[0].sequences_ids[0]
        if n == 0:
            with torch.inference_mode():
                enc = hf.model.encoder(torch.from_numpy(mel[None]))
                out = GenerationMixin.generate(
                    hf,
                    encoder_outputs=enc,
                    decoder_input_ids=torch.tensor([prompt]),
                    num_beams=1,
                    do_sample=False,
                    max_length=448,
                    suppress_tokens=hf.generation_config.suppress_tokens,
                    begin_suppress_tokens=hf.generation_config.begin_suppress_tokens,
                    forced_decoder_ids=None,
                )
            hf_ids = [t for t in out[0, len(prompt) :].tolist() if t != engine.vocab.eot]
            assert hf_ids == ct_ids, clip_name

        # 2. the engine's own decoder (timestamp rules, KV cache) vs CT2 with timestamps
        r = ct.generate(
            features,
            [sot],
            beam_size=1,
            max_length=448,
            suppress_blank=True,
            suppress_tokens=[-1],
            return_no_speech_prob=True,
            max_initial_timestamp_index=50,
        )[0]
        work = DecodeWork(engine.window(engine.encode(mel)), sot, len(sot), 0.0, TranscribeOptions(), None)
        mine = engine.decode_rows([work])[0]
        assert mine.tokens == r.sequences_ids[0], clip_name
        assert mine.no_speech_prob == pytest.approx(r.no_speech_prob, abs=1e-4)


def test_second_call_uses_the_cache(converted):
    folder = converted["tiny.en"]
    marker = folder / MARKER
    before = marker.stat().st_mtime_ns
    assert ensure_weights("tiny.en", folder.parent) == folder
    assert marker.stat().st_mtime_ns == before


def test_crash_mid_conversion_never_looks_complete(tmp_path):
    """A process killed half-way (after model.safetensors is written) leaves only a .tmp folder;
    the next conversion removes it and produces a complete folder."""
    models = tmp_path / "models"
    script = textwrap.dedent(
        f"""
        import os, sys
        from pathlib import Path
        import flarelet.bindings.ai.asr.convert as convert
        def crash(*args, **kwargs):
            os._exit(9)  # like a kill -9 / power cut: no cleanup code runs
        convert.build_generation_config = crash
        from flarelet.bindings.ai.asr.weights import ensure_weights
        ensure_weights("tiny.en", Path({str(models)!r}), progress=False)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 9, proc.stderr
    target = target_dir(models, BUNDLED["tiny.en"])
    assert not target.exists()
    leftovers = list(models.glob(".tmp-whisper-tiny.en-*"))
    assert len(leftovers) == 1
    assert (leftovers[0] / "model.safetensors").is_file() and not (leftovers[0] / MARKER).exists()
    assert not is_complete(leftovers[0])

    assert ensure_weights("tiny.en", models, progress=False) == target
    assert is_complete(target)
    assert not list(models.glob(".tmp-whisper-*"))


def test_exception_mid_conversion_cleans_up(tmp_path, monkeypatch):
    import flarelet.bindings.ai.asr.convert as convert

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(convert, "build_generation_config", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        ensure_weights("tiny.en", tmp_path, progress=False)
    assert list(tmp_path.iterdir()) == [tmp_path / ".whisper-tiny.en.lock"]


def test_folder_without_marker_is_redone(converted, tmp_path):
    import shutil

    target = target_dir(tmp_path, BUNDLED["tiny.en"])
    shutil.copytree(converted["tiny.en"], target)
    (target / MARKER).unlink()
    (target / "model.safetensors").write_bytes(b"half a file")
    assert not is_complete(target)
    assert ensure_weights("tiny.en", tmp_path, progress=False) == target
    assert is_complete(target) and (target / "model.safetensors").stat().st_size > 100_000_000


def test_damaged_package_is_reported(tmp_path, monkeypatch):
    monkeypatch.setitem(BUNDLED, "tiny.en", replace(BUNDLED["tiny.en"], sha256="0" * 64))
    with pytest.raises(WeightsError, match="reinstall"):
        ensure_weights("tiny.en", tmp_path, progress=False)
    assert not any(p.name.startswith("whisper-") for p in tmp_path.iterdir())


def test_converter_needs_no_torch(tmp_path):
    """Convert with torch made unimportable (as on a machine without it)."""
    script = textwrap.dedent(
        f"""
        import importlib.abc, importlib.util, sys
        BLOCK = ("torch", "torchaudio", "torchvision")
        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in BLOCK:
                    raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        sys.meta_path.insert(0, Block())
        real = importlib.util.find_spec
        importlib.util.find_spec = lambda name, *a, **k: None if name.split(".")[0] in BLOCK else real(name, *a, **k)
        from pathlib import Path
        from flarelet.bindings.ai.asr.weights import ensure_weights, is_complete
        folder = ensure_weights("tiny.en", Path({str(tmp_path)!r}), progress=True)
        assert is_complete(folder)
        assert "torch" not in sys.modules
        print("converted", folder)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "converted" in proc.stdout
    assert "Converting Whisper tiny.en" in proc.stderr  # the rich progress bar was drawn
