"""Inputs of the text-generation models, checked against Cloudflare's published ranges.

Three input forms end in one :class:`GenerationRequest` (what the engine needs):

* native (``prompt`` or ``messages``), :func:`parse_native` -- defaults ``max_tokens`` 256 and
  ``temperature`` 0.6, ranges from the model's JSON schema (3.3-70b and Llama 4 Scout allow
  negative penalties and cap ``top_p`` at 1);
* chat completions (OpenAI ``messages``), :func:`parse_chat`;
* Responses (``input``, ``instructions``; gpt-oss only), :func:`parse_responses`.

A bad field raises 5006 naming it; ``lora`` raises 3037 "Finetune ... not found", as Cloudflare
does for a fine-tune it does not hold (none exist locally).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .. import errors
from .catalog import WIDE_PENALTY_IDS, TextModel

DEFAULT_MAX_TOKENS = 256
DEFAULT_TEMPERATURE = 0.6
#: Cloudflare's ``prompt`` / message ``content`` maxLength.
MAX_TEXT_CHARS = 131072


@dataclass
class GenerationRequest:
    """What the engine runs: a conversation (or a raw prompt) and the sampling settings."""

    messages: list[dict] | None = None
    prompt: str | None = None
    raw: bool = False
    max_tokens: int = DEFAULT_MAX_TOKENS
    temperature: float = DEFAULT_TEMPERATURE
    top_p: float | None = None
    top_k: int | None = None
    seed: int | None = None
    repetition_penalty: float | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    stop: list[str] = field(default_factory=list)
    tools: list[dict] = field(default_factory=list)  # OpenAI form: {type: function, function: {...}}
    json_schema: dict | None = None  # JSON mode: the schema (``{}`` = any JSON object)
    stream: bool = False
    include_usage: bool = True


class _Message(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: str
    content: Any = None


class NativeInput(BaseModel):
    """The native schema's inputs (``prompt`` or ``messages``)."""

    model_config = ConfigDict(extra="ignore")
    prompt: str | None = Field(None, min_length=1, max_length=MAX_TEXT_CHARS)
    messages: list[_Message] | None = None
    raw: bool = False
    stream: bool = False
    max_tokens: int = Field(DEFAULT_MAX_TOKENS, ge=1)
    temperature: float = Field(DEFAULT_TEMPERATURE, ge=0, le=5)
    top_p: float | None = Field(None, ge=0, le=2)
    top_k: int | None = Field(None, ge=1, le=50)
    seed: int | None = Field(None, ge=1, le=9999999999)
    repetition_penalty: float | None = Field(None, ge=0, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    lora: str | None = None
    response_format: dict | None = None
    tools: list[dict] | None = None
    functions: list[dict] | None = None

    @model_validator(mode="after")
    def _one_form(self) -> NativeInput:
        if (self.prompt is None) == (self.messages is None):
            raise ValueError("exactly one of 'prompt' or 'messages' is required")
        return self


class ChatInput(BaseModel):
    """OpenAI chat-completions inputs."""

    model_config = ConfigDict(extra="ignore")
    messages: list[_Message] = Field(min_length=1)
    model: str | None = None
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    seed: int | None = None
    stop: str | list[str] | None = None
    n: int | None = Field(None, ge=1, le=1)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    response_format: dict | None = None
    tools: list[dict] | None = None
    tool_choice: Any = None
    stream: bool = False
    stream_options: dict | None = None


class ResponsesInput(BaseModel):
    """OpenAI Responses inputs (gpt-oss)."""

    model_config = ConfigDict(extra="ignore")
    input: str | list[dict] = Field(min_length=1)
    instructions: str | None = None
    model: str | None = None
    max_output_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    tools: list[dict] | None = None
    text: dict | None = None
    reasoning: dict | None = None
    stream: bool = False


def _validate(cls: type[BaseModel], inputs: Any) -> Any:
    if not isinstance(inputs, dict):
        raise errors.bad_input("Error: the input must be a JSON object")
    try:
        return cls.model_validate(inputs)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = "/".join(str(p) for p in first["loc"]) or "input"
        raise errors.bad_input(f"Type mismatch of '/{where}', {first['msg']}") from None


def text_content(content: Any) -> str:
    """A message's text: a string, or OpenAI content parts (text parts joined)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if isinstance(part, dict) and part.get("type") in ("text", "input_text", "output_text"):
                texts.append(str(part.get("text", "")))
            elif isinstance(part, str):
                texts.append(part)
        return "".join(texts)
    return json.dumps(content)


def _messages(items: list[_Message]) -> list[dict]:
    out = []
    for m in items:
        msg: dict[str, Any] = {
            "role": "system" if m.role == "developer" else m.role,
            "content": text_content(m.content),
        }
        extra = m.model_extra or {}
        if extra.get("tool_calls"):
            msg["tool_calls"] = extra["tool_calls"]
        if len(msg["content"]) > MAX_TEXT_CHARS:
            raise errors.bad_input(f"Type mismatch of '/messages', content is longer than {MAX_TEXT_CHARS} characters")
        out.append(msg)
    return out


def normalize_tools(tools: list[dict] | None) -> list[dict]:
    """Legacy ``{name, description, parameters}`` or OpenAI ``{type: "function", function}`` -> OpenAI form."""
    out = []
    for i, tool in enumerate(tools or []):
        if not isinstance(tool, dict):
            raise errors.bad_input(f"Type mismatch of '/tools/{i}', must be object")
        fn = tool.get("function") if tool.get("type") == "function" else tool
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not fn["name"]:
            raise errors.bad_input(f"Type mismatch of '/tools/{i}', a tool needs a 'name'")
        out.append(
            {
                "type": "function",
                "function": {
                    "name": fn["name"],
                    "description": str(fn.get("description") or ""),
                    "parameters": fn.get("parameters") or {"type": "object", "properties": {}},
                },
            }
        )
    return out


def json_schema_of(response_format: dict | None) -> dict | None:
    """The schema JSON mode must meet, or None. Accepts the documented ``{type: "json_schema",
    json_schema: <schema>}``, OpenAI's wrapper ``json_schema: {name, strict, schema}`` and
    ``{type: "json_object"}`` (any object)."""
    if not response_format:
        return None
    kind = response_format.get("type")
    if kind in (None, "text"):
        return None
    if kind == "json_object":
        return {"type": "object"}
    if kind != "json_schema":
        raise errors.bad_input("Type mismatch of '/response_format/type', must be one of json_object, json_schema")
    schema = response_format.get("json_schema") or response_format.get("schema") or {}
    if not isinstance(schema, dict):
        raise errors.bad_input("Type mismatch of '/response_format/json_schema', must be object")
    if "schema" in schema and isinstance(schema["schema"], dict) and ("name" in schema or "strict" in schema):
        schema = schema["schema"]
    return schema or {"type": "object"}


def _refuse_json_stream(json_schema: dict | None, stream: bool) -> None:
    if json_schema is not None and stream:
        raise errors.bad_input("JSON Mode currently doesn't support streaming")


def parse_native(model: TextModel, inputs: Any) -> GenerationRequest:
    data = _validate(NativeInput, inputs)
    if data.lora is not None:
        raise errors.AiError(3037, 400, f"AiError: AiError: Finetune {data.lora} not found", "FinetuneNotFound")
    wide = model.id in WIDE_PENALTY_IDS
    if wide and data.top_p is not None and not (0.001 <= data.top_p <= 1):
        raise errors.bad_input("Type mismatch of '/top_p', must be >= 0.001 and <= 1")
    for name in ("frequency_penalty", "presence_penalty"):
        value = getattr(data, name)
        if value is not None and not wide and value < 0:
            raise errors.bad_input(f"Type mismatch of '/{name}', must be >= 0")
        if value is not None and not wide and value > 2:
            raise errors.bad_input(f"Type mismatch of '/{name}', must be <= 2")
    json_schema = json_schema_of(data.response_format)
    _refuse_json_stream(json_schema, data.stream)
    return GenerationRequest(
        messages=_messages(data.messages) if data.messages is not None else None,
        prompt=data.prompt,
        raw=data.raw,
        max_tokens=data.max_tokens,
        temperature=data.temperature,
        top_p=data.top_p,
        top_k=data.top_k,
        seed=data.seed,
        repetition_penalty=data.repetition_penalty,
        frequency_penalty=data.frequency_penalty,
        presence_penalty=data.presence_penalty,
        tools=normalize_tools(data.tools),
        json_schema=json_schema,
        stream=data.stream,
    )


def parse_chat(inputs: Any) -> GenerationRequest:
    data = _validate(ChatInput, inputs)
    json_schema = json_schema_of(data.response_format)
    _refuse_json_stream(json_schema, data.stream)
    stop = [data.stop] if isinstance(data.stop, str) else list(data.stop or [])
    include_usage = True
    if data.stream_options is not None:
        include_usage = bool(data.stream_options.get("include_usage", True))
    tools = normalize_tools(data.tools) if data.tool_choice != "none" else []
    return GenerationRequest(
        messages=_messages(data.messages),
        max_tokens=data.max_completion_tokens or data.max_tokens or DEFAULT_MAX_TOKENS,
        temperature=DEFAULT_TEMPERATURE if data.temperature is None else data.temperature,
        top_p=data.top_p,
        seed=data.seed,
        frequency_penalty=data.frequency_penalty,
        presence_penalty=data.presence_penalty,
        stop=stop,
        tools=tools,
        json_schema=json_schema,
        stream=data.stream,
        include_usage=include_usage,
    )


def parse_responses(inputs: Any) -> GenerationRequest:
    data = _validate(ResponsesInput, inputs)
    messages: list[dict] = []
    if data.instructions:
        messages.append({"role": "system", "content": data.instructions})
    if isinstance(data.input, str):
        messages.append({"role": "user", "content": data.input})
    else:
        for i, item in enumerate(data.input):
            if item.get("type") not in (None, "message") or "role" not in item:
                raise errors.bad_input(f"Type mismatch of '/input/{i}', only message items are supported locally")
            role = "system" if item["role"] == "developer" else item["role"]
            messages.append({"role": role, "content": text_content(item.get("content"))})
    fmt = (data.text or {}).get("format")
    json_schema = None
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        json_schema = fmt.get("schema") or {"type": "object"}
    elif isinstance(fmt, dict) and fmt.get("type") == "json_object":
        json_schema = {"type": "object"}
    _refuse_json_stream(json_schema, data.stream)
    tools = [
        {"type": "function", "function": {k: v for k, v in t.items() if k != "type"}}
        for t in (data.tools or [])
        if isinstance(t, dict) and t.get("type") == "function" and "function" not in t
    ] or (data.tools or [])
    return GenerationRequest(
        messages=messages,
        max_tokens=data.max_output_tokens or DEFAULT_MAX_TOKENS,
        temperature=DEFAULT_TEMPERATURE if data.temperature is None else data.temperature,
        top_p=data.top_p,
        tools=normalize_tools(tools),
        json_schema=json_schema,
        stream=data.stream,
    )


Form = Literal["native", "chat", "responses"]


def form_of(model: TextModel, inputs: Any) -> Form:
    """Which input form ``inputs`` uses for ``model`` (gpt-oss: Responses when ``input`` is given)."""
    if model.family == "native":
        return "native"
    if model.responses and isinstance(inputs, dict) and "input" in inputs and "messages" not in inputs:
        return "responses"
    return "chat"


def parse(model: TextModel, inputs: Any) -> tuple[Form, GenerationRequest]:
    form = form_of(model, inputs)
    if form == "native":
        return form, parse_native(model, inputs)
    if form == "responses":
        return form, parse_responses(inputs)
    return form, parse_chat(inputs)
