"""A process killed with SIGKILL while writing loses no acknowledged write and corrupts nothing."""

from __future__ import annotations

import hashlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flarelet.bindings.d1 import D1Database, d1_database_path
from flarelet.bindings.kv import KVNamespace, kv_database_path
from flarelet.bindings.r2 import R2Bucket, r2_database_path

WRITER = Path(__file__).with_name("_crash_writer.py")
ACKS_BEFORE_KILL = 150

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")


def run_and_kill(kind: str, root: Path) -> list[list[str]]:
    """Start the writer, let it acknowledge some writes, SIGKILL it mid-stream; the acks."""
    proc = subprocess.Popen(
        [sys.executable, str(WRITER), kind, str(root)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    acks: list[list[str]] = []
    deadline = time.monotonic() + 60
    try:
        assert proc.stdout is not None
        while len(acks) < ACKS_BEFORE_KILL and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            acks.append(line.split())
        os.kill(proc.pid, signal.SIGKILL)  # while it is in the middle of the next write
        # whatever it acknowledged before dying counts too
        rest, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    acks += [line.split() for line in rest.splitlines() if line.strip()]
    assert proc.returncode == -signal.SIGKILL, err
    assert len(acks) >= 20, f"writer acknowledged too little before the kill: {err}"
    return acks


def integrity_ok(path: Path) -> None:
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        conn.close()


@pytest.mark.slow  # a subprocess or timed wait: kept out of the fast subset
async def test_kv_survives_sigkill(tmp_path: Path) -> None:
    acks = run_and_kill("kv", tmp_path)
    integrity_ok(kv_database_path(tmp_path, "crash"))
    ns = KVNamespace.open(tmp_path, "crash")
    for (i,) in acks:
        n = int(i)
        result = await ns.getWithMetadata(f"key-{n:06d}")
        assert result.value == f"value-{n}-" + "x" * (n % 4096), n
        assert result.metadata == {"i": n}
    await ns.aclose()


@pytest.mark.slow  # a subprocess or timed wait: kept out of the fast subset
async def test_d1_survives_sigkill(tmp_path: Path) -> None:
    acks = run_and_kill("d1", tmp_path)
    integrity_ok(d1_database_path(tmp_path, "crash"))
    db = D1Database.open(tmp_path, "crash")
    ids = {row[0] for row in await db.prepare("SELECT id FROM t").raw()}
    for (i,) in acks:
        assert {2 * int(i), 2 * int(i) + 1} <= ids
    # batches are atomic: no half-written pair
    odd = await db.prepare("SELECT pair FROM t GROUP BY pair HAVING count(*) != 2").raw()
    assert odd == []
    await db.aclose()


@pytest.mark.slow  # a subprocess or timed wait: kept out of the fast subset
async def test_r2_survives_sigkill(tmp_path: Path) -> None:
    acks = run_and_kill("r2", tmp_path)
    integrity_ok(r2_database_path(tmp_path, "crash"))
    bucket = R2Bucket.open(tmp_path, "crash")
    for i, md5 in acks:
        obj = await bucket.get(f"objects/{int(i):06d}")
        assert obj is not None and obj.etag == md5
        assert hashlib.md5(await obj.arrayBuffer()).hexdigest() == md5
    # every listed object has a complete body (nothing half-written is visible)
    listing = await bucket.list()
    for obj in listing.objects:
        body = await (await bucket.get(obj.key)).arrayBuffer()
        assert len(body) == obj.size and hashlib.md5(body).hexdigest() == obj.etag
    await bucket.aclose()
