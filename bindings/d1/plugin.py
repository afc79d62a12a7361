"""The ``d1_databases`` plugin and the command line's connection helper."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from flarelet.bindings import registry
from flarelet.bindings.d1.constants import DEFAULT_LIMITS, TYPE_LABEL, D1Limits
from flarelet.bindings.d1.database import D1Database
from flarelet.bindings.d1.engine import D1Engine, d1_database_path
from flarelet.bindings.storage.config import StoragePlugin
from flarelet.bindings.storage.sqlite import connect, synchronous_mode

# -- plugin ----------------------------------------------------------------------------------


class D1DatabaseConfig(BaseModel):
    """One ``[[d1_databases]]`` entry."""

    model_config = ConfigDict(extra="allow")

    binding: str
    database_name: str | None = None
    database_id: str | None = None
    preview_database_id: str | None = None
    migrations_dir: str | None = None
    migrations_table: str | None = None
    remote: bool | None = None


def local_database_id(entry: D1DatabaseConfig) -> str:
    """The id wrangler's local mode keys the database by (``preview_database_id ?? database_id``)."""
    return entry.preview_database_id or entry.database_id or entry.database_name or entry.binding


def open_connection(
    persist_root: Path, database_id: str, limits: D1Limits = DEFAULT_LIMITS
) -> tuple[sqlite3.Connection, D1Engine]:
    """A plain connection + engine for command-line use (``flarelet d1``)."""
    engine = D1Engine(limits)
    conn = connect(d1_database_path(persist_root, database_id), synchronous_mode(None), cached_statements=0)
    engine.setup(conn)
    return conn, engine


class D1Plugin(StoragePlugin):
    """Owns ``d1_databases``: builds one :class:`D1Database` per entry."""

    key = "d1_databases"
    type_label = TYPE_LABEL
    entry_model = D1DatabaseConfig

    def open_store(self, entry: D1DatabaseConfig, ctx: registry.BindingContext) -> tuple[D1Database, str]:
        database_id = local_database_id(entry)
        resource = entry.database_name or database_id
        if ctx.persist_to is None:
            return D1Database.in_memory(database_id), resource
        synchronous = ctx.options.get("sqlite_synchronous")
        return D1Database.open(Path(ctx.persist_to), database_id, synchronous=synchronous), resource


plugin = D1Plugin()
