"""Whisper's vocabulary: the special token ids, exact text decoding and word splitting.

Read from a Hugging Face folder's tokenizer and generation config, once per loaded model. Text
is decoded from a byte table of our own (GPT-2's byte-level BPE alphabet) rather than through the
tokenizer, so a token that holds half of a UTF-8 character decodes exactly as openai-whisper's
word splitting expects (``split_words``).
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from typing import Any

#: Languages written without spaces between words: each decoded piece is a word of its own.
NO_SPACE_LANGUAGES = {"zh", "ja", "th", "lo", "my", "yue"}


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte <-> printable-unicode table used by Whisper's byte-level BPE."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


class Vocabulary:
    """Token ids and text of one Whisper model (``tokenizer``: a
    :class:`~flarelet.bindings.ai.asr.model_files.TokenizerFile` or transformers' ``WhisperTokenizer``;
    ``gen``/``cfg``: the folder's generation config and model config, as
    :mod:`~flarelet.bindings.ai.asr.model_files` or transformers reads them)."""

    def __init__(self, tokenizer: Any, gen: Any, cfg: Any) -> None:
        self.tokenizer = tokenizer
        tok = tokenizer.convert_tokens_to_ids
        self.eot = int(gen.eos_token_id if isinstance(gen.eos_token_id, int) else gen.eos_token_id[0])
        self.sot = int(gen.decoder_start_token_id)
        self.no_timestamps = int(gen.no_timestamps_token_id)
        self.timestamp_begin = self.no_timestamps + 1
        self.sot_prev = int(getattr(gen, "prev_sot_token_id", None) or tok("<|startofprev|>"))
        self.sot_lm = int(tok("<|startoflm|>"))
        nospeech = tok("<|nospeech|>")
        if nospeech is None or nospeech == tokenizer.unk_token_id:
            nospeech = tok("<|nocaptions|>")
        self.no_speech = int(nospeech)
        self.vocab_size = int(cfg.vocab_size)
        multilingual = getattr(gen, "is_multilingual", None)
        self.multilingual = bool(cfg.vocab_size >= 51865 if multilingual is None else multilingual)
        self.lang_to_id: dict[str, int] = {
            k.strip("<|>"): int(v) for k, v in (getattr(gen, "lang_to_id", None) or {}).items()
        }
        task_to_id = getattr(gen, "task_to_id", None) or {}
        self.transcribe_id = int(task_to_id.get("transcribe", tok("<|transcribe|>")))
        self.translate_id = int(task_to_id.get("translate", tok("<|translate|>")))
        byte_decoder = {c: b for b, c in _bytes_to_unicode().items()}
        pieces = tokenizer.convert_ids_to_tokens(list(range(self.vocab_size)))
        self._token_bytes: list[bytes] = []
        for i, piece in enumerate(pieces):
            if i >= self.eot:
                self._token_bytes.append(b"")  # specials and timestamps carry no text
            else:
                self._token_bytes.append(bytes(byte_decoder.get(ch, 0) for ch in piece or ""))
        release = getattr(tokenizer, "release_vocabulary", None)
        if release is not None:  # a TokenizerFile: its token table is not needed any more
            release()

    def decode_text(self, tokens: Sequence[int]) -> str:
        return b"".join(self._token_bytes[t] for t in tokens if t < self.eot).decode("utf-8", errors="replace")

    def encode_text(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=False))

    def sot_sequence(self, language: str | None, task: str) -> list[int]:
        """``<|startoftranscript|>`` [+ language + task, multilingual models]."""
        if not self.multilingual:
            return [self.sot]
        seq = [self.sot]
        if language is not None:
            seq.append(self.lang_to_id[language])
        seq.append(self.translate_id if task == "translate" else self.transcribe_id)
        return seq

    def split_words(self, tokens: list[int], language: str) -> tuple[list[str], list[list[int]]]:
        """openai's ``split_to_word_tokens`` on byte-level tokens (``tokens`` end with eot)."""
        words, word_tokens = self._split_unicode(tokens)
        if language in NO_SPACE_LANGUAGES:
            return words, word_tokens
        merged_words: list[str] = []
        merged_tokens: list[list[int]] = []
        for sub, sub_tokens in zip(words, word_tokens):
            special = sub_tokens[0] >= self.eot
            if special or sub.startswith(" ") or sub.strip() in string.punctuation or not merged_words:
                merged_words.append(sub)
                merged_tokens.append(list(sub_tokens))
            else:
                merged_words[-1] += sub
                merged_tokens[-1].extend(sub_tokens)
        return merged_words, merged_tokens

    def _split_unicode(self, tokens: list[int]) -> tuple[list[str], list[list[int]]]:
        """Pieces that each decode to whole characters (a token may hold part of one)."""
        full = b"".join(self._token_bytes[t] for t in tokens).decode("utf-8", errors="replace")
        words: list[str] = []
        word_tokens: list[list[int]] = []
        current: list[int] = []
        offset = 0
        for t in tokens:
            current.append(t)
            if t >= self.eot:
                words.append("<|endoftext|>" if t == self.eot else "")
                word_tokens.append(current)
                current = []
                continue
            decoded = b"".join(self._token_bytes[x] for x in current).decode("utf-8", errors="replace")
            if "\ufffd" not in decoded or full[offset + decoded.index("\ufffd")] == "\ufffd":
                words.append(decoded)
                word_tokens.append(current)
                current = []
                offset += len(decoded)
        return words, word_tokens
