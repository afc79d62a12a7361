"""Where cached responses live: one SQLite database, on disk under ``--persist-to`` or in memory.

Why ``<persist-to>/v3/cache/cache.sqlite`` and not a binding's room: the Cache API is a global
(``caches``), not an ``env`` binding with a config section, so it belongs to the runtime; it
reuses the storage layer of the bindings (:mod:`flarelet.bindings.storage.sqlite`: WAL, its own
thread, fsync'd commits) and wrangler's ``v3/cache`` folder name. Cache names and URLs are
column values, never paths. Without persistence (tests) the database is in memory.

An entry is keyed by (cache name, URL, variant): the variant is the request's values of the
headers the response ``Vary``\\s on, so one URL holds one entry per variant, as Cloudflare's
cache does. Expired entries are invisible and removed on the next write.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from flarelet.bindings.storage.paths import kind_root
from flarelet.bindings.storage.sqlite import SqliteStore, shared_store, synchronous_mode, transaction

_SCHEMA = """
CREATE TABLE IF NOT EXISTS _cf_cache (
    cache TEXT NOT NULL,
    url TEXT NOT NULL,
    variant TEXT NOT NULL,
    vary TEXT NOT NULL,
    status INTEGER NOT NULL,
    headers TEXT NOT NULL,
    body BLOB NOT NULL,
    stored_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    PRIMARY KEY (cache, url, variant)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS _cf_cache_expiry ON _cf_cache (expires_at);
"""


@dataclass
class Entry:
    status: int
    headers: list[tuple[str, str]]
    body: bytes
    vary: list[str]
    stored_at: float
    expires_at: float
    #: the request header values this entry was stored for (see :func:`variant_key`)
    variant: str = "[]"


def _setup(conn: sqlite3.Connection) -> None:
    conn.executescript(_SCHEMA)


def variant_key(vary: list[str], request_headers: Callable[[str], str | None]) -> str:
    return json.dumps([[name, request_headers(name) or ""] for name in vary], separators=(",", ":"))


class CacheStore:
    """The entries of every named cache of one worker."""

    def __init__(self, persist_to: Path | None, synchronous: str | None = None) -> None:
        path = None if persist_to is None else kind_root(persist_to, "cache") / "cache.sqlite"
        self._store: SqliteStore = shared_store(path, _setup, synchronous=synchronous_mode(synchronous), name="cache")

    @property
    def path(self) -> Path | None:
        return self._store.path

    async def put(self, cache: str, url: str, variant: str, entry: Entry) -> None:
        def write(conn: sqlite3.Connection) -> None:
            with transaction(conn):
                conn.execute("DELETE FROM _cf_cache WHERE expires_at <= ?", (entry.stored_at,))
                conn.execute(
                    "INSERT OR REPLACE INTO _cf_cache VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        cache,
                        url,
                        variant,
                        json.dumps(entry.vary),
                        entry.status,
                        json.dumps(entry.headers),
                        entry.body,
                        entry.stored_at,
                        entry.expires_at,
                    ),
                )

        await self._store.run(write)

    async def variants(self, cache: str, url: str, now: float) -> list[Entry]:
        """Fresh entries for ``url`` (one per variant), newest first."""

        def read(conn: sqlite3.Connection) -> list[Entry]:
            rows = conn.execute(
                "SELECT status, headers, body, vary, stored_at, expires_at, variant FROM _cf_cache "
                "WHERE cache = ? AND url = ? AND expires_at > ? ORDER BY stored_at DESC",
                (cache, url, now),
            ).fetchall()
            return [
                Entry(
                    status, [tuple(p) for p in json.loads(headers)], bytes(body), json.loads(vary), stored, expires, v
                )
                for status, headers, body, vary, stored, expires, v in rows
            ]

        return await self._store.run(read)

    async def delete(self, cache: str, url: str, now: float) -> bool:
        """Remove every variant of ``url``; true if a fresh one was there."""

        def write(conn: sqlite3.Connection) -> bool:
            with transaction(conn):
                fresh = conn.execute(
                    "SELECT COUNT(*) FROM _cf_cache WHERE cache = ? AND url = ? AND expires_at > ?", (cache, url, now)
                ).fetchone()[0]
                conn.execute("DELETE FROM _cf_cache WHERE cache = ? AND url = ?", (cache, url))
            return bool(fresh)

        return await self._store.run(write)

    async def aclose(self) -> None:
        await self._store.aclose()
