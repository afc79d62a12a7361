"""Whisper's logit rules, as openai-whisper's ``LogitFilter`` classes, applied to a batch of rows.

Each rule masks logits ``[B, V]`` in place before a token is chosen, row by row from each row's
:class:`RuleState` (its generated tokens); a row given as None is finished and left alone:

* :class:`SuppressTokens` -- tokens never generated (the config's ``suppress_tokens``, the task
  and start-of-transcript specials, ``<|notimestamps|>``), on every row;
* :class:`SuppressBlank` -- no blank or end-of-text as the first generated token;
* :class:`TimestampRules` -- timestamps come in pairs and never go back, the first token is a
  timestamp no later than ``max_initial_timestamp``, and a timestamp is forced when the
  timestamps' total probability beats every text token.

Greedy, sampled and beam decoding all use :class:`LogitRules` (the three in that order).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Protocol

NEG = -math.inf


class RuleState(Protocol):
    """What the rules read of one row: tokens after the start-of-transcript sequence."""

    generated: list[int]
    forced: int  # how many of ``generated`` were forced (the prompt's <|0.00|> and prefix)
    last_ts: int | None  # the last timestamp token in ``generated``
    max_initial: int | None  # latest first timestamp, in timestamp steps (None: no limit)


class SuppressTokens:
    def __init__(self, tokens: Sequence[int], device: Any) -> None:
        import torch

        self.index = torch.tensor(sorted(set(tokens)), dtype=torch.long, device=device)

    def apply(self, logits: Any, rows: Sequence[RuleState | None]) -> None:
        logits[:, self.index] = NEG


class SuppressBlank:
    def __init__(self, tokens: Sequence[int], device: Any) -> None:
        import torch

        self.index = torch.tensor(list(tokens), dtype=torch.long, device=device)

    def apply(self, logits: Any, rows: Sequence[RuleState | None]) -> None:
        for b, row in enumerate(rows):
            if row is not None and len(row.generated) == row.forced:
                logits[b, self.index] = NEG


class TimestampRules:
    def __init__(self, timestamp_begin: int, eot: int) -> None:
        self.tb = timestamp_begin
        self.eot = eot

    def apply(self, logits: Any, rows: Sequence[RuleState | None]) -> None:
        import torch

        tb = self.tb
        for b, row in enumerate(rows):
            if row is None:
                continue
            g = row.generated
            n = len(g)
            last_ts = n >= 1 and g[-1] >= tb
            penultimate_ts = n < 2 or g[-2] >= tb
            if last_ts:
                if penultimate_ts:  # a pair is complete: text (or eot) next
                    logits[b, tb:] = NEG
                else:  # a single timestamp closes a segment: another timestamp next
                    logits[b, : self.eot] = NEG
            if row.last_ts is not None:  # timestamps never go back
                last = row.last_ts if (last_ts and not penultimate_ts) else row.last_ts + 1
                logits[b, tb:last] = NEG
            if n == 0:  # the first token is a timestamp, not too late
                logits[b, :tb] = NEG
                if row.max_initial is not None:
                    logits[b, tb + row.max_initial + 1 :] = NEG
        # "timestamp probability mass beats every text token" -> force a timestamp. Comparing in
        # logit space is the same test as openai's in log-probability space (same offset both sides).
        ts_mass = torch.logsumexp(logits[:, tb:], dim=-1)
        text_max = logits[:, :tb].max(dim=-1).values
        for b, force in enumerate((ts_mass > text_max).tolist()):  # (a masked fill scans every row)
            if force:
                logits[b, :tb] = NEG


class LogitRules:
    """The rules of one model (``vocab``: :class:`~flarelet.bindings.ai.asr.vocabulary.Vocabulary`)."""

    def __init__(self, vocab: Any, suppress: Sequence[int], begin_suppress: Sequence[int], device: Any) -> None:
        specials = {vocab.transcribe_id, vocab.translate_id, vocab.sot, vocab.sot_prev, vocab.sot_lm, vocab.no_speech}
        never = {t for t in (*suppress, *specials) if 0 <= t < vocab.vocab_size} | {vocab.no_timestamps}
        self.rules = (
            SuppressTokens(sorted(never), device),
            SuppressBlank(begin_suppress, device),
            TimestampRules(vocab.timestamp_begin, vocab.eot),
        )

    def apply(self, logits: Any, rows: Sequence[RuleState | None]) -> None:
        for rule in self.rules:
            rule.apply(logits, rows)
