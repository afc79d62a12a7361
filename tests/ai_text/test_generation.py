"""The text engine on a tiny random Llama: max_tokens, stop tokens and strings, seeds, sampling
ranges, token-by-token output, JSON mode conformance."""

from __future__ import annotations

import json

import jsonschema_rs
import pytest

from flarelet.bindings.ai import errors
from flarelet.bindings.ai.text.catalog import MODELS
from flarelet.bindings.ai.text.engine import Generation
from flarelet.bindings.ai.text.schemas import parse_chat, parse_native

LLAMA = MODELS["@cf/meta/llama-3.1-8b-instruct"]


def run(engine, inputs, cancel=None):
    request = parse_native(LLAMA, inputs)
    state = Generation()
    pieces = list(engine.generate(request, cancel, state))
    return state, pieces


@pytest.fixture
def no_eos(tiny_engine):
    """The random model may sample its end-of-turn token; tests of the length limit take it away."""
    saved = tiny_engine.stop_ids
    tiny_engine.stop_ids = frozenset()
    yield tiny_engine
    tiny_engine.stop_ids = saved


def test_max_tokens_bounds_the_completion_and_finish_reason_is_length(no_eos):
    state, _ = run(no_eos, {"prompt": "Tell me about Paris", "max_tokens": 7})
    assert state.completion_tokens == 7
    assert len(state.token_ids) == 7
    assert state.finish_reason == "length"


def test_default_max_tokens_is_256_as_cloudflare_documents():
    assert parse_native(LLAMA, {"prompt": "hi"}).max_tokens == 256
    assert parse_native(LLAMA, {"prompt": "hi"}).temperature == 0.6


def test_stop_token_ends_generation_and_is_not_counted(no_eos):
    inputs = {"prompt": "The capital of France", "temperature": 1.5, "seed": 5, "max_tokens": 16}
    free, _ = run(no_eos, inputs)
    k = next(i for i in range(1, len(free.token_ids)) if free.token_ids[i] not in free.token_ids[:i])
    no_eos.stop_ids = frozenset({free.token_ids[k]})
    state, _ = run(no_eos, inputs)
    assert state.token_ids == free.token_ids[:k]
    assert state.completion_tokens == k
    assert state.finish_reason == "stop"


def test_stop_string_cuts_the_text_and_is_never_streamed(no_eos):
    inputs = {"messages": [{"role": "user", "content": "JSON looks"}], "temperature": 1.2, "seed": 3, "max_tokens": 40}
    request = parse_chat(inputs)
    full = Generation()
    list(no_eos.generate(request, None, full))
    text = full.text
    # a two-character stop string first seen mid-text
    at = next(
        i
        for i in range(2, len(text) - 2)
        if text[i : i + 2].strip() and "\ufffd" not in text[i : i + 2] and text.find(text[i : i + 2]) == i
    )
    stop = text[at : at + 2]
    request = parse_chat({**inputs, "stop": [stop]})
    state = Generation()
    pieces = list(no_eos.generate(request, None, state))
    assert state.text == text[: text.index(stop)]
    assert "".join(pieces) == state.text
    assert state.finish_reason == "stop"


def test_same_seed_gives_the_same_tokens_and_another_seed_other_tokens(no_eos):
    inputs = {"prompt": "A cat sits", "temperature": 1.5, "max_tokens": 24}
    a, _ = run(no_eos, {**inputs, "seed": 42})
    b, _ = run(no_eos, {**inputs, "seed": 42})
    c, _ = run(no_eos, {**inputs, "seed": 43})
    assert a.token_ids == b.token_ids
    assert a.token_ids != c.token_ids


def test_temperature_zero_is_greedy_and_deterministic_without_seed(no_eos):
    a, _ = run(no_eos, {"prompt": "Numbers", "temperature": 0, "max_tokens": 12})
    b, _ = run(no_eos, {"prompt": "Numbers", "temperature": 0, "max_tokens": 12})
    assert a.token_ids == b.token_ids


def test_top_k_one_equals_greedy(no_eos):
    greedy, _ = run(no_eos, {"prompt": "Stock markets", "temperature": 0, "max_tokens": 10})
    top1, _ = run(no_eos, {"prompt": "Stock markets", "temperature": 1.0, "top_k": 1, "max_tokens": 10, "seed": 7})
    assert top1.token_ids == greedy.token_ids


def test_repetition_and_presence_penalties_change_what_is_sampled(no_eos):
    base, _ = run(no_eos, {"prompt": "A dog", "temperature": 0, "max_tokens": 20})
    penalised, _ = run(no_eos, {"prompt": "A dog", "temperature": 0, "max_tokens": 20, "repetition_penalty": 2})
    pres, _ = run(no_eos, {"prompt": "A dog", "temperature": 0, "max_tokens": 20, "presence_penalty": 2})
    assert penalised.token_ids != base.token_ids or pres.token_ids != base.token_ids
    # a presence penalty of 2 on 20 greedy tokens of a random model: no token is picked twice in a row
    assert all(a != b for a, b in zip(pres.token_ids, pres.token_ids[1:]))


def test_tokens_come_out_one_by_one_as_generated(no_eos):
    request = parse_native(LLAMA, {"prompt": "The capital", "temperature": 0, "max_tokens": 16})
    state = Generation()
    seen = []
    for _ in no_eos.generate(request, None, state):
        seen.append(state.completion_tokens)
    assert seen and seen[0] < 16  # the first piece came out before the rest were computed
    assert seen == sorted(seen)


def test_cancel_stops_generation_with_3008(no_eos):
    import threading

    cancel = threading.Event()
    request = parse_native(LLAMA, {"prompt": "hi", "max_tokens": 50})
    gen = no_eos.generate(request, cancel, Generation())
    cancel.set()
    with pytest.raises(errors.AiError) as info:
        list(gen)
    assert info.value.code == 3008


def test_prompt_beyond_the_context_window_is_refused_in_cloudflare_shape(tiny_engine):
    with pytest.raises(errors.AiError) as info:
        run(tiny_engine, {"prompt": "word " * 2000, "max_tokens": 10, "raw": True})
    assert info.value.code == 5021
    assert "context window" in info.value.description


def test_raw_prompt_skips_the_chat_template(tiny_engine):
    raw = tiny_engine.prompt_ids(parse_native(LLAMA, {"prompt": "A cat", "raw": True}))
    templated = tiny_engine.prompt_ids(parse_native(LLAMA, {"prompt": "A cat"}))
    assert raw == tiny_engine.tokenizer("A cat", add_special_tokens=False)["input_ids"]
    assert len(templated) > len(raw)
    im_start = tiny_engine.tokenizer.convert_tokens_to_ids("<|im_start|>")
    assert im_start in templated and im_start not in raw


SCHEMA = {
    "type": "object",
    "properties": {
        "color": {"type": "string", "enum": ["red", "green", "blue"]},
        "ok": {"type": "boolean"},
        "size": {"type": "string", "enum": ["S", "M", "L"]},
    },
    "required": ["color", "ok", "size"],
    "additionalProperties": False,
}


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_json_mode_output_meets_the_schema_even_from_a_random_model(tiny_engine, seed):
    inputs = {
        "prompt": "Pick a color",
        "seed": seed,
        "temperature": 1.0,
        "max_tokens": 120,
        "response_format": {"type": "json_schema", "json_schema": SCHEMA},
    }
    state, _ = run(tiny_engine, inputs)
    value = json.loads(state.text)
    jsonschema_rs.validate(SCHEMA, value)


def test_json_mode_accepts_openai_wrapper_and_json_object():
    from flarelet.bindings.ai.text.schemas import json_schema_of

    wrapped = {"type": "json_schema", "json_schema": {"name": "x", "strict": True, "schema": SCHEMA}}
    assert json_schema_of(wrapped) == SCHEMA
    assert json_schema_of({"type": "json_schema", "json_schema": SCHEMA}) == SCHEMA
    assert json_schema_of({"type": "json_object"}) == {"type": "object"}
    assert json_schema_of({"type": "text"}) is None
