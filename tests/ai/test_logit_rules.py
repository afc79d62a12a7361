"""Whisper's logit rules (flarelet.bindings.ai.asr.logit_rules) on a toy vocabulary, rule by rule,
with what openai-whisper's ``ApplyTimestampRules`` / ``SuppressBlank`` / ``SuppressTokens`` allow."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

torch = pytest.importorskip("torch")

from flarelet.bindings.ai.asr.logit_rules import LogitRules, SuppressBlank, SuppressTokens, TimestampRules  # noqa: E402

# text 0..4, eot 5, specials 6..9 (sot 6, translate 7, transcribe 8, notimestamps 9), timestamps 10..19
EOT, TB, V = 5, 10, 20


def row(generated, forced=0, max_initial=None):
    stamps = [t for t in generated if t >= TB]
    return SimpleNamespace(
        generated=list(generated), forced=forced, last_ts=stamps[-1] if stamps else None, max_initial=max_initial
    )


def allowed(rule, rows, logits=None):
    if logits is None:  # text tokens likelier than all timestamps together: no timestamp is forced
        logits = torch.zeros(len(rows), V)
        logits[:, :TB] = 5.0
    logits = logits.clone()
    rule.apply(logits, rows)
    return [set(torch.nonzero(~torch.isinf(r)).flatten().tolist()) for r in logits]


def test_first_token_is_a_timestamp_no_later_than_max_initial_as_openai_whisper():
    assert allowed(TimestampRules(TB, EOT), [row([], max_initial=2)]) == [{10, 11, 12}]
    assert allowed(TimestampRules(TB, EOT), [row([])]) == [set(range(TB, V))]


def test_timestamps_come_in_pairs_and_never_go_back_as_openai_whisper():
    rules = TimestampRules(TB, EOT)
    got = allowed(rules, [row([TB]), row([TB, 3]), row([TB, 3, TB + 4]), row([TB, 3, TB + 4, TB + 4])])
    assert got[0] == set(range(TB))  # a pair <|0.00|> ... just opened: text (or eot) next
    assert got[1] == set(range(TB)) | set(range(TB + 1, V))  # text, or a later timestamp
    assert got[2] == set(range(EOT, TB)) | set(range(TB + 4, V))  # a single timestamp: close it, no text
    assert got[3] == set(range(TB))  # a pair just closed: text or eot


def test_timestamp_is_forced_when_their_mass_beats_every_text_token_as_openai_whisper():
    logits = torch.zeros(2, V)
    logits[0, TB:] = 1.0  # timestamps' total probability beats every text token
    logits[1, 0] = 10.0  # one text token clearly wins
    got = allowed(TimestampRules(TB, EOT), [row([TB, 3]), row([TB, 3])], logits)
    assert got[0] == set(range(TB + 1, V))
    assert got[1] == set(range(TB)) | set(range(TB + 1, V))


def test_blank_and_eot_are_suppressed_only_at_the_first_generated_token():
    rule = SuppressBlank([0, EOT], "cpu")
    got = allowed(rule, [row([TB], forced=1), row([TB, 3], forced=1), None])
    assert got[0] == set(range(V)) - {0, EOT}
    assert got[1] == set(range(V))
    assert got[2] == set(range(V))  # a finished row is left alone


def test_suppressed_tokens_are_never_generated():
    assert allowed(SuppressTokens([1, 9], "cpu"), [row([]), None]) == [set(range(V)) - {1, 9}] * 2


def test_logit_rules_suppress_the_task_specials_and_notimestamps():
    vocab = SimpleNamespace(
        transcribe_id=8, translate_id=7, sot=6, sot_prev=6, sot_lm=6, no_speech=6,
        vocab_size=V, no_timestamps=9, timestamp_begin=TB, eot=EOT,
    )  # fmt: skip
    rules = LogitRules(vocab, suppress=[2, 99], begin_suppress=[0, EOT], device="cpu")
    assert allowed(rules, [row([TB, 3], forced=1)]) == [{0, 1, 3, 4, EOT} | set(range(TB + 1, V))]
