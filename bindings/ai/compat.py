"""What the OpenAI-compatible routes hand a model task: the body and which OpenAI API it came
through (``/ai/v1/chat/completions``, ``/responses`` or ``/embeddings``). A task that accepts it
answers in plain OpenAI shapes instead of Cloudflare's; a plain dict is always Cloudflare's form.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

OpenAiApi = Literal["chat", "responses", "embeddings"]


@dataclass(frozen=True)
class OpenAiRequest:
    api: OpenAiApi
    body: dict[str, Any]
