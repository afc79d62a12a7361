"""Multipart uploads: ``createMultipartUpload``, ``resumeMultipartUpload`` and ``R2MultipartUpload``."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import secrets
import sqlite3
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from flarelet.bindings.jsobject import (
    JsDict,
    JsTypeError,
    merge_options,
)
from flarelet.bindings.r2.constants import READ_CHUNK, R2Limits
from flarelet.bindings.r2.errors import R2Error, internal_error, no_such_upload
from flarelet.bindings.r2.metadata import custom_metadata_from, http_metadata_from, serialised_length
from flarelet.bindings.r2.object import ObjectRow, R2Object, new_version
from flarelet.bindings.r2.statements import ABORTED, COMPLETED, IN_PROGRESS, UPSERT_OBJECT
from flarelet.bindings.storage.blobs import BlobStore
from flarelet.bindings.storage.sqlite import SqliteStore, transaction


def opaque_id() -> str:
    """An upload id or part etag: opaque to the Worker, shaped as Miniflare's (128 random bytes,
    unpadded base64url, 171 characters)."""
    return base64.urlsafe_b64encode(secrets.token_bytes(128)).decode("ascii").rstrip("=")


class MultipartOperations:
    """The bucket's multipart methods (mixed into :class:`R2Bucket`)."""

    _store: SqliteStore
    _blobs: BlobStore
    limits: R2Limits

    if TYPE_CHECKING:  # defined by R2Bucket

        def _key(self, action: str, key: Any) -> bytes: ...

        def _now_ms(self) -> int: ...

        async def _delete_blobs(self, blob_ids: Sequence[str]) -> None: ...

        async def _write_blob(
            self, action: str, value: Any, algorithms: Sequence[str], max_size: int
        ) -> tuple[str, int, dict[str, str]]: ...

    async def createMultipartUpload(self, key: str, options: Any = None, **kwargs: Any) -> R2MultipartUpload:
        """Start a multipart upload; add parts with ``uploadPart``, finish with ``complete``."""
        opts = merge_options(options, kwargs)
        raw = self._key("createMultipartUpload", key)
        http = http_metadata_from(opts.get("httpMetadata"))
        custom = custom_metadata_from(opts.get("customMetadata"))
        if sum(serialised_length(k) + serialised_length(v) for k, v in custom.items()) > self.limits.max_metadata_bytes:
            raise R2Error(
                "createMultipartUpload", 400, "Your metadata headers exceed the maximum allowed metadata size.", 10012
            )
        upload_id = opaque_id()
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
            raise JsTypeError(
                f"Part number must be between 1 and {self.limits.max_part_number} (inclusive). "
                f"Actual value was: {part_number}"
            )
        raw = self._key(action, key)
        blob_id, size, digests = await self._write_blob(action, value, ["md5"], self.limits.max_value_bytes)
        etag = opaque_id()
        blobs = self._blobs

        def write(conn: sqlite3.Connection) -> bool:
            with transaction(conn):
                state = conn.execute(
                    "SELECT state FROM _mf_multipart_uploads WHERE upload_id = ? AND key = ?", (upload_id, raw)
                ).fetchone()
                if state is None or state[0] != IN_PROGRESS:
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
            raise no_such_upload(action)
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
                if state[0] != IN_PROGRESS:
                    return None  # aborting twice, or after completion, is a no-op
                old = [
                    r[0]
                    for r in conn.execute(
                        "DELETE FROM _mf_multipart_parts WHERE upload_id = ? RETURNING blob_id", (upload_id,)
                    )
                ]
                conn.execute("UPDATE _mf_multipart_uploads SET state = ? WHERE upload_id = ?", (ABORTED, upload_id))
            for blob_id in old:
                blobs.delete(blob_id)
            return None

        if await self._store.run(write) == "missing":
            raise no_such_upload("abortMultipartUpload")

    async def _complete(self, key: str, upload_id: str, parts: Sequence[Any]) -> R2Object:
        action = "completeMultipartUpload"
        raw = self._key(action, key)
        selected: list[tuple[Any, str]] = []  # partNumber as the Worker gave it: matched as is
        for part in parts:
            opts = merge_options(part, {})
            selected.append((opts.get("partNumber"), str(opts.get("etag"))))
        numbers = [n for n, _ in selected]
        if len(set(numbers)) != len(numbers):
            raise internal_error(action)
        min_part = self.limits.min_part_bytes

        def check(conn: sqlite3.Connection) -> Any:
            upload = conn.execute(
                "SELECT http_metadata, custom_metadata, storage_class, state FROM _mf_multipart_uploads "
                "WHERE upload_id = ? AND key = ?",
                (upload_id, raw),
            ).fetchone()
            if upload is None or upload[3] != IN_PROGRESS:
                raise no_such_upload(action)
            uploaded = {
                r[0]: r
                for r in conn.execute(
                    "SELECT part_number, blob_id, size, etag, checksum_md5 FROM _mf_multipart_parts "
                    "WHERE upload_id = ?",
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
        row = ObjectRow(
            key=raw,
            blob_id=blob_id,
            version=new_version(),
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
                if state is None or state[0] != IN_PROGRESS:
                    raise no_such_upload(action)
                previous = conn.execute("SELECT blob_id FROM _mf_objects WHERE key = ?", (raw,)).fetchone()
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
                old = [
                    r[0]
                    for r in conn.execute(
                        "DELETE FROM _mf_multipart_parts WHERE upload_id = ? RETURNING blob_id", (upload_id,)
                    )
                ]
                conn.execute("UPDATE _mf_multipart_uploads SET state = ? WHERE upload_id = ?", (COMPLETED, upload_id))
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


class R2MultipartUpload:
    """``createMultipartUpload()``'s result: ``key``, ``uploadId``, ``uploadPart``, ``complete``, ``abort``."""

    def __init__(self, bucket: MultipartOperations, key: str, upload_id: str) -> None:
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
