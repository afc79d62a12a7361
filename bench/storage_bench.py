"""Throughput of the storage bindings: KV, D1, R2, in memory and on disk (synchronous FULL vs NORMAL).

    .venv/bin/python bench/storage_bench.py [--ops 500] [--value-bytes 1024]

Prints one table row per (binding, operation, backend): sequential awaited operations per second
and mean latency, as a Worker doing one call after another sees them. Disk numbers depend on the
disk's fsync cost; ``FULL`` pays one fsync per acknowledged write, ``NORMAL`` none (WAL).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from rich.console import Console
from rich.table import Table

from flarelet.bindings.d1 import D1Database
from flarelet.bindings.kv import KVNamespace
from flarelet.bindings.r2 import R2Bucket


async def timed(ops: int, make: Callable[[int], Awaitable[object]]) -> tuple[float, float]:
    latencies = []
    started = time.perf_counter()
    for i in range(ops):
        t0 = time.perf_counter()
        await make(i)
        latencies.append(time.perf_counter() - t0)
    total = time.perf_counter() - started
    return ops / total, statistics.mean(latencies) * 1000


async def run(ops: int, value_bytes: int) -> list[tuple[str, str, str, float, float]]:
    value = os.urandom(value_bytes)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        backends = [
            ("memory", None, None),
            ("disk FULL", Path(tmp) / "full", "FULL"),
            ("disk NORMAL", Path(tmp) / "normal", "NORMAL"),
        ]
        for label, root, sync in backends:
            kv = KVNamespace.in_memory() if root is None else KVNamespace.open(root, "bench", synchronous=sync)
            rows.append(("KV", "put", label, *await timed(ops, lambda i: kv.put(f"k{i}", value))))
            rows.append(("KV", "get", label, *await timed(ops, lambda i: kv.get(f"k{i}", "arrayBuffer"))))
            await kv.aclose()

            db = D1Database.in_memory() if root is None else D1Database.open(root, "bench", synchronous=sync)
            await db.exec("CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB);")
            insert = db.prepare("INSERT INTO t (id, v) VALUES (?, ?)")
            select = db.prepare("SELECT v FROM t WHERE id = ?")
            rows.append(("D1", "insert", label, *await timed(ops, lambda i: insert.bind(i, value).run())))
            rows.append(("D1", "select", label, *await timed(ops, lambda i: select.bind(i).first())))
            await db.aclose()

            r2 = R2Bucket.in_memory() if root is None else R2Bucket.open(root, "bench", synchronous=sync)
            rows.append(("R2", "put", label, *await timed(ops, lambda i: r2.put(f"o{i}", value))))

            async def get(i: int) -> bytes:
                return await (await r2.get(f"o{i}")).arrayBuffer()

            rows.append(("R2", "get", label, *await timed(ops, get)))
            await r2.aclose()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ops", type=int, default=500)
    parser.add_argument("--value-bytes", type=int, default=1024)
    args = parser.parse_args()
    rows = asyncio.run(run(args.ops, args.value_bytes))
    table = Table(title=f"storage bindings, {args.ops} sequential ops, {args.value_bytes}-byte values")
    for column in ("binding", "op", "backend", "ops/s", "mean ms"):
        table.add_column(column, justify="right" if column in ("ops/s", "mean ms") else "left")
    for binding, op, backend, rate, mean_ms in rows:
        table.add_row(binding, op, backend, f"{rate:,.0f}", f"{mean_ms:.3f}")
    Console().print(table)


if __name__ == "__main__":
    main()
