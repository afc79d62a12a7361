// The JS side of scripts/html_rewriter_diff.py: each route applies one set of HTMLRewriter handlers to env.PAGE
// on workerd (lol-html); the Python side applies the same handlers with flarelet's HTMLRewriter.
class Mutations {
  element(el) {
    const kind = el.getAttribute("data-track");
    if (el.tagName === "nav") { el.before("<!--before nav-->", { html: true }); el.before("<b>escaped</b>"); el.after("A1"); el.after("A2"); }
    else if (el.tagName === "h1") { el.prepend("P1"); el.prepend("P2"); el.append("E1"); el.append("<i>E2</i>", { html: true }); }
    else if (el.tagName === "em") { el.setInnerContent("<strong>inner</strong>", { html: true }); }
    else if (el.hasAttribute("class") && el.getAttribute("class").split(" ").includes("ad")) { el.remove(); }
    else if (el.tagName === "footer") { el.replace("<footer>new footer</footer>", { html: true }); }
    else if (el.tagName === "b") { el.removeAndKeepContent(); }
    else if (el.tagName === "article") { el.tagName = "section"; el.removeAttribute("data-id"); el.setAttribute("data-new", 'say "hi" & bye'); }
    else if (kind) { el.setAttribute("data-seen", kind); }
  }
}
class EndTagRenamer {
  element(el) {
    el.onEndTag((end) => { end.before("[before end]"); end.after("[after end]"); if (end.name === "ul") end.name = "ol"; });
    if (el.tagName === "ul") el.tagName = "ol";
  }
}
class Comments { comments(c) { if (c.text.includes("remove me")) c.remove(); else c.text = c.text.toUpperCase(); } }
class Doc {
  constructor() { this.dt = null; this.n = 0; }
  doctype(d) { this.dt = [d.name, d.publicId, d.systemId]; }
  comments(c) { this.n++; }
  end(e) { e.append(`<!--doctype=${JSON.stringify(this.dt)} comments=${this.n}-->`, { html: true }); }
}
class TextUpper { text(t) { if (t.text) t.replace(t.text.toUpperCase()); } }
class TextReplaceLast { text(t) { if (t.lastInTextNode) t.replace("[end]"); else t.remove(); } }
export default {
  async fetch(request, env) {
    const path = new URL(request.url).pathname.slice(1);
    const page = () => new Response(env.PAGE, { headers: { "content-type": "text/html" } });
    let rw = new HTMLRewriter();
    if (path === "mutations") rw = rw.on("*", new Mutations());
    if (path === "endtag") rw = rw.on("ul", new EndTagRenamer());
    if (path === "comments") rw = rw.on("head", new Comments());
    if (path === "document") rw = rw.onDocument(new Doc());
    if (path === "textupper") rw = rw.on("title, li", new TextUpper());
    if (path === "textlast") rw = rw.on("h1, p", new TextReplaceLast());
    return rw.transform(page());
  },
};
