"""JSON mode: the next token is allowed only if the text stays a prefix of a JSON value that
meets the request's schema.

Built on lm-format-enforcer (PyPI ``lm-format-enforcer``: pure Python, installs cleanly, walks a
character-level JSON-schema parser over a prefix tree of the vocabulary, for any tokenizer). Its
own transformers glue imports a module transformers 5 no longer has, so :func:`tokenizer_data`
builds the token table itself with the library's public ``TokenEnforcerTokenizerData``: once per
tokenizer (a pass over the vocabulary), shared by every request; each request gets its own parser.
"""

from __future__ import annotations

import json
from typing import Any


def tokenizer_data(tokenizer: Any) -> Any:
    """The token table lm-format-enforcer needs: each regular token's text, and whether it starts
    a word (decoded after a "0" token, a word-start token gains its leading space)."""
    from lmformatenforcer import TokenEnforcerTokenizerData

    zero = tokenizer.encode("0", add_special_tokens=False)[-1]
    special = set(tokenizer.all_special_ids)
    vocab_size = len(tokenizer)
    regular = []
    for idx in range(vocab_size):
        if idx in special:
            continue
        after_zero = tokenizer.decode([zero, idx])[1:]
        alone = tokenizer.decode([idx])
        regular.append((idx, after_zero, len(after_zero) > len(alone)))

    def decode(tokens: list[int]) -> str:
        return tokenizer.decode(tokens).rstrip("\ufffd")

    return TokenEnforcerTokenizerData(regular, decode, tokenizer.eos_token_id, False, vocab_size)


class JsonConstraint:
    """One request's JSON-schema constraint."""

    def __init__(self, data: Any, schema: dict) -> None:
        from lmformatenforcer import JsonSchemaParser, TokenEnforcer

        self.enforcer = TokenEnforcer(data, JsonSchemaParser(schema))

    def allowed(self, sequence: list[int]) -> list[int]:
        """Token ids allowed after ``sequence`` (prompt + generated so far)."""
        tokens = self.enforcer.get_allowed_tokens(sequence)
        return list(getattr(tokens, "allowed_tokens", tokens))

    @staticmethod
    def complete(text: str) -> bool:
        """True once ``text`` is a whole JSON value (only whitespace could follow)."""
        try:
            json.loads(text)
        except ValueError:
            return False
        return True
