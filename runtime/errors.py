"""The 500 page a worker's uncaught exception turns into (as wrangler dev's pretty error page).

Browsers (``Accept: text/html``) get an HTML page with the exception and traceback; other clients
(curl, fetch, tests) get the same as plain text. The traceback goes to the log too; the server
keeps serving.
"""

from __future__ import annotations

import html
import linecache
import re
import traceback
from pathlib import Path
from typing import Any

from .headers import Headers
from .response import Response


class HandlerResultError(TypeError):
    """A handler returned something that is not a ``Response``."""


class MissingHandlerError(Exception):
    """The worker has no handler for the event (e.g. no ``fetch``)."""


def describe_result(value: Any) -> str:
    kind = type(value)
    name = kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"
    preview = repr(value)
    if len(preview) > 80:
        preview = preview[:77] + "..."
    return f"{name} ({preview})"


def format_exception(exc: BaseException) -> str:
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))


#: modules flarelet provides in place of Cloudflare's runtime: a name missing from one is reported as such
PROVIDED_MODULES = frozenset({"js", "pyodide", "pyodide.ffi", "pyodide.http", "workers", "workers.wsgi", "asgi"})
_CANNOT_IMPORT = re.compile(r"cannot import name '([^']+)' from '([^']+)'")


def missing_name_line(exc: BaseException, root: Path | None) -> str | None:
    """One line for ``from js import X`` where flarelet lacks ``X``: the worker's file and line, the
    statement, and what is missing. ``None`` when ``exc`` is not such an import failure."""
    if not isinstance(exc, ImportError):
        return None
    found = _CANNOT_IMPORT.search(str(exc))
    if found is None or found.group(2) not in PROVIDED_MODULES:
        return None
    name, module = found.groups()
    where = ""
    for frame, lineno in traceback.walk_tb(exc.__traceback__):
        filename = frame.f_code.co_filename
        if root is not None and _is_under(Path(filename), root):
            shown = _relative(Path(filename), root)
            statement = linecache.getline(filename, lineno).strip()
            where = f"{shown}:{lineno}: {statement}: " if statement else f"{shown}:{lineno}: "
    return f"{where}flarelet does not provide {module}.{name} (cannot import name {name!r} from {module!r})"


def _is_under(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root)
        return True
    except (ValueError, OSError):
        return False


def _relative(path: Path, root: Path) -> str:
    base = root.parent if root.parent != root else root
    try:
        return str(path.resolve().relative_to(base))
    except ValueError:
        return str(path)


def brief_error_response(exc: BaseException, accept: str | None) -> Response:
    """A 500 whose body is one line saying what failed (the traceback goes to the log only)."""
    title = f"{type(exc).__name__}: {exc}".replace("\n", " ")
    if accept and "text/html" in accept:
        body = (
            f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title></head>'
            f"<body><h1>{html.escape(title)}</h1></body></html>"
        )
        ctype = "text/html;charset=UTF-8"
    else:
        body = title + "\n"
        ctype = "text/plain;charset=UTF-8"
    return Response._from_parts(500, Headers({"content-type": ctype}), body.encode())


def error_response(exc: BaseException, accept: str | None, details: str | None = None) -> Response:
    """A 500 response describing ``exc`` (HTML when the client accepts HTML)."""
    title = f"{type(exc).__name__}: {exc}"
    trace = details if details is not None else format_exception(exc)
    if accept and "text/html" in accept:
        body = (
            '<!DOCTYPE html><html><head><meta charset="utf-8"><title>'
            f"{html.escape(title)}</title><style>body{{font-family:system-ui,sans-serif;margin:2rem}}"
            "pre{background:#f6f6f6;padding:1rem;overflow:auto}h1{color:#b00020;font-size:1.3rem}</style>"
            f"</head><body><h1>{html.escape(title)}</h1><p>Uncaught exception in the worker "
            "(flarelet dev). The server keeps running; fix the code and reload.</p>"
            f"<pre>{html.escape(trace)}</pre></body></html>"
        )
        ctype = "text/html;charset=UTF-8"
    else:
        body = f"{title}\n\n{trace}"
        ctype = "text/plain;charset=UTF-8"
    return Response._from_parts(500, Headers({"content-type": ctype}), body.encode())
