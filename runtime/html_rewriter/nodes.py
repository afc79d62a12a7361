"""What HTMLRewriter handlers receive: ``Element``, ``EndTag``, ``Text``, ``Comment``, ``Doctype``, ``DocumentEnd``.

Names and behaviour follow Cloudflare's HTMLRewriter API (camelCase, with snake_case aliases for
Python code): content passed to ``before``/``after``/``prepend``/``append``/``replace``/
``setInnerContent`` is text (escaped) unless ``{"html": True}`` is given (``ContentOptions``).
Insertion order follows lol-html's: ``before`` and ``append`` add in call order, ``after`` and
``prepend`` insert right next to the node, so later calls come first.
"""

from __future__ import annotations

import html
from collections.abc import Iterator, Mapping
from typing import Any

XHTML_NS = "http://www.w3.org/1999/xhtml"
SVG_NS = "http://www.w3.org/2000/svg"
MATHML_NS = "http://www.w3.org/1998/Math/MathML"

#: elements that never have content or an end tag (lol-html's list)
VOID_ELEMENTS = frozenset(
    "area base basefont bgsound br col embed hr image img input keygen link meta param source track wbr".split()
)


def content_text(content: Any, options: Any = None, html_kw: bool | None = None) -> str:
    """``content`` as markup: escaped unless ``ContentOptions.html`` is true (dict, object or keyword)."""
    is_html = bool(html_kw)
    if options is not None and html_kw is None:
        if isinstance(options, Mapping):
            is_html = bool(options.get("html", False))
        else:
            is_html = bool(getattr(options, "html", False))
    text = content if isinstance(content, str) else str(content)
    return text if is_html else html.escape(text, quote=False)


class _Mutable:
    """``before``/``after``/``replace``/``remove`` shared by every node kind."""

    def __init__(self) -> None:
        self._before: list[str] = []
        self._after: list[str] = []
        self._replacement: str | None = None
        self._removed = False

    def before(self, content: Any, options: Any = None, *, html: bool | None = None) -> _Mutable:
        self._before.append(content_text(content, options, html))
        return self

    def after(self, content: Any, options: Any = None, *, html: bool | None = None) -> _Mutable:
        self._after.insert(0, content_text(content, options, html))
        return self

    def replace(self, content: Any, options: Any = None, *, html: bool | None = None) -> _Mutable:
        self._replacement = content_text(content, options, html)
        self._removed = True
        return self

    def remove(self) -> _Mutable:
        self._removed = True
        self._replacement = None
        return self

    @property
    def removed(self) -> bool:
        return self._removed

    def _render(self, own: str) -> str:
        middle = self._replacement if self._removed else own
        return "".join(self._before) + (middle or "") + "".join(self._after)


class EndTag(_Mutable):
    """The end tag of an element, given to ``element.onEndTag(handler)`` handlers."""

    def __init__(self, name: str, raw: str) -> None:
        super().__init__()
        self._name = name
        self._raw = raw

    @property
    def name(self) -> str:
        return self._name

    @name.setter
    def name(self, value: str) -> None:
        self._name = str(value).lower()
        self._raw = f"</{self._name}>"

    def _output(self) -> str:
        return self._render(self._raw)


class Element(_Mutable):
    """A start tag matched by a selector, with the mutation API of Cloudflare's ``Element``."""

    def __init__(
        self, name: str, attrs: list[tuple[str, str]], raw: str, self_closing: bool, namespace: str, has_content: bool
    ) -> None:
        super().__init__()
        self._name = name
        self._orig_name = name
        self._attrs = list(attrs)
        self._raw = raw
        self._dirty = False
        self._self_closing = self_closing
        self._namespace = namespace
        self._has_content = has_content
        self._prepend: list[str] = []
        self._append: list[str] = []
        self._inner: str | None = None
        self._keep_content = False
        self._end_handlers: list[Any] = []

    # -- tag and attributes ----------------------------------------------------------------------
    @property
    def tagName(self) -> str:  # noqa: N802 - Cloudflare's name
        return self._name

    @tagName.setter
    def tagName(self, value: str) -> None:  # noqa: N802
        self._name = str(value).lower()
        self._dirty = True

    tag_name = tagName

    @property
    def namespaceURI(self) -> str:  # noqa: N802
        return self._namespace

    namespace_uri = namespaceURI

    @property
    def selfClosing(self) -> bool:  # noqa: N802
        return self._self_closing

    @property
    def canHaveContent(self) -> bool:  # noqa: N802
        return self._has_content

    @property
    def attributes(self) -> Iterator[list[str]]:
        """``[name, value]`` pairs (an iterator, as in JavaScript)."""
        return iter([[k, v] for k, v in self._attrs])

    def getAttribute(self, name: str) -> str | None:  # noqa: N802
        key = str(name).lower()
        return next((v for k, v in self._attrs if k == key), None)

    def hasAttribute(self, name: str) -> bool:  # noqa: N802
        key = str(name).lower()
        return any(k == key for k, _ in self._attrs)

    def setAttribute(self, name: str, value: Any) -> Element:  # noqa: N802
        key = str(name).lower()
        if not key or any(c in key for c in " \t\n\f\r/>\"'="):
            raise TypeError(f"Invalid attribute name: {name!r}")
        text = str(value)
        for i, (k, _) in enumerate(self._attrs):
            if k == key:
                self._attrs[i] = (key, text)
                break
        else:
            self._attrs.append((key, text))
        self._dirty = True
        return self

    def removeAttribute(self, name: str) -> Element:  # noqa: N802
        key = str(name).lower()
        if any(k == key for k, _ in self._attrs):
            self._attrs = [(k, v) for k, v in self._attrs if k != key]
            self._dirty = True
        return self

    get_attribute = getAttribute
    has_attribute = hasAttribute
    set_attribute = setAttribute
    remove_attribute = removeAttribute

    # -- content ----------------------------------------------------------------------------------
    def prepend(self, content: Any, options: Any = None, *, html: bool | None = None) -> Element:
        if self._has_content:
            self._prepend.insert(0, content_text(content, options, html))
        return self

    def append(self, content: Any, options: Any = None, *, html: bool | None = None) -> Element:
        if self._has_content:
            self._append.append(content_text(content, options, html))
        return self

    def setInnerContent(self, content: Any, options: Any = None, *, html: bool | None = None) -> Element:  # noqa: N802
        if self._has_content:
            self._prepend, self._append = [], []
            self._inner = content_text(content, options, html)
        return self

    set_inner_content = setInnerContent

    def removeAndKeepContent(self) -> Element:  # noqa: N802
        self._keep_content = True
        return self

    remove_and_keep_content = removeAndKeepContent

    def onEndTag(self, handler: Any) -> None:  # noqa: N802
        """Call ``handler(endTag)`` (may be async) when this element's end tag is reached."""
        if not self._has_content:
            raise TypeError("Parser error: No end tag.")
        if not callable(handler):
            raise TypeError("onEndTag expects a function")
        self._end_handlers.append(handler)

    on_end_tag = onEndTag

    # -- output -------------------------------------------------------------------------------------
    @property
    def _drops_content(self) -> bool:
        return self._removed or self._inner is not None

    @property
    def _drops_tags(self) -> bool:
        return self._removed or self._keep_content

    def _start_tag(self) -> str:
        if not self._dirty:
            return self._raw
        parts = [f"<{self._name}"]
        for k, v in self._attrs:
            parts.append(f' {k}="{v.replace(chr(34), "&quot;")}"')  # lol-html escapes only the quote
        parts.append(" />" if self._self_closing else ">")
        return "".join(parts)

    def _open_output(self) -> str:
        """What replaces the start tag: before-content, the tag, prepended and inner content."""
        out = list(self._before)
        if self._removed:
            if self._replacement is not None:
                out.append(self._replacement)
        else:
            if not self._keep_content:
                out.append(self._start_tag())
            out.extend(self._prepend)
            if self._inner is not None:
                out.append(self._inner)
        if not self._has_content:
            out.extend(self._close_output(None))
        return "".join(out)

    def _close_output(self, end: EndTag | None) -> list[str]:
        out: list[str] = []
        if not self._removed:
            out.extend(self._append)
        if end is not None:
            if self._drops_tags:
                out.extend(end._before)
                out.extend(end._after)
            else:
                out.append(end._output())
        out.extend(self._after)
        return out


class Text(_Mutable):
    """A chunk of a text node; ``lastInTextNode`` is true on the (often empty) last chunk."""

    def __init__(self, text: str, last: bool) -> None:
        super().__init__()
        self._text = text
        self._last = last

    @property
    def text(self) -> str:
        return self._text

    @property
    def lastInTextNode(self) -> bool:  # noqa: N802
        return self._last

    last_in_text_node = lastInTextNode

    def _output(self) -> str:
        return self._render(self._text)


class Comment(_Mutable):
    """An HTML comment; setting ``text`` rewrites it."""

    def __init__(self, text: str, raw: str) -> None:
        super().__init__()
        self._text = text
        self._raw = raw

    @property
    def text(self) -> str:
        return self._text

    @text.setter
    def text(self, value: str) -> None:
        self._text = str(value)
        self._raw = f"<!--{self._text}-->"

    def _output(self) -> str:
        return self._render(self._raw)


class Doctype:
    """``<!DOCTYPE ...>``: ``name``, ``publicId``, ``systemId`` (``None`` when absent)."""

    def __init__(self, decl: str) -> None:
        import shlex

        try:
            words = shlex.split(decl)
        except ValueError:
            words = decl.split()
        rest = words[1:]
        self.name: str | None = rest[0].lower() if rest else None
        self.publicId: str | None = None  # noqa: N815
        self.systemId: str | None = None  # noqa: N815
        keyword = rest[1].upper() if len(rest) > 1 else ""
        if keyword == "PUBLIC":
            self.publicId = rest[2] if len(rest) > 2 else None
            self.systemId = rest[3] if len(rest) > 3 else None
        elif keyword == "SYSTEM":
            self.systemId = rest[2] if len(rest) > 2 else None
        self.public_id = self.publicId
        self.system_id = self.systemId


class DocumentEnd:
    """Given to a document handler's ``end``: ``append`` adds content at the very end."""

    def __init__(self) -> None:
        self._append: list[str] = []

    def append(self, content: Any, options: Any = None, *, html: bool | None = None) -> DocumentEnd:
        self._append.append(content_text(content, options, html))
        return self
