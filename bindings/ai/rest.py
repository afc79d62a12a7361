"""The Workers AI REST API (``/client/v4/accounts/{id}/ai/...``), served from this machine.

Any program that calls ``https://api.cloudflare.com/client/v4/accounts/{id}/ai/run/{model}``
(curl as in Cloudflare's docs, the official ``cloudflare`` SDK, ``requests``/``httpx`` scripts)
works unchanged against flarelet once its base URL points here. So this module answers with
Cloudflare's v4 envelope ``{"result", "success", "errors", "messages"}`` and Cloudflare's error
codes and HTTP statuses, for every request, including the ones it rejects: a client library
only turns errors into its normal exceptions when they come in that shape.

Routes, under ``/client/v4``:

* ``POST /accounts/{account_id}/ai/run/{model}`` -- the body is the model's JSON inputs
  (``application/json``) or, for any other content type, the raw audio file (curl
  ``--data-binary @file.mp3`` sends ``application/x-www-form-urlencoded``);
* ``GET /accounts/{account_id}/ai/models/search`` -- the catalog, paginated like Cloudflare's;
* ``GET /accounts/{account_id}/ai/models/schema?model=`` -- a model's input/output JSON Schema;
* ``GET /openapi.json`` -- an OpenAPI 3.1 document of the above (no token needed);
* anything else -- ``7000 No route for that URI`` (405 with ``Allow`` for a known path, wrong method).

The same routes run inside ``flarelet dev`` (:func:`routes`, called by the AI plugin) and on their
own (:func:`create_app`, behind ``flarelet ai serve``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import re
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute, Mount, Route

from . import catalog, errors
from .errors import AiError, json_type
from .json_audio import parse_json_inputs
from .rest_auth import RestCredentials, RestError, method_not_allowed, no_route, unknown_path
from .rest_openai import OpenAiRoutes
from .streaming import AiStream

if TYPE_CHECKING:
    from flarelet.bindings.registry import BindingContext

    from .settings import AiSettings

log = logging.getLogger("flarelet.ai.rest")

API_PREFIX = "/client/v4"

#: A JSON body carries the audio as base64 (4/3 of the bytes) or as an array of 0..255 integers
#: (up to 4 characters per byte: ``"255,"``), so its byte limit is the audio limit times this,
#: plus :data:`JSON_SLACK_BYTES` for the other fields. The service still enforces the audio limit.
JSON_EXPANSION = 4
JSON_SLACK_BYTES = 64 * 1024

#: Bodies larger than this are parsed off the event loop, so other requests keep being answered.
PARSE_IN_THREAD_BYTES = 256 * 1024

#: ``models/search`` page size when the caller gives none, and the largest one accepted.
DEFAULT_PER_PAGE = 20
MAX_PER_PAGE = 1000
#: the largest ``page`` accepted (a 32-bit signed integer, as most APIs' page numbers)
MAX_PAGE = 2**31 - 1

#: Keys of ``[flarelet.ai]`` that belong to the REST API, not to :class:`AiSettings`.
REST_CONFIG_KEYS = ("api_token", "api_tokens", "account_id")


class AiBackend(Protocol):
    """What the REST API needs from the AI service (``flarelet.bindings.ai.service.AiService``)."""

    async def run(self, model: str, inputs: Any, admission: Any = None) -> dict[str, Any] | AiStream:
        """A model's output, or an :class:`AiStream` when the request asked for ``stream: true``;
        ``admission`` is a queue slot taken before the body was read (``AiService.admission``)."""
        ...

    def models(self) -> list[dict[str, Any]]: ...


def envelope(result: Any, **extra: Any) -> dict[str, Any]:
    """Cloudflare's v4 success body."""
    return {"result": result, "success": True, "errors": [], "messages": [], **extra}


def v4_response(body: Mapping[str, Any], status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    """A JSON response. NaN/Infinity are not JSON (clients' parsers reject them): they go out as
    ``null`` rather than breaking the reply."""
    try:
        content = json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except ValueError:
        log.warning("a Workers AI result held NaN or Infinity; sent as null")
        content = json.dumps(_finite(body), ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return Response(content, status_code=status, headers=dict(headers or {}), media_type="application/json")


def _finite(value: Any) -> Any:
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return None
    if isinstance(value, Mapping):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def error_response(exc: AiError | RestError) -> Response:
    return v4_response(exc.to_envelope(), exc.status, getattr(exc, "headers", None))


def ai_settings_from_options(options: Mapping[str, Any]) -> AiSettings:
    """:class:`AiSettings` from harness options, leaving out the REST-only keys of ``[flarelet.ai]``."""
    from .settings import AiSettings

    section = options.get("flarelet")
    flarelet = section if isinstance(section, Mapping) else {}
    table = flarelet.get("ai") or {}
    if not isinstance(table, Mapping):
        raise ValueError("[flarelet.ai] must be a table")
    ai_table = {k: v for k, v in table.items() if k not in REST_CONFIG_KEYS}
    return AiSettings.from_options({"flarelet": {"ai": ai_table}})


Endpoint = Callable[[Request], Awaitable[Response]]


def _v4(handler: Endpoint) -> Endpoint:
    """Every failure becomes a v4 error body; nothing escapes as a traceback or a bare 500."""

    async def endpoint(request: Request) -> Response:
        try:
            return await handler(request)
        except (AiError, RestError) as exc:
            return error_response(exc)
        except ClientDisconnect:
            return Response(status_code=499)  # nobody is listening; uvicorn drops it
        except Exception as exc:  # a bug: log it with its traceback, answer in Cloudflare's shape
            log.exception("Workers AI REST request %s %s failed", request.method, request.url.path)
            return error_response(errors.internal(type(exc).__name__))

    endpoint.__name__ = handler.__name__
    endpoint.__doc__ = handler.__doc__
    return endpoint


class RestApi:
    """The endpoints, sharing one service, one set of credentials and the limits from settings."""

    def __init__(
        self,
        settings: AiSettings,
        credentials: RestCredentials,
        service: AiBackend | None = None,
    ) -> None:
        self.settings = settings
        self.credentials = credentials
        self._service = service

    @property
    def service(self) -> AiBackend:
        """The injected backend, else the process-wide AI service for these settings (looked up
        each time: a cheap dict lookup, and never a service another app has since closed)."""
        if self._service is not None:
            return self._service
        from .service import get_service

        return get_service(self.settings)

    # -- checks shared by the endpoints ---------------------------------------------------------

    def _admit(self, request: Request) -> None:
        """Token first (so the account id cannot be probed without one), then the account."""
        self.credentials.authenticate(request.headers)
        self.credentials.check_account(request.path_params["account_id"], request.url.path)

    def body_limit(self, content_type: str) -> int:
        raw = self.settings.max_input_bytes
        return raw * JSON_EXPANSION + JSON_SLACK_BYTES if _is_json(content_type) else raw

    async def _read_body(self, request: Request, limit: int) -> bytearray:
        """The body, refused with 3006 as soon as it is known to exceed ``limit``."""
        declared = request.headers.get("content-length")
        if declared is not None and _JSON_INTEGER.match(declared) and int(declared) > limit:
            raise errors.too_large(f"body of {int(declared)} bytes exceeds the limit of {limit} bytes")
        body = bytearray()  # grown in place: never the chunks and their join at once
        async for chunk in request.stream():
            if len(body) + len(chunk) > limit:
                raise errors.too_large(f"body exceeds the limit of {limit} bytes")
            body += chunk
        return body

    # -- endpoints --------------------------------------------------------------------------------

    async def run(self, request: Request) -> Response:
        """Run a model on the request body (raw audio, or the model's JSON inputs).

        A slot of the service's admission limit (``1 + queue_size`` requests in flight) is taken
        before the body is read, so reading and parsing large bodies is bounded like inference
        (one more is refused with 3040 at once, its body never read) and the slot passes to the
        inference queue. A big JSON body is parsed off the event loop, its integer audio array
        straight into bytes (:mod:`flarelet.bindings.ai.json_audio`).
        """
        self._admit(request)
        model = request.path_params["model"]
        if not model:
            raise no_route(request.url.path)
        catalog.resolve(model)  # 5007 before reading a possibly large body
        content_type = request.headers.get("content-type", "")
        service = self.service
        admission = getattr(service, "admission", None)
        with admission() if admission is not None else contextlib.nullcontext() as slot:
            try:
                body = await asyncio.wait_for(
                    self._read_body(request, self.body_limit(content_type)), self.settings.timeout_s
                )
            except TimeoutError:
                raise errors.timeout("the request body did not arrive in time") from None
            if len(body) > PARSE_IN_THREAD_BYTES:  # a big JSON array takes long to parse: not on the loop
                inputs = await asyncio.to_thread(parse_inputs, body, content_type)
            else:
                inputs = parse_inputs(body, content_type)
            del body  # the parsed inputs are all that is needed from here on
            if slot is not None:
                result = await service.run(model, inputs, admission=slot)
            else:
                result = await service.run(model, inputs)
        if isinstance(result, AiStream):  # stream: true -- raw server-sent events, no envelope
            return StreamingResponse(result, media_type=AiStream.media_type, headers={"cache-control": "no-cache"})
        return v4_response(envelope(result))

    async def models_search(self, request: Request) -> Response:
        """The catalog in Cloudflare's ``models/search`` shape, filtered and paginated."""
        self._admit(request)
        query = request.query_params
        page = _positive_int(query, "page", 1, MAX_PAGE)
        per_page = _positive_int(query, "per_page", DEFAULT_PER_PAGE, MAX_PER_PAGE)
        found = filter_models(
            self.service.models(),
            search=query.get("search"),
            task=query.get("task"),
            author=query.get("author"),
            source=_number(query, "source"),
            hide_experimental=_flag(query, "hide_experimental"),
        )
        start = (page - 1) * per_page
        items = found[start : start + per_page]
        info = {"page": page, "per_page": per_page, "count": len(items), "total_count": len(found)}
        return v4_response(envelope(items, result_info=info))

    async def model_schema(self, request: Request) -> Response:
        """A model's input and output JSON Schema (``client.ai.models.schema.get``)."""
        self._admit(request)
        model = request.query_params.get("model")
        if not model:
            raise errors.bad_input("Error: required query parameter 'model' is missing")
        spec = catalog.resolve(model)
        return v4_response(envelope({"input": spec.input_schema, "output": spec.output_schema}))

    async def openapi(self, request: Request) -> Response:
        """The OpenAPI document of this API; public, like Cloudflare's published schemas."""
        from .openapi import build_openapi

        return v4_response(build_openapi(server_url=_api_base(request), account_id=self.credentials.account_id))

    # -- assembly ---------------------------------------------------------------------------------

    def routes(self) -> list[BaseRoute]:
        """The routes, relative to ``/client/v4``."""
        return [
            _dotall(Route("/accounts/{account_id}/ai/run/{model:path}", _v4(self.run), methods=["POST"])),
            _dotall(Route("/accounts/{account_id}/ai/models/search", _v4(self.models_search), methods=["GET"])),
            _dotall(Route("/accounts/{account_id}/ai/models/schema", _v4(self.model_schema), methods=["GET"])),
            _dotall(Route("/openapi.json", _v4(self.openapi), methods=["GET"])),
            *(_dotall(route) for route in OpenAiRoutes(self).routes(_v4)),
        ]

    def asgi(self) -> Starlette:
        """The ``/client/v4`` sub-application, with v4-shaped 404 and 405 answers."""
        app = Starlette(routes=self.routes(), exception_handlers={HTTPException: _http_error})
        app.router.redirect_slashes = False  # Cloudflare answers 7000, it does not redirect
        return app


def _dotall(route: Any) -> Any:
    """A path parameter may hold a percent-encoded newline (``/ai/run/%0A``): Starlette's path
    patterns use ``.``, which does not match it, so the route would miss and the request would go
    past the API (to the worker, under ``flarelet dev``). Matching with DOTALL keeps every
    ``/client/v4`` path the API's to answer, with its v4 errors."""
    route.path_regex = re.compile(route.path_regex.pattern, re.DOTALL)
    return route


async def _http_error(request: Request, exc: Exception) -> Response:
    """Starlette's routing misses (404, 405) in Cloudflare's words."""
    assert isinstance(exc, HTTPException)
    if exc.status_code == 405:
        allowed = (exc.headers or {}).get("Allow", "").replace(" ", "").split(",")
        return error_response(method_not_allowed(request.method, [a for a in allowed if a]))
    if exc.status_code == 404:
        path = request.url.path
        return error_response(no_route(path) if "/accounts/" in path else unknown_path())
    return error_response(RestError(exc.status_code, [{"code": 7000, "message": exc.detail}]))


def _api_base(request: Request) -> str:
    """``http://host:port/client/v4`` as the caller reached it (for the OpenAPI ``servers``)."""
    base = str(request.base_url).rstrip("/")
    return base if base.endswith(API_PREFIX) else base + API_PREFIX


# -- request parsing ------------------------------------------------------------------------------


def _is_json(content_type: str) -> bool:
    mime = content_type.split(";", 1)[0].strip().lower()
    return mime == "application/json" or mime.endswith("+json")


def parse_inputs(body: bytes | bytearray, content_type: str) -> dict[str, Any] | bytes:
    """The model inputs carried by a body: a JSON object, or the raw bytes (``format: binary``).

    A non-JSON content type with a body that is a JSON object (``curl -d '{...}'`` sends
    ``application/x-www-form-urlencoded``) is read as JSON too: no audio container starts with ``{``.
    """
    if not body:
        raise errors.incomplete_request("body")
    if _is_json(content_type):
        try:
            value = parse_json_inputs(body, parse_constant=_reject_constant)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise errors.bad_input(f"Error: request body is not valid JSON: {exc}") from None
        except RecursionError:
            raise errors.bad_input("Error: request body JSON is nested too deeply") from None
        if not isinstance(value, dict):
            raise errors.bad_input(f"Error: Type mismatch of '/', '{json_type(value)}' not in 'object'")
        return value
    if _OBJECT_START.match(body):
        try:
            value = parse_json_inputs(body, parse_constant=_reject_constant)
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
            return bytes(body)
        if isinstance(value, dict):
            return value
    return bytes(body)


def _reject_constant(name: str) -> Any:
    """``NaN``/``Infinity`` are Python's extension, not JSON (JavaScript's ``JSON.parse`` refuses them)."""
    raise json.JSONDecodeError(f"{name} is not valid JSON", name, 0)


_JSON_INTEGER = re.compile(r"^(0|[1-9][0-9]*)$")
_OBJECT_START = re.compile(rb"\s*\{")
_JSON_NUMBER = re.compile(r"^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?$")


def _positive_int(query: Mapping[str, str], name: str, default: int, maximum: int) -> int:
    """A query integer from 1 to ``maximum`` written as JSON writes one (so ``"01"``, ``"1.0"``,
    ``"²"`` are refused); its length is checked before converting, so 5,000 digits are a 400 like
    any other bad value rather than Python's int-size ``ValueError``."""
    raw = query.get(name)
    if raw is None:
        return default
    if len(raw) > len(str(maximum)) or not _JSON_INTEGER.match(raw) or not 1 <= int(raw) <= maximum:
        shown = raw if len(raw) <= 40 else raw[:40] + f"... ({len(raw)} characters)"
        raise errors.bad_input(f"Error: query parameter '{name}' must be an integer from 1 to {maximum}, got {shown!r}")
    return int(raw)


def _number(query: Mapping[str, str], name: str) -> float | None:
    raw = query.get(name)
    if raw is None:
        return None
    if not _JSON_NUMBER.match(raw) or not math.isfinite(float(raw)):
        shown = raw if len(raw) <= 40 else raw[:40] + f"... ({len(raw)} characters)"
        raise errors.bad_input(f"Error: query parameter '{name}' must be a finite number, got {shown!r}")
    return float(raw)


def _flag(query: Mapping[str, str], name: str) -> bool:
    """``true`` or ``false``, as the SDKs serialise booleans."""
    raw = query.get(name)
    if raw is None or raw == "false":
        return False
    if raw == "true":
        return True
    raise errors.bad_input(f"Error: query parameter '{name}' must be true or false, got {raw!r}")


def filter_models(
    models: Iterable[dict[str, Any]],
    *,
    search: str | None = None,
    task: str | None = None,
    author: str | None = None,
    source: float | None = None,
    hide_experimental: bool = False,
) -> list[dict[str, Any]]:
    """Cloudflare's search semantics as far as they are observable: case-insensitive substring
    of name or description; task by name or id; author is the ``@cf/<author>/`` segment; an
    experimental model is one whose ``beta`` property is ``"true"``."""
    out = []
    needle = (search or "").strip().lower()
    for model in models:
        name = str(model.get("name", ""))
        if needle and needle not in name.lower() and needle not in str(model.get("description", "")).lower():
            continue
        if task:
            t = model.get("task") or {}
            if task.lower() not in (str(t.get("name", "")).lower(), str(t.get("id", "")).lower()):
                continue
        if author:
            parts = name.split("/")
            if len(parts) < 3 or parts[1].lower() != author.lower():
                continue
        if source is not None and model.get("source") != source:
            continue
        if hide_experimental and any(
            p.get("property_id") == "beta" and str(p.get("value")).lower() == "true"
            for p in model.get("properties") or []
        ):
            continue
        out.append(model)
    return out


# -- entry points -----------------------------------------------------------------------------------


def routes(ctx: BindingContext) -> list[BaseRoute]:
    """The REST API for ``flarelet dev``: mounted at ``/client/v4`` beside the worker.

    The dev server builds plugin routes lazily, so the start-up banner is :func:`announce`'s job.
    """
    api = RestApi(ai_settings_from_options(ctx.options), RestCredentials.from_options(ctx.options))
    return [_dotall(Mount(API_PREFIX, app=api.asgi()))]


def announce(ctx: BindingContext, url: str) -> None:
    """Print where the API is, the token (when generated) and a curl line, once the server is up."""
    try:
        credentials = RestCredentials.from_options(ctx.options)
    except ValueError as exc:  # a bad token also fails the first request; say why now
        print(f"Workers AI REST API: {exc}", file=sys.stderr, flush=True)
        return
    print("\n".join(banner(credentials, url.rstrip("/"))), file=sys.stderr, flush=True)


def create_app(
    settings: AiSettings,
    *,
    credentials: RestCredentials | None = None,
    service: AiBackend | None = None,
    preload: Sequence[str] = (),
) -> Starlette:
    """A stand-alone Workers AI endpoint (``flarelet ai serve``): the API at ``/client/v4``.

    ``service`` replaces the process-wide one (tests); ``preload`` loads models at start so the
    first request does not pay for it. Credentials default to the environment (see rest_auth).
    """
    api = RestApi(settings, credentials or RestCredentials.from_options({}), service)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if preload:
            await api.service.preload(list(preload))  # type: ignore[attr-defined]
        yield
        if service is None:  # let a running transcription finish; loaded models stay cached
            await api.service.aclose()  # type: ignore[attr-defined]

    app = Starlette(
        routes=[Mount(API_PREFIX, app=api.asgi())],
        exception_handlers={HTTPException: _http_error},
        lifespan=lifespan,
    )
    app.router.redirect_slashes = False
    app.state.api = api
    return app


def url_host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def banner(credentials: RestCredentials, origin: str, audio_file: str = "audio.mp3") -> list[str]:
    """What to print at start: where the API is, the token, and a curl line to paste."""
    account = credentials.example_account_id
    if credentials.token_source == "generated":
        token = credentials.tokens[0]
        token_line = f"API token (generated for this run; set FLARELET_API_TOKEN or --api-token to fix one): {token}"
    else:
        token = "$FLARELET_API_TOKEN" if credentials.token_source == "environment" else "<your api token>"
        token_line = f"API token: from the {credentials.token_source}"
    accounts = (
        f"account id: {credentials.account_id}"
        if credentials.account_id
        else f"account id: any 32-hex id, e.g. {account}"
    )
    return [
        f"Workers AI REST API on {origin}{API_PREFIX} ({accounts})",
        token_line,
        f"curl {origin}{API_PREFIX}/accounts/{account}/ai/run/@cf/openai/whisper-tiny-en -X POST "
        f'-H "Authorization: Bearer {token}" --data-binary "@{audio_file}"',
    ]
