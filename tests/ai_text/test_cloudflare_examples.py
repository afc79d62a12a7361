"""Cloudflare's python-workers-examples that call Workers AI text generation, run unchanged.

Their code is not part of this repository: point ``FLARELET_PYTHON_WORKERS_EXAMPLES`` at a checkout
of github.com/cloudflare/python-workers-examples to run these tests (skipped otherwise).

* ``09-workers-ai``: ``env.AI.run("@cf/openai/gpt-oss-120b", {instructions, input})`` (the
  Responses form), returning ``response.output``;
* ``05-langchain``: LangChain's ``ChatCloudflareWorkersAI(binding=self.env.AI)`` on
  ``@cf/meta/llama-3.3-70b-instruct-fp8-fast``; its declared dependencies (``langchain-cloudflare``,
  ``langchain-core``) are installed by ``flarelet dev`` from its pyproject.toml (needs PyPI once).

The ids are mapped to the tiny random model (``FLARELET_AI_MODELS``) so the runs are quick; the
answers are noise, the shapes and the examples' code paths are real.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import httpx
import pytest

EXAMPLES = Path(os.environ.get("FLARELET_PYTHON_WORKERS_EXAMPLES", "/nonexistent"))

pytestmark = [
    pytest.mark.slow,
    pytest.mark.external(env="FLARELET_PYTHON_WORKERS_EXAMPLES"),  # deselected unless set (conftest.py)
    pytest.mark.skipif(
        not (EXAMPLES / "09-workers-ai").is_dir(),
        reason="set FLARELET_PYTHON_WORKERS_EXAMPLES to a python-workers-examples checkout",
    ),
]


def test_workers_ai_example_answers_with_responses_output(serve_worker, tiny_llm_dir):
    models = json.dumps({"@cf/openai/gpt-oss-120b": str(tiny_llm_dir)})
    with serve_worker(EXAMPLES / "09-workers-ai", env={"FLARELET_AI_MODELS": models}, timeout=120) as running:
        resp = httpx.get(running.url + "/", timeout=300)
    assert resp.status_code == 200, resp.text
    output = resp.json()
    assert output[0]["type"] == "message" and output[0]["role"] == "assistant"
    assert output[0]["content"][0]["type"] == "output_text"


def test_langchain_example_runs_with_its_declared_dependencies(serve_worker, tiny_llm_dir):
    models = json.dumps({"@cf/meta/llama-3.3-70b-instruct-fp8-fast": str(tiny_llm_dir)})
    with serve_worker(EXAMPLES / "05-langchain", env={"FLARELET_AI_MODELS": models}, timeout=600) as running:
        resp = httpx.get(running.url + "/", timeout=300)
    assert resp.status_code == 200, resp.text
    assert isinstance(resp.json()["result"], str)
