"""R2's errors: workerd's ``R2Error`` (``"<action>: <text> (<code>)"``) and the v4 codes used here."""

from __future__ import annotations

from flarelet.bindings.jsobject import (
    JsException,
)


class R2Error(JsException):
    """workerd's ``R2Error``: ``message`` is ``"<action>: <text> (<code>)"``, ``code`` the v4 code.

    Its JS ``name`` is ``"Error"`` (``str(exc)`` is ``"Error: put: ..."``), as the runtime gives it.
    """

    def __init__(self, action: str, status: int, text: str, code: int) -> None:
        super().__init__("Error", f"{action}: {text} ({code})", code=code, action=action, status=status)


def no_such_upload(action: str) -> R2Error:
    return R2Error(action, 400, "The specified multipart upload does not exist.", 10024)


def internal_error(action: str) -> R2Error:
    return R2Error(action, 500, "We encountered an internal error. Please try again.", 10001)


def invalid_object_name(action: str) -> R2Error:
    return R2Error(action, 400, "The specified object name is not valid.", 10020)
