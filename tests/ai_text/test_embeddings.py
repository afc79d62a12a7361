"""Embeddings on a tiny random BERT: shapes, widths, pooling, limits, bge-m3's rerank form."""

from __future__ import annotations

import numpy as np
import pytest

from flarelet.bindings.ai import errors
from flarelet.bindings.ai.embeddings import projection, task
from flarelet.bindings.ai.embeddings.catalog import MODELS

SMALL = MODELS["@cf/baai/bge-small-en-v1.5"]
BASE = MODELS["@cf/baai/bge-base-en-v1.5"]
LARGE = MODELS["@cf/baai/bge-large-en-v1.5"]
M3 = MODELS["@cf/baai/bge-m3"]
TEXTS = ["A cat sits on the mat", "a dog sleeps on the rug", "Stock markets fell sharply today"]


def embed(engine, model, inputs):
    return task.run(task.prepare(model, inputs), engine)


@pytest.mark.parametrize("model, width", [(SMALL, 384), (BASE, 768), (LARGE, 1024), (M3, 1024)])
def test_each_id_keeps_its_documented_width(tiny_embedder, model, width):
    out = embed(tiny_embedder, model, {"text": TEXTS})
    assert out["shape"] == [3, width]
    assert len(out["data"]) == 3 and all(len(row) == width for row in out["data"])
    assert out["pooling"] == "mean"


def test_a_single_string_gives_one_row(tiny_embedder):
    out = embed(tiny_embedder, SMALL, {"text": "hello"})
    assert out["shape"] == [1, 384]


def test_widening_keeps_every_cosine_and_norm_exactly(tiny_embedder):
    small = np.array(embed(tiny_embedder, SMALL, {"text": TEXTS})["data"])
    for model in (BASE, LARGE):
        wide = np.array(embed(tiny_embedder, model, {"text": TEXTS})["data"])
        np.testing.assert_allclose(wide @ wide.T, small @ small.T, atol=1e-5)
    q = projection.matrix(384, 768)
    np.testing.assert_allclose(q.T @ q, np.eye(384), atol=1e-5)


def test_the_widening_matrix_is_the_same_in_every_process():
    projection.matrix.cache_clear()
    a = projection.matrix(384, 1024).copy()
    projection.matrix.cache_clear()
    np.testing.assert_array_equal(a, projection.matrix(384, 1024))


def test_vectors_are_unit_length(tiny_embedder):
    data = np.array(embed(tiny_embedder, BASE, {"text": TEXTS})["data"])
    np.testing.assert_allclose(np.linalg.norm(data, axis=1), 1.0, atol=1e-5)


def test_cls_pooling_differs_from_mean_and_is_echoed(tiny_embedder):
    mean = embed(tiny_embedder, SMALL, {"text": TEXTS, "pooling": "mean"})
    cls = embed(tiny_embedder, SMALL, {"text": TEXTS, "pooling": "cls"})
    assert cls["pooling"] == "cls"
    assert not np.allclose(np.array(mean["data"]), np.array(cls["data"]))


def test_mean_pooling_ignores_padding(tiny_embedder):
    alone = embed(tiny_embedder, SMALL, {"text": ["cat"]})["data"][0]
    padded = embed(tiny_embedder, SMALL, {"text": ["cat", "a much longer sentence about stock markets and bonds"]})
    np.testing.assert_allclose(alone, padded["data"][0], atol=1e-5)


@pytest.mark.parametrize(
    "inputs",
    [
        {},
        {"text": []},
        {"text": [""]},
        {"text": ""},
        {"text": 3},
        {"text": ["a", 3]},
        {"text": ["a"] * 101},
        {"text": "a", "pooling": "max"},
    ],
)
def test_bad_inputs_get_5006_as_cloudflare_does(inputs):
    with pytest.raises(errors.AiError) as info:
        task.prepare(SMALL, inputs)
    assert info.value.code == 5006


def test_a_hundred_texts_are_accepted_as_cloudflares_max_items():
    assert len(task.prepare(SMALL, {"text": ["a"] * 100}).texts) == 100


def test_bge_m3_rerank_form_scores_each_context_best_first(tiny_embedder):
    contexts = [{"text": t} for t in TEXTS]
    out = embed(tiny_embedder, M3, {"query": "A cat sits on the mat", "contexts": contexts})
    ranks = out["response"]
    assert sorted(r["id"] for r in ranks) == [0, 1, 2]
    assert [r["score"] for r in ranks] == sorted((r["score"] for r in ranks), reverse=True)
    assert ranks[0]["id"] == 0 and ranks[0]["score"] == pytest.approx(1.0, abs=1e-5)  # the query itself


def test_bge_m3_contexts_without_query_give_vectors(tiny_embedder):
    out = embed(tiny_embedder, M3, {"contexts": [{"text": "a"}, {"text": "b"}]})
    assert out["shape"] == [2, 1024] and len(out["response"]) == 2 and out["pooling"] == "mean"


def test_rerank_form_is_only_for_bge_m3():
    with pytest.raises(errors.AiError):
        task.prepare(SMALL, {"query": "q", "contexts": [{"text": "a"}]})


def test_texts_longer_than_the_model_window_are_truncated_not_refused(tiny_embedder):
    out = embed(tiny_embedder, SMALL, {"text": "word " * 2000})
    assert out["shape"] == [1, 384]
