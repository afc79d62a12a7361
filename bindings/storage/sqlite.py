"""One SQLite database per namespace/bucket/database, used off the event loop.

Why a dedicated thread per database: a committed write with ``synchronous=FULL`` waits for
``fsync`` (milliseconds on an SSD, much more on a busy disk), and a large read copies megabytes.
Doing that on the event loop would stall every other request of the dev server. Each store owns
one connection and one single-thread executor: calls are serialised (SQLite allows one writer
anyway), the connection never crosses threads while in use, and ``await store.run(fn)`` costs a
thread hop (~50 µs), noise next to the ``fsync``.

Durability: journal_mode=WAL, synchronous=FULL by default. In WAL mode ``NORMAL`` already
survives a killed *process* (committed frames are in the OS page cache), but can lose the last
transactions on power loss / OS crash; ``FULL`` fsyncs the WAL at every commit, so a write a
Worker saw acknowledged is on disk -- the promise Cloudflare's storage makes. The cost is one
fsync per write (see ``bench/storage_bench.py``); ``FLARELET_SQLITE_SYNCHRONOUS=NORMAL`` (or the
``sqlite_synchronous`` option) trades it away.

Stores are shared per file within a process (two bindings on one namespace, a reloaded worker,
the ``flarelet d1`` command), close on ``aclose`` and reopen lazily on the next call, so closing
never strands another user of the same file.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

SYNCHRONOUS_MODES = ("OFF", "NORMAL", "FULL", "EXTRA")
DEFAULT_SYNCHRONOUS = "FULL"
#: how long a writer waits for another process's write lock (the CLI next to a dev server)
BUSY_TIMEOUT_MS = 10_000


def synchronous_mode(option: str | None = None) -> str:
    """The ``PRAGMA synchronous`` level from an option, the environment, or the default."""
    mode = (option or os.environ.get("FLARELET_SQLITE_SYNCHRONOUS") or DEFAULT_SYNCHRONOUS).upper()
    if mode not in SYNCHRONOUS_MODES:
        raise ValueError(f"sqlite synchronous must be one of {', '.join(SYNCHRONOUS_MODES)}, not {mode!r}")
    return mode


def connect(
    path: Path | None, synchronous: str = DEFAULT_SYNCHRONOUS, *, cached_statements: int = 128
) -> sqlite3.Connection:
    """Open a connection in autocommit mode (transactions are explicit), WAL on disk."""
    target = ":memory:" if path is None else str(path)
    conn = sqlite3.connect(
        target,
        isolation_level=None,
        check_same_thread=False,
        timeout=BUSY_TIMEOUT_MS / 1000,
        cached_statements=cached_statements,
    )
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    if path is not None:
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":  # pragma: no cover - only on file systems without WAL support
            raise sqlite3.OperationalError(f"could not enable WAL on {path} (got {mode})")
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    return conn


@contextlib.contextmanager
def transaction(conn: sqlite3.Connection, mode: str = "IMMEDIATE") -> Iterator[sqlite3.Connection]:
    """``BEGIN <mode>`` ... ``COMMIT``, rolled back on any exception."""
    conn.execute(f"BEGIN {mode}")
    try:
        yield conn
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    else:
        conn.execute("COMMIT")


class SqliteStore:
    """A lazily opened SQLite database with its own worker thread."""

    def __init__(
        self,
        path: Path | None,
        setup: Callable[[sqlite3.Connection], None],
        *,
        synchronous: str = DEFAULT_SYNCHRONOUS,
        name: str = "store",
        cached_statements: int = 128,
    ) -> None:
        self.path = path
        self._cached_statements = cached_statements
        self._setup = setup
        self._synchronous = synchronous
        self._name = name
        self._conn: sqlite3.Connection | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    @property
    def in_memory(self) -> bool:
        return self.path is None

    def _executor_now(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"flarelet-{self._name}")
            return self._executor

    def _connection(self) -> sqlite3.Connection:
        # only ever called on the store's thread
        if self._conn is None:
            if self.path is not None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = connect(self.path, self._synchronous, cached_statements=self._cached_statements)
            try:
                self._setup(conn)
            except BaseException:
                conn.close()
                raise
            self._conn = conn
        return self._conn

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(connection)`` on the store's thread and await its result."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor_now(), lambda: fn(self._connection()))

    def run_sync(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Blocking variant for command-line tools (no event loop)."""
        return self._executor_now().submit(lambda: fn(self._connection())).result()

    def _close_conn(self) -> None:
        if self._conn is not None and self.path is not None:
            self._conn.close()
            self._conn = None

    def close(self) -> None:
        """Close the file (in-memory data is kept: it lives as long as the store object)."""
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.submit(self._close_conn).result()
            executor.shutdown(wait=True)

    async def aclose(self) -> None:
        await asyncio.to_thread(self.close)


_shared: dict[Path, SqliteStore] = {}
_shared_lock = threading.Lock()


def shared_store(
    path: Path | None,
    setup: Callable[[sqlite3.Connection], None],
    *,
    synchronous: str = DEFAULT_SYNCHRONOUS,
    name: str = "store",
    cached_statements: int = 128,
) -> SqliteStore:
    """The process-wide store for ``path`` (a fresh private one when ``path`` is ``None``)."""
    if path is None:
        return SqliteStore(None, setup, synchronous=synchronous, name=name, cached_statements=cached_statements)
    key = Path(path).resolve()
    with _shared_lock:
        store = _shared.get(key)
        if store is None:
            store = SqliteStore(key, setup, synchronous=synchronous, name=name, cached_statements=cached_statements)
            _shared[key] = store
        return store
