"""Bodies of requests and responses: ``Blob``, ``File``, ``FormData`` and the shared reading API.

A Fetch body is read once (``text()``, ``json()``, ``bytes()``, ``form_data()``, ``blob()``, or
iterating ``body``); a second read raises ``TypeError`` as on Cloudflare, so a bug that would only
show up after deploying shows up locally. ``clone()`` before reading gives an independent copy,
also for streamed bodies (the stream is teed).

A body is held as ``bytes`` (the common case: cheap to send, no copy), ``None``, or an async
iterator of ``bytes``/``str`` chunks (a streamed body, sent chunk by chunk).
"""

from __future__ import annotations

import builtins
import json as _json
import secrets
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from typing import Any
from urllib.parse import parse_qsl, urlencode

BodyStream = AsyncIterator[bytes | str]


class Blob:
    """Immutable bytes with a MIME type (Fetch ``Blob``)."""

    def __init__(self, parts: Iterable[Any] | bytes | str | None = None, type: str = "") -> None:  # noqa: A002
        if parts is None:
            data = b""
        elif isinstance(parts, (bytes, bytearray, memoryview)):
            data = builtins.bytes(parts)
        elif isinstance(parts, str):
            data = parts.encode()
        else:
            data = b"".join(_part_bytes(p) for p in parts)
        self._data = data
        self.type = type

    @property
    def size(self) -> int:
        return len(self._data)

    async def bytes(self) -> builtins.bytes:
        return self._data

    async def text(self) -> str:
        return self._data.decode("utf-8", "replace")

    async def arrayBuffer(self) -> builtins.bytes:  # noqa: N802 - Fetch API name
        return self._data

    array_buffer = arrayBuffer

    def slice(self, start: int = 0, end: int | None = None, type: str = "") -> Blob:  # noqa: A002
        return Blob(self._data[start:end], type=type)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(size={self.size}, type={self.type!r})"


class File(Blob):
    """A ``Blob`` with a file name (an upload in a multipart form)."""

    def __init__(
        self,
        parts: Iterable[Any] | bytes | str | None,
        name: str,
        type: str = "",  # noqa: A002
        last_modified: int | None = None,
    ) -> None:
        super().__init__(parts, type=type)
        self.name = name
        self.last_modified = last_modified if last_modified is not None else 0

    @property
    def filename(self) -> str:
        return self.name


def _part_bytes(part: Any) -> builtins.bytes:
    if isinstance(part, Blob):
        return part._data
    if isinstance(part, str):
        return part.encode()
    return builtins.bytes(part)


FormDataValue = str | Blob


class FormData:
    """Ordered multi-map of form fields (Fetch ``FormData``), strings or ``File``/``Blob`` values."""

    def __init__(self, init: Any = None) -> None:
        self._items: list[tuple[str, FormDataValue]] = []
        if init is not None:
            pairs = init.items() if hasattr(init, "items") else init
            for name, value in pairs:
                self.append(name, value)

    def append(self, name: str, value: Any, filename: str | None = None) -> None:
        self._items.append((str(name), _form_value(value, filename)))

    def set(self, name: str, value: Any, filename: str | None = None) -> None:
        self.delete(name)
        self.append(name, value, filename)

    def get(self, name: str, default: Any = None) -> FormDataValue | Any:
        for k, v in self._items:
            if k == name:
                return v
        return default

    def getAll(self, name: str) -> list[FormDataValue]:  # noqa: N802 - Fetch API name
        return [v for k, v in self._items if k == name]

    get_all = getAll

    def has(self, name: str) -> bool:
        return any(k == name for k, _ in self._items)

    def delete(self, name: str) -> None:
        self._items = [p for p in self._items if p[0] != name]

    def entries(self) -> Iterator[tuple[str, FormDataValue]]:
        return iter(list(self._items))

    items = entries

    def keys(self) -> Iterator[str]:
        return iter([k for k, _ in self._items])

    def values(self) -> Iterator[FormDataValue]:
        return iter([v for _, v in self._items])

    def __getitem__(self, name: str) -> FormDataValue:
        for k, v in self._items:
            if k == name:
                return v
        raise KeyError(name)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.has(name)

    def __iter__(self) -> Iterator[str]:
        return self.keys()

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"FormData({self._items!r})"

    def _encode(self) -> tuple[builtins.bytes, str]:
        """Serialise as ``multipart/form-data`` (or urlencoded when every value is a string)."""
        if all(isinstance(v, str) for _, v in self._items):
            return urlencode(
                [(k, v) for k, v in self._items]
            ).encode(), "application/x-www-form-urlencoded;charset=UTF-8"
        boundary = "----flarelet" + secrets.token_hex(12)
        out = bytearray()
        for name, value in self._items:
            out += f"--{boundary}\r\n".encode()
            disposition = f'form-data; name="{_quote(name)}"'
            if isinstance(value, Blob):
                filename = value.name if isinstance(value, File) else "blob"
                disposition += f'; filename="{_quote(filename)}"'
                out += f"Content-Disposition: {disposition}\r\n".encode()
                out += f"Content-Type: {value.type or 'application/octet-stream'}\r\n\r\n".encode()
                out += value._data
            else:
                out += f"Content-Disposition: {disposition}\r\n\r\n".encode()
                out += value.encode()
            out += b"\r\n"
        out += f"--{boundary}--\r\n".encode()
        return builtins.bytes(out), f"multipart/form-data; boundary={boundary}"


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")


def _form_value(value: Any, filename: str | None) -> FormDataValue:
    if isinstance(value, Blob):
        if filename is not None:
            return File(value._data, filename, type=value.type)
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return File(builtins.bytes(value), filename or "blob")
    return str(value)


def parse_form(data: builtins.bytes, content_type: str | None) -> FormData:
    """Parse a urlencoded or multipart body into :class:`FormData` (``TypeError`` otherwise, as JS)."""
    ctype = (content_type or "").split(";", 1)[0].strip().lower()
    if ctype == "application/x-www-form-urlencoded":
        return FormData(parse_qsl(data.decode("utf-8", "replace"), keep_blank_values=True))
    if ctype == "multipart/form-data":
        return _parse_multipart(data, content_type or "")
    raise TypeError(
        f'Parsing a Body as FormData requires a Content-Type header of "multipart/form-data" or '
        f'"application/x-www-form-urlencoded" (got {content_type!r})'
    )


def _parse_multipart(data: builtins.bytes, content_type: str) -> FormData:
    from python_multipart.multipart import MultipartParser, parse_options_header  # imported on first form only

    _, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if not boundary:
        raise TypeError("multipart/form-data body without a boundary parameter")
    form = FormData()
    state: dict[str, Any] = {}

    def on_part_begin() -> None:
        state.update(headers={}, field=b"", value=b"", chunks=[])

    def on_header_field(d: builtins.bytes, s: int, e: int) -> None:
        state["field"] += d[s:e]

    def on_header_value(d: builtins.bytes, s: int, e: int) -> None:
        state["value"] += d[s:e]

    def on_header_end() -> None:
        state["headers"][state["field"].decode("latin-1").lower()] = state["value"].decode("latin-1")
        state["field"], state["value"] = b"", b""

    def on_part_data(d: builtins.bytes, s: int, e: int) -> None:
        state["chunks"].append(d[s:e])

    def on_part_end() -> None:
        headers = state["headers"]
        _, disp = parse_options_header(headers.get("content-disposition", ""))
        name = disp.get(b"name", b"").decode("utf-8", "replace")
        payload = b"".join(state["chunks"])
        if b"filename" in disp:
            filename = disp[b"filename"].decode("utf-8", "replace")
            form.append(name, File(payload, filename, type=headers.get("content-type", "")))
        else:
            form.append(name, payload.decode("utf-8", "replace"))

    parser = MultipartParser(
        boundary,
        {
            "on_part_begin": on_part_begin,
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_part_data": on_part_data,
            "on_part_end": on_part_end,
        },
    )
    try:
        parser.write(data)
        parser.finalize()
    except Exception as exc:  # python_multipart raises its own error types
        raise TypeError(f"Failed to parse multipart/form-data body: {exc}") from exc
    return form


def coerce_body(body: Any, *, for_response: bool) -> tuple[builtins.bytes | BodyStream | None, str | None]:
    """Turn a user-supplied body into bytes or a stream, plus the content type it implies.

    Accepts what Cloudflare's SDK accepts (``str``, ``bytes``, ``FormData``, ``None``, a stream),
    plus ``bytearray``/``memoryview``, ``Blob``, and sync iterables of chunks. Anything else is a
    ``TypeError`` (Cloudflare rejects, e.g., a ``dict``: use ``Response.json``).
    """
    if body is None:
        return None, None
    if isinstance(body, str):
        return body.encode(), "text/plain;charset=UTF-8"
    if isinstance(body, builtins.bytes):
        return body, None
    if isinstance(body, (bytearray, memoryview)):
        return builtins.bytes(body), None
    if isinstance(body, Blob):
        return body._data, body.type or None
    if isinstance(body, FormData):
        data, ctype = body._encode()
        return data, ctype
    if hasattr(body, "__aiter__"):
        return _aiter_chunks(body), None
    if isinstance(body, Iterable) and not isinstance(body, (dict, set, frozenset)):
        return _iter_chunks(body), None
    kind = "Response" if for_response else "Request"
    raise TypeError(
        f"{kind} body must be str, bytes, FormData, None or an (async) iterator of bytes; got "
        f"{type(body).__name__}" + (" (use Response.json(data) for JSON)" if isinstance(body, (dict, list)) else "")
    )


async def _aiter_chunks(source: AsyncIterable[Any]) -> BodyStream:
    async for chunk in source:
        yield chunk


async def _iter_chunks(source: Iterable[Any]) -> BodyStream:
    for chunk in source:
        yield chunk


def chunk_bytes(chunk: Any) -> builtins.bytes:
    """One streamed chunk as bytes (``str`` is UTF-8 encoded, as a JS text encoder would)."""
    if isinstance(chunk, builtins.bytes):
        return chunk
    if isinstance(chunk, str):
        return chunk.encode()
    if isinstance(chunk, (bytearray, memoryview)):
        return builtins.bytes(chunk)
    raise TypeError(f"a streamed body chunk must be bytes or str, got {type(chunk).__name__}")


class BodyReader:
    """The reading half shared by ``Request`` and ``Response`` (``text()``, ``json()``...).

    Subclasses set ``_body`` and ``_used`` and expose ``headers``.
    """

    _body: builtins.bytes | BodyStream | None
    _used: bool

    @property
    def body_used(self) -> bool:
        return self._used

    bodyUsed = body_used  # noqa: N815 - Fetch API name

    @property
    def body(self) -> BodyStreamReader | None:
        """The body as an async iterator of ``bytes`` chunks (``None`` when there is no body)."""
        if self._body is None:
            return None
        return BodyStreamReader(self)

    def _take(self) -> builtins.bytes | BodyStream | None:
        if self._used:
            raise TypeError(
                "Body has already been used. It can only be used once. Use clone() first if you need to read it twice."
            )
        self._used = True
        return self._body

    def _stream(self) -> AsyncIterator[builtins.bytes]:
        """The body as bytes chunks (a source's ``str`` chunks are encoded here)."""
        body = self._take()

        async def gen() -> AsyncIterator[builtins.bytes]:
            if body is None:
                return
            if isinstance(body, builtins.bytes):
                if body:
                    yield body
                return
            async for chunk in body:
                yield chunk_bytes(chunk)

        return gen()

    async def bytes(self) -> builtins.bytes:
        body = self._take()
        if body is None:
            return b""
        if isinstance(body, builtins.bytes):
            return body
        parts = [chunk_bytes(c) async for c in body]
        return b"".join(parts)

    async def arrayBuffer(self) -> builtins.bytes:  # noqa: N802 - Fetch API name
        return await self.bytes()

    array_buffer = arrayBuffer
    buffer = arrayBuffer

    async def text(self) -> str:
        return (await self.bytes()).decode("utf-8", "replace")

    async def _read_json(self, **kwargs: Any) -> Any:
        return _json.loads(await self.bytes(), **kwargs)

    async def form_data(self) -> FormData:
        return parse_form(await self.bytes(), self.headers.get("content-type"))  # type: ignore[attr-defined]

    formData = form_data  # noqa: N815 - Fetch API name

    async def blob(self) -> Blob:
        ctype = self.headers.get("content-type") or ""  # type: ignore[attr-defined]
        return Blob(await self.bytes(), type=ctype)

    def _clone_body(self) -> builtins.bytes | BodyStream | None:
        if self._used:
            raise TypeError("Cannot clone a body that has already been used.")
        body = self._body
        if body is None or isinstance(body, builtins.bytes):
            return body
        first, second = tee(body)
        self._body = first
        return second


class BodyStreamReader:
    """``request.body`` / ``response.body``: an async iterator over the bytes (marks the body used)."""

    def __init__(self, owner: BodyReader) -> None:
        self._owner = owner
        self._iter: AsyncIterator[builtins.bytes] | None = None

    def __aiter__(self) -> BodyStreamReader:
        return self

    async def __anext__(self) -> builtins.bytes:
        if self._iter is None:
            self._iter = self._owner._stream()
        return chunk_bytes(await self._iter.__anext__())

    def _stream(self) -> AsyncIterator[builtins.bytes]:
        if self._iter is None:
            self._iter = self._owner._stream()
        return self._iter

    @property
    def length(self) -> int | None:
        """The body's byte length when known -- a buffered body, or a ``Content-Length`` without
        ``Content-Encoding`` -- else ``None`` (workerd's ``tryGetLength``; R2's ``put`` needs it)."""
        body = self._owner._body
        if isinstance(body, (builtins.bytes, bytearray)):
            return len(body)
        headers = getattr(self._owner, "headers", None)
        if headers is None or headers.get("content-encoding"):
            return None
        text = headers.get("content-length")
        return int(text) if text is not None and str(text).isdigit() else None


def tee(source: AsyncIterator[Any]) -> tuple[BodyStream, BodyStream]:
    """Split a stream into two that each see every chunk (``ReadableStream.tee``)."""
    buffers: tuple[list[Any], list[Any]] = ([], [])
    done = [False]

    async def branch(mine: list[Any], other: list[Any]) -> BodyStream:
        while True:
            if mine:
                yield mine.pop(0)
                continue
            if done[0]:
                return
            try:
                chunk = await source.__anext__()
            except StopAsyncIteration:
                done[0] = True
                return
            other.append(chunk)
            yield chunk

    return branch(buffers[0], buffers[1]), branch(buffers[1], buffers[0])
