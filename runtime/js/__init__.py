"""The ``js`` module a Python Worker imports (``from js import URL, Response, crypto``).

On Cloudflare, ``js`` is Pyodide's view of the JavaScript global scope. flarelet has no JS engine;
each family of globals is a small Python module here (``url``, ``encoding``, ``crypto``,
``objects``, ``misc``, ``fetch_api``) and :data:`EXPORTS` maps every global name to where it lives.
Adding a global is one line in that table. Names are resolved lazily on first access, so a worker
pays only for what it imports.

A name that is not in the table raises ``AttributeError`` with a message naming it, which Python
turns into ``ImportError: cannot import name 'X' from 'js'``; the loader reports that as one line
with the worker's file and line (``runtime.errors.missing_name_line``).
"""

from __future__ import annotations

import importlib
import sys
from types import ModuleType
from typing import Any

#: JS global name -> "module:attribute": a module of this package (``url``), or an absolute module path
#: (``flarelet.runtime.something``) for globals implemented elsewhere
EXPORTS: dict[str, str] = {
    "URL": "url:URL",
    "URLSearchParams": "url:URLSearchParams",
    "TextEncoder": "encoding:TextEncoder",
    "TextDecoder": "encoding:TextDecoder",
    "atob": "encoding:atob",
    "btoa": "encoding:btoa",
    "crypto": "crypto:crypto",
    "CryptoKey": "crypto:CryptoKey",
    "ArrayBuffer": "buffers:ArrayBuffer",
    "Uint8Array": "buffers:Uint8Array",
    "JSON": "objects:JSON",
    "Object": "objects:Object",
    "Array": "objects:Array",
    "Date": "misc:Date",
    "Math": "misc:Math",
    "console": "misc:console",
    "setTimeout": "misc:setTimeout",
    "clearTimeout": "misc:clearTimeout",
    "Error": "misc:Error",
    "Headers": "fetch_api:Headers",
    "Request": "fetch_api:Request",
    "Response": "fetch_api:Response",
    "fetch": "fetch_api:fetch",
    "FormData": "fetch_api:FormData",
    "Blob": "fetch_api:Blob",
    "File": "fetch_api:File",
    "HTMLRewriter": "flarelet.runtime.html_rewriter:HTMLRewriter",
    "caches": "flarelet.runtime.cache:caches",
    "WebSocket": "flarelet.runtime.websocket:WebSocket",
    "WebSocketPair": "flarelet.runtime.websocket:WebSocketPair",
    "WebSocketRequestResponsePair": "flarelet.bindings.durable_objects.state:WebSocketRequestResponsePair",
}


class JsModule(ModuleType):
    """``js``: attributes resolved from :data:`EXPORTS` on first use."""

    def __getattr__(self, name: str) -> Any:
        target = EXPORTS.get(name)
        if target is None:
            if name.startswith("__"):
                raise AttributeError(name)
            raise AttributeError(f"flarelet's js module has no {name!r} (it provides: {', '.join(sorted(EXPORTS))})")
        module_name, _, attr = target.partition(":")
        full_name = module_name if module_name.startswith("flarelet.") else f"{__name__}.{module_name}"
        value = getattr(importlib.import_module(full_name), attr)
        setattr(self, name, value)
        return value

    def __dir__(self) -> list[str]:
        return sorted(set(EXPORTS) | set(super().__dir__()))


def install() -> ModuleType:
    """Register ``js`` in ``sys.modules`` (once; later calls return the same module)."""
    existing = sys.modules.get("js")
    if isinstance(existing, JsModule):
        return existing
    module = JsModule("js", "JavaScript globals, as flarelet provides them to Python Workers")
    sys.modules["js"] = module
    return module
