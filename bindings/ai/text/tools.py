"""Tool calling and JSON mode in the prompt, and tool calls read back from the model's text.

When the model's chat template takes ``tools`` (Llama 3.1+, Qwen, Hermes templates), the tools go
to the template. SmolLM2's template does not, so the tools are described in the system message in
the Hermes format that small instruct models are trained on: a ``<tools>`` block of JSON
signatures, and a reply of ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``.

:func:`parse_tool_calls` reads calls back in either form a template produces: Hermes/Qwen
``<tool_call>`` blocks, or Llama 3.1's bare ``{"name": ..., "parameters": {...}}`` JSON answer
(only for the names of tools offered, so an ordinary JSON answer stays text).
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from typing import Any

TOOL_CALL_OPEN = "<tool_call>"
TOOL_CALL_CLOSE = "</tool_call>"
_BLOCK = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.S)


@dataclass
class ToolCall:
    name: str
    arguments: dict

    def legacy(self) -> dict:
        """Cloudflare's native (legacy) shape: ``{"arguments": {...}, "name": ...}``."""
        return {"arguments": self.arguments, "name": self.name}

    def openai(self, call_id: str | None = None) -> dict:
        """OpenAI's shape: arguments as a JSON string."""
        return {
            "id": call_id or f"chatcmpl-tool-{uuid.uuid4().hex}",
            "type": "function",
            "function": {"name": self.name, "arguments": json.dumps(self.arguments)},
        }

    def scout(self, call_id: str | None = None) -> dict:
        """Llama 4 Scout's native shape: OpenAI's, with arguments as an object."""
        return {
            "id": call_id or f"chatcmpl-tool-{uuid.uuid4().hex}",
            "type": "function",
            "function": {"name": self.name, "arguments": self.arguments},
        }


def tools_system_text(tools: list[dict]) -> str:
    signatures = "\n".join(json.dumps(t, ensure_ascii=False) for t in tools)
    return (
        "You are a function calling AI model. You are provided with function signatures within <tools></tools> "
        "XML tags. You may call one or more functions to assist with the user query. Don't make assumptions about "
        "what values to plug into functions.\n"
        f"<tools>\n{signatures}\n</tools>\n"
        "For each function call return a json object with function name and arguments within "
        '<tool_call></tool_call> XML tags:\n<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n'
        "</tool_call>"
    )


def _prepend_system(messages: list[dict], text: str) -> list[dict]:
    if messages and messages[0].get("role") == "system":
        first = dict(messages[0])
        first["content"] = f"{first.get('content') or ''}\n\n{text}".strip()
        return [first, *messages[1:]]
    return [{"role": "system", "content": text}, *messages]


def with_tools(messages: list[dict], tools: list[dict], template_has_tools: bool) -> list[dict]:
    """``messages`` with the tools described, unless the chat template does that itself."""
    if template_has_tools:
        return messages
    return _prepend_system(messages, tools_system_text(tools))


def with_json_instruction(messages: list[dict], schema: dict) -> list[dict]:
    """Tell the model the schema too: the constraint keeps the output valid, the instruction
    keeps it sensible."""
    text = "Answer with a JSON value only, following this JSON schema:\n" + json.dumps(schema, ensure_ascii=False)
    return _prepend_system(messages, text)


def render_history(messages: list[dict]) -> list[dict]:
    """Earlier assistant tool calls and tool results as text a plain template can show."""
    out = []
    for msg in messages:
        calls = msg.get("tool_calls")
        if msg.get("role") == "assistant" and calls:
            blocks = []
            for call in calls:
                fn = call.get("function", call) if isinstance(call, dict) else {}
                args = fn.get("arguments", {})
                if isinstance(args, str):
                    try:
                        args = json.loads(args)
                    except ValueError:
                        pass
                blocks.append(
                    f"{TOOL_CALL_OPEN}\n{json.dumps({'name': fn.get('name'), 'arguments': args})}\n{TOOL_CALL_CLOSE}"
                )
            out.append({"role": "assistant", "content": ((msg.get("content") or "") + "\n".join(blocks)).strip()})
        elif msg.get("role") in ("tool", "function", "ipython"):
            out.append({"role": "tool", "content": f"<tool_response>\n{msg.get('content') or ''}\n</tool_response>"})
        else:
            out.append({"role": msg["role"], "content": msg.get("content") or ""})
    return out


def _call_from(obj: Any, names: set[str] | None) -> ToolCall | None:
    if not isinstance(obj, dict) or not isinstance(obj.get("name"), str):
        return None
    if names is not None and obj["name"] not in names:
        return None
    args = obj.get("arguments", obj.get("parameters", {}))
    if isinstance(args, str):
        try:
            args = json.loads(args)
        except ValueError:
            args = {"value": args}
    if not isinstance(args, dict):
        args = {"value": args}
    return ToolCall(obj["name"], args)


def parse_tool_calls(text: str, tools: list[dict]) -> tuple[str, list[ToolCall]]:
    """(text left when the calls are taken out, the calls) from a model's answer."""
    names = {t["function"]["name"] for t in tools}
    calls: list[ToolCall] = []
    if TOOL_CALL_OPEN in text:
        for block in _BLOCK.findall(text):
            try:
                call = _call_from(json.loads(block), None)
            except ValueError:
                call = None
            if call is not None:
                calls.append(call)
        if calls:
            rest = _BLOCK.sub("", text).strip()
            return rest, calls
    stripped = text.strip()
    if stripped.startswith(("{", "[")):
        try:
            value = json.loads(stripped)
        except ValueError:
            return text, []
        items = value if isinstance(value, list) else [value]
        found = [_call_from(item, names) for item in items]
        if found and all(c is not None for c in found):
            return "", [c for c in found if c is not None]
    return text, []


def may_be_tool_call(text: str) -> bool:
    """Whether a streamed answer that begins with ``text`` could turn out to be a tool call
    (then it is held back and sent as ``tool_calls`` at the end)."""
    head = text.lstrip()
    if not head:
        return True
    return head.startswith(("{", "[")) or TOOL_CALL_OPEN.startswith(head[: len(TOOL_CALL_OPEN)])
