"""Greedy and sampled decoding of many windows in one batch (openai's ``GreedyDecoder``).

Every row follows its own prompt, temperature, sampler and stopping point under the logit rules
(:mod:`flarelet.bindings.ai.asr.logit_rules`); rows may read different windows (several
requests in one pass), and the batch shrinks as rows finish. Beam search is
:mod:`flarelet.bindings.ai.asr.beam`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .fallback import compression_ratio
from .options import TIME_PRECISION, Cancelled
from .results import Decoded
from .work import DecodeWork


class DecodeRow:
    """Per-row state of batched decoding (one :class:`DecodeWork`); a logit rules' ``RuleState``."""

    __slots__ = (
        "work",
        "generated",
        "forced",
        "limit",
        "length",
        "sum_logprob",
        "last_ts",
        "max_initial",
        "no_speech_prob",
        "done",
        "error",
    )

    def __init__(self, work: DecodeWork, n_text_ctx: int, timestamp_begin: int) -> None:
        self.work = work
        self.generated = list(work.prompt[work.rules_begin :])
        self.forced = len(self.generated)
        self.limit = min(n_text_ctx, len(work.prompt) + n_text_ctx // 2)
        self.length = len(work.prompt)
        self.sum_logprob = 0.0
        stamps = [t for t in self.generated if t >= timestamp_begin]
        self.last_ts = stamps[-1] if stamps else None
        opt = work.options
        mi = round(opt.max_initial_timestamp / TIME_PRECISION) if opt.max_initial_timestamp else None
        self.max_initial = mi if self.forced == 0 else None
        self.no_speech_prob = 0.0
        self.done = False
        self.error: BaseException | None = None

    def decoded(self, vocab: Any) -> Decoded:
        text = vocab.decode_text(self.generated)
        n = len(self.generated) - self.forced
        return Decoded(
            tokens=self.generated,
            sum_logprob=self.sum_logprob,
            avg_logprob=self.sum_logprob / (n + 1),
            no_speech_prob=self.no_speech_prob,
            temperature=self.work.temperature,
            compression_ratio=compression_ratio(text),
            text=text,
        )


def decode_rows(engine: Any, works: Sequence[DecodeWork], threads: int | None = None) -> list[Decoded | BaseException]:
    """Decode ``works`` on ``engine`` (:class:`~flarelet.bindings.ai.asr.engine.WhisperEngine`) in one
    batch; a row whose request is cancelled ends with :class:`Cancelled` in its place."""
    import torch

    from .decoder import DecodeBatch

    vocab = engine.vocab
    rows = [DecodeRow(w, engine.n_text_ctx, vocab.timestamp_begin) for w in works]
    with torch.inference_mode():
        batch = DecodeBatch(
            engine.lean, [w.window.cross for w in works], max(r.limit for r in rows), threads or engine.threads
        )
        picks = [[w.prompt.index(vocab.sot), len(w.prompt) - 1] for w in works]
        both = batch.prefill([w.prompt for w in works], picks)
        no_speech = torch.softmax(both[:, 0], dim=-1)[:, vocab.no_speech].tolist()
        for row, p in zip(rows, no_speech):
            row.no_speech_prob = float(p)
        logits = both[:, 1].contiguous()
        members: list[int] = list(range(len(rows)))  # batch position -> row index
        while True:
            view = _live_rows(rows, members)
            feed = _choose(engine, logits, view)
            alive = [b for b, i in enumerate(members) if not rows[i].done]
            if not alive:
                break
            if len(alive) <= (3 * len(members)) // 4:  # shrink the batch once a quarter is done
                batch.keep(alive)
                members = [members[b] for b in alive]
                feed = [feed[b] for b in alive]
            logits = batch.step(torch.tensor(feed, dtype=torch.long, device=engine.device))
    return [row.error if row.error is not None else row.decoded(vocab) for row in rows]


def _live_rows(rows: list[DecodeRow], members: list[int]) -> list[DecodeRow | None]:
    """The batch's rows in batch order, None for finished ones (cancelled rows finish here)."""
    view: list[DecodeRow | None] = []
    for i in members:
        row = rows[i]
        cancel = row.work.options.cancel
        if not row.done and cancel is not None and cancel.is_set():
            row.done, row.error = True, Cancelled()
        view.append(None if row.done else row)
    return view


def _choose(engine: Any, logits: Any, view: list[DecodeRow | None]) -> list[int]:
    """Pick each live row's next token (argmax, or a sample at the row's temperature), record it,
    and return the tokens to feed the next step (eot for finished rows)."""
    import torch

    eot, tb = engine.vocab.eot, engine.vocab.timestamp_begin
    engine.rules.apply(logits, view)
    lse = torch.logsumexp(logits, dim=-1)
    chosen = torch.argmax(logits, dim=-1)
    for b, row in enumerate(view):
        if row is not None and row.work.temperature > 0:
            probs = torch.softmax(logits[b] / row.work.temperature, dim=-1)
            chosen[b] = torch.multinomial(probs, 1, generator=row.work.generator)[0]
    logprob = (logits.gather(1, chosen[:, None])[:, 0] - lse).tolist()
    tokens = chosen.tolist()
    feed: list[int] = []
    for b, row in enumerate(view):
        if row is None:
            feed.append(eot)
            continue
        token = tokens[b]
        row.sum_logprob += logprob[b]
        if token == eot or row.length >= row.limit:
            row.done = True
            feed.append(eot)
            continue
        row.generated.append(token)
        if token >= tb:
            row.last_ts = token
        row.length += 1
        feed.append(token)
    return feed
