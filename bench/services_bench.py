"""Service-binding RPC, service fetches and Workflow instances: flarelet beside Miniflare.

    .venv/bin/python bench/services_bench.py [--calls 5000] [--fetches 2000] [--instances 100]
        [--miniflare-dir DIR]   # a folder whose node_modules holds miniflare (the peer kit's)

Both sides run the same two workers (``bench/services_workers``; the Miniflare side in JavaScript,
``bench/services_mf.mjs``): one request to worker ``a`` makes N sequential RPC calls
``env.B.add(i, 1)`` (or N ``env.B.fetch``) to worker ``b``; then ``a`` creates N Workflow instances
of three ``step.do`` each, persisted on disk, and the bench polls until all are complete. Each
figure is N divided by the wall time of the whole request or run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

from flarelet.testing import Worker

HERE = Path(__file__).parent / "services_workers"


async def flarelet_side(calls: int, fetches: int, instances: int, persist: Path) -> list[dict]:
    rows = []
    async with Worker.from_config(HERE / "a", workers=[HERE / "b"], persist_to=persist) as worker:
        await (await worker.fetch("/rpc?n=100")).text()

        async def timed(label: str, count: int, coro) -> None:
            t0 = time.perf_counter()
            await coro
            seconds = time.perf_counter() - t0
            rows.append(
                {
                    "engine": "flarelet",
                    "bench": label,
                    "count": count,
                    "seconds": round(seconds, 3),
                    "per_s": round(count / seconds, 1),
                }
            )

        async def rpc() -> None:
            await (await worker.fetch(f"/rpc?n={calls}")).text()

        async def fetch() -> None:
            await (await worker.fetch(f"/fetch?n={fetches}")).text()

        async def workflows() -> None:
            ids = await (await worker.fetch(f"/create?n={instances}")).json()
            for instance_id in ids:
                while True:
                    status = await (await worker.fetch(f"/status?id={instance_id}")).json()
                    if status["status"] == "complete":
                        break
                    if status["status"] == "errored":
                        raise RuntimeError(status)
                    await asyncio.sleep(0.005)

        await timed("rpc calls", calls, rpc())
        await timed("service fetches", fetches, fetch())
        await timed("workflow instances (3 steps)", instances, workflows())
    return rows


def miniflare_side(calls: int, fetches: int, instances: int, persist: Path, folder: str) -> list[dict]:
    out = subprocess.run(
        [
            "node",
            str(Path(__file__).with_name("services_mf.mjs")),
            str(calls),
            str(fetches),
            str(instances),
            str(persist),
        ],
        env={**os.environ, "MINIFLARE_DIR": folder},
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    return [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--fetches", type=int, default=2000)
    parser.add_argument("--instances", type=int, default=100)
    parser.add_argument("--miniflare-dir", default=os.environ.get("MINIFLARE_DIR"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rows = asyncio.run(flarelet_side(args.calls, args.fetches, args.instances, Path(tmp) / "flarelet"))
        if args.miniflare_dir:
            rows += miniflare_side(args.calls, args.fetches, args.instances, Path(tmp) / "mf", args.miniflare_dir)
    print(f"{'bench':32} {'engine':10} {'count':>6} {'seconds':>8} {'per s':>9}")
    for row in sorted(rows, key=lambda r: (r["bench"], r["engine"])):
        print(f"{row['bench']:32} {row['engine']:10} {row['count']:>6} {row['seconds']:>8} {row['per_s']:>9}")


if __name__ == "__main__":
    main()
