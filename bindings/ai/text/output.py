"""Text-generation outputs in Cloudflare's shapes, whole or as server-sent events.

Wire format of a stream (``data: <json>\\n\\n`` events; JSON compact and not ASCII-escaped, as
JavaScript's ``JSON.stringify`` writes it):

* native models: one ``{"response": <piece>, "tool_calls": [], "p": <padding>}`` event per piece
  of text, then ``{"tool_calls": [...], "p": ...}``, then ``{"response": "", "usage": {...}}``,
  then ``[DONE]``;
* chat-completions models: ``chat.completion.chunk`` events (a first one with the assistant role
  and empty content, one per piece, one with ``finish_reason``, one with ``choices: []``), then the
  same ``{"response": "", "usage": ...}`` and ``[DONE]`` closing events. On the OpenAI-compatible
  routes (``openai=True``) the closing ``response`` event is left out: it is not an OpenAI chunk.

``p`` is the padding Cloudflare adds against the token-length side channel: a prefix of random
length of the alphabet it uses; clients ignore it.
"""

from __future__ import annotations

import json
import secrets
import time
import uuid
from collections.abc import Iterable, Iterator
from typing import Any

from .. import errors
from .catalog import TextModel
from .engine import Generation
from .schemas import GenerationRequest
from .tools import ToolCall, parse_tool_calls

PADDING_ALPHABET = "abdefghijklmnoprstuvxyz1234567890"
DONE = b"data: [DONE]\n\n"


def padding() -> str:
    n = 1 + secrets.randbelow(2 * len(PADDING_ALPHABET))
    return (PADDING_ALPHABET * 2)[:n]


def event(payload: Any) -> bytes:
    return b"data: " + json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode() + b"\n\n"


def usage(state: Generation) -> dict:
    return {
        "prompt_tokens": state.prompt_tokens,
        "completion_tokens": state.completion_tokens,
        "total_tokens": state.prompt_tokens + state.completion_tokens,
    }


def json_mode_failed() -> errors.AiError:
    return errors.AiError(5006, 400, "JSON Mode couldn't be met", "JsonModeFailed")


def _json_value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        raise json_mode_failed() from None


def _split_tools(request: GenerationRequest, state: Generation) -> tuple[str, list[ToolCall]]:
    if not request.tools:
        return state.text, []
    return parse_tool_calls(state.text, request.tools)


# -- whole answers ----------------------------------------------------------------------------


def native_result(model: TextModel, request: GenerationRequest, state: Generation) -> dict:
    text, calls = _split_tools(request, state)
    response: Any = _json_value(text) if request.json_schema is not None else text
    shaped = [c.scout() if model.openai_tool_shape else c.legacy() for c in calls]
    return {"response": response, "tool_calls": shaped, "usage": usage(state)}


def chat_result(model: TextModel, request: GenerationRequest, state: Generation) -> dict:
    text, calls = _split_tools(request, state)
    if request.json_schema is not None:
        _json_value(text)
    message: dict[str, Any] = {"role": "assistant", "content": text if not calls else (text or None)}
    message["reasoning_content"] = None
    if calls:
        message["tool_calls"] = [c.openai() for c in calls]
    finish = "tool_calls" if calls else state.finish_reason
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model.id,
        "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
        "usage": usage(state),
    }


def responses_result(model: TextModel, request: GenerationRequest, state: Generation) -> dict:
    text, calls = _split_tools(request, state)
    if request.json_schema is not None:
        _json_value(text)
    output: list[dict] = []
    if text or not calls:
        output.append(
            {
                "id": f"msg_{uuid.uuid4().hex}",
                "type": "message",
                "status": "completed",
                "role": "assistant",
                "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}],
            }
        )
    for call in calls:
        call_id = f"call_{uuid.uuid4().hex[:24]}"
        output.append(
            {
                "id": f"fc_{uuid.uuid4().hex}",
                "type": "function_call",
                "status": "completed",
                "call_id": call_id,
                "name": call.name,
                "arguments": json.dumps(call.arguments),
            }
        )
    return {
        "id": f"resp_{uuid.uuid4().hex}",
        "object": "response",
        "created_at": int(time.time()),
        "model": model.id,
        "status": "completed" if state.finish_reason != "length" else "incomplete",
        "incomplete_details": None if state.finish_reason != "length" else {"reason": "max_output_tokens"},
        "error": None,
        "instructions": None,
        "output": output,
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "temperature": request.temperature,
        "top_p": request.top_p,
        "usage": {
            "input_tokens": state.prompt_tokens,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": state.completion_tokens,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": state.prompt_tokens + state.completion_tokens,
        },
    }


def result(model: TextModel, form: str, request: GenerationRequest, state: Generation) -> dict:
    if form == "native":
        return native_result(model, request, state)
    if form == "responses":
        return responses_result(model, request, state)
    return chat_result(model, request, state)


# -- streams ----------------------------------------------------------------------------------


def _held_pieces(request: GenerationRequest, pieces: Iterable[str]) -> Iterator[str]:
    """Pieces to send as text: with tools offered, an answer that starts like a tool call is held
    back (it is sent as ``tool_calls`` at the end, or as text if it was not one after all)."""
    if not request.tools:
        yield from pieces
        return
    from .tools import may_be_tool_call

    held = ""
    holding = True
    for piece in pieces:
        if not holding:
            yield piece
            continue
        held += piece
        if not may_be_tool_call(held):
            holding = False
            yield held
            held = ""


def native_stream(
    model: TextModel, request: GenerationRequest, pieces: Iterable[str], state: Generation
) -> Iterator[bytes]:
    sent_text = False
    for piece in _held_pieces(request, pieces):
        sent_text = True
        yield event({"response": piece, "tool_calls": [], "p": padding()})
    text, calls = _split_tools(request, state)
    if not calls and request.tools and text and not sent_text:
        yield event({"response": text, "tool_calls": [], "p": padding()})
    shaped = [c.scout() if model.openai_tool_shape else c.legacy() for c in calls]
    yield event({"tool_calls": shaped, "p": padding()})
    yield event({"response": "", "usage": usage(state)})
    yield DONE


def chat_stream(
    model: TextModel, request: GenerationRequest, pieces: Iterable[str], state: Generation, openai: bool = False
) -> Iterator[bytes]:
    chunk_id = f"chatcmpl-{uuid.uuid4().hex}"
    created = int(time.time())

    def chunk(choices: list, with_usage: bool = True) -> bytes:
        body: dict[str, Any] = {
            "id": chunk_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model.id,
            "choices": choices,
        }
        if not openai:
            body["p"] = padding()
        if with_usage and (request.include_usage or not openai):
            body["usage"] = usage(state)
        return event(body)

    def choice(delta: dict, finish: str | None = None) -> list:
        return [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]

    yield chunk(choice({"role": "assistant", "content": "", "reasoning_content": None}), with_usage=not openai)
    sent_text = False
    for piece in _held_pieces(request, pieces):
        sent_text = True
        yield chunk(choice({"content": piece}), with_usage=not openai)
    text, calls = _split_tools(request, state)
    if not calls and request.tools and text and not sent_text:
        yield chunk(choice({"content": text}), with_usage=not openai)
    if calls:
        deltas = []
        for i, call in enumerate(calls):
            shaped = call.openai()
            deltas.append({"index": i, **shaped})
        yield chunk(choice({"tool_calls": deltas}), with_usage=not openai)
    yield chunk(choice({}, "tool_calls" if calls else state.finish_reason), with_usage=not openai)
    if openai:
        if request.include_usage:
            yield chunk([], with_usage=True)
    else:
        yield chunk([])
        yield event({"response": "", "usage": usage(state)})
    yield DONE


def responses_stream(
    model: TextModel, request: GenerationRequest, pieces: Iterable[str], state: Generation
) -> Iterator[bytes]:
    """The Responses API's typed events (``response.created`` ... ``response.completed``)."""
    resp_id = f"resp_{uuid.uuid4().hex}"
    msg_id = f"msg_{uuid.uuid4().hex}"
    seq = 0

    def typed(kind: str, **fields: Any) -> bytes:
        nonlocal seq
        body = {"type": kind, "sequence_number": seq, **fields}
        seq += 1
        return f"event: {kind}\n".encode() + event(body)

    shell = {
        "id": resp_id,
        "object": "response",
        "created_at": int(time.time()),
        "model": model.id,
        "status": "in_progress",
        "output": [],
        "tools": [],
        "parallel_tool_calls": True,
        "tool_choice": "auto",
    }
    yield typed("response.created", response=shell)
    yield typed("response.in_progress", response=shell)
    item: dict[str, Any] = {
        "id": msg_id,
        "type": "message",
        "status": "in_progress",
        "role": "assistant",
        "content": [],
    }
    yield typed("response.output_item.added", output_index=0, item=item)
    part: dict[str, Any] = {"type": "output_text", "text": "", "annotations": []}
    yield typed("response.content_part.added", item_id=msg_id, output_index=0, content_index=0, part=part)
    for piece in pieces:
        yield typed(
            "response.output_text.delta", item_id=msg_id, output_index=0, content_index=0, delta=piece, logprobs=[]
        )
    done = responses_result(model, request, state)
    done["id"] = resp_id
    text = state.text
    yield typed("response.output_text.done", item_id=msg_id, output_index=0, content_index=0, text=text, logprobs=[])
    part = {"type": "output_text", "text": text, "annotations": []}
    yield typed("response.content_part.done", item_id=msg_id, output_index=0, content_index=0, part=part)
    item = {"id": msg_id, "type": "message", "status": "completed", "role": "assistant", "content": [part]}
    yield typed("response.output_item.done", output_index=0, item=item)
    yield typed("response.completed", response=done)


def stream(
    model: TextModel,
    form: str,
    request: GenerationRequest,
    pieces: Iterable[str],
    state: Generation,
    openai: bool = False,
) -> Iterator[bytes]:
    if form == "native":
        return native_stream(model, request, pieces, state)
    if form == "responses":
        return responses_stream(model, request, pieces, state)
    return chat_stream(model, request, pieces, state, openai=openai)
