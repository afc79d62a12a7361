"""Cost of testing a worker in process with ``flarelet.testing.Worker``, next to HTTP to ``flarelet dev``.

    .venv/bin/python bench/harness_bench.py [--requests 2000] [--builds 30]

Rows (median over the runs, one worker at a time, sequential awaited calls):

* ``Worker setup + teardown``: ``Worker.from_config`` + ``start`` + ``aclose`` of examples/hello
  -- what the ``worker`` fixture adds to each test;
* ``worker.fetch(...)``: in-process requests through ``WorkerHost.serve``: ``/`` (whose 50 ms
  ``waitUntil`` work ``fetch`` waits for), a static asset, and a worker route with no ``waitUntil``;
* ``httpx GET`` of the same asset and route from a real ``flarelet dev`` on loopback (keep-alive);
* ``FakeAi.run`` (classic, the 18 s sample, audio decoded) vs ``decode_audio=False``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
HELLO = REPO / "examples" / "hello"
SAMPLE = REPO / "examples" / "whisper" / "public" / "enrollment_audio_katie.wav"


async def per_call(n: int, call) -> float:
    """Mean milliseconds per awaited call over ``n`` sequential calls."""
    started = time.perf_counter()
    for _ in range(n):
        await call()
    return (time.perf_counter() - started) * 1000 / n


async def bench_worker(requests: int, builds: int) -> list[tuple[str, float]]:
    from flarelet.testing import Worker

    setup = []
    for _ in range(builds):
        t0 = time.perf_counter()
        worker = Worker.from_config(HELLO)
        await worker.start()
        await worker.aclose()
        setup.append((time.perf_counter() - t0) * 1000)
    rows = [("Worker setup + teardown (examples/hello)", statistics.median(setup))]
    async with Worker.from_config(HELLO) as worker:
        await per_call(100, lambda: worker.fetch("/"))  # warm-up
        rows.append(
            (
                'worker.fetch("/") (waits for waitUntil: 50 ms sleep in hello)',
                await per_call(min(requests, 100), lambda: worker.fetch("/")),
            )
        )
        rows.append(
            ('worker.fetch("/hello.txt") (asset)', await per_call(requests, lambda: worker.fetch("/hello.txt")))
        )
        rows.append(
            ('worker.fetch("/ticks") (worker, no waitUntil)', await per_call(requests, lambda: worker.fetch("/ticks")))
        )
    return rows


async def bench_http(requests: int) -> list[tuple[str, float]]:
    import httpx

    script = Path(sys.executable).with_name("flarelet")
    proc = subprocess.Popen(
        [str(script), "dev", str(HELLO), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        env={**os.environ, "NO_COLOR": "1", "COLUMNS": "200"},
    )
    try:
        assert proc.stdout is not None
        url = ""
        for line in proc.stdout:
            match = re.search(r"Ready on (http://\S+)", line)
            if match:
                url = match.group(1)
                break
        if not url:
            raise RuntimeError("flarelet dev did not start")
        subprocess.Popen(["cat"], stdin=proc.stdout, stdout=subprocess.DEVNULL)  # keep draining its log
        async with httpx.AsyncClient(base_url=url) as client:
            await per_call(100, lambda: client.get("/ticks"))
            return [
                (
                    "httpx GET /hello.txt to flarelet dev (asset)",
                    await per_call(requests, lambda: client.get("/hello.txt")),
                ),
                ("httpx GET /ticks to flarelet dev (worker)", await per_call(requests, lambda: client.get("/ticks"))),
            ]
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(10)


async def bench_fake_ai(calls: int) -> list[tuple[str, float]]:
    from flarelet.bindings.ai.fake import FakeAi

    audio = {"audio": list(SAMPLE.read_bytes())}
    decoded, raw = FakeAi(), FakeAi(decode_audio=False)
    await decoded.run("@cf/openai/whisper", audio)
    return [
        (
            "FakeAi.run (18 s WAV as a byte list, decoded)",
            await per_call(calls, lambda: decoded.run("@cf/openai/whisper", audio)),
        ),
        ("FakeAi.run (same, decode_audio=False)", await per_call(calls, lambda: raw.run("@cf/openai/whisper", audio))),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--builds", type=int, default=30)
    args = parser.parse_args()
    rows = asyncio.run(bench_worker(args.requests, args.builds))
    rows += asyncio.run(bench_http(args.requests))
    rows += asyncio.run(bench_fake_ai(20))
    table = Table(title=f"In-process worker harness (sequential calls; {args.requests} requests, {args.builds} builds)")
    table.add_column("operation")
    table.add_column("ms per call", justify="right")
    for name, ms in rows:
        table.add_row(name, f"{ms:.3f}")
    Console().print(table)


if __name__ == "__main__":
    main()
