"""Writes to Durable Objects through RPC, printing each write once the call has returned.

Run by ``test_crash_safety.py`` as a real process and killed with SIGKILL mid-stream:
``python _crash_writer.py <persist root> <first number>``. Four objects are written concurrently
(so commits of different objects interleave); each printed line ``<object> <i>`` is a promise that
``record(i)`` (a SQL row and a key-value pair) is durable.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from flarelet.testing import Worker

PROJECT = Path(__file__).resolve().parent / "project"
OBJECTS = 4


async def writer(worker: Worker, name: str, start: int) -> None:
    stub = worker.durable_object("COUNTER", name)
    i = start
    while True:
        await stub.record(i, "p" * (i % 3000))
        print(name, i, flush=True)
        i += 1


async def main(root: Path, start: int) -> None:
    async with Worker.from_config(PROJECT, persist_to=root) as worker:
        await asyncio.gather(*(writer(worker, f"crash-{n}", start) for n in range(OBJECTS)))


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), int(sys.argv[2])))
