"""Fixtures for the storage bindings: each binding in memory and on disk."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from flarelet.bindings.d1 import D1Database
from flarelet.bindings.kv import KVNamespace
from flarelet.bindings.r2 import R2Bucket


class FakeClock:
    """A settable ``time.time`` for expiry tests."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=["memory", "disk"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Path | None:
    """``None`` for in-memory stores, else a persist root."""
    return None if request.param == "memory" else tmp_path / "state"


@pytest.fixture
async def kv(backend: Path | None, clock: FakeClock) -> AsyncIterator[KVNamespace]:
    ns = KVNamespace.in_memory("ns", clock=clock) if backend is None else KVNamespace.open(backend, "ns", clock=clock)
    yield ns
    await ns.aclose()


@pytest.fixture
async def d1(backend: Path | None) -> AsyncIterator[D1Database]:
    db = D1Database.in_memory("db") if backend is None else D1Database.open(backend, "db")
    yield db
    await db.aclose()


@pytest.fixture
async def r2(backend: Path | None) -> AsyncIterator[R2Bucket]:
    bucket = R2Bucket.in_memory("bucket") if backend is None else R2Bucket.open(backend, "bucket")
    yield bucket
    await bucket.aclose()


async def wait_until(predicate: Callable[[], Any], timeout: float = 10.0) -> None:
    """Poll ``predicate`` until true (a correctness wait, not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


@pytest.fixture
def until() -> Callable[..., Any]:
    """``await until(lambda: cond)``: wait for a condition (tests check outcomes, not timings)."""
    return wait_until
