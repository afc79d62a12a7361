"""The ``pyodide`` package a Python Worker imports: ``pyodide.ffi`` and ``pyodide.http``.

Registered as ``pyodide``, ``pyodide.ffi`` and ``pyodide.http`` in ``sys.modules`` by
:func:`install`. ``__version__`` is the Pyodide release Cloudflare's Python Workers run, so code
that branches on it takes the Cloudflare path.
"""

from __future__ import annotations

import sys
from types import ModuleType

#: the Pyodide version of Cloudflare's current Python Workers runtime
PYODIDE_VERSION = "0.28.2"


def _module(name: str, source: ModuleType, names: list[str], doc: str) -> ModuleType:
    module = ModuleType(name, doc)
    for attr in names:
        setattr(module, attr, getattr(source, attr))
    module.__all__ = list(names)  # type: ignore[attr-defined]
    return module


def install() -> ModuleType:
    """Register ``pyodide`` (with ``ffi`` and ``http``) unless already registered by flarelet."""
    existing = sys.modules.get("pyodide")
    if existing is not None and getattr(existing, "__flarelet__", False):
        return existing
    from . import ffi, http

    pyodide = ModuleType("pyodide", "Pyodide's Python API, as flarelet provides it to Python Workers")
    pyodide.__flarelet__ = True  # type: ignore[attr-defined]
    pyodide.__version__ = PYODIDE_VERSION  # type: ignore[attr-defined]
    pyodide.__path__ = []  # a package, so `import pyodide.ffi` works
    ffi_module = _module("pyodide.ffi", ffi, ffi.__all__, "pyodide.ffi as flarelet provides it")
    http_module = _module("pyodide.http", http, http.__all__, "pyodide.http as flarelet provides it")
    pyodide.ffi = ffi_module  # type: ignore[attr-defined]
    pyodide.http = http_module  # type: ignore[attr-defined]
    sys.modules["pyodide"] = pyodide
    sys.modules["pyodide.ffi"] = ffi_module
    sys.modules["pyodide.http"] = http_module
    return pyodide
