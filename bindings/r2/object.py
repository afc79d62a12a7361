"""``R2Object`` (metadata) and ``R2ObjectBody`` (metadata and a body read from the blob store)."""

from __future__ import annotations

import asyncio
import builtins
import json
import secrets
import weakref
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC
from email.utils import format_datetime
from typing import Any

from flarelet.bindings.jsobject import (
    ByteStream,
    JsDict,
    JsTypeError,
    js_date,
    json_syntax_error,
    to_js_dict,
)
from flarelet.bindings.r2.constants import READ_CHUNK
from flarelet.bindings.r2.metadata import HEADER_FOR_FIELD, R2Checksums, http_metadata_to_py
from flarelet.bindings.storage.keys import (
    decode_key,
)


@dataclass
class ObjectRow:
    key: bytes
    blob_id: str | None
    version: str
    size: int
    etag: str
    uploaded: int
    checksums: str
    http_metadata: str
    custom_metadata: str
    storage_class: str

    COLUMNS = "key, blob_id, version, size, etag, uploaded, checksums, http_metadata, custom_metadata, storage_class"


def _set_header(headers: Any, name: str, value: str) -> None:
    setter = getattr(headers, "set", None)
    if callable(setter):
        setter(name, value)
    else:
        headers[name] = value


class R2Object:
    """Metadata of an object (``head``, ``put``, ``list``; ``get`` when ``onlyIf`` failed)."""

    def __init__(
        self, row: ObjectRow, *, range_: Mapping[str, int] | None = None, include: Sequence[str] | None = None
    ) -> None:
        self.key = decode_key(row.key)
        self.version = row.version
        self.size = row.size
        self.etag = row.etag
        self.httpEtag = f'"{row.etag}"'
        self.uploaded = js_date(row.uploaded)
        self.checksums = R2Checksums(json.loads(row.checksums))
        self.storageClass = row.storage_class
        self.ssecKeyMd5 = None
        http = json.loads(row.http_metadata)
        custom = json.loads(row.custom_metadata)
        wants = ("httpMetadata", "customMetadata") if include is None else tuple(include)
        # fields a list() did not include are empty objects, never null (workerd's R2Object)
        self.httpMetadata = http_metadata_to_py(http) if "httpMetadata" in wants else JsDict()
        self.customMetadata = JsDict(custom) if "customMetadata" in wants else JsDict()
        self.range = JsDict(range_) if range_ is not None else None

    # snake_case aliases
    http_etag = property(lambda self: self.httpEtag)
    http_metadata = property(lambda self: self.httpMetadata)
    custom_metadata = property(lambda self: self.customMetadata)
    storage_class = property(lambda self: self.storageClass)

    def writeHttpMetadata(self, headers: Any) -> None:
        """Copy ``httpMetadata`` onto response headers (``content-type``, ``cache-control``...)."""
        metadata: Mapping[str, Any] = self.httpMetadata or {}
        for field_name, header in HEADER_FOR_FIELD.items():
            value = metadata.get(field_name)
            if value is None:
                continue
            if field_name == "cacheExpiry":
                value = format_datetime(value.replace(tzinfo=UTC), usegmt=True)
            _set_header(headers, header, value)

    write_http_metadata = writeHttpMetadata

    def __repr__(self) -> str:
        return f"{type(self).__name__}(key={self.key!r}, size={self.size}, etag={self.etag!r})"


class R2ObjectBody(R2Object):
    """An object with its body: ``body`` (a stream), ``text()``, ``json()``, ``arrayBuffer()``, ``bytes()``."""

    def __init__(self, row: ObjectRow, *, range_: Mapping[str, int], reader: Any, start: int, length: int) -> None:
        super().__init__(row, range_=range_)
        self._reader = reader
        self._start = start
        self._length = length
        self._used = False
        self._body: ByteStream | None = None
        self._finalizer = weakref.finalize(self, reader.close)

    @property
    def bodyUsed(self) -> bool:
        return self._used

    body_used = bodyUsed

    def _take(self) -> None:
        if self._used:
            raise JsTypeError(
                "Body has already been used. It can only be used once. Use tee() first if you need to read it twice."
            )
        self._used = True

    async def _chunks(self) -> AsyncIterator[bytes]:
        self._take()
        remaining = self._length
        try:
            await asyncio.to_thread(self._reader.seek, self._start)
            while remaining > 0:
                chunk = await asyncio.to_thread(self._reader.read, min(READ_CHUNK, remaining))
                if not chunk:
                    break
                remaining -= len(chunk)
                yield chunk
        finally:
            self._finalizer()

    @property
    def body(self) -> ByteStream:
        """The body as a stream (pass it to ``Response``); reading it uses the body up."""
        if self._body is None:
            if self._used:
                self._take()  # raises: already read
            self._body = ByteStream(self._chunks(), self._length)
        return self._body

    async def arrayBuffer(self) -> bytes:
        self._take()
        reader, start, length = self._reader, self._start, self._length

        def read_all() -> bytes:
            reader.seek(start)
            return reader.read(length)

        try:
            return await asyncio.to_thread(read_all)
        finally:
            self._finalizer()

    array_buffer = arrayBuffer

    async def bytes(self) -> bytes:
        return await self.arrayBuffer()

    async def text(self) -> str:
        return (await self.arrayBuffer()).decode("utf-8", errors="replace")

    async def json(self) -> Any:
        text = await self.text()
        try:
            return to_js_dict(json.loads(text))
        except json.JSONDecodeError as exc:
            raise json_syntax_error(text, exc) from None

    async def blob(self) -> builtins.bytes:
        return await self.arrayBuffer()


class EmptyReader:
    def seek(self, offset: int) -> None:
        pass

    def read(self, size: int = -1) -> bytes:
        return b""

    def close(self) -> None:
        pass


def new_version() -> str:
    return secrets.token_hex(16)
