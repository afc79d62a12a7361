"""Workflow state on SQLite: instances, step records and received events, one file per workflow.

``<persist-to>/v3/workflows/flarelet-workflows/<sha256(workflow name)>.sqlite`` (WAL,
``synchronous=FULL`` like the other storage): every state change the engine acknowledges --
an instance created, a step's result or final error, a sleep's wake-up time, an attempt about
to start, an event received or consumed -- is one committed transaction before the engine moves
on, so a SIGKILLed dev server resumes each running instance after its last completed step.

Steps are keyed by ``kind:name:occurrence`` (the n-th ``step.do("x")`` of a run), as Cloudflare
keys them, so replaying ``run`` from the top meets the same keys in the same order.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from flarelet.bindings.storage.paths import object_db_path
from flarelet.bindings.storage.sqlite import SqliteStore, shared_store, synchronous_mode, transaction

SCHEMA = """
CREATE TABLE IF NOT EXISTS instances (
    id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    params TEXT NOT NULL,
    created REAL NOT NULL,
    started REAL,
    ended REAL,
    output TEXT,
    error TEXT,
    seq INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS steps (
    instance_id TEXT NOT NULL,
    key TEXT NOT NULL,
    state TEXT NOT NULL,
    value TEXT,
    error TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    wake_at REAL,
    ordinal INTEGER NOT NULL,
    PRIMARY KEY (instance_id, key)
);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    instance_id TEXT NOT NULL,
    type TEXT NOT NULL,
    payload TEXT NOT NULL,
    timestamp REAL NOT NULL,
    consumed_by TEXT
);
CREATE INDEX IF NOT EXISTS events_pending ON events (instance_id, type, consumed_by, seq);
"""

#: statuses whose instances the engine (re)starts when it starts
LIVE_STATUSES = ("queued", "running", "waiting", "waitingForPause")


@dataclass
class InstanceRow:
    id: str
    status: str
    params: str
    created: float
    started: float | None
    ended: float | None
    output: str | None
    error: str | None


@dataclass
class StepRow:
    key: str
    state: str  # "done", "failed", "running", "sleeping", "waiting"
    value: str | None
    error: str | None
    attempts: int
    wake_at: float | None


def _setup(conn: sqlite3.Connection) -> None:
    conn.executescript(SCHEMA)


def open_store(persist_to: Path | None, workflow_name: str, synchronous: str | None = None) -> SqliteStore:
    path = None if persist_to is None else object_db_path(persist_to, "workflows", "flarelet-workflows", workflow_name)
    return shared_store(path, _setup, synchronous=synchronous_mode(synchronous), name="workflows")


class WorkflowStore:
    """Typed operations on one workflow's database (each one transaction)."""

    def __init__(self, store: SqliteStore) -> None:
        self.store = store

    async def create_instances(self, rows: Sequence[tuple[str, str, float]]) -> list[str]:
        """Insert ``(id, params_json, created)`` rows as ``queued``; returns the ids that already existed."""

        def op(conn: sqlite3.Connection) -> list[str]:
            existing = []
            with transaction(conn):
                for instance_id, _params, _created in rows:
                    if conn.execute("SELECT 1 FROM instances WHERE id = ?", (instance_id,)).fetchone():
                        existing.append(instance_id)
                if existing:
                    return existing
                seq = conn.execute("SELECT COALESCE(MAX(seq), 0) FROM instances").fetchone()[0]
                for offset, (instance_id, params, created) in enumerate(rows, 1):
                    conn.execute(
                        "INSERT INTO instances (id, status, params, created, seq) VALUES (?, 'queued', ?, ?, ?)",
                        (instance_id, params, created, seq + offset),
                    )
            return []

        return await self.store.run(op)

    async def get_instance(self, instance_id: str) -> InstanceRow | None:
        def op(conn: sqlite3.Connection) -> InstanceRow | None:
            row = conn.execute(
                "SELECT id, status, params, created, started, ended, output, error FROM instances WHERE id = ?",
                (instance_id,),
            ).fetchone()
            return InstanceRow(*row) if row else None

        return await self.store.run(op)

    async def live_instances(self) -> list[InstanceRow]:
        marks = ",".join("?" for _ in LIVE_STATUSES)

        def op(conn: sqlite3.Connection) -> list[InstanceRow]:
            rows = conn.execute(
                "SELECT id, status, params, created, started, ended, output, error FROM instances "
                f"WHERE status IN ({marks}) ORDER BY seq",
                LIVE_STATUSES,
            ).fetchall()
            return [InstanceRow(*r) for r in rows]

        return await self.store.run(op)

    async def set_status(
        self,
        instance_id: str,
        status: str,
        *,
        started: float | None = None,
        ended: float | None = None,
        output: str | None = None,
        error: str | None = None,
        clear_result: bool = False,
    ) -> None:
        def op(conn: sqlite3.Connection) -> None:
            with transaction(conn):
                conn.execute("UPDATE instances SET status = ? WHERE id = ?", (status, instance_id))
                if started is not None:
                    conn.execute("UPDATE instances SET started = ? WHERE id = ?", (started, instance_id))
                if ended is not None or clear_result:
                    conn.execute(
                        "UPDATE instances SET ended = ?, output = ?, error = ? WHERE id = ?",
                        (ended, output, error, instance_id),
                    )

        await self.store.run(op)

    async def reset_instance(self, instance_id: str) -> None:
        """``restart``: forget every step and consumed event; the instance is queued again."""

        def op(conn: sqlite3.Connection) -> None:
            with transaction(conn):
                conn.execute("DELETE FROM steps WHERE instance_id = ?", (instance_id,))
                conn.execute("UPDATE events SET consumed_by = NULL WHERE instance_id = ?", (instance_id,))
                conn.execute(
                    "UPDATE instances SET status = 'queued', started = NULL, ended = NULL, output = NULL, "
                    "error = NULL WHERE id = ?",
                    (instance_id,),
                )

        await self.store.run(op)

    async def steps(self, instance_id: str) -> dict[str, StepRow]:
        def op(conn: sqlite3.Connection) -> dict[str, StepRow]:
            rows = conn.execute(
                "SELECT key, state, value, error, attempts, wake_at FROM steps WHERE instance_id = ? ORDER BY ordinal",
                (instance_id,),
            ).fetchall()
            return {r[0]: StepRow(*r) for r in rows}

        return await self.store.run(op)

    async def put_step(
        self,
        instance_id: str,
        key: str,
        state: str,
        *,
        value: str | None = None,
        error: str | None = None,
        attempts: int = 0,
        wake_at: float | None = None,
    ) -> None:
        def op(conn: sqlite3.Connection) -> None:
            with transaction(conn):
                ordinal = conn.execute(
                    "SELECT ordinal FROM steps WHERE instance_id = ? AND key = ?", (instance_id, key)
                ).fetchone()
                if ordinal is None:
                    ordinal = conn.execute(
                        "SELECT COALESCE(MAX(ordinal), 0) + 1 FROM steps WHERE instance_id = ?", (instance_id,)
                    ).fetchone()
                conn.execute(
                    "INSERT OR REPLACE INTO steps (instance_id, key, state, value, error, attempts, wake_at, ordinal) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (instance_id, key, state, value, error, attempts, wake_at, ordinal[0]),
                )

        await self.store.run(op)

    async def add_event(self, instance_id: str, event_type: str, payload: str, timestamp: float) -> None:
        def op(conn: sqlite3.Connection) -> None:
            with transaction(conn):
                conn.execute(
                    "INSERT INTO events (instance_id, type, payload, timestamp) VALUES (?, ?, ?, ?)",
                    (instance_id, event_type, payload, timestamp),
                )

        await self.store.run(op)

    async def consume_event(self, instance_id: str, event_type: str, step_key: str) -> str | None:
        """Take the oldest unconsumed event of ``event_type`` and record it as ``step_key``'s result.

        One transaction: the event is never both consumed and lost, nor delivered twice. Returns
        the step's stored value (``{"payload", "timestamp", "type"}`` as codec JSON) or ``None``.
        """

        def op(conn: sqlite3.Connection) -> str | None:
            with transaction(conn):
                row = conn.execute(
                    "SELECT seq, payload, timestamp FROM events WHERE instance_id = ? AND type = ? "
                    "AND consumed_by IS NULL ORDER BY seq LIMIT 1",
                    (instance_id, event_type),
                ).fetchone()
                if row is None:
                    return None
                conn.execute("UPDATE events SET consumed_by = ? WHERE seq = ?", (step_key, row[0]))
                value = (
                    f'{{"payload":{row[1]},"timestamp":{{"$date":{float(row[2])!r}}},"type":{json.dumps(event_type)}}}'
                )
                conn.execute(
                    "UPDATE steps SET state = 'done', value = ? WHERE instance_id = ? AND key = ?",
                    (value, instance_id, step_key),
                )
                return value

        return await self.store.run(op)
