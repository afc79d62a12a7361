"""A push tokenizer over ``html.parser.HTMLParser`` that keeps every token's exact source text.

Why the standard library's tokenizer: it is a *push* parser (``feed(chunk)`` handles what it can
and keeps an incomplete tag for the next chunk), which is what streaming needs -- output can
flow as soon as the input that produced it has arrived, with no thread and no whole-document
buffer. html5lib's tokenizer pulls from a complete stream (a thread per response to stream) and
selectolax/lexbor build a whole DOM. ``HTMLParser`` knows raw-text elements (``script``,
``style``) and is maintained with CPython.

A rewriter must reproduce untouched input byte for byte, but ``HTMLParser`` hands its callbacks
decoded or normalised values (``</DIV >`` arrives as ``"div"``). Every token it handles is followed
by ``updatepos(i, j)`` over that token's source span, so the tokens collected since the previous
``updatepos`` get ``rawdata[i:j]`` as their source. A span with no callback (an ``&`` the parser
swallowed at end of input) becomes text, so nothing of the input is ever lost.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Literal

TokenKind = Literal["start", "end", "text", "comment", "doctype", "other"]


@dataclass
class Token:
    kind: TokenKind
    #: the token's source text, exactly as it came in
    raw: str = ""
    #: tag name (lower case) for start/end tags, the comment's text for comments
    name: str = ""
    attrs: list[tuple[str, str]] = field(default_factory=list)
    self_closing: bool = False


class Tokenizer(HTMLParser):
    """``feed(text)`` / ``close()``, then ``take()`` the tokens found so far."""

    def __init__(self) -> None:
        self._pending: list[Token] = []
        self._tokens: list[Token] = []
        super().__init__(convert_charrefs=False)

    def take(self) -> list[Token]:
        """The tokens completed so far; adjacent text pieces (split at ``&``) come as one token."""
        tokens, self._tokens = self._tokens, []
        merged: list[Token] = []
        for token in tokens:
            if token.kind == "text" and merged and merged[-1].kind == "text":
                merged[-1].raw += token.raw
            else:
                merged.append(token)
        return merged

    # -- the source span of the tokens just handled ---------------------------------------------
    def updatepos(self, i: int, j: int) -> int:
        if j > i:
            raw = self.rawdata[i:j]
            pending = self._pending
            if not pending:
                self._tokens.append(Token("text", raw))
            elif len(pending) == 1:
                pending[0].raw = raw
                self._tokens.append(pending[0])
            else:  # several callbacks for one span: keep the source once, on the first
                pending[0].raw = raw
                self._tokens.extend(pending)
            self._pending = []
        return super().updatepos(i, j)

    # -- callbacks: record, the source arrives with updatepos ------------------------------------
    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._pending.append(Token("start", name=tag, attrs=[(k, v or "") for k, v in attrs]))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._pending.append(Token("start", name=tag, attrs=[(k, v or "") for k, v in attrs], self_closing=True))

    def handle_endtag(self, tag: str) -> None:
        self._pending.append(Token("end", name=tag))

    def handle_data(self, data: str) -> None:
        self._pending.append(Token("text"))

    def handle_entityref(self, name: str) -> None:
        self._pending.append(Token("text"))

    def handle_charref(self, name: str) -> None:
        self._pending.append(Token("text"))

    def handle_comment(self, data: str) -> None:
        self._pending.append(Token("comment", name=data))

    def handle_decl(self, decl: str) -> None:
        kind: TokenKind = "doctype" if decl[:7].lower() == "doctype" else "other"
        self._pending.append(Token(kind, name=decl))

    def handle_pi(self, data: str) -> None:
        self._pending.append(Token("other"))

    def unknown_decl(self, data: str) -> None:
        self._pending.append(Token("other"))
