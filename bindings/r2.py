"""R2 (``r2_buckets``): ``env.BUCKET.put/get/head/delete/list`` and multipart uploads, locally.

Semantics and error texts follow workerd's ``R2Bucket`` (``src/workerd/api/r2-bucket.c++``) over
Miniflare's ``R2BucketObject`` (``packages/miniflare/src/workers/r2``): ``get``/``head`` give
``None`` for a missing key, a failed ``onlyIf`` makes ``get`` return the object *without* a body
and ``put`` return ``None``, errors are ``R2Error`` with messages like
``put: Your metadata headers exceed the maximum allowed metadata size. (10012)``.

Storage: object metadata in one SQLite file per bucket; each body in its own file named by a
random id (never by the key), written to a temp file, fsynced and renamed before the metadata
row that points at it commits (see :mod:`flarelet.bindings.storage.blobs`). Reads open the file while
holding the bucket's thread, so a concurrent overwrite or delete never truncates a read in
progress. A completed multipart upload is stored as one body (parts are concatenated).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
import secrets
import sqlite3
import time
import weakref
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC
from email.utils import format_datetime, parsedate_to_datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from flarelet.bindings import registry
from flarelet.bindings.jsobject import (
    ByteStream,
    JsDict,
    JsException,
    JsRangeError,
    JsTypeError,
    check_rpc_value,
    js_date,
    js_date_millis,
    merge_options,
    read_body_bytes,
    to_js_dict,
)
from flarelet.bindings.storage import paths
from flarelet.bindings.storage.blobs import BlobStore, FileBlobStore, MemoryBlobStore
from flarelet.bindings.storage.config import StoragePlugin
from flarelet.bindings.storage.keys import (
    decode_cursor,
    decode_key,
    encode_cursor,
    encode_key,
    prefix_upper_bound,
    utf8_length,
)
from flarelet.bindings.storage.sqlite import SqliteStore, shared_store, synchronous_mode, transaction

__all__ = [
    "R2Limits",
    "R2Bucket",
    "R2Object",
    "R2ObjectBody",
    "R2MultipartUpload",
    "R2Error",
    "R2Plugin",
    "plugin",
]

TYPE_LABEL = "R2 Bucket"
OBJECT_CLASS = "miniflare-R2BucketObject"
READ_CHUNK = 1024 * 1024
HASH_ALGORITHMS = (
    ("md5", "MD5", 16),
    ("sha1", "SHA-1", 20),
    ("sha256", "SHA-256", 32),
    ("sha384", "SHA-384", 48),
    ("sha512", "SHA-512", 64),
)


@dataclass(frozen=True)
class R2Limits:
    """R2's limits (developers.cloudflare.com/r2/platform/limits; Miniflare ``R2Limits``)."""

    max_key_bytes: int = 1024
    max_value_bytes: int = 5_368_709_120 - 5_242_880  # 5 GiB - 5 MiB for a single put
    max_metadata_bytes: int = 2048
    max_list_keys: int = 1000
    max_list_keys_with_metadata: int = 100
    min_part_bytes: int = 5 * 1024 * 1024
    max_part_number: int = 10_000
    max_delete_keys: int = 1000


# -- errors ----------------------------------------------------------------------------------


class R2Error(JsException):
    """workerd's ``R2Error``: ``message`` is ``"<action>: <text> (<code>)"``, ``code`` the v4 code."""

    def __init__(self, action: str, status: int, text: str, code: int) -> None:
        super().__init__("R2Error", f"{action}: {text} ({code})", code=code, action=action, status=status)


def _no_such_upload(action: str) -> R2Error:
    return R2Error(action, 400, "The specified multipart upload does not exist.", 10024)


def _internal(action: str) -> R2Error:
    return R2Error(action, 500, "We encountered an internal error. Please try again.", 10001)


def _invalid_object_name(action: str) -> R2Error:
    return R2Error(action, 400, "The specified object name is not valid.", 10020)


# -- metadata ----------------------------------------------------------------------------------

_HTTP_FIELDS = (
    "contentType",
    "contentLanguage",
    "contentDisposition",
    "contentEncoding",
    "cacheControl",
    "cacheExpiry",
)
_HEADER_FOR_FIELD = {
    "contentType": "content-type",
    "contentLanguage": "content-language",
    "contentDisposition": "content-disposition",
    "contentEncoding": "content-encoding",
    "cacheControl": "cache-control",
    "cacheExpiry": "expires",
}


def _is_headers(value: Any) -> bool:
    return not isinstance(value, Mapping) and callable(getattr(value, "get", None))


def _http_metadata_from(value: Any) -> dict[str, Any]:
    """``httpMetadata`` (a dict of R2HTTPMetadata fields, or Headers) as stored JSON fields."""
    if value is None:
        return {}
    out: dict[str, Any] = {}
    if _is_headers(value):
        for field_name, header in _HEADER_FOR_FIELD.items():
            text = value.get(header)
            if text is None:
                continue
            if field_name == "cacheExpiry":
                try:
                    out[field_name] = int(parsedate_to_datetime(text).timestamp() * 1000)
                except (TypeError, ValueError):
                    continue
            else:
                out[field_name] = str(text)
        return out
    opts = merge_options(value, {})
    for field_name in _HTTP_FIELDS:
        item = opts.get(field_name)
        if item is None:
            continue
        out[field_name] = int(js_date_millis(item)) if field_name == "cacheExpiry" else str(item)
    return out


def _http_metadata_to_py(stored: Mapping[str, Any]) -> JsDict:
    out = JsDict()
    for field_name in _HTTP_FIELDS:
        if field_name in stored:
            out[field_name] = js_date(stored[field_name]) if field_name == "cacheExpiry" else stored[field_name]
    return out


def _custom_metadata_from(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise JsTypeError("customMetadata must be an object of strings")
    return {str(k): v if isinstance(v, str) else str(v) for k, v in value.items()}


def _serialised_length(text: str) -> int:
    # Miniflare (after R2's gateway): Latin-1 strings count once, others twice per UTF-16 unit
    units = len(text.encode("utf-16-le", "surrogatepass")) // 2
    return units * 2 if any(ord(c) >= 256 for c in text) else units


class R2Checksums:
    """``object.checksums``: digests as ``bytes`` (``None`` if not computed); ``toJSON()`` gives hex."""

    def __init__(self, hexes: Mapping[str, str]) -> None:
        self.md5 = self.sha1 = self.sha256 = self.sha384 = self.sha512 = None
        for name, _, _ in HASH_ALGORITHMS:
            if hexes.get(name):
                setattr(self, name, bytes.fromhex(hexes[name]))

    def toJSON(self) -> JsDict:
        return JsDict((name, getattr(self, name).hex()) for name, _, _ in HASH_ALGORITHMS if getattr(self, name))

    to_json = toJSON

    def __repr__(self) -> str:
        return f"R2Checksums({dict(self.toJSON())})"


# -- objects -----------------------------------------------------------------------------------


@dataclass
class _Row:
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
        self, row: _Row, *, range_: Mapping[str, int] | None = None, include: Sequence[str] | None = None
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
        self.httpMetadata = _http_metadata_to_py(http) if "httpMetadata" in wants else None
        self.customMetadata = JsDict(custom) if "customMetadata" in wants else None
        self.range = JsDict(range_) if range_ is not None else None

    # snake_case aliases
    http_etag = property(lambda self: self.httpEtag)
    http_metadata = property(lambda self: self.httpMetadata)
    custom_metadata = property(lambda self: self.customMetadata)
    storage_class = property(lambda self: self.storageClass)

    def writeHttpMetadata(self, headers: Any) -> None:
        """Copy ``httpMetadata`` onto response headers (``content-type``, ``cache-control``...)."""
        for field_name, header in _HEADER_FOR_FIELD.items():
            value = (self.httpMetadata or {}).get(field_name)
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

    def __init__(self, row: _Row, *, range_: Mapping[str, int], reader: Any, start: int, length: int) -> None:
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
            self._body = ByteStream(self._chunks())
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
            raise JsException("SyntaxError", f"Unexpected token in JSON at position {exc.pos}: {exc.msg}") from None

    async def blob(self) -> bytes:
        return await self.arrayBuffer()


# -- conditions and ranges -----------------------------------------------------------------------


@dataclass
class _Etag:
    kind: str  # "strong" | "weak" | "wildcard"
    value: str = ""


def _parse_etags(value: Any, *, split_commas: bool) -> list[_Etag]:
    items = value if isinstance(value, list) else [value]
    out: list[_Etag] = []
    for item in items:
        for part in str(item).split(",") if split_commas else [str(item)]:
            part = part.strip()
            if not part:
                continue
            if part == "*":
                out.append(_Etag("wildcard"))
            elif part.startswith("W/"):
                out.append(_Etag("weak", part[2:].strip('"')))
            else:
                out.append(_Etag("strong", part.strip('"')))
    return out


@dataclass
class _Conditional:
    etag_matches: list[_Etag] | None = None
    etag_does_not_match: list[_Etag] | None = None
    uploaded_before: float | None = None
    uploaded_after: float | None = None
    seconds_granularity: bool = False


def _conditional_from(value: Any) -> _Conditional | None:
    if value is None:
        return None
    cond = _Conditional()
    if _is_headers(value):
        if value.get("if-match") is not None:
            cond.etag_matches = _parse_etags(value.get("if-match"), split_commas=True)
        if value.get("if-none-match") is not None:
            cond.etag_does_not_match = _parse_etags(value.get("if-none-match"), split_commas=True)
        for header, attr in (("if-modified-since", "uploaded_after"), ("if-unmodified-since", "uploaded_before")):
            text = value.get(header)
            if text is not None:
                try:
                    setattr(cond, attr, parsedate_to_datetime(text).timestamp() * 1000)
                except (TypeError, ValueError):
                    pass
        cond.seconds_granularity = True
        return cond
    opts = merge_options(value, {})
    if opts.get("etagMatches") is not None:
        cond.etag_matches = _parse_etags(opts["etagMatches"], split_commas=False)
    if opts.get("etagDoesNotMatch") is not None:
        cond.etag_does_not_match = _parse_etags(opts["etagDoesNotMatch"], split_commas=False)
    if opts.get("uploadedBefore") is not None:
        cond.uploaded_before = js_date_millis(opts["uploadedBefore"])
    if opts.get("uploadedAfter") is not None:
        cond.uploaded_after = js_date_millis(opts["uploadedAfter"])
    cond.seconds_granularity = bool(opts.get("secondsGranularity"))
    return cond


def _includes_etag(conditions: list[_Etag], etag: str, comparison: str) -> bool:
    for cond in conditions:
        if cond.kind == "wildcard":
            return True
        if cond.value == etag and (cond.kind == "strong" or comparison == "weak"):
            return True
    return False


def _condition_holds(cond: _Conditional, etag: str | None, uploaded: int | None) -> bool:
    """Miniflare's ``_testR2Conditional`` (after R2's gateway; RFC 7232 section 6)."""
    if etag is None or uploaded is None:
        return cond.etag_matches is None and cond.uploaded_after is None
    if_match = cond.etag_matches is None or _includes_etag(cond.etag_matches, etag, "strong")
    if_none_match = cond.etag_does_not_match is None or not _includes_etag(cond.etag_does_not_match, etag, "weak")

    def trunc(ms: float) -> float:
        return (ms // 1000) * 1000 if cond.seconds_granularity else ms

    last_modified = trunc(uploaded)
    if_modified_since = (
        cond.uploaded_after is None
        or trunc(cond.uploaded_after) < last_modified
        or (cond.etag_does_not_match is not None and if_none_match)
    )
    if_unmodified_since = (
        cond.uploaded_before is None
        or last_modified < trunc(cond.uploaded_before)
        or (cond.etag_matches is not None and if_match)
    )
    return if_match and if_none_match and if_modified_since and if_unmodified_since


_RANGE_RE = re.compile(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$", re.IGNORECASE)


def _check_range_number(value: Any, label: str, suffix: bool = False) -> int:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise JsTypeError(f"Invalid range. {label} must be a number.")
    shown = int(value) if float(value).is_integer() else value
    if value < 0:
        what = "suffix. Suffix" if suffix else f"range. {label}"
        raise JsRangeError(f"Invalid {what} ({shown}) must be greater than or equal to 0.")
    if not float(value).is_integer():
        raise JsRangeError(f"Invalid range. {label} ({shown}) must be an integer, not floating point.")
    return int(value)


def _range_request(value: Any) -> tuple[str, Any] | None:
    """Validate ``range`` as workerd does; ``("header", text)`` or ``("range", dict)``."""
    if value is None:
        return None
    if _is_headers(value):
        header = value.get("range")
        return None if header is None else ("header", str(header))
    opts = merge_options(value, {})
    out: dict[str, int] = {}
    if opts.get("offset") is not None:
        out["offset"] = _check_range_number(opts["offset"], "Starting offset")
    if opts.get("length") is not None:
        out["length"] = _check_range_number(opts["length"], "Length")
    if opts.get("suffix") is not None:
        if "offset" in out:
            raise JsTypeError("Suffix is incompatible with offset.")
        if "length" in out:
            raise JsTypeError("Suffix is incompatible with length.")
        out["suffix"] = _check_range_number(opts["suffix"], "Suffix", suffix=True)
    return ("range", out)


def _resolve_range(request: tuple[str, Any] | None, size: int) -> tuple[int, int] | None:
    """``(start, length)`` to read, ``None`` for the whole object; ``ValueError`` if unsatisfiable."""
    if request is None:
        return None
    kind, value = request
    if kind == "header":
        match = _RANGE_RE.match(value)
        if not match or (not match.group(1) and not match.group(2)):
            return None  # invalid or multiple ranges: whole object, as Miniflare
        first, last = match.group(1), match.group(2)
        if not first:
            suffix = min(int(last), size)
            if suffix <= 0:
                raise ValueError("unsatisfiable")
            return size - suffix, suffix
        start = int(first)
        end = min(int(last), size - 1) if last else size - 1
        if start >= size or end < start:
            raise ValueError("unsatisfiable")
        return start, end - start + 1
    offset, length, suffix = value.get("offset"), value.get("length"), value.get("suffix")
    if suffix is not None:
        if suffix <= 0:
            raise ValueError("unsatisfiable")
        suffix = min(suffix, size)
        offset, length = size - suffix, suffix
    if offset is None:
        offset = 0
    if length is None:
        length = size - offset
    if offset < 0 or offset > size or length <= 0:
        raise ValueError("unsatisfiable")
    length = min(length, size - offset)
    return offset, length


# -- the bucket ----------------------------------------------------------------------------------

_SCHEMA = """
CREATE TABLE IF NOT EXISTS _mf_objects (
    key BLOB PRIMARY KEY,
    blob_id TEXT,
    version TEXT NOT NULL,
    size INTEGER NOT NULL,
    etag TEXT NOT NULL,
    uploaded INTEGER NOT NULL,
    checksums TEXT NOT NULL,
    http_metadata TEXT NOT NULL,
    custom_metadata TEXT NOT NULL,
    storage_class TEXT NOT NULL DEFAULT 'Standard'
);
CREATE TABLE IF NOT EXISTS _mf_multipart_uploads (
    upload_id TEXT PRIMARY KEY,
    key BLOB NOT NULL,
    http_metadata TEXT NOT NULL,
    custom_metadata TEXT NOT NULL,
    storage_class TEXT NOT NULL DEFAULT 'Standard',
    state INTEGER NOT NULL DEFAULT 0  -- 0 in progress, 1 completed, 2 aborted
);
CREATE TABLE IF NOT EXISTS _mf_multipart_parts (
    upload_id TEXT NOT NULL REFERENCES _mf_multipart_uploads(upload_id),
    part_number INTEGER NOT NULL,
    blob_id TEXT NOT NULL,
    size INTEGER NOT NULL,
    etag TEXT NOT NULL,
    checksum_md5 TEXT NOT NULL,
    PRIMARY KEY (upload_id, part_number)
);
CREATE TABLE IF NOT EXISTS _flarelet_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

_IN_PROGRESS, _COMPLETED, _ABORTED = 0, 1, 2


def r2_database_path(persist_root: Path, bucket_name: str) -> Path:
    return paths.object_db_path(persist_root, "r2", OBJECT_CLASS, bucket_name)


def _setup(bucket_name: str, blobs: BlobStore, collect: bool) -> Callable[[sqlite3.Connection], None]:
    def setup(conn: sqlite3.Connection) -> None:
        conn.executescript(_SCHEMA)
        with transaction(conn):
            conn.execute("INSERT OR IGNORE INTO _flarelet_meta VALUES ('bucket_name', ?)", (bucket_name,))
        if collect:
            referenced = {r[0] for r in conn.execute("SELECT blob_id FROM _mf_objects WHERE blob_id IS NOT NULL")}
            referenced |= {r[0] for r in conn.execute("SELECT blob_id FROM _mf_multipart_parts")}
            blobs.collect_garbage(referenced)

    return setup


def _new_version() -> str:
    return secrets.token_hex(16)


class R2Bucket:
    """The object on ``env`` for one ``[[r2_buckets]]`` entry."""

    def __init__(
        self,
        store: SqliteStore,
        blobs: BlobStore,
        *,
        bucket_name: str = "",
        limits: R2Limits = R2Limits(),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._blobs = blobs
        self.bucket_name = bucket_name
        self.limits = limits
        self._clock = clock

    @classmethod
    def in_memory(cls, bucket_name: str = "test", **kwargs: Any) -> R2Bucket:
        blobs = MemoryBlobStore()
        return cls(
            SqliteStore(None, _setup(bucket_name, blobs, False), name="r2"), blobs, bucket_name=bucket_name, **kwargs
        )

    @classmethod
    def open(cls, persist_root: Path, bucket_name: str, *, synchronous: str | None = None, **kwargs: Any) -> R2Bucket:
        blobs = FileBlobStore(paths.blob_dir(persist_root, "r2", bucket_name))
        store = shared_store(
            r2_database_path(persist_root, bucket_name),
            _setup(bucket_name, blobs, True),
            synchronous=synchronous_mode(synchronous),
            name="r2",
        )
        return cls(store, blobs, bucket_name=bucket_name, **kwargs)

    def __repr__(self) -> str:
        return f"R2Bucket({self.bucket_name!r})"

    async def aclose(self) -> None:
        await self._store.aclose()

    # -- helpers ---------------------------------------------------------------------------

    def _key(self, action: str, key: Any) -> bytes:
        if not isinstance(key, str):
            key = "null" if key is None else str(key)
        if utf8_length(key) > self.limits.max_key_bytes:
            raise _invalid_object_name(action)
        return encode_key(key)

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    async def _delete_blobs(self, blob_ids: Sequence[str]) -> None:
        if not blob_ids:
            return

        def unlink(_conn: sqlite3.Connection) -> None:
            for blob_id in blob_ids:
                try:
                    self._blobs.delete(blob_id)
                except OSError:
                    pass  # left for garbage collection at next open

        await self._store.run(unlink)

    async def _write_blob(
        self, action: str, value: Any, algorithms: Sequence[str], max_size: int
    ) -> tuple[str, int, dict[str, str]]:
        """Store a body; ``(blob id, size, {algorithm: hex digest})``."""
        check_rpc_value(value)
        hashers = {name: hashlib.new(name) for name in algorithms}
        writer = await asyncio.to_thread(self._blobs.writer)
        size = 0

        async def feed(chunk: bytes) -> None:
            nonlocal size
            size += len(chunk)
            if size > max_size:
                raise R2Error(action, 400, "Your proposed upload exceeds the maximum allowed object size.", 100100)
            for hasher in hashers.values():
                hasher.update(chunk)
            await asyncio.to_thread(writer.write, chunk)

        try:
            if value is None:
                pass
            elif hasattr(value, "__aiter__") and not isinstance(value, (str, bytes)):
                async for chunk in value:
                    if isinstance(chunk, str):
                        chunk = chunk.encode("utf-8")
                    await feed(bytes(chunk))
            else:
                data = await read_body_bytes(value)
                if data is None:
                    raise JsTypeError(
                        f"Failed to execute '{action}' on 'R2Bucket': parameter 2 is not of type "
                        "'ReadableStream or ArrayBuffer or ArrayBufferView or string or Blob'."
                    )
                for start in range(0, len(data), READ_CHUNK):
                    await feed(data[start : start + READ_CHUNK])
            blob_id = await asyncio.to_thread(writer.finish)
        except BaseException:
            await asyncio.to_thread(writer.abort)
            raise
        return blob_id, size, {name: h.hexdigest() for name, h in hashers.items()}

    # -- reads -----------------------------------------------------------------------------

    async def head(self, key: str) -> R2Object | None:
        """The object's metadata, or ``None`` if there is no such key."""
        raw = self._key("head", key)

        def read(conn: sqlite3.Connection) -> _Row | None:
            row = conn.execute(f"SELECT {_Row.COLUMNS} FROM _mf_objects WHERE key = ?", (raw,)).fetchone()
            return None if row is None else _Row(*row)

        row = await self._store.run(read)
        if row is None:
            return None
        return R2Object(row, range_={"offset": 0, "length": row.size})

    async def get(self, key: str, options: Any = None, **kwargs: Any) -> R2ObjectBody | R2Object | None:
        """The object with its body (``range`` for a slice), ``None`` if absent; an
        :class:`R2Object` without body when ``onlyIf`` does not hold."""
        opts = merge_options(options, kwargs)
        cond = _conditional_from(opts.get("onlyIf"))
        range_request = _range_request(opts.get("range"))
        raw = self._key("get", key)
        blobs = self._blobs

        def read(conn: sqlite3.Connection) -> Any:
            found = conn.execute(f"SELECT {_Row.COLUMNS} FROM _mf_objects WHERE key = ?", (raw,)).fetchone()
            if found is None:
                return None
            row = _Row(*found)
            if cond is not None and not _condition_holds(cond, row.etag, row.uploaded):
                return ("precondition", row)
            try:
                span = _resolve_range(range_request, row.size)
            except ValueError:
                return ("range", row)
            try:
                reader = blobs.open(row.blob_id) if row.blob_id else None
            except FileNotFoundError:
                return None  # body file removed behind our back: Miniflare answers NoSuchKey -> null
            return ("ok", row, span, reader)

        outcome = await self._store.run(read)
        if outcome is None:
            return None
        if outcome[0] == "precondition":
            row = outcome[1]
            return R2Object(row, range_={"offset": 0, "length": row.size})
        if outcome[0] == "range":
            raise R2Error("get", 416, "The requested range is not satisfiable", 10039)
        _, row, span, reader = outcome
        start, length = span if span is not None else (0, row.size)
        if reader is None:
            reader = _EmptyReader()
        return R2ObjectBody(row, range_={"offset": start, "length": length}, reader=reader, start=start, length=length)

    async def list(self, options: Any = None, **kwargs: Any) -> JsDict:
        """``{objects, truncated, cursor?, delimitedPrefixes}`` in key order."""
        opts = merge_options(options, kwargs)
        limit = opts.get("limit")
        include = opts.get("include")
        if include is not None:
            include = [include] if isinstance(include, str) else list(include)
            for item in include:
                if item not in ("httpMetadata", "customMetadata"):
                    raise JsRangeError(f"Unsupported include value {item}")
        else:
            include = []
        if limit is None:
            limit = self.limits.max_list_keys
        elif (
            not isinstance(limit, (int, float))
            or isinstance(limit, bool)
            or limit < 1
            or limit > self.limits.max_list_keys
        ):
            raise R2Error(
                "list", 400, f"MaxKeys params must be positive integer <= {self.limits.max_list_keys}.", 10022
            )
        limit = int(limit)
        if include:
            limit = min(limit, self.limits.max_list_keys_with_metadata)
        prefix = encode_key(str(opts.get("prefix") or ""))
        delimiter = encode_key(str(opts.get("delimiter") or ""))
        start = prefix
        if opts.get("startAfter") is not None:
            start = max(start, encode_key(str(opts["startAfter"])) + b"\x00")
        if opts.get("cursor"):
            resume = decode_cursor(str(opts["cursor"]))
            if resume is not None:
                start = max(start, resume)
        upper = prefix_upper_bound(prefix)

        def scan(conn: sqlite3.Connection) -> tuple[list[_Row], list[bytes], bytes | None]:
            objects: list[_Row] = []
            prefixes: list[bytes] = []
            position = start
            resume_at: bytes | None = None
            while True:
                sql = f"SELECT {_Row.COLUMNS} FROM _mf_objects WHERE key >= ?"
                params: list[Any] = [position]
                if upper is not None:
                    sql += " AND key < ?"
                    params.append(upper)
                rows = conn.execute(sql + " ORDER BY key LIMIT 256", params).fetchall()
                if not rows:
                    return objects, prefixes, None
                for found in rows:
                    row = _Row(*found)
                    group = None
                    if delimiter:
                        index = row.key.find(delimiter, len(prefix))
                        if index != -1:
                            group = row.key[: index + len(delimiter)]
                    if len(objects) + len(prefixes) == limit:
                        return objects, prefixes, resume_at
                    if group is not None:
                        prefixes.append(group)
                        position = prefix_upper_bound(group) or b"\xff" * (len(group) + 1)
                        resume_at = position
                        break  # re-query past everything under this prefix
                    objects.append(row)
                    position = row.key + b"\x00"
                    resume_at = position

        objects, prefixes, resume_at = await self._store.run(scan)
        result = JsDict(
            objects=[R2Object(row, include=include) for row in objects],
            truncated=resume_at is not None,
        )
        if resume_at is not None:
            result["cursor"] = encode_cursor(resume_at)
        result["delimitedPrefixes"] = [decode_key(p) for p in prefixes]
        return result

    # -- writes ----------------------------------------------------------------------------

    async def put(self, key: str, value: Any, options: Any = None, **kwargs: Any) -> R2Object | None:
        """Store ``value``; the new object's metadata, or ``None`` if ``onlyIf`` did not hold."""
        opts = merge_options(options, kwargs)
        raw = self._key("put", key)
        cond = _conditional_from(opts.get("onlyIf"))
        http = _http_metadata_from(opts.get("httpMetadata"))
        custom = _custom_metadata_from(opts.get("customMetadata"))
        if (
            sum(_serialised_length(k) + _serialised_length(v) for k, v in custom.items())
            > self.limits.max_metadata_bytes
        ):
            raise R2Error("put", 400, "Your metadata headers exceed the maximum allowed metadata size.", 10012)
        expected: dict[str, str] = {}
        for name, label, length in HASH_ALGORITHMS:
            given = opts.get(name)
            if given is None:
                continue
            if expected:
                raise JsTypeError("You cannot specify multiple hashing algorithms.")
            if isinstance(given, (bytes, memoryview)):
                if len(given) != length:
                    raise JsTypeError(f"{label} is {length} bytes, not {len(given)}")
                expected[name] = bytes(given).hex()
            else:
                text = str(given)
                if len(text) != length * 2:
                    raise JsTypeError(f"{label} is {length * 2} hex characters, not {len(text)}")
                try:
                    expected[name] = bytes.fromhex(text).hex()
                except ValueError:
                    raise JsTypeError(f"Provided {label} wasn't a valid hex string") from None
        storage_class = str(opts.get("storageClass") or "Standard")
        algorithms = ["md5", *[n for n in expected if n != "md5"]]
        blob_id, size, digests = await self._write_blob("put", value, algorithms, self.limits.max_value_bytes)
        for name, hexdigest in expected.items():
            if digests[name] != hexdigest:
                await self._delete_blobs([blob_id])
                label = dict((n, lbl) for n, lbl, _ in HASH_ALGORITHMS)[name]
                raise R2Error(
                    "put",
                    400,
                    f"The {label} checksum you specified did not match what we received.\n"
                    f"You provided a {label} checksum with value: {hexdigest}\n"
                    f"Actual {label} was: {digests[name]}",
                    10037,
                )
        checksums = {"md5": digests["md5"], **{n: digests[n] for n in expected}}
        row = _Row(
            key=raw,
            blob_id=blob_id,
            version=_new_version(),
            size=size,
            etag=digests["md5"],
            uploaded=self._now_ms(),
            checksums=json.dumps(checksums),
            http_metadata=json.dumps(http),
            custom_metadata=json.dumps(custom),
            storage_class=storage_class,
        )
        blobs = self._blobs

        def write(conn: sqlite3.Connection) -> bool:
            with transaction(conn):
                previous = conn.execute(
                    "SELECT blob_id, etag, uploaded FROM _mf_objects WHERE key = ?", (raw,)
                ).fetchone()
                if cond is not None and not _condition_holds(
                    cond, previous[1] if previous else None, previous[2] if previous else None
                ):
                    held = False
                else:
                    held = True
                    conn.execute(
                        f"INSERT OR REPLACE INTO _mf_objects ({_Row.COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (
                            row.key,
                            row.blob_id,
                            row.version,
                            row.size,
                            row.etag,
                            row.uploaded,
                            row.checksums,
                            row.http_metadata,
                            row.custom_metadata,
                            row.storage_class,
                        ),
                    )
            if not held:
                blobs.delete(blob_id)
            elif previous and previous[0]:
                blobs.delete(previous[0])
            return held

        try:
            stored = await self._store.run(write)
        except BaseException:
            await self._delete_blobs([blob_id])
            raise
        if not stored:
            return None
        obj = R2Object(row)
        return obj

    async def delete(self, keys: str | Sequence[str]) -> None:
        """Delete one key or a list of keys (absent keys are fine)."""
        many = keys if isinstance(keys, list) else [keys]
        if len(many) > self.limits.max_delete_keys:
            raise R2Error("delete", 400, f"You can delete up to {self.limits.max_delete_keys} keys at a time.", 10029)
        raws = [self._key("delete", k) for k in many]
        blobs = self._blobs

        def write(conn: sqlite3.Connection) -> None:
            old: list[str] = []
            with transaction(conn):
                for raw in raws:
                    found = conn.execute("DELETE FROM _mf_objects WHERE key = ? RETURNING blob_id", (raw,)).fetchone()
                    if found and found[0]:
                        old.append(found[0])
            for blob_id in old:
                try:
                    blobs.delete(blob_id)
                except OSError:
                    pass

        await self._store.run(write)

    # -- multipart ---------------------------------------------------------------------------

    async def createMultipartUpload(self, key: str, options: Any = None, **kwargs: Any) -> R2MultipartUpload:
        """Start a multipart upload; add parts with ``uploadPart``, finish with ``complete``."""
        opts = merge_options(options, kwargs)
        raw = self._key("createMultipartUpload", key)
        http = _http_metadata_from(opts.get("httpMetadata"))
        custom = _custom_metadata_from(opts.get("customMetadata"))
        if (
            sum(_serialised_length(k) + _serialised_length(v) for k, v in custom.items())
            > self.limits.max_metadata_bytes
        ):
            raise R2Error(
                "createMultipartUpload", 400, "Your metadata headers exceed the maximum allowed metadata size.", 10012
            )
        upload_id = base64.urlsafe_b64encode(secrets.token_bytes(96)).decode("ascii")
        storage_class = str(opts.get("storageClass") or "Standard")

        def write(conn: sqlite3.Connection) -> None:
            with transaction(conn):
                conn.execute(
                    "INSERT INTO _mf_multipart_uploads (upload_id, key, http_metadata, custom_metadata, storage_class) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (upload_id, raw, json.dumps(http), json.dumps(custom), storage_class),
                )

        await self._store.run(write)
        return R2MultipartUpload(self, str(key), upload_id)

    create_multipart_upload = createMultipartUpload

    def resumeMultipartUpload(self, key: str, uploadId: str) -> R2MultipartUpload:
        """The upload ``uploadId`` of ``key`` (not checked until used, as in R2)."""
        return R2MultipartUpload(self, str(key), str(uploadId))

    resume_multipart_upload = resumeMultipartUpload

    async def _upload_part(self, key: str, upload_id: str, part_number: Any, value: Any) -> JsDict:
        action = "uploadPart"
        if (
            not isinstance(part_number, int)
            or isinstance(part_number, bool)
            or not 1 <= part_number <= self.limits.max_part_number
        ):
            raise JsRangeError(
                f"Part number must be between 1 and {self.limits.max_part_number} (inclusive). "
                f"Actual value was: {part_number}"
            )
        raw = self._key(action, key)
        blob_id, size, digests = await self._write_blob(action, value, ["md5"], self.limits.max_value_bytes)
        etag = secrets.token_hex(16)
        blobs = self._blobs

        def write(conn: sqlite3.Connection) -> bool:
            with transaction(conn):
                state = conn.execute(
                    "SELECT state FROM _mf_multipart_uploads WHERE upload_id = ? AND key = ?", (upload_id, raw)
                ).fetchone()
                if state is None or state[0] != _IN_PROGRESS:
                    return False
                previous = conn.execute(
                    "SELECT blob_id FROM _mf_multipart_parts WHERE upload_id = ? AND part_number = ?",
                    (upload_id, part_number),
                ).fetchone()
                conn.execute(
                    "INSERT OR REPLACE INTO _mf_multipart_parts VALUES (?, ?, ?, ?, ?, ?)",
                    (upload_id, part_number, blob_id, size, etag, digests["md5"]),
                )
            if previous:
                blobs.delete(previous[0])
            return True

        try:
            ok = await self._store.run(write)
        except BaseException:
            await self._delete_blobs([blob_id])
            raise
        if not ok:
            await self._delete_blobs([blob_id])
            raise _no_such_upload(action)
        return JsDict(partNumber=part_number, etag=etag)

    async def _abort(self, key: str, upload_id: str) -> None:
        raw = self._key("abortMultipartUpload", key)
        blobs = self._blobs

        def write(conn: sqlite3.Connection) -> str | None:
            with transaction(conn):
                state = conn.execute(
                    "SELECT state FROM _mf_multipart_uploads WHERE upload_id = ? AND key = ?", (upload_id, raw)
                ).fetchone()
                if state is None:
                    return "missing"
                if state[0] != _IN_PROGRESS:
                    return None  # aborting twice, or after completion, is a no-op
                old = [
                    r[0]
                    for r in conn.execute(
                        "DELETE FROM _mf_multipart_parts WHERE upload_id = ? RETURNING blob_id", (upload_id,)
                    )
                ]
                conn.execute("UPDATE _mf_multipart_uploads SET state = ? WHERE upload_id = ?", (_ABORTED, upload_id))
            for blob_id in old:
                blobs.delete(blob_id)
            return None

        if await self._store.run(write) == "missing":
            raise _no_such_upload("abortMultipartUpload")

    async def _complete(self, key: str, upload_id: str, parts: Sequence[Any]) -> R2Object:
        action = "completeMultipartUpload"
        raw = self._key(action, key)
        selected: list[tuple[int, str]] = []
        for part in parts:
            opts = merge_options(part, {})
            selected.append((opts.get("partNumber"), str(opts.get("etag"))))
        numbers = [n for n, _ in selected]
        if len(set(numbers)) != len(numbers):
            raise _internal(action)
        min_part = self.limits.min_part_bytes

        def check(conn: sqlite3.Connection) -> Any:
            upload = conn.execute(
                "SELECT http_metadata, custom_metadata, storage_class, state FROM _mf_multipart_uploads "
                "WHERE upload_id = ? AND key = ?",
                (upload_id, raw),
            ).fetchone()
            if upload is None or upload[3] != _IN_PROGRESS:
                raise _no_such_upload(action)
            uploaded = {
                r[0]: r
                for r in conn.execute(
                    "SELECT part_number, blob_id, size, etag, checksum_md5 FROM _mf_multipart_parts WHERE upload_id = ?",
                    (upload_id,),
                )
            }
            chosen = []
            for number, etag in selected:
                found = uploaded.get(number)
                if found is None or found[3] != etag:
                    raise R2Error(action, 400, "One or more of the specified parts could not be found.", 10025)
                chosen.append(found)
            for found in chosen[:-1]:
                if found[2] < min_part:
                    raise R2Error(
                        action, 400, "Your proposed upload is smaller than the minimum allowed object size.", 10011
                    )
            ordered = sorted(chosen, key=lambda r: r[0])
            sizes = {r[2] for r in ordered[:-1]}
            if len(sizes) > 1 or (sizes and ordered[-1][2] > next(iter(sizes))):
                raise R2Error(action, 500, "There was a problem with the multipart upload.", 10048)
            return upload, ordered

        upload, ordered = await self._store.run(check)
        blobs = self._blobs
        if not ordered:
            raise R2Error(action, 400, "One or more of the specified parts could not be found.", 10025)

        # concatenate the parts into one body (off the bucket's thread)
        def concatenate() -> tuple[str, int]:
            writer = blobs.writer()
            total = 0
            try:
                for _, blob_id, _, _, _ in ordered:
                    reader = blobs.open(blob_id)
                    try:
                        while chunk := reader.read(READ_CHUNK):
                            writer.write(chunk)
                            total += len(chunk)
                    finally:
                        reader.close()
                return writer.finish(), total
            except BaseException:
                writer.abort()
                raise

        blob_id, total = await asyncio.to_thread(concatenate)
        md5s = hashlib.md5(b"".join(bytes.fromhex(r[4]) for r in ordered))
        row = _Row(
            key=raw,
            blob_id=blob_id,
            version=_new_version(),
            size=total,
            etag=f"{md5s.hexdigest()}-{len(ordered)}",
            uploaded=self._now_ms(),
            checksums="{}",
            http_metadata=upload[0],
            custom_metadata=upload[1],
            storage_class=upload[2],
        )

        def write(conn: sqlite3.Connection) -> None:
            with transaction(conn):
                state = conn.execute(
                    "SELECT state FROM _mf_multipart_uploads WHERE upload_id = ?", (upload_id,)
                ).fetchone()
                if state is None or state[0] != _IN_PROGRESS:
                    raise _no_such_upload(action)
                previous = conn.execute("SELECT blob_id FROM _mf_objects WHERE key = ?", (raw,)).fetchone()
                conn.execute(
                    f"INSERT OR REPLACE INTO _mf_objects ({_Row.COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        row.key,
                        row.blob_id,
                        row.version,
                        row.size,
                        row.etag,
                        row.uploaded,
                        row.checksums,
                        row.http_metadata,
                        row.custom_metadata,
                        row.storage_class,
                    ),
                )
                old = [
                    r[0]
                    for r in conn.execute(
                        "DELETE FROM _mf_multipart_parts WHERE upload_id = ? RETURNING blob_id", (upload_id,)
                    )
                ]
                conn.execute("UPDATE _mf_multipart_uploads SET state = ? WHERE upload_id = ?", (_COMPLETED, upload_id))
            if previous and previous[0]:
                old.append(previous[0])
            for old_id in old:
                blobs.delete(old_id)

        try:
            await self._store.run(write)
        except BaseException:
            await self._delete_blobs([blob_id])
            raise
        return R2Object(row)


class _EmptyReader:
    def seek(self, offset: int) -> None:
        pass

    def read(self, size: int = -1) -> bytes:
        return b""

    def close(self) -> None:
        pass


class R2MultipartUpload:
    """``createMultipartUpload()``'s result: ``key``, ``uploadId``, ``uploadPart``, ``complete``, ``abort``."""

    def __init__(self, bucket: R2Bucket, key: str, upload_id: str) -> None:
        self._bucket = bucket
        self.key = key
        self.uploadId = upload_id

    upload_id = property(lambda self: self.uploadId)

    async def uploadPart(self, partNumber: int, value: Any, options: Any = None, **kwargs: Any) -> JsDict:
        """Upload part ``partNumber`` (1-10000); ``{partNumber, etag}`` to pass to ``complete``."""
        return await self._bucket._upload_part(self.key, self.uploadId, partNumber, value)

    upload_part = uploadPart

    async def abort(self) -> None:
        await self._bucket._abort(self.key, self.uploadId)

    async def complete(self, uploadedParts: Sequence[Any]) -> R2Object:
        """Assemble the listed parts (all but the last at least 5 MiB, of equal size)."""
        return await self._bucket._complete(self.key, self.uploadId, uploadedParts)

    def __repr__(self) -> str:
        return f"R2MultipartUpload(key={self.key!r}, uploadId={self.uploadId[:12]!r}...)"


# -- plugin ------------------------------------------------------------------------------------


class R2BucketConfig(BaseModel):
    """One ``[[r2_buckets]]`` entry."""

    model_config = ConfigDict(extra="allow")

    binding: str
    bucket_name: str | None = None
    preview_bucket_name: str | None = None
    jurisdiction: str | None = None
    remote: bool | None = None


class R2Plugin(StoragePlugin):
    """Owns ``r2_buckets``: builds one :class:`R2Bucket` per entry."""

    key = "r2_buckets"
    type_label = TYPE_LABEL
    entry_model = R2BucketConfig

    def open_store(self, entry: R2BucketConfig, ctx: registry.BindingContext) -> tuple[R2Bucket, str]:
        limits = replace(R2Limits(), **dict(ctx.options.get("r2_limits") or {}))
        name = entry.preview_bucket_name or entry.bucket_name or entry.binding
        if ctx.persist_to is None:
            return R2Bucket.in_memory(name, limits=limits), name
        synchronous = ctx.options.get("sqlite_synchronous")
        return R2Bucket.open(Path(ctx.persist_to), name, synchronous=synchronous, limits=limits), name


plugin = R2Plugin()
