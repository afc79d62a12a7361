"""The OpenAI-compatible routes of the Workers AI REST API, served from this machine.

Cloudflare serves ``/client/v4/accounts/{id}/ai/v1/chat/completions``, ``/responses`` and
``/embeddings`` so that OpenAI's clients work by changing only their base URL (and key). They
answer in plain OpenAI shapes -- no ``{result, success}`` envelope -- and a stream is raw
server-sent events. The model is the body's ``model`` field; the request goes through the same
service (queue, limits, cancellation) as ``/ai/run``. Failures keep Cloudflare's error body and
HTTP status, which OpenAI's clients raise as their usual ``APIStatusError`` subclasses.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from . import catalog, errors
from .compat import OpenAiApi, OpenAiRequest

if TYPE_CHECKING:
    from .rest import RestApi

#: Which catalog task serves each OpenAI API.
TASK_OF_API: dict[OpenAiApi, str] = {
    "chat": "Text Generation",
    "responses": "Text Generation",
    "embeddings": "Text Embeddings",
}
#: A JSON body larger than this is refused (3006): chat histories, not audio.
MAX_BODY_BYTES = 16 * 1024 * 1024


class OpenAiRoutes:
    def __init__(self, api: RestApi) -> None:
        self.api = api

    async def _call(self, request: Request, kind: OpenAiApi) -> Response:
        from .rest import v4_response
        from .streaming import AiStream

        self.api._admit(request)
        raw = await self.api._read_body(request, MAX_BODY_BYTES)
        if not raw:
            raise errors.incomplete_request("body")
        try:
            body = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise errors.bad_input(f"Error: request body is not valid JSON: {exc}") from None
        if not isinstance(body, dict):
            raise errors.bad_input(f"Error: Type mismatch of '/', '{errors.json_type(body)}' not in 'object'")
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise errors.bad_input("Error: required properties at '/' are 'model'")
        spec = catalog.resolve(model)
        if spec.task.name != TASK_OF_API[kind]:
            raise errors.bad_input(f"Error: {model} is a {spec.task.name} model, not usable at this route")
        result = await self.api.service.run(model, OpenAiRequest(kind, body))
        if isinstance(result, AiStream):
            return StreamingResponse(result, media_type="text/event-stream", headers={"cache-control": "no-cache"})
        return v4_response(result)

    async def chat_completions(self, request: Request) -> Response:
        return await self._call(request, "chat")

    async def responses(self, request: Request) -> Response:
        return await self._call(request, "responses")

    async def embeddings(self, request: Request) -> Response:
        return await self._call(request, "embeddings")

    def routes(self, wrap: Any) -> list[BaseRoute]:
        """The routes relative to ``/client/v4``; ``wrap`` turns failures into Cloudflare's body."""
        base = "/accounts/{account_id}/ai/v1"
        return [
            Route(f"{base}/chat/completions", wrap(self.chat_completions), methods=["POST"]),
            Route(f"{base}/responses", wrap(self.responses), methods=["POST"]),
            Route(f"{base}/embeddings", wrap(self.embeddings), methods=["POST"]),
        ]
