"""The bucket's SQLite schema (Miniflare's ``_mf_objects`` and multipart tables) and its set-up."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from flarelet.bindings.r2.object import ObjectRow
from flarelet.bindings.storage.blobs import BlobStore
from flarelet.bindings.storage.sqlite import transaction

SCHEMA = """
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

IN_PROGRESS, COMPLETED, ABORTED = 0, 1, 2


def schema_setup(bucket_name: str, blobs: BlobStore, collect: bool) -> Callable[[sqlite3.Connection], None]:
    def setup(conn: sqlite3.Connection) -> None:
        conn.executescript(SCHEMA)
        with transaction(conn):
            conn.execute("INSERT OR IGNORE INTO _flarelet_meta VALUES ('bucket_name', ?)", (bucket_name,))
        if collect:
            referenced = {r[0] for r in conn.execute("SELECT blob_id FROM _mf_objects WHERE blob_id IS NOT NULL")}
            referenced |= {r[0] for r in conn.execute("SELECT blob_id FROM _mf_multipart_parts")}
            blobs.collect_garbage(referenced)

    return setup


#: insert or overwrite one object row (all of :attr:`ObjectRow.COLUMNS`, in order)
UPSERT_OBJECT = f"INSERT OR REPLACE INTO _mf_objects ({ObjectRow.COLUMNS}) VALUES ({', '.join('?' * 10)})"
