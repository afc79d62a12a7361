"""``pyodide.http.pyfetch``: Pyodide's fetch wrapper over flarelet's outbound ``fetch``.

``pyfetch(url, **init)`` takes JS fetch options as keywords and returns a :class:`FetchResponse`
with Pyodide's reading methods (``text``/``string``, ``json``, ``bytes``, ``buffer``,
``memoryview``, ``raise_for_status``). A network failure raises ``OSError``, as Pyodide does.
"""

from __future__ import annotations

import json
from typing import Any

from ..js.buffers import ArrayBuffer
from ..js.fetch_api import _request_kwargs, init_options
from ..outbound import fetch as _fetch
from ..response import FetchResponse as _Response

__all__ = ["FetchResponse", "HttpStatusError", "pyfetch"]


class HttpStatusError(OSError):
    def __init__(self, status: int, status_text: str, url: str) -> None:
        kind = "Client" if status < 500 else "Server"
        super().__init__(f"{status} {kind} Error: {status_text} for url: {url}")
        self.status = status
        self.status_text = status_text
        self.url = url


class FetchResponse:
    """Pyodide's ``FetchResponse`` around a flarelet response (``js_response`` is the response itself)."""

    def __init__(self, url: str, response: _Response) -> None:
        self._url = url
        self.js_response = response

    @property
    def url(self) -> str:
        return self.js_response.url or self._url

    @property
    def status(self) -> int:
        return self.js_response.status

    @property
    def status_text(self) -> str:
        return self.js_response.status_text

    @property
    def ok(self) -> bool:
        return self.js_response.ok

    @property
    def redirected(self) -> bool:
        return self.js_response.redirected

    @property
    def headers(self) -> dict[str, str]:
        return dict(self.js_response.headers.items())

    @property
    def body_used(self) -> bool:
        return self.js_response.body_used

    @property
    def type(self) -> str:
        return "basic"

    def raise_for_status(self) -> None:
        if self.status >= 400:
            raise HttpStatusError(self.status, self.status_text, self.url)

    def clone(self) -> FetchResponse:
        return FetchResponse(self._url, self.js_response.clone())

    async def text(self) -> str:
        return await self.js_response.text()

    string = text

    async def json(self, **kwargs: Any) -> Any:
        return json.loads(await self.text(), **kwargs)

    async def bytes(self) -> bytes:
        return await self.js_response.bytes()

    async def buffer(self) -> ArrayBuffer:
        return ArrayBuffer(await self.bytes())

    async def memoryview(self) -> memoryview:
        return memoryview(await self.bytes())

    def __repr__(self) -> str:
        return f"<FetchResponse [{self.status}] {self.url}>"


async def pyfetch(url: Any, /, **kwargs: Any) -> FetchResponse:
    kwargs.pop("fetcher", None)
    target = str(url) if not hasattr(url, "method") else url
    # a network failure is outbound's FetchError, an OSError, as pyfetch raises
    response = await _fetch(target, **_request_kwargs(init_options(None, kwargs)))
    return FetchResponse(str(getattr(url, "url", url)), response)
