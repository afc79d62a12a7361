"""Durable Object storage loses no acknowledged write across repeated SIGKILLs of a real writer."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flarelet.testing import Worker

from .conftest import PROJECT

WRITER = Path(__file__).with_name("_crash_writer.py")
ROUNDS = 3
ACKS_BEFORE_KILL = 120

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")


def run_and_kill(root: Path, start: int) -> list[tuple[str, int]]:
    proc = subprocess.Popen(
        [sys.executable, str(WRITER), str(root), str(start)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    acks: list[tuple[str, int]] = []
    deadline = time.monotonic() + 60
    try:
        assert proc.stdout is not None
        while len(acks) < ACKS_BEFORE_KILL and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            name, i = line.split()
            acks.append((name, int(i)))
        os.kill(proc.pid, signal.SIGKILL)
        rest, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    for line in rest.splitlines():
        if line.strip():
            name, i = line.split()
            acks.append((name, int(i)))
    assert proc.returncode == -signal.SIGKILL, err
    assert len(acks) >= 20, f"writer acknowledged too little before the kill: {err}"
    return acks


@pytest.mark.slow  # subprocesses and SIGKILL
async def test_durable_object_storage_keeps_every_acknowledged_write_across_sigkills(tmp_path: Path) -> None:
    acks: list[tuple[str, int]] = []
    for round_ in range(ROUNDS):
        acks += run_and_kill(tmp_path, round_ * 1_000_000)
    for path in (tmp_path / "v3" / "do" / "do-tests-Counter").glob("*.sqlite"):
        conn = sqlite3.connect(path)
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        # the SQL row and the key-value pair of one record() are committed together or not at all
        rows = {i for (i,) in conn.execute("SELECT i FROM log")}
        keys = {int(k[1:]) for (k,) in conn.execute("SELECT key FROM _cf_KV")}
        assert rows == keys
        conn.close()
    async with Worker.from_config(PROJECT, persist_to=tmp_path) as worker:
        by_object: dict[str, set[int]] = {}
        for name, i in acks:
            by_object.setdefault(name, set()).add(i)
        for name, numbers in by_object.items():
            stub = worker.durable_object("COUNTER", name)
            found = await stub.sql("SELECT i, payload FROM log")
            stored = {row["i"]: row["payload"] for row in found["rows"]}
            missing = numbers - set(stored)
            assert not missing, f"{name}: acknowledged but lost: {sorted(missing)[:10]}"
            for i in numbers:
                assert stored[i] == "p" * (i % 3000)
            storage = await worker.run_in_durable_object(stub, lambda obj, ctx: ctx.storage)
            for i in sorted(numbers)[:: max(1, len(numbers) // 20)]:
                assert await storage.get(f"k{i:08d}") == {"i": i, "payload": "p" * (i % 3000)}
