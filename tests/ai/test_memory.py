"""Memory of the lean Whisper engine (README "Speed", memory): the pieces that keep it down give
the same results as what they replaced, and a real process that loads tiny.en and transcribes the
63 s clip stays under a named peak-RSS limit.

* the folder's JSON files read without transformers (``model_files.py``, mel filters in
  ``features.py``): the same config, token ids, vocabulary, encodings and filters as transformers';
* weights read tensor by tensor (``state_file.py``): the same tensors as safetensors' loader;
  row-block quantization: the same packed int8 weights as ``from_float`` on the whole matrix;
* the embedding rows read from the file: the table's rows;
* the median filter a head at a time: the same values.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from flarelet.bindings.ai.asr.alignment import median_filter
from flarelet.bindings.ai.asr.decoder import _int8_projection, fold_layer_norm, fp16_linear, int8_linear
from flarelet.bindings.ai.asr.features import mel_filters
from flarelet.bindings.ai.asr.model_files import GenerationSettings, ModelConfig, TokenizerFile
from flarelet.bindings.ai.asr.state_file import LazyState, RowFile, StateFileError
from flarelet.bindings.ai.asr.vocabulary import Vocabulary
from flarelet.bindings.ai.asr.weights import ensure_weights
from flarelet.bindings.ai.settings import AiSettings

REPO = Path(__file__).resolve().parents[2]
#: What loading tiny.en (int8, the default) and transcribing the 63 s espeak clip add to a process's
#: peak resident memory (``VmHWM``) beyond its size right after ``import torch``: measured 258 MB in
#: a venv in use and 291 MB in a freshly installed one (the code was 418 MB before this limit).
#: Why above torch and not the whole peak: the same code peaks at 482 MB in one venv and 567 MB in a
#: just-installed copy, because mapped library pages count as resident, and a library file whose
#: pages all sit in the page cache (as right after ``pip install``) gets its neighbouring pages
#: mapped in on every fault -- ``import torch`` alone is 224 MB in the first venv and 276 MB in the
#: second. Issue 17's target is 400 MB in all (README "Speed" says what is left).
TINY_EN_PEAK_ABOVE_TORCH_MB = 330


def _from_float(weight: torch.Tensor, bias: torch.Tensor | None, fp16: bool = False) -> nn.Module:
    """The reference: torch's own ``from_float`` on a float ``nn.Linear`` (what the engine did)."""
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear
    from torch.ao.quantization import float16_dynamic_qconfig, per_channel_dynamic_qconfig

    layer = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
    layer.weight = nn.Parameter(weight.clone(), requires_grad=False)
    if bias is not None:
        layer.bias = nn.Parameter(bias.clone(), requires_grad=False)
    layer.qconfig = float16_dynamic_qconfig if fp16 else per_channel_dynamic_qconfig  # type: ignore[assignment]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return DynamicLinear.from_float(layer)


def _same_layer(a: nn.Module, b: nn.Module, x: torch.Tensor) -> None:
    wa, ba = a._packed_params._weight_bias()  # type: ignore[operator]
    wb, bb = b._packed_params._weight_bias()  # type: ignore[operator]
    if wa.is_quantized:
        assert torch.equal(wa.int_repr(), wb.int_repr())
        assert torch.equal(wa.q_per_channel_scales(), wb.q_per_channel_scales())
    else:
        assert torch.equal(wa, wb)
    assert (ba is None and bb is None) or torch.equal(ba, bb)
    assert torch.equal(a(x), b(x))
    assert (a.in_features, a.out_features) == (b.in_features, b.out_features)


def test_int8_and_fp16_layers_are_bit_identical_to_torch_from_float():
    torch.manual_seed(0)
    w, b, x = torch.randn(96, 64), torch.randn(96), torch.randn(5, 64)
    _same_layer(int8_linear(w, b), _from_float(w, b), x)
    _same_layer(int8_linear(w, None), _from_float(w, None), x)
    _same_layer(fp16_linear(w, b), _from_float(w, b, fp16=True), x)


def test_output_projection_quantized_in_row_blocks_equals_the_whole_matrix(monkeypatch):
    """Folding the final norm and quantizing per row, a block at a time, gives what folding and
    quantizing the whole table gave (so transcripts stay identical)."""
    from flarelet.bindings.ai.asr import decoder

    torch.manual_seed(1)
    table, x = torch.randn(1000, 32), torch.randn(3, 32)
    ln = nn.LayerNorm(32)
    with torch.no_grad():
        ln.weight.uniform_(0.5, 3.0)
        ln.bias.uniform_(-1, 1)
    whole = int8_linear(*fold_layer_norm(ln, table, None))
    monkeypatch.setattr(decoder, "TABLE_BLOCK_ROWS", 96)  # several blocks, the last one short
    _same_layer(_int8_projection({"t": table}, "t", ln), whole, x)


@pytest.fixture()
def tensor_file(tmp_path: Path) -> tuple[Path, dict[str, torch.Tensor]]:
    from safetensors.torch import save_file

    torch.manual_seed(2)
    tensors = {
        "a.weight": torch.randn(7, 5),
        "b.half": torch.randn(4, 3).half(),
        "c.bf16": torch.randn(6).bfloat16(),
        "d.ids": torch.arange(10, dtype=torch.int64),
        "e.scalar": torch.tensor(3.5),
    }
    path = tmp_path / "model.safetensors"
    save_file(tensors, str(path), metadata={"format": "pt"})
    return path, tensors


def test_lazy_state_reads_what_safetensors_reads(tensor_file):
    path, tensors = tensor_file
    with LazyState([path]) as state:
        assert set(state) == set(tensors) and len(state) == len(tensors)
        for key, value in tensors.items():
            got = state[key]
            assert got.dtype == value.dtype and torch.equal(got, value), key
        assert torch.equal(state.rows("a.weight", 2, 5), tensors["a.weight"][2:5])
        assert torch.equal(state.rows("a.weight", 5, 99), tensors["a.weight"][5:])  # clipped at the end
        assert torch.equal(state.pop("a.weight"), tensors["a.weight"])
        assert "a.weight" not in state and state.pop("a.weight", None) is None
        with pytest.raises(KeyError):
            state["nope"]


def test_row_file_lookup_equals_the_table_and_refuses_out_of_range_ids(tensor_file):
    path, tensors = tensor_file
    with LazyState([path]) as state:
        entry = state.entry("b.half")
    assert entry is not None
    rows = RowFile(entry)
    ids = torch.tensor([[3, 0], [3, 1]])
    got = rows(ids)
    assert got.dtype == torch.float32 and got.shape == (2, 2, 3)
    assert torch.equal(got, tensors["b.half"][ids].float())
    for bad in (4, -1):
        with pytest.raises(IndexError):
            rows(torch.tensor([bad]))
    rows.close()


@pytest.mark.parametrize(
    "damage",
    [
        lambda raw: raw[:4],  # shorter than the header length
        lambda raw: (10**9).to_bytes(8, "little") + raw[8:],  # a header longer than the file
        lambda raw: raw[:-8],  # the last tensor's bytes cut short
    ],
)
def test_damaged_safetensors_file_is_refused_with_a_clear_error(tensor_file, tmp_path, damage):
    path, _ = tensor_file
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(damage(path.read_bytes()))
    with pytest.raises(StateFileError):
        LazyState([bad])


def test_median_filter_per_head_equals_the_reference_median():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((8, 30, 200)).astype(np.float32)
    padded = np.pad(x, [(0, 0), (0, 0), (3, 3)], mode="reflect")
    reference = np.median(np.lib.stride_tricks.sliding_window_view(padded, 7, axis=-1), axis=-1)
    got = median_filter(x, 7)
    assert got.dtype == x.dtype and np.array_equal(got, reference)


def test_mel_filters_equal_transformers_filter_bank():
    from transformers.audio_utils import mel_filter_bank

    for n_mels in (80, 128):
        reference = mel_filter_bank(
            num_frequency_bins=201,
            num_mel_filters=n_mels,
            min_frequency=0.0,
            max_frequency=8000.0,
            sampling_rate=16000,
            norm="slaney",
            mel_scale="slaney",
        )
        assert np.array_equal(mel_filters(400, n_mels, 16000), reference)


def test_model_config_defaults_are_whisper_configs(tmp_path):
    from transformers import WhisperConfig

    (tmp_path / "config.json").write_text(json.dumps({"model_type": "whisper"}))
    ours, theirs = ModelConfig.from_folder(tmp_path), WhisperConfig()
    for name in ModelConfig.__dataclass_fields__:
        value = getattr(theirs, name)
        assert getattr(ours, name) == (tuple(value) if isinstance(value, (list, tuple)) else value), name


# -- on the real weights ---------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("model", ["tiny.en", "base"])
def test_folder_files_read_as_transformers_reads_them(model, ai_settings: AiSettings):
    """Config, generation config, vocabulary and prompt encodings: the same as transformers'."""
    from transformers import GenerationConfig, WhisperConfig, WhisperTokenizer

    folder = ensure_weights(model, ai_settings.models_dir)
    cfg, gen = ModelConfig.from_folder(folder), GenerationSettings.from_folder(folder)
    hf_cfg, hf_gen = WhisperConfig.from_pretrained(folder), GenerationConfig.from_pretrained(folder)
    for name in ModelConfig.__dataclass_fields__:
        value = getattr(hf_cfg, name)
        assert getattr(cfg, name) == (tuple(value) if isinstance(value, list) else value), name
    for name in GenerationSettings.__dataclass_fields__:
        assert getattr(gen, name) == getattr(hf_gen, name, None) or (
            name in ("lang_to_id", "task_to_id") and getattr(gen, name) == {} and not hasattr(hf_gen, name)
        ), name
    hf_tok = WhisperTokenizer.from_pretrained(folder)
    ours = Vocabulary(TokenizerFile(folder), gen, cfg)
    theirs = Vocabulary(hf_tok, hf_gen, hf_cfg)
    assert {k: v for k, v in vars(ours).items() if k != "tokenizer"} == {
        k: v for k, v in vars(theirs).items() if k != "tokenizer"
    }
    for text in [" Hello world.", "naïve café, 1,234.5 -- 日本語のテキスト", "<|endoftext|> x", "  two  spaces\nline"]:
        assert ours.encode_text(text) == theirs.encode_text(text), text


@pytest.mark.slow
def test_tiny_en_embedding_rows_from_the_file_equal_the_fp16_table(ai_settings: AiSettings):
    from flarelet.bindings.ai.asr.engine import load_engine

    folder = ensure_weights("tiny.en", ai_settings.models_dir)
    engine = load_engine(folder, "cpu", 1, quantize="int8")
    assert isinstance(engine.lean.embed, RowFile)
    with LazyState([folder / "model.safetensors"]) as state:
        table = state["model.decoder.embed_tokens.weight"]
    ids = torch.tensor([0, 1, 220, 50256, 50257, table.shape[0] - 1])
    assert torch.equal(engine.lean.embed(ids), table.half().float()[ids])


def _c60_text() -> str:
    spec = importlib.util.spec_from_file_location("bench_whisper", REPO / "bench" / "whisper.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_whisper"] = module
    try:
        spec.loader.exec_module(module)
    finally:
        sys.modules.pop("bench_whisper", None)
    return module.C60


_MEASURE = """
import json, sys


def peak_mb():  # VmHWM: this process's own peak (ru_maxrss starts at the parent's size at fork)
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmHWM")) / 1024


import numpy as np
import torch  # noqa: F401

with open("/proc/self/status") as fh:
    torch_mb = next(int(line.split()[1]) for line in fh if line.startswith("VmRSS")) / 1024
from flarelet.bindings.ai import catalog
from flarelet.bindings.ai.asr import engine, inference
from flarelet.bindings.ai.asr.schemas import AsrRequest
from flarelet.bindings.ai.settings import AiSettings

settings = AiSettings.from_options({})
spec = catalog.resolve("@cf/openai/whisper-tiny-en")
eng = engine.get_engine(spec, settings)
loaded = peak_mb()
text = inference.transcribe_request(spec, eng, np.load(sys.argv[1]), AsrRequest(audio=b""), None)["text"]
print(json.dumps({
    "torch_mb": torch_mb,
    "loaded_mb": loaded,
    "peak_mb": peak_mb(),
    "transformers": "transformers" in sys.modules,
    "onnxruntime": "onnxruntime" in sys.modules,
    "text": text,
}))
"""


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_tiny_en_peak_rss_from_start_through_the_63s_clip_stays_under_the_limit(synth, tmp_path, ai_settings):
    """A fresh process (so ``ru_maxrss`` is this work's alone): imports, loading tiny.en and a
    63 s transcription, word timestamps included: the peak beyond ``import torch`` under
    :data:`TINY_EN_PEAK_ABOVE_TORCH_MB`; the lean engine never imports transformers."""
    ensure_weights("tiny.en", ai_settings.models_dir)  # a first conversion is not what is measured
    samples = synth(_c60_text())
    assert 60 < samples.shape[0] / 16000 < 66
    clip = tmp_path / "c60.npy"
    np.save(clip, samples)
    proc = subprocess.run(
        [sys.executable, "-c", _MEASURE, str(clip)], capture_output=True, text=True, timeout=300, cwd=REPO
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert "weekly planning meeting" in result["text"]
    assert result["transformers"] is False
    print(f"peak {result['peak_mb']:.0f} MB, after import torch {result['torch_mb']:.0f} MB")
    assert result["peak_mb"] - result["torch_mb"] <= TINY_EN_PEAK_ABOVE_TORCH_MB, result
