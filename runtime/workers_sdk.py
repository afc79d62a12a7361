"""The ``workers`` module that worker code imports (``from workers import Response, ...``).

On Cloudflare, ``workers`` is the Python Workers SDK (``workers-runtime-sdk``) running on Pyodide.
flarelet provides the same names backed by plain CPython objects and installs this module as
``sys.modules["workers"]`` (see :func:`install`) before the user's module executes, so code
written for Cloudflare runs unchanged. Names follow ``workers/__init__.py`` of the SDK (PyPI
``workers-runtime-sdk``); ``import_from_javascript`` only knows ``cloudflare:workers``.

``workers.env`` and ``workers.wait_until`` are the module-level forms from ``cloudflare:workers``:
they refer to the env of the worker being run and the context of the current request, which the
dispatcher keeps in context variables.
"""

from __future__ import annotations

import contextlib
import functools
import sys
from collections.abc import Awaitable, Iterator
from http import HTTPMethod
from types import ModuleType, SimpleNamespace
from typing import Any, Literal, Protocol, TypedDict

from flarelet.bindings.durable_objects.state import WebSocketRequestResponsePair

from .body import Blob, File, FormData, FormDataValue
from .context import ExecutionContext, current_context, current_env
from .env import Env
from .headers import Headers
from .html_rewriter import HTMLRewriter
from .outbound import fetch
from .request import Request
from .response import FetchResponse, Response
from .websocket import WebSocket, WebSocketPair

__all__ = [
    "Blob",
    "BlobEnding",
    "BlobValue",
    "Body",
    "Context",
    "DurableObject",
    "FetchKwargs",
    "FetchResponse",
    "File",
    "FormData",
    "FormDataValue",
    "HTMLRewriter",
    "Headers",
    "JSBody",
    "Request",
    "RequestInitCfProperties",
    "Response",
    "WebSocket",
    "WebSocketPair",
    "WebSocketRequestResponsePair",
    "WorkerEntrypoint",
    "WorkflowEntrypoint",
    "env",
    "fetch",
    "handler",
    "import_from_javascript",
    "patch_env",
    "python_from_rpc",
    "python_to_rpc",
    "waitUntil",
    "wait_until",
]

JSBody = Any
Body = str | FormData | bytes | JSBody | None
BlobValue = str | bytes | Blob
BlobEnding = Literal["transparent", "native"]


class RequestInitCfProperties(TypedDict, total=False):
    cacheEverything: bool
    cacheKey: str
    cacheTtl: int
    cacheTtlByStatus: dict[str, int]
    resolveOverride: str
    scrapeShield: bool


class FetchKwargs(TypedDict, total=False):
    headers: Any
    body: Body
    method: HTTPMethod | str | None
    redirect: str | None
    cf: RequestInitCfProperties | None


class Context(Protocol):
    def waitUntil(self, other: Awaitable[Any]) -> None: ...  # noqa: N802


class WorkerEntrypoint:
    """Base of ``class Default(WorkerEntrypoint)``: one instance per event, with ``self.ctx`` and ``self.env``."""

    ctx: ExecutionContext
    env: Env

    def __init__(self, ctx: ExecutionContext, env: Env) -> None:
        self.ctx = ctx
        self.env = env


class DurableObject:
    """Base of a Durable Object class: built once per id with ``ctx`` (its state) and ``env``.

    flarelet hosts these through ``[[durable_objects.bindings]]`` (``flarelet.bindings.durable_objects``).
    """

    def __init__(self, ctx: Any, env: Env) -> None:
        self.ctx = ctx
        self.env = env


class WorkflowEntrypoint:
    """Base of a Workflow class: ``async def run(self, event, step)``, run by ``[[workflows]]`` bindings.

    ``event`` is ``{"payload", "timestamp", "instanceId", "workflowName"}`` (a ``JsDict``) and
    ``step`` the Python step API (``flarelet.bindings.workflows.step.PythonStep``).
    """

    def __init__(self, ctx: Any, env: Env) -> None:
        self.ctx = ctx
        self.env = env


#: env used outside of a dispatched call (module import time): the last worker loaded
_fallback_env: list[Env | None] = [None]


def set_default_env(value: Env | None) -> None:
    """Make ``workers.env`` refer to ``value`` outside of a dispatched call (module import time)."""
    _fallback_env[0] = value


def _active_env() -> Env:
    value = current_env.get()
    if value is None:
        value = _fallback_env[0]
    if value is None:
        raise RuntimeError("workers.env is only available while flarelet runs a worker")
    return value


class _EnvProxy:
    """``workers.env``: forwards to the env of the running worker."""

    def __getattr__(self, name: str) -> Any:
        return getattr(_active_env(), name)

    def __getitem__(self, name: str) -> Any:
        return _active_env()[name]

    def __contains__(self, name: object) -> bool:
        return name in _active_env()

    def __repr__(self) -> str:
        return repr(_active_env())


env = _EnvProxy()


def waitUntil(awaitable: Awaitable[Any]) -> None:  # noqa: N802 - Cloudflare's name
    """``cloudflare:workers`` ``waitUntil``: extend the current request past its response."""
    ctx = current_context.get()
    if ctx is None:
        raise RuntimeError("waitUntil() was called outside of a request, scheduled or queue event")
    ctx.waitUntil(awaitable)


wait_until = waitUntil


def handler(func: Any) -> Any:
    """``@handler`` for legacy ``on_fetch``: the SDK converts a JS request to ``workers.Request`` and
    wraps ``env``; here both already are, so the wrapper passes its arguments through (and works
    for sync and async handlers alike, as the SDK's does)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return func(*args, **kwargs)

    return wrapper


def import_from_javascript(name: str) -> Any:
    """Only ``cloudflare:workers`` (``env``, ``waitUntil``) exists locally."""
    if name == "cloudflare:workers":
        return SimpleNamespace(env=env, waitUntil=waitUntil, wait_until=waitUntil)
    raise ImportError(f"import_from_javascript({name!r}): JavaScript modules are not available in flarelet")


def python_to_rpc(value: Any) -> Any:
    """Identity: there is no JS boundary locally."""
    return value


def python_from_rpc(value: Any) -> Any:
    """Identity: there is no JS boundary locally."""
    return value


@contextlib.contextmanager
def patch_env(values: dict[str, Any] | None = None, **kwargs: Any) -> Iterator[Env]:
    """Temporarily set values on ``workers.env`` (restored on exit)."""
    target = _active_env()
    updates = {**(values or {}), **kwargs}
    missing = object()
    saved = {k: target.get(k, missing) for k in updates}
    for k, v in updates.items():
        setattr(target, k, v)
    try:
        yield target
    finally:
        for k, v in saved.items():
            if v is missing:
                delattr(target, k)
            else:
                setattr(target, k, v)


def _public_module(name: str, source: ModuleType, names: list[str], doc: str | None) -> ModuleType:
    """A module named ``name`` holding ``names`` from ``source``: errors and reprs say ``workers``,
    never flarelet's internal module path."""
    module = ModuleType(name, doc)
    for attr in names:
        setattr(module, attr, getattr(source, attr))
    module.__all__ = list(names)  # type: ignore[attr-defined]
    return module


_installed: list[ModuleType] = []


def install() -> ModuleType:
    """Register ``workers`` (with ``workers.wsgi``, ``workers.asgi``, ``workers.workflows``), ``asgi``, ``js`` and
    ``pyodide`` in ``sys.modules``, as Cloudflare's runtime provides them to a Python Worker."""
    if _installed and sys.modules.get("workers") is _installed[0]:
        return _installed[0]
    from . import js, pyodide_api
    from .gateway import asgi, wsgi

    js.install()
    pyodide_api.install()
    workers = _public_module(
        "workers", sys.modules[__name__], __all__, "Cloudflare's Python Workers SDK, as flarelet provides it"
    )
    workers.__path__ = []  # a package: `import workers.wsgi` works
    asgi_module = _public_module(
        "asgi", asgi, ["fetch", "entrypoint", "request_to_scope", "Options", "ASGI"], asgi.__doc__
    )
    asgi_module.__getattr__ = asgi.__getattr__  # type: ignore[method-assign]  # module __getattr__ (PEP 562): `asgi.env` (FastAPI dependency)
    wsgi_module = _public_module(
        "workers.wsgi", wsgi, ["fetch", "entrypoint", "build_environ", "Options"], wsgi.__doc__
    )
    workers.wsgi = wsgi_module  # type: ignore[attr-defined]
    workers.asgi = asgi_module  # type: ignore[attr-defined]
    from flarelet.bindings.workflows.errors import NonRetryableError

    workflows_module = ModuleType("workers.workflows", "Workflow-specific classes and exceptions")
    workflows_module.NonRetryableError = NonRetryableError  # type: ignore[attr-defined]
    workflows_module.__all__ = ["NonRetryableError"]  # type: ignore[attr-defined]
    workers.workflows = workflows_module  # type: ignore[attr-defined]
    sys.modules["workers.workflows"] = workflows_module
    sys.modules["workers"] = workers
    sys.modules["workers.wsgi"] = wsgi_module
    sys.modules["workers.asgi"] = asgi_module
    sys.modules["asgi"] = asgi_module
    _installed[:] = [workers]
    return workers
