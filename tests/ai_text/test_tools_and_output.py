"""Tool-call parsing, output shapes and the SSE wire format, byte for byte."""

from __future__ import annotations

import json

import pytest

from flarelet.bindings.ai.text import output
from flarelet.bindings.ai.text.catalog import MODELS
from flarelet.bindings.ai.text.engine import Generation
from flarelet.bindings.ai.text.schemas import parse_chat, parse_native
from flarelet.bindings.ai.text.tools import parse_tool_calls, tools_system_text, with_tools

LLAMA = MODELS["@cf/meta/llama-3.1-8b-instruct"]
SCOUT = MODELS["@cf/meta/llama-4-scout-17b-16e-instruct"]
GLM = MODELS["@cf/zai-org/glm-4.7-flash"]
WEATHER = {
    "name": "getWeather",
    "description": "Weather at a place",
    "parameters": {
        "type": "object",
        "properties": {"latitude": {"type": "string"}, "longitude": {"type": "string"}},
        "required": ["latitude", "longitude"],
    },
}


def state_of(text, prompt_tokens=10, completion_tokens=5, finish="stop"):
    return Generation(prompt_tokens, completion_tokens, text, finish)


def test_hermes_tool_call_block_is_parsed():
    tools = [{"type": "function", "function": WEATHER}]
    call = '{"name": "getWeather", "arguments": {"latitude": "51.5074", "longitude": "-0.1278"}}'
    text = f"<tool_call>\n{call}\n</tool_call>"
    rest, calls = parse_tool_calls(text, tools)
    assert rest == ""
    assert [c.legacy() for c in calls] == [
        {"arguments": {"latitude": "51.5074", "longitude": "-0.1278"}, "name": "getWeather"}
    ]


def test_llama_style_bare_json_call_only_for_offered_tool_names():
    tools = [{"type": "function", "function": WEATHER}]
    rest, calls = parse_tool_calls('{"name": "getWeather", "parameters": {"latitude": "1", "longitude": "2"}}', tools)
    assert calls and calls[0].arguments == {"latitude": "1", "longitude": "2"}
    rest, calls = parse_tool_calls('{"name": "Ada", "parameters": {}}', tools)
    assert calls == [] and rest == '{"name": "Ada", "parameters": {}}'


def test_several_calls_and_an_unclosed_last_block():
    tools = [{"type": "function", "function": WEATHER}]
    text = 'Sure.<tool_call>{"name": "a", "arguments": {}}</tool_call>'
    text += '<tool_call>{"name": "b", "arguments": "{\\"x\\": 1}"}'
    rest, calls = parse_tool_calls(text, tools)
    assert rest == "Sure."
    assert [(c.name, c.arguments) for c in calls] == [("a", {}), ("b", {"x": 1})]


def test_tools_reach_a_template_without_tool_support_through_the_system_message():
    messages = with_tools([{"role": "user", "content": "weather?"}], [{"type": "function", "function": WEATHER}], False)
    assert messages[0]["role"] == "system" and '"getWeather"' in messages[0]["content"]
    assert "<tool_call>" in tools_system_text([{"type": "function", "function": WEATHER}])


def test_native_output_shape_with_tool_calls_legacy_and_scout_shapes():
    req = parse_native(LLAMA, {"messages": [{"role": "user", "content": "w"}], "tools": [WEATHER]})
    text = '<tool_call>{"name": "getWeather", "arguments": {"latitude": "1", "longitude": "2"}}</tool_call>'
    out = output.native_result(LLAMA, req, state_of(text))
    assert out == {
        "response": "",
        "tool_calls": [{"arguments": {"latitude": "1", "longitude": "2"}, "name": "getWeather"}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
    }
    scout = output.native_result(SCOUT, req, state_of(text))["tool_calls"][0]
    assert scout["type"] == "function" and scout["function"]["arguments"] == {"latitude": "1", "longitude": "2"}


def test_native_output_plain_text_as_cloudflare_replies():
    req = parse_native(LLAMA, {"prompt": "hi"})
    out = output.native_result(LLAMA, req, state_of("Hello! How can I help you today?", 136, 10))
    assert json.dumps(out, separators=(",", ":")) == (
        '{"response":"Hello! How can I help you today?","tool_calls":[],'
        '"usage":{"prompt_tokens":136,"completion_tokens":10,"total_tokens":146}}'
    )


def test_json_mode_response_is_an_object_and_an_unmet_schema_is_cloudflares_error():
    req = parse_native(LLAMA, {"prompt": "p", "response_format": {"type": "json_schema", "json_schema": {}}})
    assert output.native_result(LLAMA, req, state_of('{"a": 1}'))["response"] == {"a": 1}
    with pytest.raises(Exception) as info:
        output.native_result(LLAMA, req, state_of('{"a": '))
    assert "JSON Mode couldn't be met" in str(info.value)


def test_chat_completion_shape():
    req = parse_chat({"messages": [{"role": "user", "content": "hi"}]})
    out = output.chat_result(GLM, req, state_of("Hi there", finish="length"))
    assert out["object"] == "chat.completion" and out["model"] == GLM.id and out["id"].startswith("chatcmpl-")
    assert out["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Hi there", "reasoning_content": None},
            "finish_reason": "length",
            "logprobs": None,
        }
    ]
    assert out["usage"] == {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}


@pytest.fixture
def fixed_padding(monkeypatch):
    monkeypatch.setattr(output, "padding", lambda: "abdef")


def test_native_stream_bytes_match_cloudflares_framing(fixed_padding):
    req = parse_native(LLAMA, {"prompt": "hi", "stream": True})
    state = state_of("Hello world", 3, 2)
    body = b"".join(output.native_stream(LLAMA, req, ["Hello", " world"], state))
    assert body == (
        b'data: {"response":"Hello","tool_calls":[],"p":"abdef"}\n\n'
        b'data: {"response":" world","tool_calls":[],"p":"abdef"}\n\n'
        b'data: {"tool_calls":[],"p":"abdef"}\n\n'
        b'data: {"response":"","usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}\n\n'
        b"data: [DONE]\n\n"
    )


def test_stream_json_is_not_ascii_escaped_as_javascript_writes_it(fixed_padding):
    req = parse_native(LLAMA, {"prompt": "hi", "stream": True})
    body = b"".join(output.native_stream(LLAMA, req, ["¡Claro!"], state_of("¡Claro!", 1, 1)))
    assert 'data: {"response":"¡Claro!"'.encode() in body


def test_padding_is_a_prefix_of_cloudflares_alphabet():
    for _ in range(50):
        p = output.padding()
        assert p and (output.PADDING_ALPHABET * 2).startswith(p)


def test_chat_stream_sends_chunks_then_the_closing_usage_event_and_done(fixed_padding):
    req = parse_chat({"messages": [{"role": "user", "content": "hi"}], "stream": True})
    state = state_of("Hi you", 4, 2)
    events = b"".join(output.chat_stream(GLM, req, ["Hi", " you"], state)).split(b"\n\n")
    assert events[-1] == b"" and events[-2] == b"data: [DONE]"
    assert events[-3] == b'data: {"response":"","usage":{"prompt_tokens":4,"completion_tokens":2,"total_tokens":6}}'
    chunks = [json.loads(e[len(b"data: ") :]) for e in events[:-3]]
    assert all(c["object"] == "chat.completion.chunk" and c["model"] == GLM.id for c in chunks)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": "", "reasoning_content": None}
    assert [c["choices"][0]["delta"].get("content") for c in chunks[1:3]] == ["Hi", " you"]
    assert chunks[3]["choices"][0]["finish_reason"] == "stop"
    assert chunks[4]["choices"] == []
    assert len({c["id"] for c in chunks}) == 1


def test_openai_route_stream_has_no_cloudflare_closing_event():
    req = parse_chat({"messages": [{"role": "user", "content": "hi"}], "stream": True})
    body = b"".join(output.chat_stream(GLM, req, ["Hi"], state_of("Hi", 1, 1), openai=True))
    assert b'"response"' not in body and b'"p"' not in body
    assert body.endswith(b"data: [DONE]\n\n")


def test_streamed_tool_call_is_held_back_and_sent_in_the_tool_calls_event(fixed_padding):
    req = parse_native(LLAMA, {"messages": [{"role": "user", "content": "w"}], "tools": [WEATHER], "stream": True})
    text = '<tool_call>{"name": "getWeather", "arguments": {"latitude": "1", "longitude": "2"}}</tool_call>'
    pieces = ["<tool", "_call>", text[len("<tool_call>") :]]
    body = b"".join(output.native_stream(LLAMA, req, pieces, state_of(text, 2, 3)))
    assert b"<tool_call>" not in body
    assert (
        b'data: {"tool_calls":[{"arguments":{"latitude":"1","longitude":"2"},"name":"getWeather"}],"p":"abdef"}\n\n'
        in body
    )
