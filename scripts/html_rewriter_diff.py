"""HTMLRewriter side by side: the same handlers on workerd (lol-html, through Miniflare) and on flarelet.

    cd scripts/html_rewriter_diff && npm install && cd ../.. && .venv/bin/python scripts/html_rewriter_diff.py

Each route of ``scripts/html_rewriter_diff/worker.mjs`` applies one set of handlers (the mutation
API, ``onEndTag``, comments, document handlers, text ``replace``/``remove``) to
``tests/runtime/data/html/article.html``; the classes below are the same handlers in Python.
Prints one line per route and every differing line; exits 1 on any difference.
"""

from __future__ import annotations

import asyncio
import difflib
import json
import subprocess
import sys
from pathlib import Path

from flarelet.runtime.html_rewriter import HTMLRewriter
from flarelet.runtime.response import Response

HERE = Path(__file__).resolve().parent / "html_rewriter_diff"
PAGE = Path(__file__).resolve().parent.parent / "tests" / "runtime" / "data" / "html" / "article.html"


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
        elif el.hasAttribute("class") and "ad" in el.getAttribute("class").split(" "):
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


class Comments:
    def comments(self, c):
        if "remove me" in c.text:
            c.remove()
        else:
            c.text = c.text.upper()


class Doc:
    def __init__(self):
        self.seen_doctype = None
        self.count = 0

    def doctype(self, d):
        self.seen_doctype = [d.name, d.publicId, d.systemId]

    def comments(self, c):
        self.count += 1

    def end(self, e):
        doctype = json.dumps(self.seen_doctype, separators=(",", ":"))
        e.append(f"<!--doctype={doctype} comments={self.count}-->", html=True)


class TextUpper:
    def text(self, t):
        if t.text:
            t.replace(t.text.upper())


class TextReplaceLast:
    def text(self, t):
        if t.lastInTextNode:
            t.replace("[end]")
        else:
            t.remove()


ROUTES = {
    "mutations": lambda: HTMLRewriter().on("*", Mutations()),
    "endtag": lambda: HTMLRewriter().on("ul", EndTagRenamer()),
    "comments": lambda: HTMLRewriter().on("head", Comments()),
    "document": lambda: HTMLRewriter().onDocument(Doc()),
    "textupper": lambda: HTMLRewriter().on("title, li", TextUpper()),
    "textlast": lambda: HTMLRewriter().on("h1, p", TextReplaceLast()),
}


async def ours() -> dict[str, str]:
    page = PAGE.read_text()
    return {
        route: await make().transform(Response(page, headers={"content-type": "text/html"})).text()
        for route, make in ROUTES.items()
    }


def main() -> int:
    node = subprocess.run(
        ["node", str(HERE / "miniflare.mjs"), str(PAGE), *ROUTES], capture_output=True, text=True, check=True
    )
    reference = json.loads(node.stdout)
    mine = asyncio.run(ours())
    differing = 0
    for route in ROUTES:
        equal = reference[route] == mine[route]
        differing += not equal
        print(f"{route:10} {'equal' if equal else 'DIFFERENT'}")
        if not equal:
            diff = difflib.unified_diff(
                reference[route].splitlines(), mine[route].splitlines(), "workerd", "flarelet", lineterm="", n=0
            )
            for line in diff:
                print("   ", line)
    print(f"{len(ROUTES) - differing}/{len(ROUTES)} routes equal")
    return 1 if differing else 0


if __name__ == "__main__":
    sys.exit(main())
