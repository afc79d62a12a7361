"""The 500 page a worker's uncaught exception turns into (as wrangler dev's pretty error page).

Browsers (``Accept: text/html``) get an HTML page with the exception and traceback; other clients
(curl, fetch, tests) get the same as plain text. The traceback goes to the log too; the server
keeps serving.
"""

from __future__ import annotations

import html
import traceback
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


def cpu_limit_response(exc: BaseException, accept: str | None) -> Response:
    """Cloudflare's error 1102 ("Worker exceeded resource limits", HTTP 503) for a request past ``cpu_ms``."""
    if accept and "text/html" in accept:
        body = (
            '<!DOCTYPE html><html><head><meta charset="utf-8"><title>Worker exceeded resource limits</title>'
            "</head><body><h1>Error 1102</h1><h2>Worker exceeded resource limits</h2>"
            f"<p>{html.escape(str(exc))}</p></body></html>"
        )
        ctype = "text/html;charset=UTF-8"
    else:
        body = f"error code: 1102\n\nWorker exceeded resource limits: {exc}\n"
        ctype = "text/plain;charset=UTF-8"
    return Response._from_parts(503, Headers({"content-type": ctype}), body.encode())


def shutting_down_response() -> Response:
    """What a request still running when the server stops gets (if its client is still there)."""
    return Response._from_parts(
        503,
        Headers({"content-type": "text/plain;charset=UTF-8", "connection": "close"}),
        b"the server is shutting down\n",
    )
