"""Workers AI errors, in Cloudflare's codes and words.

One exception type, :class:`AiError`, carries everything both front doors need:
the REST API turns it into a v4 envelope (``{"success": false, "errors": [{code, message}]}``
with ``status``), the ``env.AI`` binding turns it into ``InferenceUpstreamError`` whose message
is ``"<code>: <description>"`` -- exactly what workerd's ``_parseError`` builds.

Codes and HTTP statuses are those of Cloudflare's Workers AI error table
(developers.cloudflare.com/workers-ai/platform/errors). Build errors with the helpers below so the
wording stays Cloudflare's everywhere.
"""

from __future__ import annotations

from typing import Any


class AiError(Exception):
    """A Workers AI failure with Cloudflare's internal code, HTTP status and description."""

    def __init__(self, code: int, status: int, description: str, name: str = "AiError") -> None:
        super().__init__(f"{code}: {description}")
        self.code = code
        self.status = status
        self.description = description
        self.name = name

    def to_envelope(self) -> dict:
        """The REST v4 error body."""
        return {
            "result": None,
            "success": False,
            "errors": [{"code": self.code, "message": self.description}],
            "messages": [],
        }

    def __repr__(self) -> str:
        return f"AiError(code={self.code}, status={self.status}, description={self.description!r})"


def no_such_model(model: str) -> AiError:
    return AiError(5007, 400, f"No such model {model} or task", "NoSuchModel")


def bad_input(detail: str) -> AiError:
    """Schema or content failure: code 5006, message ``AiError: Bad input: <detail>``."""
    return AiError(5006, 400, f"AiError: Bad input: {detail}", "InvalidInput")


def incomplete_request(what: str) -> AiError:
    return AiError(3003, 400, f"Request is missing headers or body: {what}", "IncompleteRequest")


def too_large(detail: str = "") -> AiError:
    msg = "Request is too large" + (f": {detail}" if detail else "")
    return AiError(3006, 413, msg, "RequestTooLarge")


def timeout(detail: str = "") -> AiError:
    msg = "Request timeout" + (f": {detail}" if detail else "")
    return AiError(3007, 408, msg, "Timeout")


def aborted() -> AiError:
    return AiError(3008, 408, "Request was aborted", "Aborted")


def out_of_capacity(detail: str = "") -> AiError:
    msg = "No more data centers to forward the request to" + (f" ({detail})" if detail else "")
    return AiError(3040, 429, msg, "OutOfCapacity")


def internal(detail: str) -> AiError:
    """An unexpected engine failure; never leaks a traceback to the caller."""
    return AiError(3000, 500, f"Internal error: {detail}", "InternalError")


def json_type(value: Any) -> str:
    """The JSON Schema type name of a parsed value, as Cloudflare's validator words it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (list, tuple)):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__
