"""``env.AI``: the Workers AI binding as a Python Worker sees it, backed by the local service.

On Cloudflare, ``await env.AI.run(model, inputs, options)`` returns the bare model output (no
``{result, success}`` envelope) converted by ``python_from_rpc`` into a ``JsDict`` -- a dict whose
keys are also attributes (``resp.text``) -- and failures throw workerd's
``InferenceUpstreamError`` with message ``"<code>: <description>"`` and the backend's ``name``
(workerd's ``ai-api.ts::_parseError``). This class gives the same surface, plus
``models()``, ``lastRequestId`` and the ``lastRequest*StatusCode`` attributes.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from typing import Any

from flarelet.bindings.jsobject import ByteStream, JsException, to_js_dict

from . import errors
from .service import AiService
from .streaming import AiStream

log = logging.getLogger("flarelet.ai")


class InferenceUpstreamError(JsException):
    """A failed ``env.AI.run``: ``.message`` is ``"<code>: <description>"``, ``.code`` the
    Workers AI internal code, ``.name`` the backend error name, ``.httpCode`` the HTTP status.

    Its text (``str(exc)``, a traceback's last line) is the message alone, as workerd builds it:
    ``InferenceUpstreamError: 5006: AiError: Bad input: ...``, not ``InvalidInput: 5006: ...``
    (the backend name stays on ``.name``)."""

    def __init__(
        self, message: str, name: str = "InferenceUpstreamError", code: int | None = None, status: int | None = None
    ) -> None:
        super().__init__(name, message, code=code, httpCode=status)
        self.args = (message,)

    @classmethod
    def from_ai_error(cls, exc: errors.AiError) -> InferenceUpstreamError:
        return cls(f"{exc.code}: {exc.description}", exc.name, exc.code, exc.status)


def _streams(model: Any) -> bool:
    """Whether ``model``'s task can answer ``stream: true`` (unknown ids fail later with 5007)."""
    from . import catalog

    spec = catalog.MODELS.get(model) if isinstance(model, str) else None
    return spec is not None and hasattr(catalog.task_of(spec), "streams")


class Ai:
    """The ``AI`` binding object put on ``env``."""

    def __init__(self, service: AiService) -> None:
        self._service = service
        self.lastRequestId: str | None = None
        self.lastRequestHttpStatusCode: int | None = None
        self.lastRequestInternalStatusCode: int | None = None

    async def run(self, model: str, inputs: Any = None, options: Mapping[str, Any] | None = None, **kwargs: Any) -> Any:
        """Run ``model`` on ``inputs``; returns a dict with attribute access, or raises
        :class:`InferenceUpstreamError`."""
        self.lastRequestId = str(uuid.uuid4())
        opts = dict(options or {}) if isinstance(options, Mapping) or options is None else None
        if opts is None:
            raise self._fail(errors.bad_input("Error: options must be an object"))
        opts.update(kwargs)
        for key in ("returnRawResponse", "websocket"):
            if opts.get(key):
                raise self._fail(
                    errors.AiError(
                        5019, 405, f"the {key} option is not supported by the local Workers AI binding", "InvalidInput"
                    )
                )
        if isinstance(inputs, Mapping) and inputs.get("stream") and not _streams(model):
            raise self._fail(
                errors.bad_input("Error: streaming is not supported by speech-recognition models at '/stream'")
            )
        try:
            result = await self._service.run(model, dict(inputs) if isinstance(inputs, Mapping) else inputs)
        except errors.AiError as exc:
            raise self._fail(exc) from None
        self.lastRequestHttpStatusCode = 200
        self.lastRequestInternalStatusCode = None
        if isinstance(result, AiStream):  # a ReadableStream of server-sent events, usable as a Response body
            return ByteStream(result.chunks())
        return to_js_dict(result)

    async def models(self, params: Mapping[str, Any] | None = None) -> list[Any]:
        """The catalog (Cloudflare's ``ai/models/search`` result); ``params`` may filter by
        ``search`` (name/description substring) and ``task`` (task name)."""
        entries = self._service.models()
        params = dict(params or {})
        search = str(params.get("search") or "").lower()
        task = str(params.get("task") or "").lower()
        if search:
            entries = [m for m in entries if search in m["name"].lower() or search in m["description"].lower()]
        if task:
            entries = [m for m in entries if task in m["task"]["name"].lower()]
        return [to_js_dict(m) for m in entries]

    def _fail(self, exc: errors.AiError) -> InferenceUpstreamError:
        self.lastRequestHttpStatusCode = exc.status
        self.lastRequestInternalStatusCode = exc.code
        return InferenceUpstreamError.from_ai_error(exc)

    def __repr__(self) -> str:
        return "<Ai binding (local Whisper)>"
