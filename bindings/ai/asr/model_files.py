"""A Whisper folder's JSON files, read without transformers: the lean engine's configuration.

Why not ``WhisperConfig`` / ``GenerationConfig`` / ``WhisperTokenizer``: importing those classes and
building transformers' tokenizer costs ~45 MB of resident memory (the tokenizer alone ~33 MB, most
of it a second copy of the vocabulary and merges in Rust), and the lean engine needs a few numbers,
the token ids of the specials and each token's text. So:

* :class:`ModelConfig` -- ``config.json``'s dimensions, with ``WhisperConfig``'s defaults for keys a
  checkpoint leaves out (``tests/ai/test_memory.py`` checks both against transformers);
* :class:`GenerationSettings` -- ``generation_config.json``'s token ids and lists;
* :class:`TokenizerFile` -- ``tokenizer.json``'s vocabulary (the pieces, the special tokens' ids),
  with the ``tokenizers`` library loaded only when a prompt has to be encoded.

A folder with only ``vocab.json`` + ``merges.txt`` (no ``tokenizer.json``) goes through
transformers' ``WhisperTokenizer`` (see :func:`load_tokenizer`).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any


def _read_json(path: Path) -> dict[str, Any]:
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{path} does not hold a JSON object")
    return data


@dataclass(frozen=True)
class ModelConfig:
    """The dimensions and token lists of ``config.json`` the lean engine uses; defaults are
    ``WhisperConfig``'s, so a checkpoint that leaves a key out means what it means in transformers."""

    vocab_size: int = 51865
    num_mel_bins: int = 80
    d_model: int = 384
    encoder_layers: int = 4
    encoder_attention_heads: int = 6
    encoder_ffn_dim: int = 1536
    decoder_layers: int = 4
    decoder_attention_heads: int = 6
    decoder_ffn_dim: int = 1536
    max_source_positions: int = 1500
    max_target_positions: int = 448
    median_filter_width: int = 7
    suppress_tokens: tuple[int, ...] | None = None
    begin_suppress_tokens: tuple[int, ...] | None = (220, 50256)

    @classmethod
    def from_folder(cls, folder: Path) -> ModelConfig:
        raw = _read_json(Path(folder) / "config.json")
        values: dict[str, Any] = {}
        for f in fields(cls):
            if raw.get(f.name) is None:
                continue
            value = raw[f.name]
            values[f.name] = tuple(int(v) for v in value) if isinstance(value, list) else int(value)
        return cls(**values)


@dataclass(frozen=True)
class GenerationSettings:
    """The entries of ``generation_config.json`` the lean engine reads (``None``: not in the file)."""

    eos_token_id: int | list[int] | None = None
    decoder_start_token_id: int | None = None
    no_timestamps_token_id: int | None = None
    prev_sot_token_id: int | None = None
    is_multilingual: bool | None = None
    lang_to_id: dict[str, int] = field(default_factory=dict)
    task_to_id: dict[str, int] = field(default_factory=dict)
    alignment_heads: list[list[int]] | None = None
    suppress_tokens: list[int] | None = None
    begin_suppress_tokens: list[int] | None = None

    @classmethod
    def from_folder(cls, folder: Path) -> GenerationSettings:
        raw = _read_json(Path(folder) / "generation_config.json")
        values = {f.name: raw[f.name] for f in fields(cls) if raw.get(f.name) is not None}
        return cls(**values)


class TokenizerFile:
    """A ``tokenizer.json`` as :class:`~flarelet.bindings.ai.asr.vocabulary.Vocabulary` reads a
    tokenizer: token <-> id for every entry of the vocabulary and the added tokens, the unknown
    token's id, and ``encode`` (through the ``tokenizers`` library, built on first use: only
    prompts and prefixes are encoded, and the library's copy of the vocabulary costs ~30 MB)."""

    def __init__(self, folder: Path) -> None:
        self.path = Path(folder) / "tokenizer.json"
        data = _read_json(self.path)
        vocab = data.get("model", {}).get("vocab")
        if not isinstance(vocab, dict):
            raise ValueError(f"{self.path}: no BPE vocabulary (model.vocab)")
        ids = {str(k): int(v) for k, v in vocab.items()}
        for added in data.get("added_tokens") or []:
            ids[str(added["content"])] = int(added["id"])
        del data, vocab
        unk = "<|endoftext|>"
        config = Path(folder) / "tokenizer_config.json"
        if config.is_file():
            token = _read_json(config).get("unk_token")
            unk = token.get("content", unk) if isinstance(token, dict) else token or unk
        self.unk_token_id = ids.get(unk)
        self._ids: dict[str, int] | None = ids
        self._encoder: Any = None
        self._lock = threading.Lock()

    def convert_tokens_to_ids(self, token: str) -> int | None:
        """As transformers does: an unknown token gives the unknown token's id."""
        if self._ids is None:
            raise RuntimeError("the vocabulary was released (see release_vocabulary)")
        return self._ids.get(token, self.unk_token_id)

    def release_vocabulary(self) -> None:
        """Drop the token -> id table (~7 MB for Whisper's 51k tokens): called by the
        vocabulary once it has what it needs; ``encode`` still works (it reads the file)."""
        self._ids = None

    def convert_ids_to_tokens(self, ids: Sequence[int]) -> list[str | None]:
        if self._ids is None:
            raise RuntimeError("the vocabulary was released (see release_vocabulary)")
        pieces = {i: t for t, i in self._ids.items()}  # asked once per model: not kept
        return [pieces.get(int(i)) for i in ids]

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        if add_special_tokens:
            raise ValueError("TokenizerFile encodes text only (add_special_tokens=False)")
        with self._lock:
            if self._encoder is None:
                from tokenizers import Tokenizer

                self._encoder = Tokenizer.from_file(str(self.path))
        return list(self._encoder.encode(text, add_special_tokens=False).ids)


def load_tokenizer(folder: Path) -> Any:
    """:class:`TokenizerFile` for a folder with ``tokenizer.json``, else transformers' tokenizer."""
    folder = Path(folder)
    if (folder / "tokenizer.json").is_file():
        return TokenizerFile(folder)
    from transformers import WhisperTokenizer

    return WhisperTokenizer.from_pretrained(folder, local_files_only=True)
