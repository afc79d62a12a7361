from pathlib import Path

import pytest

from flarelet.testing import Worker

PROJECT = Path(__file__).resolve().parent / "project"


@pytest.fixture
async def do_worker():
    async with Worker.from_config(PROJECT) as worker:
        yield worker


@pytest.fixture
async def persisted_worker(tmp_path):
    async with Worker.from_config(PROJECT, persist_to=tmp_path) as worker:
        yield worker
