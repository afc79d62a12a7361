"""Durable Objects and WebSockets, flarelet side by side with Miniflare (the same object in each).

    .venv/bin/python bench/durable_bench.py [--peer-dir DIR] [--repeat 3]

``--peer-dir`` is a folder with ``node_modules/miniflare`` (the peer kit's ``npm install``;
default ``$FLARELET_PEER_DIR``); without one only flarelet is measured. Both servers run the object
of ``bench/durable_peer`` (``worker.mjs`` / ``python/src/entry.py``) with SQLite storage persisted to
a temporary folder, and are measured in turns (``--repeat`` rounds, medians):

- RPC calls/s: the worker awaits ``stub.inc()`` ``--rpc`` times in a loop (timed inside the worker);
- SQL ops/s: one RPC running ``--sql`` INSERTs and ``--sql`` SELECTs (one implicit transaction);
- SQL write RPCs/s: ``--sqlrpc`` RPCs of one INSERT each (each waits for its commit: the output gate;
  flarelet fsyncs each commit by default, ``--normal`` adds a column with ``synchronous=NORMAL``, which
  still survives SIGKILL but not power loss);
- WebSocket msgs/s: ``--ws-clients`` clients (in ``--ws-procs`` client processes) connected to the object
  with the hibernation API, each sending ``--ws-messages`` messages and reading their echoes (round trips
  per second, all clients).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx
from websockets.asyncio.client import connect

HERE = Path(__file__).resolve().parent / "durable_peer"
REPO = HERE.parent.parent


@contextmanager
def flarelet_server(persist: Path, synchronous: str = "FULL") -> Iterator[tuple[str, int]]:
    exe = Path(sys.executable).with_name("flarelet")
    cmd = [str(exe), "dev", str(HERE / "python"), "--port", "0", "--persist-to", str(persist)]
    cmd += ["--log-level", "warn", "--no-watch"]
    env = dict(os.environ, FLARELET_SQLITE_SYNCHRONOUS=synchronous)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            found = re.search(r"Ready on (http://\S+)", line)
            if found:
                yield found.group(1), proc.pid
                break
        else:
            raise RuntimeError("flarelet dev did not start")
    finally:
        proc.terminate()
        proc.wait(10)


@contextmanager
def miniflare_server(peer_dir: Path, persist: Path) -> Iterator[tuple[str, int]]:
    work = Path(tempfile.mkdtemp(prefix="mf-bench-"))
    (work / "node_modules").symlink_to(peer_dir / "node_modules")
    shutil.copy(HERE / "mf_durable.mjs", work / "mf_durable.mjs")
    env = dict(os.environ, SCRIPT=str(HERE / "worker.mjs"), PERSIST=str(persist), PORT="0")
    proc = subprocess.Popen(["node", str(work / "mf_durable.mjs")], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith('{"url"'):
                yield json.loads(line)["url"].rstrip("/"), proc.pid
                break
        else:
            raise RuntimeError("miniflare did not start")
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(work, ignore_errors=True)


def timed_route(client: httpx.Client, base: str, route: str, n: int, obj: str, per: int) -> float:
    resp = client.get(f"{base}{route}?n={n}&o={obj}", timeout=300)
    resp.raise_for_status()
    return per * n / (resp.json()["ms"] / 1000)


async def _websocket_clients(url: str, clients: int, messages: int, start_at: float) -> tuple[int, float, float]:
    sockets = [await connect(url, max_queue=None, compression=None) for _ in range(clients)]
    payload = "x" * 64

    async def one(ws) -> None:
        async def reader() -> None:
            for _ in range(messages):
                await ws.recv()

        task = asyncio.ensure_future(reader())
        for _ in range(messages):
            await ws.send(payload)
        await task

    await asyncio.sleep(max(0.0, start_at - time.time()))  # every process starts sending together
    started = time.time()
    await asyncio.gather(*(one(ws) for ws in sockets))
    ended = time.time()
    await asyncio.gather(*(ws.close() for ws in sockets))
    return clients * messages, started, ended


def _client_process(url: str, clients: int, messages: int, start_at: float) -> tuple[int, float, float]:
    return asyncio.run(_websocket_clients(url, clients, messages, start_at))


def websocket_rate(base: str, clients: int, messages: int, procs: int, obj: str) -> float:
    """Echo round trips per second over ``clients`` sockets driven by ``procs`` client processes
    (one Python client process saturates before either server does)."""
    url = base.replace("http://", "ws://") + f"/ws?o={obj}"
    start_at = time.time() + 1.0 + 0.05 * clients
    with ProcessPoolExecutor(procs) as pool:
        futures = [pool.submit(_client_process, url, clients // procs, messages, start_at) for _ in range(procs)]
        results = [f.result() for f in futures]
    total = sum(r[0] for r in results)
    return total / (max(r[2] for r in results) - min(r[1] for r in results))


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of a server process and its children (Miniflare runs workerd)."""
    import psutil

    total = 0.0
    root = psutil.Process(pid)
    for proc in [root, *root.children(recursive=True)]:
        try:
            times = proc.cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
    return total


def measure(base: str, pid: int, args: argparse.Namespace, round_: int) -> dict[str, tuple[float, float]]:
    """metric -> (operations per second, server CPU microseconds per operation)."""
    results: dict[str, tuple[float, float]] = {}

    def run(metric: str, ops: int, fn) -> None:  # noqa: ANN001
        cpu0 = cpu_seconds(pid)
        rate = fn()
        results[metric] = (rate, (cpu_seconds(pid) - cpu0) / ops * 1e6)

    with httpx.Client() as client:
        timed_route(client, base, "/rpc", 50, f"warm{round_}", 1)  # warm up: object, code paths
        run("RPC calls/s", args.rpc, lambda: timed_route(client, base, "/rpc", args.rpc, f"rpc{round_}", 1))
        run("SQL ops/s (one RPC)", 2 * args.sql, lambda: timed_route(client, base, "/sql", args.sql, f"sql{round_}", 2))
        run(
            "SQL write RPCs/s",
            args.sqlrpc,
            lambda: timed_route(client, base, "/sqlrpc", args.sqlrpc, f"sqlrpc{round_}", 1),
        )
    run(
        "WebSocket msgs/s",
        args.ws_clients * args.ws_messages,
        lambda: websocket_rate(base, args.ws_clients, args.ws_messages, args.ws_procs, f"ws{round_}"),
    )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--peer-dir", type=Path, default=os.environ.get("FLARELET_PEER_DIR"))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--rpc", type=int, default=5000)
    parser.add_argument("--sql", type=int, default=5000)
    parser.add_argument("--sqlrpc", type=int, default=500)
    parser.add_argument("--ws-clients", type=int, default=8)
    parser.add_argument("--ws-messages", type=int, default=2000)
    parser.add_argument("--ws-procs", type=int, default=2, help="client processes driving the sockets")
    parser.add_argument(
        "--normal", action="store_true", help="also measure flarelet with FLARELET_SQLITE_SYNCHRONOUS=NORMAL"
    )
    args = parser.parse_args()
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    results: dict[str, dict[str, list[float]]] = {}
    cpu: dict[str, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        servers = {"flarelet": lambda: flarelet_server(Path(tmp) / "flarelet")}
        if args.normal:
            servers["flarelet NORMAL"] = lambda: flarelet_server(Path(tmp) / "flarelet-normal", "NORMAL")
        if args.peer_dir and (Path(args.peer_dir) / "node_modules" / "miniflare").is_dir():
            servers["miniflare"] = lambda: miniflare_server(Path(args.peer_dir).resolve(), Path(tmp) / "miniflare")
        else:
            print("no --peer-dir with node_modules/miniflare: measuring flarelet only")
        for round_ in range(args.repeat):
            order = list(servers.items())
            shift = round_ % len(order)  # each server goes first in turn: the load of the machine drifts
            for name, start in order[shift:] + order[:shift]:
                with start() as (base, pid):
                    for metric, (rate, micros) in measure(base, pid, args, round_).items():
                        results.setdefault(metric, {}).setdefault(name, []).append(rate)
                        cpu.setdefault(metric, {}).setdefault(name, []).append(micros)
    names = list(next(iter(results.values())))
    header = "| metric | " + " | ".join(names) + (" | flarelet / miniflare |" if "miniflare" in names else " |")
    print(header)
    print("|" + "---|" * (len(names) + 1 + ("miniflare" in names)))
    for metric, by_server in results.items():
        medians = {n: statistics.median(v) for n, v in by_server.items()}
        cells = " | ".join(f"{medians[n]:,.0f} ({max(by_server[n]):,.0f})" for n in names)
        ratio = f" | {medians['flarelet'] / medians['miniflare']:.2f}x |" if "miniflare" in medians else " |"
        print(f"| {metric} | {cells}{ratio}")
    print("\nserver CPU per operation (µs, user + system of the server's processes; lower is better):")
    print("| metric | " + " | ".join(names) + " |")
    print("|" + "---|" * (len(names) + 1))
    for metric, by_server in cpu.items():
        print(f"| {metric} | " + " | ".join(f"{statistics.median(by_server[n]):,.1f}" for n in names) + " |")
    print("rates: median of the rounds (best round in parentheses); the ratio compares medians")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(
        f"rounds: {args.repeat}; rpc={args.rpc} sql={args.sql} sqlrpc={args.sqlrpc} "
        f"ws={args.ws_clients}x{args.ws_messages} in {args.ws_procs} processes"
    )


if __name__ == "__main__":
    main()
