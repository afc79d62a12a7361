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

import html.parser
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


def _raw_attrs(raw: str, decoded: list[tuple[str, str | None]]) -> list[tuple[str, str]]:
    """Attribute values as written (``a &amp; b`` stays so, as lol-html gives them), names lower-cased.

    Re-reads the start tag with ``html.parser``'s own patterns, which it applies before decoding
    entities; if a Python release renames them, the decoded values are used instead.
    """
    tag_re = getattr(html.parser, "tagfind_tolerant", None)
    attr_re = getattr(html.parser, "attrfind_tolerant", None)
    if tag_re is None or attr_re is None:
        return [(k, v or "") for k, v in decoded]
    match = tag_re.match(raw, 1)
    if match is None:
        return [(k, v or "") for k, v in decoded]
    k, end = match.end(), len(raw)
    attrs: list[tuple[str, str]] = []
    while k < end:
        m = attr_re.match(raw, k)
        if not m:
            break
        name, rest, value = m.group(1, 2, 3)
        if not rest:
            value = ""
        elif value[:1] == "'" == value[-1:] or value[:1] == '"' == value[-1:]:
            value = value[1:-1]
        attrs.append((name.lower(), value or ""))
        k = m.end()
    if len(attrs) != len(decoded):  # the two readings disagree: trust the parser's
        return [(k, v or "") for k, v in decoded]
    return attrs


class Tokenizer(HTMLParser):
    """``feed(text)`` / ``close()``, then ``take()`` the tokens found so far."""

    #: raw text (script, style) and escapable raw text (title, textarea) elements, plus the
    #: legacy ones, whose content is text up to their end tag, as the HTML tokenizer reads it
    #: (typeshed marks HTMLParser's attribute Final, yet the parser reads it through ``self``: overriding is supported)
    CDATA_CONTENT_ELEMENTS = (  # type: ignore[misc]
        "script",
        "style",
        "title",
        "textarea",
        "xmp",
        "iframe",
        "noembed",
        "noframes",
    )

    def __init__(self) -> None:
        self._pending: list[Token] = []
        self._tokens: list[Token] = []
        super().__init__(convert_charrefs=False)

    def close(self) -> None:
        """End of input: whatever the parser still holds (the text of a ``<script>`` or ``<title>``
        never closed, which ``HTMLParser`` would drop) becomes text, so no input is ever lost."""
        super().close()
        if self.rawdata:
            self._tokens.append(Token("text", self.rawdata))
            self.rawdata = ""

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
        return j  # line/column bookkeeping (``getpos``) is not used: skipped, it costs a scan per token

    # -- callbacks: record, the source arrives with updatepos ------------------------------------
    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        raw = self.get_starttag_text() or ""
        self._pending.append(Token("start", name=tag, attrs=_raw_attrs(raw, attrs)))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        raw = self.get_starttag_text() or ""
        self._pending.append(Token("start", name=tag, attrs=_raw_attrs(raw, attrs), self_closing=True))

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
