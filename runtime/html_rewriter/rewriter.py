"""``HTMLRewriter``: Cloudflare's streaming HTML rewriter, for Python Workers.

::

    class Links:
        def element(self, el):
            el.setAttribute("href", el.getAttribute("href").replace("http:", "https:"))

    return HTMLRewriter().on("a[href]", Links()).onDocument(Doc()).transform(response)

``transform(response)`` returns a new ``Response`` at once; its body is produced while the old one
is read: each chunk of input is tokenised (:mod:`.tokenizer`), handlers run on the tokens it
completes (they may be ``async``), and the rewritten output of that chunk is sent before the next
chunk is read. Only an unfinished tag (or a ``<script>`` whose end tag has not arrived) waits for
more input. Handlers are objects (or dicts) with ``element``, ``comments``, ``text`` methods for a
selector and ``doctype``, ``comments``, ``text``, ``end`` for the document, as workerd calls them.

Text handlers of a selector see the text inside matching elements, document handlers all of
it; a text node arrives as one chunk per piece of input, then an empty chunk with
``lastInTextNode`` true. The tree is the tokens' nesting (an end tag closes the nearest open
element of its name); HTML's implied end tags (``<p>`` closing a ``<p>``) are not inferred, and
``<title>``/``<textarea>`` content is tokenised as markup.
"""

from __future__ import annotations

import codecs
import inspect
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..headers import Headers
from ..response import FetchResponse, Response
from .nodes import (
    MATHML_NS,
    SVG_NS,
    VOID_ELEMENTS,
    XHTML_NS,
    Comment,
    Doctype,
    DocumentEnd,
    Element,
    EndTag,
    Text,
)
from .selectors import Skeleton, compile_selector, subject_tags
from .tokenizer import Token, Tokenizer


async def _call(handler: Any, method: str, arg: Any) -> None:
    fn = handler.get(method) if isinstance(handler, Mapping) else getattr(handler, method, None)
    if fn is None:
        return
    result = fn(arg)
    if inspect.isawaitable(result):
        await result


def _has(handler: Any, method: str) -> bool:
    if isinstance(handler, Mapping):
        return handler.get(method) is not None
    return callable(getattr(handler, method, None))


@dataclass
class _Frame:
    name: str
    node: Any
    element: Element | None
    namespace: str
    #: (registration index, handler) of selectors matching this element with text/comments methods
    content_handlers: list[tuple[int, Any]] = field(default_factory=list)
    #: output of this element's content is dropped (remove, replace, setInnerContent, or an ancestor's)
    drops_content: bool = False


class _Run:
    """One transform: the open-element stack, the text node in progress, and the output."""

    def __init__(self, selectors: list[tuple[Any, frozenset[str] | None, Any]], document: list[Any]) -> None:
        self.selectors = selectors
        self.document = document
        self.skeleton = Skeleton()
        self.stack: list[_Frame] = []
        self.in_text = False
        self.out: list[str] = []
        #: open frames with text/comments handlers (0: text goes straight to the output)
        self.content_frames = 0
        self.doc_text = any(_has(h, "text") for h in document)
        self.doc_comments = any(_has(h, "comments") for h in document)

    def _emit(self, text: str) -> None:
        if text and not (self.stack and self.stack[-1].drops_content):
            self.out.append(text)

    def _content_handlers(self, method: str) -> list[Any]:
        found: list[tuple[int, Any]] = []
        for frame in self.stack:
            found.extend(p for p in frame.content_handlers if _has(p[1], method))
        found.sort(key=lambda p: p[0])
        # a selector's handler runs once per chunk, however many of its matches are open (as lol-html)
        unique = list({index: h for index, h in found}.values())
        return unique + [h for h in self.document if _has(h, method)]

    async def _text(self, raw: str, last: bool) -> None:
        if not self.content_frames and not self.doc_text:
            self._emit(raw)
            return
        handlers = self._content_handlers("text")
        if not handlers:
            self._emit(raw)
            return
        chunk = Text(raw, last)
        for handler in handlers:
            await _call(handler, "text", chunk)
        self._emit(chunk._output())

    async def _end_text(self) -> None:
        if self.in_text:
            self.in_text = False
            await self._text("", True)

    async def feed(self, tokens: list[Token]) -> str:
        for token in tokens:
            if token.kind == "text":
                self.in_text = True
                await self._text(token.raw, False)
                continue
            await self._end_text()
            if token.kind == "start":
                await self._start(token)
            elif token.kind == "end":
                await self._end(token)
            elif token.kind == "comment":
                await self._comment(token)
            elif token.kind == "doctype":
                doctype = Doctype(token.name)
                for handler in self.document:
                    await _call(handler, "doctype", doctype)
                self._emit(token.raw)
            else:
                self._emit(token.raw)
        out, self.out = "".join(self.out), []
        return out

    async def finish(self) -> str:
        await self._end_text()
        while self.stack:  # elements never closed: their appended/after content still goes out
            frame = self._pop()
            if frame.element is not None:
                self._emit("".join(frame.element._close_output(None)))
        end = DocumentEnd()
        for handler in self.document:
            await _call(handler, "end", end)
        self.out.extend(end._append)
        out, self.out = "".join(self.out), []
        return out

    def _pop(self) -> _Frame:
        frame = self.stack.pop()
        self.content_frames -= bool(frame.content_handlers)
        return frame

    def _namespace(self, name: str) -> str:
        parent = self.stack[-1].namespace if self.stack else XHTML_NS
        if name == "svg":
            return SVG_NS
        if name == "math":
            return MATHML_NS
        return parent

    async def _start(self, token: Token) -> None:
        name = token.name
        namespace = self._namespace(name)
        has_content = name not in VOID_ELEMENTS and not (token.self_closing and namespace != XHTML_NS)
        node = self.skeleton.open(name, token.attrs, has_content) if self.selectors else None
        element: Element | None = None
        content_handlers: list[tuple[int, Any]] = []
        for index, (compiled, tags, handler) in enumerate(self.selectors):
            if (tags is not None and name not in tags) or not compiled.match(node):
                continue
            if _has(handler, "element"):
                if element is None:
                    element = Element(name, token.attrs, token.raw, token.self_closing, namespace, has_content)
                await _call(handler, "element", element)
            if has_content and (_has(handler, "text") or _has(handler, "comments")):
                content_handlers.append((index, handler))
        self._emit(element._open_output() if element is not None else token.raw)
        if has_content:
            parent_drops = bool(self.stack and self.stack[-1].drops_content)
            drops = parent_drops or (element is not None and element._drops_content)
            self.stack.append(_Frame(name, node, element, namespace, content_handlers, drops))
            self.content_frames += bool(content_handlers)

    async def _end(self, token: Token) -> None:
        index = next((i for i in range(len(self.stack) - 1, -1, -1) if self.stack[i].name == token.name), None)
        if index is None:  # a stray end tag: passed through
            self._emit(token.raw)
            return
        while len(self.stack) > index + 1:  # implicitly closed by this end tag
            frame = self._pop()
            if frame.node is not None:
                self.skeleton.close(frame.node)
            if frame.element is not None:
                self._emit("".join(frame.element._close_output(None)))
        frame = self._pop()
        if frame.node is not None:
            self.skeleton.close(frame.node)
        element = frame.element
        if element is None:
            self._emit(token.raw)
            return
        renamed = element._name != element._orig_name
        end = EndTag(element._name if renamed else token.name, f"</{element._name}>" if renamed else token.raw)
        for handler in element._end_handlers:
            result = handler(end)
            if inspect.isawaitable(result):
                await result
        self._emit("".join(element._close_output(end)))

    async def _comment(self, token: Token) -> None:
        if not self.content_frames and not self.doc_comments:
            self._emit(token.raw)
            return
        handlers = self._content_handlers("comments")
        if not handlers:
            self._emit(token.raw)
            return
        comment = Comment(token.name, token.raw)
        for handler in handlers:
            await _call(handler, "comments", comment)
        self._emit(comment._output())


def _charset(headers: Headers) -> str:
    ctype = headers.get("content-type") or ""
    for part in ctype.split(";")[1:]:
        key, _, value = part.strip().partition("=")
        if key.strip().lower() == "charset":
            name = value.strip().strip('"')
            try:
                return codecs.lookup(name).name
            except LookupError:
                break
    return "utf-8"


class HTMLRewriter:
    """``HTMLRewriter().on(selector, handler).onDocument(handler).transform(response)``."""

    def __init__(self) -> None:
        self._selectors: list[tuple[Any, frozenset[str] | None, Any]] = []
        self._document: list[Any] = []

    @classmethod
    def new(cls) -> HTMLRewriter:
        """``HTMLRewriter.new()``, the spelling of ``new HTMLRewriter()`` from ``js``."""
        return cls()

    def on(self, selector: str, handlers: Any) -> HTMLRewriter:
        """Register an element handler object (``element``, ``comments``, ``text``) for ``selector``."""
        compiled = compile_selector(selector)
        if not any(_has(handlers, m) for m in ("element", "comments", "text")):
            raise TypeError("HTMLRewriter.on(): the handler has none of element(), comments(), text()")
        self._selectors.append((compiled, subject_tags(selector), handlers))
        return self

    def onDocument(self, handlers: Any) -> HTMLRewriter:  # noqa: N802 - Cloudflare's name
        """Register a document handler object (``doctype``, ``comments``, ``text``, ``end``)."""
        if not any(_has(handlers, m) for m in ("doctype", "comments", "text", "end")):
            raise TypeError("HTMLRewriter.onDocument(): the handler has none of doctype(), comments(), text(), end()")
        self._document.append(handlers)
        return self

    on_document = onDocument

    def transform(self, response: Any) -> Response:
        """A new ``Response`` with the same status and headers whose body is rewritten as it streams."""
        if not isinstance(response, FetchResponse):
            raise TypeError("HTMLRewriter.transform() expects a Response")
        headers = response.headers.copy()
        headers.delete("content-length")
        has_body = response._body is not None
        source = response._stream()  # marks the body used now, as transform() does in workerd
        if not has_body:  # a null body stays null (204, 304, redirects): nothing to rewrite, as in workerd
            return Response._from_parts(response.status, headers, None, response.status_text)
        encoding = _charset(headers)
        if not self._selectors and not self._document:  # nothing to do: the body streams through as is
            return Response._from_parts(response.status, headers, source, response.status_text)
        run = _Run(list(self._selectors), list(self._document))
        result = Response._from_parts(response.status, headers, _rewrite(run, source, encoding), response.status_text)
        result.url = getattr(response, "url", "")
        return result


async def _rewrite(run: _Run, source: AsyncIterator[bytes] | None, encoding: str) -> AsyncIterator[bytes]:
    decoder = codecs.getincrementaldecoder(encoding)("surrogateescape")
    tokenizer = Tokenizer()
    if source is not None:
        async for chunk in source:
            tokenizer.feed(decoder.decode(chunk))
            out = await run.feed(tokenizer.take())
            if out:
                yield out.encode(encoding, "surrogateescape")
    tokenizer.feed(decoder.decode(b"", final=True))
    tokenizer.close()
    out = await run.feed(tokenizer.take())
    out += await run.finish()
    if out:
        yield out.encode(encoding, "surrogateescape")
