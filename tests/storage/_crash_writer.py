"""Writes to a storage binding in a loop, printing each write once it is acknowledged.

Run by ``test_crash_safety.py`` as a real process and killed with SIGKILL mid-stream:
``python _crash_writer.py {kv|d1|r2} <persist root>``. Each line printed is a promise that the
write is durable; the test reopens the store and checks every promise was kept.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import sys
from pathlib import Path

from flarelet.bindings.d1 import D1Database
from flarelet.bindings.kv import KVNamespace
from flarelet.bindings.r2 import R2Bucket


async def main(kind: str, root: Path) -> None:
    i = 0
    if kind == "kv":
        ns = KVNamespace.open(root, "crash")
        while True:
            value = f"value-{i}-" + "x" * (i % 4096)
            await ns.put(f"key-{i:06d}", value, metadata={"i": i})
            print(i, flush=True)
            i += 1
    elif kind == "d1":
        db = D1Database.open(root, "crash")
        await db.exec("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, pair INTEGER, payload TEXT);")
        insert = db.prepare("INSERT INTO t (id, pair, payload) VALUES (?, ?, ?)")
        while True:
            # two rows per batch: a batch is atomic, so rows always come in pairs
            await db.batch([insert.bind(2 * i, i, "a" * (i % 2000)), insert.bind(2 * i + 1, i, "b")])
            print(i, flush=True)
            i += 1
    elif kind == "r2":
        bucket = R2Bucket.open(root, "crash")
        while True:
            body = os.urandom(1024 + (i * 7919) % (256 * 1024))
            await bucket.put(f"objects/{i:06d}", body)
            print(i, hashlib.md5(body).hexdigest(), flush=True)
            i += 1
    else:
        raise SystemExit(f"unknown kind {kind}")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], Path(sys.argv[2])))
