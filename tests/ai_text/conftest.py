"""Fixtures for the text-generation and embedding tests: tiny random-weight models built here.

* ``tiny_llm_dir``: a Llama (2 layers, hidden 32) with a byte-level BPE tokenizer trained on the
  sentences below and a ChatML chat template -- built in well under a second, no download;
* ``tiny_engine``: a :class:`TextEngine` on it;
* ``tiny_bert_dir`` / ``tiny_embedder``: a BERT (2 layers, hidden 32) with a WordPiece vocabulary
  trained the same way.

Random weights say nothing about quality; they exercise every shape, limit and wire format.
The real stand-ins are tested in the ``slow`` tests.
"""

from __future__ import annotations

from pathlib import Path

import pytest

CORPUS = [
    "The capital of France is Paris.",
    "A cat sits on the mat and a dog sleeps on the rug.",
    'JSON looks like {"name": "Ada", "age": 36, "ok": true, "tags": ["x", "y"]}.',
    "Call get_weather with latitude 51.5 and longitude -0.12 in London.",
    "Numbers 0 1 2 3 4 5 6 7 8 9 10 42 100, and punctuation: , . ; : ! ? ( ) [ ] { } < > / \\ ' \" - _",
    "Stock markets fell sharply today while bonds rose.",
] * 20

CHATML = (
    "{% for message in messages %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


@pytest.fixture(scope="session")
def tiny_llm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    folder = tmp_path_factory.mktemp("tiny-llama")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(CORPUS, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|im_end|>",
        unk_token="<|endoftext|>",
    )
    fast.chat_template = CHATML
    fast.save_pretrained(str(folder))
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(fast),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        bos_token_id=fast.bos_token_id,
        eos_token_id=fast.eos_token_id,
        pad_token_id=fast.pad_token_id,
        tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(config)
    model.save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="session")
def tiny_engine(tiny_llm_dir: Path):
    from flarelet.bindings.ai.text.engine import TextEngine

    return TextEngine(tiny_llm_dir, "tiny-llama", threads=1)


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    folder = tmp_path_factory.mktemp("tiny-bert")
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    trainer = trainers.WordPieceTrainer(vocab_size=300, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    tok.train_from_iterator(CORPUS, trainer)
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]", special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]"
    )
    fast.save_pretrained(str(folder))
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(fast),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=64,
    )
    BertModel(config).save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="session")
def tiny_embedder(tiny_bert_dir: Path):
    from flarelet.bindings.ai.embeddings.engine import EmbeddingEngine

    return EmbeddingEngine(tiny_bert_dir, "tiny-bert", threads=1)
