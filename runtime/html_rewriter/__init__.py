"""Cloudflare's ``HTMLRewriter`` for Python Workers (``from js import HTMLRewriter``); see :mod:`.rewriter`."""

from .nodes import Comment, Doctype, DocumentEnd, Element, EndTag, Text
from .rewriter import HTMLRewriter

__all__ = ["Comment", "Doctype", "DocumentEnd", "Element", "EndTag", "HTMLRewriter", "Text"]
