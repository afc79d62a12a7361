"""The errors Workflows raise, with Cloudflare's names (``err.name``) and texts."""

from __future__ import annotations


class NonRetryableError(Exception):
    """Raised in a step to fail it at once, without the remaining retries (``workers.workflows``)."""


class WorkflowError(Exception):
    """A bad call on the binding or an instance (``WorkflowError``, ``(code) message`` texts)."""

    name = "WorkflowError"

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(f"({code}) {message}" if code else message)
        self.code = code


class WorkflowTimeoutError(Exception):
    """A step attempt or ``wait_for_event`` ran past its timeout."""

    name = "WorkflowTimeoutError"


class WorkflowFatalError(Exception):
    """The instance cannot go on (step limit, invalid step, value not serialisable)."""

    name = "WorkflowFatalError"


def error_name(exc: BaseException) -> str:
    """The JS-style ``name`` of an error, as the instance's ``status().error.name`` shows it."""
    name = getattr(exc, "name", None)
    if isinstance(name, str) and name:
        return name
    if isinstance(exc, NonRetryableError):
        return "NonRetryableError"
    return type(exc).__name__


def error_record(exc: BaseException) -> dict[str, str]:
    """``{"name", "message"}`` as Cloudflare stores an error."""
    message = getattr(exc, "message", None)
    if not isinstance(message, str):
        message = str(exc)
    return {"name": error_name(exc), "message": message}


def rebuild_error(record: dict[str, str]) -> Exception:
    """The exception a recorded error becomes when a replayed step raises it again."""
    name, message = record.get("name", "Error"), record.get("message", "")
    if name == "NonRetryableError":
        return NonRetryableError(message)
    if name == "WorkflowTimeoutError":
        return WorkflowTimeoutError(message)
    if name == "WorkflowFatalError":
        return WorkflowFatalError(message)
    error = Exception(message)
    error.name = name  # type: ignore[attr-defined]
    return error
