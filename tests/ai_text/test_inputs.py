"""Input validation of the text models: Cloudflare's ranges and error codes."""

from __future__ import annotations

import pytest

from flarelet.bindings.ai import errors
from flarelet.bindings.ai.text.catalog import MODELS
from flarelet.bindings.ai.text.schemas import parse, parse_chat, parse_native, parse_responses

LLAMA = MODELS["@cf/meta/llama-3.1-8b-instruct"]
LLAMA_70B = MODELS["@cf/meta/llama-3.3-70b-instruct-fp8-fast"]
GPT_OSS = MODELS["@cf/openai/gpt-oss-120b"]


def code_of(fn, *args):
    with pytest.raises(errors.AiError) as info:
        fn(*args)
    return info.value


@pytest.mark.parametrize(
    "inputs, field",
    [
        ({}, ""),
        ({"prompt": "a", "messages": [{"role": "user", "content": "a"}]}, ""),
        ({"prompt": ""}, "prompt"),
        ({"prompt": "a", "temperature": 5.1}, "temperature"),
        ({"prompt": "a", "temperature": -0.1}, "temperature"),
        ({"prompt": "a", "top_k": 51}, "top_k"),
        ({"prompt": "a", "top_k": 0}, "top_k"),
        ({"prompt": "a", "top_p": 2.5}, "top_p"),
        ({"prompt": "a", "seed": 0}, "seed"),
        ({"prompt": "a", "seed": 10000000000}, "seed"),
        ({"prompt": "a", "repetition_penalty": 2.5}, "repetition_penalty"),
        ({"prompt": "a", "frequency_penalty": -0.5}, "frequency_penalty"),
        ({"prompt": "a", "presence_penalty": 3}, "presence_penalty"),
        ({"prompt": "a", "max_tokens": 0}, "max_tokens"),
        ({"prompt": "a", "max_tokens": "many"}, "max_tokens"),
        ({"messages": [{"content": "no role"}]}, "messages"),
        ({"prompt": "x" * 131073}, "prompt"),
    ],
)
def test_out_of_range_inputs_get_5006_naming_the_field_as_cloudflare_does(inputs, field):
    exc = code_of(parse_native, LLAMA, inputs)
    assert exc.code == 5006 and exc.status == 400
    assert exc.description.startswith("AiError: Bad input")
    assert field in exc.description


def test_llama_3_3_70b_allows_negative_penalties_but_caps_top_p_at_1():
    request = parse_native(LLAMA_70B, {"prompt": "a", "frequency_penalty": -1.5, "presence_penalty": -2})
    assert request.frequency_penalty == -1.5
    assert code_of(parse_native, LLAMA_70B, {"prompt": "a", "top_p": 1.5}).code == 5006
    assert code_of(parse_native, LLAMA, {"prompt": "a", "frequency_penalty": -1}).code == 5006


def test_lora_is_refused_with_cloudflares_finetune_not_found():
    exc = code_of(parse_native, LLAMA, {"prompt": "a", "lora": "my-adapter"})
    assert exc.code == 3037
    assert exc.description == "AiError: AiError: Finetune my-adapter not found"


def test_json_mode_with_streaming_is_refused_with_cloudflares_message():
    fmt = {"type": "json_schema", "json_schema": {"type": "object"}}
    for fn, inputs in (
        (lambda i: parse_native(LLAMA, i), {"prompt": "a", "stream": True, "response_format": fmt}),
        (parse_chat, {"messages": [{"role": "user", "content": "a"}], "stream": True, "response_format": fmt}),
    ):
        exc = code_of(fn, inputs)
        assert exc.code == 5006
        assert "JSON Mode currently doesn't support streaming" in exc.description


def test_tools_in_legacy_and_openai_forms_normalise_to_one():
    legacy = {"name": "getWeather", "description": "d", "parameters": {"type": "object", "properties": {}}}
    openai = {"type": "function", "function": legacy}
    a = parse_native(LLAMA, {"messages": [{"role": "user", "content": "a"}], "tools": [legacy]})
    b = parse_native(LLAMA, {"messages": [{"role": "user", "content": "a"}], "tools": [openai]})
    assert a.tools == b.tools == [{"type": "function", "function": legacy}]
    assert code_of(parse_native, LLAMA, {"prompt": "a", "tools": [{"description": "no name"}]}).code == 5006


def test_chat_completions_content_parts_and_developer_role():
    request = parse_chat(
        {
            "messages": [
                {"role": "developer", "content": "be brief"},
                {"role": "user", "content": [{"type": "text", "text": "hello "}, {"type": "text", "text": "there"}]},
            ],
            "max_completion_tokens": 9,
            "stop": "END",
        }
    )
    assert request.messages == [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello there"}]
    assert request.max_tokens == 9 and request.stop == ["END"]


def test_gpt_oss_takes_the_responses_form_and_other_chat_ids_do_not():
    form, request = parse(GPT_OSS, {"input": "What is 2+2?", "instructions": "Be terse"})
    assert form == "responses"
    assert request.messages == [{"role": "system", "content": "Be terse"}, {"role": "user", "content": "What is 2+2?"}]
    form, _ = parse(MODELS["@cf/zai-org/glm-4.7-flash"], {"messages": [{"role": "user", "content": "a"}]})
    assert form == "chat"
    assert parse_responses({"input": [{"role": "user", "content": "hi"}]}).messages == [
        {"role": "user", "content": "hi"}
    ]
