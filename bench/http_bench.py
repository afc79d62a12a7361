#!/usr/bin/env python3
"""HTTP throughput, latency and cold start of ``flarelet dev``, next to Cloudflare's local simulators.

Method (the one the recorded peer figures below were taken with, so the numbers compare):

* cold start: exec ``flarelet dev`` -> first ``GET /`` answered 200, median of 5 launches
  (polled every 20 ms with a raw socket; the peer polled every 50 ms with curl);
* one fresh server, 3 s warm-up at c=16, then for ``/`` (hello world) and ``POST /json`` (the 72-byte
  body.json, parsed and re-serialised) at concurrency 1, 16 and 64::

      h2load --h1 -t1 -c$C -D $DURATION [-d body.json -H content-type:application/json] --log-file=F URL

  req/s from h2load's summary, p50/p99 from its per-request log (raw, no coordinated-omission
  correction; quantile = sorted[min(n-1, int(n*q))] as the peer's pct.py), server CPU per request
  from /proc (utime+stime of the server process and its children during the run).

The Miniflare and ``wrangler dev`` columns are medians recorded earlier with this method on the same
kind of 2-core VM (Miniflare 4.20260426.0 serving the same two routes from a JavaScript worker) --
recorded, not re-run. ``--peer-dir DIR`` runs Miniflare here too, in the same session, for a
side-by-side check: DIR holds ``miniflare`` installed from npm
(``npm install --no-save miniflare@4.20260426.0``; node 20 needs this version) and an ``mf.mjs`` that
serves the same routes with Miniflare's API on the port given as its first argument.

Usage::

    .venv/bin/python bench/http_bench.py                 # 10 s per cell, as the peer measurements
    .venv/bin/python bench/http_bench.py -D 5 --runs 3   # shorter cells, median of 3 runs
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
WORKER = REPO / "bench" / "http_worker"
BODY = WORKER / "body.json"
ROUTES = ("/", "/json")
CONCURRENCY = (1, 16, 64)

#: recorded peer figures (method above), medians of 3 runs (req/s, p50 ms, p99 ms, server CPU µs/req); cold start s
RECORDED = {
    "miniflare": {
        ("/", 1): (4788, 0.157, 0.36, 188),
        ("/", 16): (5085, 2.212, 25.41, 187),
        ("/", 64): (4981, 10.523, 71.40, 203),
        ("/json", 1): (4079, 0.183, 0.33, 220),
        ("/json", 16): (4626, 2.752, 26.39, 209),
        ("/json", 64): (3968, 3.328, 155.99, 235),
        "cold_start_s": 0.98,
    },
    "wrangler dev": {
        ("/", 1): (577, 1.586, 7.35, 1779),
        ("/", 16): (794, 14.353, 81.41, 1296),
        ("/", 64): (790, 87.008, 276.64, 1264),
        ("/json", 1): (575, 1.582, 3.01, 1797),
        ("/json", 16): (779, 17.921, 93.21, 1256),
        ("/json", 64): (864, 65.037, 191.94, 1265),
        "cold_start_s": 1.85,
    },
}


@dataclass
class Cell:
    route: str
    conc: int
    rps: float
    p50_ms: float
    p99_ms: float
    cpu_us: float
    non2xx: int
    n: int


@dataclass
class Result:
    target: str
    cold_starts: list[float] = field(default_factory=list)
    cells: list[Cell] = field(default_factory=list)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http_ok(port: int) -> bool:
    """One raw ``GET /``; True on a 200."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            return sock.recv(16).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


def launch(cmd: list[str], port: int, cwd: Path, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], float]:
    """Start ``cmd``; return it and seconds from exec to the first 200."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        cmd,
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = start + 60
    while time.perf_counter() < deadline:
        if http_ok(port):
            return proc, time.perf_counter() - start
        if proc.poll() is not None:
            raise RuntimeError(f"{cmd[0]} exited with {proc.returncode} before serving")
        time.sleep(0.02)
    stop(proc)
    raise RuntimeError("no 200 within 60 s")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def tree_cpu_seconds(pid: int) -> float:
    """utime+stime of ``pid`` and its descendants."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    children: dict[int, list[int]] = {}
    stats: dict[int, list[str]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            raw = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = raw[raw.rindex(")") + 2 :].split()
        stats[int(entry)] = fields
        children.setdefault(int(fields[1]), []).append(int(entry))
    todo = [pid]
    while todo:
        current = todo.pop()
        if current in stats:
            total += (int(stats[current][11]) + int(stats[current][12])) / ticks
        todo.extend(children.get(current, []))
    return total


def percentiles(log_file: Path) -> tuple[int, int, float, float]:
    lat: list[float] = []
    bad = 0
    for line in log_file.read_text().splitlines():
        parts = line.split("\t")
        if len(parts) < 3:
            continue
        if parts[1] != "200":
            bad += 1
        lat.append(int(parts[2]) / 1000.0)
    lat.sort()
    n = len(lat)
    q = lambda f: round(lat[min(n - 1, int(n * f))], 3) if n else float("nan")  # noqa: E731 - pct.py's formula
    return n, bad, q(0.5), q(0.99)


def h2load(port: int, route: str, conc: int, duration: int, pid: int, workdir: Path) -> Cell:
    log_file = workdir / f"h2_{route.strip('/') or 'root'}_c{conc}.log"
    cmd = ["h2load", "--h1", "-t1", f"-c{conc}", "-D", str(duration)]
    if route == "/json":
        cmd += ["-d", str(BODY), "-H", "content-type:application/json"]
    cmd += [f"--log-file={log_file}", f"http://127.0.0.1:{port}{route}"]
    before = tree_cpu_seconds(pid)
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    after = tree_cpu_seconds(pid)
    m = re.search(r"finished in [0-9.]+s, ([0-9.]+) req/s", out)
    rps = float(m.group(1)) if m else float("nan")
    n, bad, p50, p99 = percentiles(log_file)
    log_file.unlink(missing_ok=True)
    return Cell(route, conc, rps, p50, p99, (after - before) * 1e6 / max(n, 1), bad, n)


def measure(
    target: str, cmd: list[str], port: int, cwd: Path, env: dict[str, str], args: argparse.Namespace, workdir: Path
) -> Result:
    result = Result(target)
    for _ in range(args.cold_starts):
        proc, seconds = launch(cmd, port, cwd, env)
        result.cold_starts.append(seconds)
        stop(proc)
        time.sleep(0.3)
    proc, _ = launch(cmd, port, cwd, env)
    try:
        subprocess.run(
            ["h2load", "--h1", "-t1", "-c16", "-D", "3", f"http://127.0.0.1:{port}/"], capture_output=True, check=True
        )
        for route in ROUTES:
            for conc in args.concurrency:
                result.cells.append(h2load(port, route, conc, args.duration, proc.pid, workdir))
                print(f"  {target} {route} c={conc}: {result.cells[-1].rps:.0f} req/s", file=sys.stderr, flush=True)
                time.sleep(1)
    finally:
        stop(proc)
    return result


def flarelet_target(port: int) -> tuple[list[str], Path, dict[str, str]]:
    exe = Path(sys.executable).with_name("flarelet")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "flarelet"]
    cmd += ["dev", str(WORKER), "--port", str(port), "--log-level", "warn", "--no-watch", "--no-crons"]
    return cmd, REPO, dict(os.environ, HF_HUB_OFFLINE="1")


def miniflare_target(peer_dir: Path, port: int) -> tuple[list[str], Path, dict[str, str]]:
    if not (peer_dir / "node_modules" / "miniflare").is_dir():
        raise SystemExit(
            f"--peer-dir {peer_dir}: install Miniflare there first (npm install --no-save miniflare@4.20260426.0)"
        )
    return ["node", "mf.mjs"], peer_dir, dict(os.environ, SERVE="1", PORT=str(port), WRANGLER_SEND_METRICS="false")


def median_cells(runs: list[Result]) -> Result:
    merged = Result(runs[0].target, cold_starts=[c for r in runs for c in r.cold_starts])
    for i, cell in enumerate(runs[0].cells):
        same = [r.cells[i] for r in runs]
        merged.cells.append(
            Cell(
                cell.route,
                cell.conc,
                statistics.median(c.rps for c in same),
                statistics.median(c.p50_ms for c in same),
                statistics.median(c.p99_ms for c in same),
                statistics.median(c.cpu_us for c in same),
                sum(c.non2xx for c in same),
                sum(c.n for c in same),
            )
        )
    return merged


def print_table(results: list[Result], args: argparse.Namespace) -> None:
    mf, wd = RECORDED["miniflare"], RECORDED["wrangler dev"]
    print()
    print(
        f"HTTP on 127.0.0.1, h2load --h1 -t1 -D {args.duration}, median of {args.runs} run(s); "
        f"{os.cpu_count()} CPUs, load average at start {args.load_start:.2f}, at end {os.getloadavg()[0]:.2f}"
    )
    header = [
        "target",
        "route",
        "conc",
        "req/s",
        "p50 ms",
        "p99 ms",
        "CPU µs/req",
        "non-200",
        "MF req/s*",
        "MF p50*",
        "MF p99*",
        "MF CPU*",
        "wd req/s*",
        "wd p99*",
    ]
    rows = []
    for res in results:
        for c in res.cells:
            m = mf.get((c.route, c.conc))
            w = wd.get((c.route, c.conc))
            rows.append(
                [
                    res.target,
                    c.route,
                    str(c.conc),
                    f"{c.rps:,.0f}",
                    f"{c.p50_ms:.3f}",
                    f"{c.p99_ms:.2f}",
                    f"{c.cpu_us:.0f}",
                    str(c.non2xx),
                    *([f"{m[0]:,}", f"{m[1]:.3f}", f"{m[2]:.2f}", f"{m[3]}"] if m else [""] * 4),
                    *([f"{w[0]:,}", f"{w[2]:.2f}"] if w else [""] * 2),
                ]
            )
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    print("| " + " | ".join(h.ljust(widths[i]) for i, h in enumerate(header)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in rows:
        print("| " + " | ".join(v.ljust(widths[i]) for i, v in enumerate(r)) + " |")
    print(
        "* recorded, not re-run: Miniflare (MF) and wrangler dev (wd) medians of 3 runs from "
        "an earlier session, same h2load method, same kind of 2-core VM (idle then)."
    )
    print("  CPU µs/req = server process CPU time / requests: the figure least disturbed by other load on the box.")
    print()
    for res in results:
        cs = sorted(res.cold_starts)
        print(
            f"cold start {res.target}: median {statistics.median(cs):.3f} s  (exec -> first 200; all: "
            + ", ".join(f"{c:.3f}" for c in res.cold_starts)
            + ")"
        )
    print(
        f"cold start recorded: Miniflare {mf['cold_start_s']} s, wrangler dev {wd['cold_start_s']} s "
        "(recorded earlier, polled every 50 ms)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "-D", "--duration", type=int, default=10, help="seconds per h2load cell (default 10, as the peers)"
    )
    parser.add_argument("--runs", type=int, default=1, help="repeat the whole sequence and report medians (peers: 3)")
    parser.add_argument("--cold-starts", type=int, default=5, help="launches for the cold-start median (default 5)")
    parser.add_argument("-c", "--concurrency", type=int, nargs="+", default=list(CONCURRENCY))
    parser.add_argument(
        "--peer-dir",
        type=Path,
        help="a folder with miniflare from npm and mf.mjs (see the module docstring): run Miniflare too",
    )
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    args = parser.parse_args(argv)
    if shutil.which("h2load") is None:
        raise SystemExit("h2load is missing: apt-get install -y nghttp2-client")
    args.load_start = os.getloadavg()[0]

    targets = [("flarelet", flarelet_target)]
    if args.peer_dir:
        targets.append(("miniflare (here)", lambda port: miniflare_target(args.peer_dir.resolve(), port)))
    results = []
    with tempfile.TemporaryDirectory(prefix="flarelet-bench-") as tmp:
        for name, make in targets:
            runs = []
            for run in range(args.runs):
                port = free_port()
                cmd, cwd, env = make(port)
                print(f"{name}: run {run + 1}/{args.runs}", file=sys.stderr, flush=True)
                runs.append(measure(name, cmd, port, cwd, env, args, Path(tmp)))
            results.append(median_cells(runs))
    print_table(results, args)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps(
                [
                    {"target": r.target, "cold_starts": r.cold_starts, "cells": [c.__dict__ for c in r.cells]}
                    for r in results
                ],
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
