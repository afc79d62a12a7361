"""Workers KV (``kv_namespaces``): ``env.KV.get/getWithMetadata/put/delete/list``, persisted locally.

Behaviour and error texts follow workerd's ``KvNamespace`` (``src/workerd/api/kv.c++``) in
front of Miniflare's local KV (``packages/miniflare/src/workers/kv``), i.e. what ``wrangler
dev`` gives: key names are checked by the runtime (``TypeError: Key name cannot be empty.``),
everything else comes back as ``Error: KV <METHOD> failed: <status> <message>``.

Storage: one SQLite file per namespace (values inline, up to 25 MiB), keys as UTF-8 BLOBs so
ordering and prefixes are byte-exact. Expired keys are invisible at once and purged at open.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from flarelet.bindings import registry
from flarelet.bindings.jsobject import (
    ByteStream,
    JsDict,
    JsException,
    JsTypeError,
    check_rpc_value,
    json_syntax_error,
    merge_options,
    read_body_bytes,
    to_js_dict,
)
from flarelet.bindings.storage import paths
from flarelet.bindings.storage.config import StoragePlugin
from flarelet.bindings.storage.keys import (
    decode_cursor,
    decode_key,
    encode_cursor,
    encode_key,
    js_number_str,
    js_parse_int,
    js_to_int32,
    prefix_upper_bound,
    utf8_length,
)
from flarelet.bindings.storage.sqlite import SqliteStore, shared_store, synchronous_mode, transaction

__all__ = ["KvLimits", "KVNamespace", "KvPlugin", "plugin", "kv_database_path"]

TYPE_LABEL = "KV Namespace"
OBJECT_CLASS = "miniflare-KVNamespaceObject"


@dataclass(frozen=True)
class KvLimits:
    """Cloudflare's KV limits (developers.cloudflare.com/kv/platform/limits; Miniflare ``KVLimits``)."""

    max_key_bytes: int = 512
    max_value_bytes: int = 25 * 1024 * 1024
    max_metadata_bytes: int = 1024
    min_expiration_ttl_s: int = 60
    min_cache_ttl_s: int = 30
    max_list_keys: int = 1000
    max_bulk_get_keys: int = 100
    max_bulk_bytes: int = 25 * 1024 * 1024


_SCHEMA = """
CREATE TABLE IF NOT EXISTS _mf_entries (
    key BLOB PRIMARY KEY,
    value BLOB NOT NULL,
    expiration INTEGER,  -- milliseconds since the epoch, NULL = never
    metadata TEXT        -- JSON, NULL = none
);
CREATE TABLE IF NOT EXISTS _flarelet_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


def _setup(namespace_id: str, clock: Callable[[], float]) -> Callable[[sqlite3.Connection], None]:
    def setup(conn: sqlite3.Connection) -> None:
        conn.executescript(_SCHEMA)
        with transaction(conn):
            conn.execute("INSERT OR IGNORE INTO _flarelet_meta VALUES ('namespace_id', ?)", (namespace_id,))
            conn.execute(
                "DELETE FROM _mf_entries WHERE expiration IS NOT NULL AND expiration <= ?", (int(clock() * 1000),)
            )

    return setup


def kv_database_path(persist_root: Path, namespace_id: str) -> Path:
    return paths.object_db_path(persist_root, "kv", OBJECT_CLASS, namespace_id)


def _kv_error(method: str, status: int, message: str) -> JsException:
    return JsException("Error", f"KV {method} failed: {status} {message}")


def _parse_json(text: str) -> Any:
    try:
        return to_js_dict(json.loads(text))
    except json.JSONDecodeError as exc:
        raise json_syntax_error(text, exc) from None


class KVNamespace:
    """The object on ``env`` for one ``[[kv_namespaces]]`` entry.

    Methods are Cloudflare's (camelCase) with snake_case aliases; options can be a dict or
    keyword arguments (``put(k, v, expirationTtl=60)``), as through Python Workers' wrapper.
    """

    def __init__(
        self,
        store: SqliteStore,
        *,
        namespace_id: str = "",
        limits: KvLimits = KvLimits(),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self.namespace_id = namespace_id
        self.limits = limits
        self._clock = clock

    @classmethod
    def in_memory(cls, namespace_id: str = "test", **kwargs: Any) -> KVNamespace:
        clock = kwargs.get("clock", time.time)
        return cls(SqliteStore(None, _setup(namespace_id, clock), name="kv"), namespace_id=namespace_id, **kwargs)

    @classmethod
    def open(
        cls, persist_root: Path, namespace_id: str, *, synchronous: str | None = None, **kwargs: Any
    ) -> KVNamespace:
        clock = kwargs.get("clock", time.time)
        path = kv_database_path(persist_root, namespace_id)
        store = shared_store(path, _setup(namespace_id, clock), synchronous=synchronous_mode(synchronous), name="kv")
        return cls(store, namespace_id=namespace_id, **kwargs)

    def __repr__(self) -> str:
        return f"KvNamespace({self.namespace_id!r})"

    async def aclose(self) -> None:
        await self._store.aclose()

    # -- validation -------------------------------------------------------------------------

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    def _validate_key(self, method: str, key: Any) -> bytes:
        if not isinstance(key, str):
            # the runtime coerces the name to a string, as JS String(key) does
            key = "null" if key is None else js_number_str(key) if isinstance(key, (int, float)) else str(key)
        if key == "":
            raise JsTypeError("Key name cannot be empty.")
        if key in (".", ".."):
            raise JsTypeError(f'"{key}" is not allowed as a key name.')
        size = utf8_length(key)
        if size > self.limits.max_key_bytes:
            raise _kv_error(
                method, 414, f"UTF-8 encoded length of {size} exceeds key length limit of {self.limits.max_key_bytes}."
            )
        return encode_key(key)

    def _get_options(self, options: Any, kwargs: Mapping[str, Any]) -> tuple[str, Any]:
        if isinstance(options, str):
            opts: dict[str, Any] = merge_options(None, kwargs)
            opts.setdefault("type", options)
        else:
            opts = merge_options(options, kwargs)
        type_name = opts.get("type") or "text"
        cache_ttl = opts.get("cacheTtl")
        if cache_ttl is not None:
            ttl = js_parse_int(cache_ttl)
            if ttl is None or ttl < self.limits.min_cache_ttl_s:
                raise _kv_error(
                    "GET",
                    400,
                    f"Invalid cache_ttl of {js_number_str(cache_ttl)}. "
                    f"Cache TTL must be at least {self.limits.min_cache_ttl_s}.",
                )
        return str(type_name), cache_ttl

    # -- reads -----------------------------------------------------------------------------

    async def _fetch(self, raw_key: bytes) -> tuple[bytes, str | None] | None:
        now = self._now_ms()

        def read(conn: sqlite3.Connection) -> tuple[bytes, str | None] | None:
            row = conn.execute(
                "SELECT value, metadata FROM _mf_entries WHERE key = ? AND (expiration IS NULL OR expiration > ?)",
                (raw_key, now),
            ).fetchone()
            return None if row is None else (bytes(row[0]), row[1])

        return await self._store.run(read)

    @staticmethod
    def _convert(value: bytes, type_name: str) -> Any:
        if type_name == "text":
            return value.decode("utf-8", errors="replace")
        if type_name == "json":
            return _parse_json(value.decode("utf-8", errors="replace"))
        if type_name == "arrayBuffer":
            return value
        if type_name == "stream":
            return ByteStream.from_bytes(value)
        raise JsTypeError('Unknown response type. Possible types are "text", "arrayBuffer", "json", and "stream".')

    async def get(self, key: str | Sequence[str], options: Any = None, **kwargs: Any) -> Any:
        """The value (``str``, parsed JSON, ``bytes`` or a stream by ``type``), ``None`` if absent.

        A list of keys does a bulk read (up to 100, types ``text``/``json``) and returns a dict.
        """
        if isinstance(key, list):
            return await self._get_bulk(key, options, kwargs, with_metadata=False)
        raw = self._validate_key("GET", key)
        type_name, _ = self._get_options(options, kwargs)
        found = await self._fetch(raw)
        if found is None:
            return None
        return self._convert(found[0], type_name)

    async def getWithMetadata(self, key: str | Sequence[str], options: Any = None, **kwargs: Any) -> Any:
        """``{value, metadata, cacheStatus}`` (``value``/``metadata`` ``None`` when absent)."""
        if isinstance(key, list):
            return await self._get_bulk(key, options, kwargs, with_metadata=True)
        raw = self._validate_key("GET", key)
        type_name, _ = self._get_options(options, kwargs)
        found = await self._fetch(raw)
        if found is None:
            return JsDict(value=None, metadata=None, cacheStatus=None)
        value, metadata = found
        return JsDict(
            value=self._convert(value, type_name),
            metadata=None if metadata is None else to_js_dict(json.loads(metadata)),
            cacheStatus=None,
        )

    get_with_metadata = getWithMetadata

    async def _get_bulk(self, keys: list, options: Any, kwargs: Mapping[str, Any], *, with_metadata: bool) -> dict:
        if isinstance(options, str):
            opts = merge_options(None, kwargs)
            opts.setdefault("type", options)
        else:
            opts = merge_options(options, kwargs)
        type_name = opts.get("type")
        if type_name and type_name not in ("text", "json"):
            raise _kv_error("GET_BULK", 400, f'"{type_name}" is not a valid type. Use "json" or "text"')
        if len(keys) > self.limits.max_bulk_get_keys:
            raise _kv_error("GET_BULK", 400, f"You can request a maximum of {self.limits.max_bulk_get_keys} keys")
        if len(keys) < 1:
            raise _kv_error("GET_BULK", 400, "You must request a minimum of 1 key")
        self._get_options({"cacheTtl": opts["cacheTtl"]} if "cacheTtl" in opts else None, {})
        raws = [self._validate_key("GET_BULK", k) for k in keys]
        now = self._now_ms()

        def read(conn: sqlite3.Connection) -> list[tuple[bytes, str | None] | None]:
            out = []
            for raw in raws:
                row = conn.execute(
                    "SELECT value, metadata FROM _mf_entries WHERE key = ? AND (expiration IS NULL OR expiration > ?)",
                    (raw, now),
                ).fetchone()
                out.append(None if row is None else (bytes(row[0]), row[1]))
            return out

        rows = await self._store.run(read)
        result: dict[str, Any] = {}
        total = 0
        for key, row in zip(keys, rows, strict=True):
            if row is None:
                result[key] = None
                continue
            text = row[0].decode("utf-8", errors="replace")
            total += len(text)
            try:
                value = json.loads(text) if type_name == "json" else text
            except json.JSONDecodeError:
                raise _kv_error(
                    "GET_BULK", 400, f"At least one of the requested keys corresponds to a non-{type_name} value"
                ) from None
            if with_metadata:
                metadata = None if row[1] is None else json.loads(row[1])
                result[key] = to_js_dict({"value": value, "metadata": metadata})
            else:
                result[key] = to_js_dict(value)
        if total > self.limits.max_bulk_bytes:
            raise _kv_error(
                "GET_BULK",
                413,
                f"Total size of request exceeds the limit of {self.limits.max_bulk_bytes // 1024 // 1024}MB",
            )
        return result

    # -- writes ----------------------------------------------------------------------------

    def _expiration_ms(self, opts: Mapping[str, Any]) -> int | None:
        now_s = self._now_ms() // 1000
        min_ttl = self.limits.min_expiration_ttl_s
        raw_ttl = opts.get("expirationTtl")
        raw_exp = opts.get("expiration")
        # both options are ``jsg::Optional<int>`` in workerd: the value sent (and shown in the
        # error) is JS ToInt32 of it, so "abc" arrives as 0
        if raw_ttl is not None:
            ttl = js_to_int32(raw_ttl)
            shown = str(ttl)
            if ttl <= 0:
                raise _kv_error(
                    "PUT", 400, f"Invalid expiration_ttl of {shown}. Please specify integer greater than 0."
                )
            if ttl < min_ttl:
                raise _kv_error(
                    "PUT", 400, f"Invalid expiration_ttl of {shown}. Expiration TTL must be at least {min_ttl}."
                )
            return (now_s + ttl) * 1000
        if raw_exp is not None:
            expiration = js_to_int32(raw_exp)
            shown = str(expiration)
            if expiration <= now_s:
                raise _kv_error(
                    "PUT",
                    400,
                    f"Invalid expiration of {shown}. Please specify integer greater than the current number "
                    "of seconds since the UNIX epoch.",
                )
            if expiration < now_s + min_ttl:
                raise _kv_error(
                    "PUT",
                    400,
                    f"Invalid expiration of {shown}. Expiration times must be at least {min_ttl} seconds "
                    "in the future.",
                )
            return expiration * 1000
        return None

    def _metadata_json(self, opts: Mapping[str, Any]) -> str | None:
        metadata = opts.get("metadata")
        if metadata is None:
            return None
        check_rpc_value(metadata)
        try:
            text = json.dumps(metadata, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise JsTypeError(f"KV put() metadata must be JSON-serializable: {exc}") from None
        size = utf8_length(text)
        if size > self.limits.max_metadata_bytes:
            raise _kv_error("PUT", 413, f"Metadata length of {size} exceeds limit of {self.limits.max_metadata_bytes}.")
        return text

    async def _value_bytes(self, value: Any) -> bytes:
        if isinstance(value, bool):
            return b"true" if value else b"false"
        if isinstance(value, (int, float)):
            return js_number_str(value).encode()
        check_rpc_value(value)
        data = await read_body_bytes(value)
        if data is None:
            raise JsTypeError(
                "KV put() accepts only strings, ArrayBuffers, ArrayBufferViews, and ReadableStreams as values."
            )
        return data

    async def put(self, key: str, value: Any, options: Any = None, **kwargs: Any) -> None:
        """Store ``value`` (str, bytes, a stream) under ``key``; returns once it is durable."""
        raw = self._validate_key("PUT", key)
        opts = merge_options(options, kwargs)
        expiration = self._expiration_ms(opts)
        metadata = self._metadata_json(opts)
        data = await self._value_bytes(value)
        if len(data) > self.limits.max_value_bytes:
            raise _kv_error("PUT", 413, f"Value length of {len(data)} exceeds limit of {self.limits.max_value_bytes}.")

        def write(conn: sqlite3.Connection) -> None:
            with transaction(conn):
                conn.execute(
                    "INSERT OR REPLACE INTO _mf_entries (key, value, expiration, metadata) VALUES (?, ?, ?, ?)",
                    (raw, data, expiration, metadata),
                )

        await self._store.run(write)

    async def delete(self, key: str) -> None:
        """Remove ``key`` (no error if it is absent)."""
        raw = self._validate_key("DELETE", key)

        def write(conn: sqlite3.Connection) -> None:
            with transaction(conn):
                conn.execute("DELETE FROM _mf_entries WHERE key = ?", (raw,))

        await self._store.run(write)

    async def list(self, options: Any = None, **kwargs: Any) -> JsDict:
        """``{keys: [{name, expiration?, metadata?}], list_complete, cursor?, cacheStatus}``."""
        opts = merge_options(options, kwargs)
        limit = self.limits.max_list_keys
        raw_limit = opts.get("limit")
        if raw_limit is not None and isinstance(raw_limit, (int, float)) and raw_limit > 0:
            limit = int(raw_limit)
            if limit > self.limits.max_list_keys:
                raise _kv_error(
                    "GET",
                    400,
                    f"Invalid key_count_limit of {limit}. Please specify an integer less than "
                    f"{self.limits.max_list_keys}.",
                )
        prefix = opts.get("prefix")
        prefix_raw = b""
        if prefix is not None:
            prefix = str(prefix)
            size = utf8_length(prefix)
            if size > self.limits.max_key_bytes:
                raise _kv_error(
                    "GET",
                    414,
                    f"UTF-8 encoded length of {size} exceeds key length limit of {self.limits.max_key_bytes}.",
                )
            prefix_raw = encode_key(prefix)
        cursor = opts.get("cursor")
        start_after = decode_cursor(cursor) if cursor else None
        upper = prefix_upper_bound(prefix_raw)
        now = self._now_ms()

        def read(conn: sqlite3.Connection) -> list[tuple[bytes, int | None, str | None]]:
            sql = "SELECT key, expiration, metadata FROM _mf_entries WHERE key >= ?"
            params: list[Any] = [prefix_raw]
            if upper is not None:
                sql += " AND key < ?"
                params.append(upper)
            if start_after is not None:
                sql += " AND key > ?"
                params.append(start_after)
            sql += " AND (expiration IS NULL OR expiration > ?) ORDER BY key LIMIT ?"
            params += [now, limit + 1]
            return [(bytes(k), e, m) for k, e, m in conn.execute(sql, params)]

        rows = await self._store.run(read)
        more = len(rows) > limit
        rows = rows[:limit]
        keys = []
        for raw, expiration, metadata in rows:
            entry = JsDict(name=decode_key(raw))
            if expiration is not None:
                entry["expiration"] = expiration // 1000
            if metadata is not None:
                entry["metadata"] = to_js_dict(json.loads(metadata))
            keys.append(entry)
        result = JsDict(keys=keys, list_complete=not more)
        if more:
            result["cursor"] = encode_cursor(rows[-1][0])
        result["cacheStatus"] = None
        return result


# -- plugin --------------------------------------------------------------------------------


class KvNamespaceConfig(BaseModel):
    """One ``[[kv_namespaces]]`` entry (wrangler ``config-schema.json``)."""

    model_config = ConfigDict(extra="allow")

    binding: str
    id: str | None = None
    preview_id: str | None = None
    remote: bool | None = None


class KvPlugin(StoragePlugin):
    """Owns ``kv_namespaces``: builds one :class:`KVNamespace` per entry."""

    key = "kv_namespaces"
    type_label = TYPE_LABEL
    entry_model = KvNamespaceConfig

    def open_store(self, entry: KvNamespaceConfig, ctx: registry.BindingContext) -> tuple[KVNamespace, str]:
        limits = replace(KvLimits(), **dict(ctx.options.get("kv_limits") or {}))
        namespace_id = entry.preview_id or entry.id or entry.binding
        if ctx.persist_to is None:
            return KVNamespace.in_memory(namespace_id, limits=limits), namespace_id
        synchronous = ctx.options.get("sqlite_synchronous")
        return KVNamespace.open(
            Path(ctx.persist_to), namespace_id, synchronous=synchronous, limits=limits
        ), namespace_id


plugin = KvPlugin()
