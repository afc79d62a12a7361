"""``JsProxy`` and ``JsException``: the two Pyodide types worker code checks for.

On Cloudflare every JavaScript value a worker touches is a ``JsProxy`` and every JavaScript error
arrives as a ``JsException`` carrying the JS error's ``name`` (``TypeError``, ``RangeError``,
``InvalidCharacterError``, ...) and ``message``. flarelet has no JavaScript engine: the ``js``
names are Python objects that subclass :class:`JsProxy` (so ``isinstance(x, JsProxy)`` holds
where it would on Cloudflare) and raise :class:`JsException` where workerd throws.
"""

from __future__ import annotations


class JsProxy:
    """Marker base of every object that stands for a JavaScript value."""

    __slots__ = ()


class JsException(Exception):  # noqa: N818 - Pyodide's name
    """A JavaScript error as Pyodide shows it: ``str(exc)`` is ``"<name>: <message>"``."""

    def __init__(self, name: str, message: str = "") -> None:
        super().__init__(f"{name}: {message}" if message else name)
        self.name = name
        self.message = message

    @property
    def js_error(self) -> JsException:
        return self


def type_error(message: str) -> JsException:
    return JsException("TypeError", message)


def dom_exception(name: str, message: str) -> JsException:
    """A ``DOMException`` (workerd throws these from atob, getRandomValues, crypto.subtle)."""
    return JsException(name, message)
