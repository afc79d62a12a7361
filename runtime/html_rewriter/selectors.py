"""CSS selectors for HTMLRewriter, matched while streaming (soupsieve over a skeleton tree).

Why soupsieve: it is the maintained CSS selector engine of Beautiful Soup (Selectors Level 4,
``:nth-child``, ``:not``, attribute operators with ``i``/``s`` flags), so flarelet does not carry
its own selector parser. soupsieve matches ``bs4.Tag`` objects, so the rewriter keeps a
*skeleton*: the open elements and, under each, the element children seen so far (closed ones
emptied of their own children). That is exactly what a selector may look at when an element
starts -- its ancestors and its preceding siblings -- so the answers equal a full DOM's for
the selectors Cloudflare accepts, at a memory cost of depth plus siblings, not document size.

Cloudflare (lol-html) accepts only selectors decidable at the start tag: no sibling combinators
(``+``, ``~``) and only the pseudo-classes listed in :data:`SUPPORTED_PSEUDO`; anything else is a
``TypeError`` when the handler is registered, as in workerd.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

#: the pseudo-classes lol-html supports
SUPPORTED_PSEUDO = frozenset({"nth-child", "first-child", "nth-of-type", "first-of-type", "not"})
_STRINGS = re.compile(r"\"(?:\\.|[^\"\\])*\"|'(?:\\.|[^'\\])*'|\[[^\]]*\]")
_PSEUDO = re.compile(r"::?([a-zA-Z-]+)")


def _check_supported(selector: str) -> None:
    bare = _STRINGS.sub("[]", selector)  # attribute values and brackets cannot hide a combinator
    if "+" in re.sub(r"\([^)]*\)", "", bare) or "~" in bare.replace("~=", ""):
        raise TypeError(f"Unsupported selector {selector!r}: sibling combinators are not supported by HTMLRewriter.")
    for name in _PSEUDO.findall(bare):
        if name.lower() not in SUPPORTED_PSEUDO:
            raise TypeError(
                f"Unsupported pseudo-class or pseudo-element in selector {selector!r}: :{name} "
                f"(supported: {', '.join(':' + p for p in sorted(SUPPORTED_PSEUDO))})."
            )


_SPLIT_COMPOUNDS = re.compile(r"\s*[>\s]\s*")
_TYPE = re.compile(r"^([a-zA-Z][a-zA-Z0-9-]*)")


def subject_tags(selector: str) -> frozenset[str] | None:
    """Tag names the selector can match (its subjects' type selectors), or ``None`` if any.

    Lets the rewriter skip soupsieve for elements that cannot match (``a[href]`` and a ``<div>``),
    which is most of the work on a large page.
    """
    tags = set()
    for part in re.sub(r"\([^)]*\)", "()", _STRINGS.sub("[]", selector)).split(","):
        compounds = [c for c in _SPLIT_COMPOUNDS.split(part.strip()) if c]
        m = _TYPE.match(compounds[-1]) if compounds else None
        if m is None:
            return None
        tags.add(m.group(1).lower())
    return frozenset(tags)


@lru_cache(maxsize=256)
def compile_selector(selector: str) -> Any:
    """A compiled soupsieve selector, or ``TypeError`` for what workerd would reject."""
    import soupsieve

    if not isinstance(selector, str) or not selector.strip():
        raise TypeError("Selector must be a non-empty string.")
    _check_supported(selector)
    try:
        return soupsieve.compile(selector)
    except soupsieve.SelectorSyntaxError as exc:
        raise TypeError(f"Invalid selector {selector!r}: {exc.args[0] if exc.args else exc}") from None


class Skeleton:
    """The open elements and their earlier siblings, as ``bs4`` tags soupsieve can match."""

    def __init__(self) -> None:
        from bs4 import BeautifulSoup

        self.root = BeautifulSoup("", "html.parser")
        self._stack: list[Any] = [self.root]

    def open(self, name: str, attrs: list[tuple[str, str]], has_content: bool) -> Any:
        from bs4 import Tag

        tag = Tag(name=name, attrs=dict(attrs), builder=self.root.builder)
        self._stack[-1].append(tag)
        if has_content:
            self._stack.append(tag)
        return tag

    def close(self, tag: Any) -> None:
        """Pop ``tag`` (and anything opened inside it) and drop its children: no selector needs them."""
        while len(self._stack) > 1:
            top = self._stack.pop()
            top.clear()
            if top is tag:
                return
