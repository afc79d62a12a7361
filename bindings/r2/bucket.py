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
import hashlib
import json
import sqlite3
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from flarelet.bindings.jsobject import (
    JsDict,
    JsRangeError,
    JsTypeError,
    check_rpc_value,
    merge_options,
    read_body_bytes,
)
from flarelet.bindings.r2.constants import (
    DEFAULT_LIMITS,
    HASH_ALGORITHMS,
    OBJECT_CLASS,
    READ_CHUNK,
    UNKNOWN_LENGTH_MESSAGE,
    R2Limits,
)
from flarelet.bindings.r2.errors import R2Error, invalid_object_name
from flarelet.bindings.r2.metadata import custom_metadata_from, http_metadata_from, serialised_length
from flarelet.bindings.r2.multipart import MultipartOperations
from flarelet.bindings.r2.object import EmptyReader, ObjectRow, R2Object, R2ObjectBody, new_version
from flarelet.bindings.r2.statements import UPSERT_OBJECT, schema_setup
from flarelet.bindings.r2.validation import condition_holds, conditional_from, parse_range, resolve_range
from flarelet.bindings.storage import paths
from flarelet.bindings.storage.blobs import BlobStore, FileBlobStore, MemoryBlobStore
from flarelet.bindings.storage.keys import (
    decode_cursor,
    decode_key,
    encode_cursor,
    encode_key,
    prefix_upper_bound,
    utf8_length,
)
from flarelet.bindings.storage.sqlite import SqliteStore, shared_store, synchronous_mode, transaction


def r2_database_path(persist_root: Path, bucket_name: str) -> Path:
    return paths.object_db_path(persist_root, "r2", OBJECT_CLASS, bucket_name)


class R2Bucket(MultipartOperations):
    """The object on ``env`` for one ``[[r2_buckets]]`` entry."""

    def __init__(
        self,
        store: SqliteStore,
        blobs: BlobStore,
        *,
        bucket_name: str = "",
        limits: R2Limits = DEFAULT_LIMITS,
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
            SqliteStore(None, schema_setup(bucket_name, blobs, False), name="r2"),
            blobs,
            bucket_name=bucket_name,
            **kwargs,
        )

    @classmethod
    def open(cls, persist_root: Path, bucket_name: str, *, synchronous: str | None = None, **kwargs: Any) -> R2Bucket:
        blobs = FileBlobStore(paths.blob_dir(persist_root, "r2", bucket_name))
        store = shared_store(
            r2_database_path(persist_root, bucket_name),
            schema_setup(bucket_name, blobs, True),
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
            raise invalid_object_name(action)
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
                if not isinstance(getattr(value, "length", None), int):
                    # workerd (r2-rpc.c++) sends R2 a Content-Length, so a stream must know its length
                    raise JsTypeError(UNKNOWN_LENGTH_MESSAGE)
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

        def read(conn: sqlite3.Connection) -> ObjectRow | None:
            row = conn.execute(f"SELECT {ObjectRow.COLUMNS} FROM _mf_objects WHERE key = ?", (raw,)).fetchone()
            return None if row is None else ObjectRow(*row)

        row = await self._store.run(read)
        if row is None:
            return None
        return R2Object(row, range_={"offset": 0, "length": row.size})

    async def get(self, key: str, options: Any = None, **kwargs: Any) -> R2ObjectBody | R2Object | None:
        """The object with its body (``range`` for a slice), ``None`` if absent; an
        :class:`R2Object` without body when ``onlyIf`` does not hold."""
        opts = merge_options(options, kwargs)
        cond = conditional_from(opts.get("onlyIf"))
        range_request = parse_range(opts.get("range"))
        raw = self._key("get", key)
        blobs = self._blobs

        def read(conn: sqlite3.Connection) -> Any:
            found = conn.execute(f"SELECT {ObjectRow.COLUMNS} FROM _mf_objects WHERE key = ?", (raw,)).fetchone()
            if found is None:
                return None
            row = ObjectRow(*found)
            if cond is not None and not condition_holds(cond, row.etag, row.uploaded):
                return ("precondition", row)
            try:
                span = resolve_range(range_request, row.size)
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
            reader = EmptyReader()
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

        def scan(conn: sqlite3.Connection) -> tuple[list[ObjectRow], list[bytes], bytes | None]:
            objects: list[ObjectRow] = []
            prefixes: list[bytes] = []
            position = start
            resume_at: bytes | None = None
            while True:
                sql = f"SELECT {ObjectRow.COLUMNS} FROM _mf_objects WHERE key >= ?"
                params: list[Any] = [position]
                if upper is not None:
                    sql += " AND key < ?"
                    params.append(upper)
                rows = conn.execute(sql + " ORDER BY key LIMIT 256", params).fetchall()
                if not rows:
                    return objects, prefixes, None
                for found in rows:
                    row = ObjectRow(*found)
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
        cond = conditional_from(opts.get("onlyIf"))
        http = http_metadata_from(opts.get("httpMetadata"))
        custom = custom_metadata_from(opts.get("customMetadata"))
        if sum(serialised_length(k) + serialised_length(v) for k, v in custom.items()) > self.limits.max_metadata_bytes:
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
        row = ObjectRow(
            key=raw,
            blob_id=blob_id,
            version=new_version(),
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
                if cond is not None and not condition_holds(
                    cond, previous[1] if previous else None, previous[2] if previous else None
                ):
                    held = False
                else:
                    held = True
                    conn.execute(
                        UPSERT_OBJECT,
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
        if self.limits.max_delete_keys is not None and len(many) > self.limits.max_delete_keys:
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
