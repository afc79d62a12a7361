"""Beam search over one window: openai's ``BeamSearchDecoder`` with patience 1, ranked by
log-probability / length (``MaximumLikelihoodRanker``, what faster-whisper does); the beams run
as the rows of one decoder batch under the same logit rules as greedy decoding."""

from __future__ import annotations

from typing import Any

from .decoding import DecodeRow
from .fallback import compression_ratio
from .options import check_cancel
from .results import Decoded
from .work import DecodeWork

Beams = dict[tuple[int, ...], float]  # token sequence -> sum of log-probabilities


def beam_window(engine: Any, work: DecodeWork) -> Decoded:
    """The best beam of ``work``'s window on ``engine`` (temperature 0)."""
    import torch

    from .decoder import DecodeBatch

    vocab = engine.vocab
    beams, prompt = work.options.beam_size, work.prompt
    rules = [DecodeRow(work, engine.n_text_ctx, vocab.timestamp_begin) for _ in range(beams)]
    limit = rules[0].limit
    sequences: list[list[int]] = [list(prompt) for _ in range(beams)]
    sum_logprobs = [0.0] * beams
    finished: Beams = {}
    with torch.inference_mode():
        batch = DecodeBatch(engine.lean, [work.window.cross] * beams, limit, engine.threads)
        both = batch.prefill([prompt] * beams, [[prompt.index(vocab.sot), len(prompt) - 1]] * beams)
        no_speech_prob = float(torch.softmax(both[0, 0], dim=-1)[vocab.no_speech])
        logits = both[:, 1].contiguous()
        length = len(prompt)
        while True:
            check_cancel(work.options)
            for row, seq in zip(rules, sequences):
                row.generated = seq[work.rules_begin :]
                stamps = [t for t in row.generated if t >= vocab.timestamp_begin]
                row.last_ts = stamps[-1] if stamps else None
            engine.rules.apply(logits, rules)
            sequences, sources, sum_logprobs = _extend(logits, sequences, sum_logprobs, beams, vocab.eot, finished)
            length += 1
            if len(finished) >= beams or length >= limit:
                break
            batch.reorder(sources)
            logits = batch.step(torch.tensor([seq[-1] for seq in sequences], dtype=torch.long, device=engine.device))
    if len(finished) < beams:  # not enough finished beams: take the best running ones
        for j in sorted(range(len(sequences)), key=lambda j: sum_logprobs[j], reverse=True):
            finished[(*sequences[j], vocab.eot)] = sum_logprobs[j]
            if len(finished) >= beams:
                break
    return _best(finished, work, vocab, no_speech_prob)


def _extend(logits: Any, sequences: list[list[int]], sum_logprobs: list[float], beams: int, eot: int, finished: Beams):
    """One beam step: the ``beams`` best running continuations (and their source rows); the best
    finished ones go into ``finished`` (up to ``beams``)."""
    import torch

    logprobs = torch.log_softmax(logits, dim=-1)
    top_lp, top_tok = logprobs.topk(beams + 1, dim=-1)
    scores: Beams = {}
    sources: dict[tuple[int, ...], int] = {}
    for j in range(beams):
        for lp, tok in zip(top_lp[j].tolist(), top_tok[j].tolist()):
            seq = (*sequences[j], tok)
            scores[seq] = sum_logprobs[j] + lp
            sources[seq] = j
    next_seqs: list[list[int]] = []
    next_sources: list[int] = []
    next_sums: list[float] = []
    newly: Beams = {}
    for seq in sorted(scores, key=scores.__getitem__, reverse=True):
        if seq[-1] == eot:
            newly[seq] = scores[seq]
        else:
            next_seqs.append(list(seq))
            next_sources.append(sources[seq])
            next_sums.append(scores[seq])
            if len(next_seqs) == beams:
                break
    for seq in sorted(newly, key=newly.__getitem__, reverse=True):
        if len(finished) >= beams:
            break
        finished[seq] = newly[seq]
    return next_seqs, next_sources, next_sums


def _best(finished: Beams, work: DecodeWork, vocab: Any, no_speech_prob: float) -> Decoded:
    prompt = work.prompt

    def rank(item: tuple[tuple[int, ...], float]) -> float:  # log-probability / sampled length
        seq, score = item
        return score / max(1, len(seq) - len(prompt) - 1)

    best, sum_logprob = max(finished.items(), key=rank)
    new = [t for t in best[len(prompt) :] if t != vocab.eot]
    tokens = list(prompt[work.rules_begin :]) + new
    text = vocab.decode_text(tokens)
    return Decoded(
        tokens=tokens,
        sum_logprob=sum_logprob,
        avg_logprob=sum_logprob / (len(new) + 1),
        no_speech_prob=no_speech_prob,
        temperature=0.0,
        compression_ratio=compression_ratio(text),
        text=text,
    )
