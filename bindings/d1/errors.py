"""``D1Error``: what workerd's D1 client throws (``Error`` whose message starts ``D1_...:``)."""

from __future__ import annotations

from flarelet.bindings.jsobject import JsException


class D1Error(JsException):
    """A D1 failure as workerd throws it: ``Error`` whose message starts ``D1_...:``."""

    def __init__(self, message: str, cause: str | None = None) -> None:
        super().__init__("Error", message)
        self.cause = cause
