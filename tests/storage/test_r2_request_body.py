"""``env.BUCKET.put(key, request.body)`` through a worker: R2 takes a stream only of known length."""

from __future__ import annotations

from pathlib import Path

import pytest

from flarelet.testing import Worker

WORKER = """
from workers import Response, WorkerEntrypoint


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        try:
            stored = await self.env.FILES.put("upload", request.body)
        except TypeError as exc:
            return Response(str(exc), status=400)
        return Response(str(stored.size))
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "entry.py").write_text(WORKER)
    (tmp_path / "wrangler.toml").write_text(
        'name = "body"\nmain = "src/entry.py"\ncompatibility_date = "2025-11-02"\n'
        'compatibility_flags = ["python_workers"]\n\n[[r2_buckets]]\nbinding = "FILES"\nbucket_name = "files"\n'
    )
    return tmp_path


async def chunks():
    yield b"abc"
    yield b"de"


async def test_request_body_with_a_length_can_be_put_as_on_cloudflare(project: Path) -> None:
    async with Worker.from_config(project) as worker:
        buffered = await worker.fetch("/", method="PUT", body=b"hello")
        assert (buffered.status, await buffered.text()) == (200, "5")
        streamed = await worker.fetch("/", method="PUT", body=chunks(), headers={"content-length": "5"})
        assert (streamed.status, await streamed.text()) == (200, "5")


async def test_chunked_request_body_is_refused_as_workerd_r2_needs_a_known_length(project: Path) -> None:
    async with Worker.from_config(project) as worker:
        response = await worker.fetch("/", method="PUT", body=chunks())
        assert response.status == 400
        assert (await response.text()).startswith("TypeError: Provided readable stream must have a known length")
        assert await worker.env.FILES.head("upload") is None
