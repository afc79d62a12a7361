"""HTMLRewriter test worker: each route exercises a behaviour from Cloudflare's HTMLRewriter docs."""

import asyncio
import os

from js import HTMLRewriter
from pyodide.ffi import create_proxy
from workers import Response, WorkerEntrypoint


class AttributeRewriter:  # the docs' "rewrite links" example
    old_url = "developer.mozilla.org"
    new_url = "mynewdomain.com"

    def __init__(self, attr_name):
        self.attr_name = attr_name

    def element(self, element):
        attr = element.getAttribute(self.attr_name)
        if attr:
            element.setAttribute(self.attr_name, attr.replace(self.old_url, self.new_url))


class ExistingMetaRemover:
    def element(self, element):
        element.remove()


class MetaTagInjector:
    def __init__(self, og):
        self.og = og

    def element(self, element):
        for key, value in self.og.items():
            element.append(f'<meta property="og:{key}" content="{value}">', html=True)


class Mutations:
    def element(self, el):
        kind = el.getAttribute("data-track")
        if el.tagName == "nav":
            el.before("<!--before nav-->", {"html": True})
            el.before("<b>escaped</b>")
            el.after("A1")
            el.after("A2")
        elif el.tagName == "h1":
            el.prepend("P1")
            el.prepend("P2")
            el.append("E1")
            el.append("<i>E2</i>", html=True)
        elif el.tagName == "em":
            el.setInnerContent("<strong>inner</strong>", {"html": True})
        elif el.hasAttribute("class") and "ad" in el.getAttribute("class").split():
            el.remove()
        elif el.tagName == "footer":
            el.replace("<footer>new footer</footer>", {"html": True})
        elif el.tagName == "b":
            el.removeAndKeepContent()
        elif el.tagName == "article":
            el.tagName = "section"
            el.removeAttribute("data-id")
            el.setAttribute("data-new", 'say "hi" & bye')
        elif kind:
            el.setAttribute("data-seen", kind)


class TextCollector:
    def __init__(self):
        self.chunks = []

    def text(self, chunk):
        self.chunks.append([chunk.text, chunk.lastInTextNode])


class TextUpper:
    def text(self, chunk):
        if chunk.text:
            chunk.replace(chunk.text.upper())


class CommentCollector:
    def __init__(self):
        self.seen = []

    def comments(self, comment):
        self.seen.append(comment.text)
        if "remove me" in comment.text:
            comment.remove()
        else:
            comment.text = comment.text.upper()


class DocHandler:
    def __init__(self):
        self.seen_doctype = None
        self.comments_seen = 0
        self.text_chars = 0

    def doctype(self, doctype):
        self.seen_doctype = [doctype.name, doctype.publicId, doctype.systemId]

    def comments(self, comment):
        self.comments_seen += 1

    def text(self, chunk):
        self.text_chars += len(chunk.text)

    def end(self, end):
        end.append(f"<!--doctype={self.seen_doctype} comments={self.comments_seen}-->", html=True)


class EndTagRenamer:
    def element(self, el):
        def on_end(end):
            end.before("[before end]")
            end.after("[after end]")
            if end.name == "ul":
                end.name = "ol"

        el.onEndTag(on_end)
        if el.tagName == "ul":
            el.tagName = "ol"


class SelectorProbe:
    def __init__(self, selector, found):
        self.selector = selector
        self.found = found

    def element(self, el):
        label = el.tagName + "".join(
            "#" + v if k == "id" else "." + v.replace(" ", ".") for k, v in el.attributes if k in ("id", "class")
        )
        self.found.setdefault(self.selector, []).append(label)


class AsyncHandler:
    async def element(self, el):
        await asyncio.sleep(0.01)
        el.setAttribute("data-async", "yes")


class Noop:
    def element(self, el):
        pass

    def text(self, t):
        pass

    def comments(self, c):
        pass


SELECTORS = [
    "li",
    "ul > li",
    "nav a",
    "li:nth-child(2)",
    "li:first-child",
    "li:nth-of-type(odd)",
    "li:not(.ad)",
    'a[href^="https"]',
    'a[href$="/b"]',
    'a[href*="mozilla"]',
    "[data-track]",
    'li[class~="first"]',
    'html[lang|="en"]',
    'BODY[class="PAGE" i]',
    "#menu",
    "*.ad",
    "svg circle",
    "body > nav > ul > li > a",
]


class Default(WorkerEntrypoint):
    async def page(self):
        return await self.env.ASSETS.fetch("http://assets.local/article")

    async def fetch(self, request):
        path = request.url.split("://", 1)[1].split("/", 1)[1].split("?")[0]
        if path == "links":
            href = create_proxy(AttributeRewriter("href"))
            src = create_proxy(AttributeRewriter("src"))
            return HTMLRewriter.new().on("a", href).on("img", src).transform(await self.page())
        if path == "og":
            rewriter = HTMLRewriter.new()
            remover = create_proxy(ExistingMetaRemover())
            rewriter.on('meta[property^="og:"]', remover)
            rewriter.on('meta[name^="twitter:"]', remover)
            rewriter.on("head", create_proxy(MetaTagInjector({"title": "New", "type": "article"})))
            return rewriter.transform((await self.page()).js_object)
        if path == "mutations":
            return HTMLRewriter.new().on("*", Mutations()).transform(await self.page())
        if path == "text":
            collector = TextCollector()
            body = (
                await HTMLRewriter.new()
                .on("h1", collector)
                .on("title", TextUpper())
                .transform(await self.page())
                .text()
            )
            return Response.json({"chunks": collector.chunks, "body": body})
        if path == "comments":
            collector = CommentCollector()
            body = await HTMLRewriter.new().on("head", collector).transform(await self.page()).text()
            return Response.json({"seen": collector.seen, "body": body})
        if path == "document":
            doc = DocHandler()
            body = await HTMLRewriter.new().onDocument(doc).transform(await self.page()).text()
            return Response.json({"text_chars": doc.text_chars, "body": body})
        if path == "endtag":
            return HTMLRewriter.new().on("ul", EndTagRenamer()).transform(await self.page())
        if path == "selectors":
            found = {}
            rewriter = HTMLRewriter.new()
            for selector in SELECTORS:
                rewriter.on(selector, SelectorProbe(selector, found))
            await rewriter.transform(await self.page()).text()
            return Response.json(found)
        if path == "bad-selector":
            errors = []
            for selector in ("li + li", "li ~ li", "a:hover", "p::before", "li:last-child", "[unclosed"):
                try:
                    HTMLRewriter.new().on(selector, Noop())
                    errors.append([selector, None])
                except TypeError as exc:
                    errors.append([selector, str(exc)])
            return Response.json(errors)
        if path == "async":
            return HTMLRewriter.new().on("a", AsyncHandler()).transform(await self.page())
        if path == "boom":

            class Boom:
                def element(self, el):
                    raise ValueError("handler failed on " + el.tagName)

            return HTMLRewriter.new().on("footer", Boom()).transform(await self.page())
        if path == "identity":
            return HTMLRewriter.new().on("*", Noop()).onDocument(Noop()).transform(await self.page())
        if path == "stream":
            gate = os.environ["FLARELET_TEST_GATE"]

            async def slow():
                yield b"<html><body><p class='x'>first part</p>"
                for _ in range(1000):  # until the test has seen the first part
                    if os.path.exists(gate):
                        break
                    await asyncio.sleep(0.01)
                yield b"<p class='x'>second part</p></body></html>"

            class Mark:
                def element(self, el):
                    el.setAttribute("class", "seen")

            upstream = Response(slow(), headers={"content-type": "text/html; charset=utf-8"})
            return HTMLRewriter.new().on("p.x", Mark()).transform(upstream)
        return Response("not found", status=404)
