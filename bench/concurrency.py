#!/usr/bin/env python3
"""Many clients at once: ``flarelet ai serve`` under 1, 4 and 16 concurrent REST clients.

Each server configuration runs as its own ``flarelet ai serve`` process on a free loopback port
(``--preload`` the model, one warm-up request), then for each concurrency level the same
``--requests`` transcriptions (English clips from the shared audio, cycled) are sent by that many
client threads over HTTP, exactly as Cloudflare's REST API is called (``POST
/client/v4/accounts/{id}/ai/run/@cf/openai/whisper-tiny-en``, raw audio body). Printed per level:

* ``audio s/s`` -- seconds of audio transcribed per second of wall time (throughput);
* ``p50 s`` / ``p99 s`` -- request latency (quantile = sorted[min(n-1, int(n*q))]);
* ``errors`` -- non-200 answers, with their Cloudflare codes (3040 = queue full);
* ``peak RSS MB`` -- the server process's largest resident size during the level (sampled every
  50 ms);
* ``x 1-by-1`` -- throughput relative to the same server answering the same requests one at a
  time (concurrency 1).

Configurations are ``[flarelet.ai]`` settings passed as ``FLARELET_AI_*`` environment variables,
e.g. ``--config max_batch=1`` (no batching) or ``--config workers=2,max_batch=1`` (a pool of two
single-request workers). The default compares the shipped settings with batching switched off.

Usage::

    .venv/bin/python bench/concurrency.py
    .venv/bin/python bench/concurrency.py --levels 1,4,16 --requests 32 --config default --config workers=2
"""

from __future__ import annotations

import sys

# bench/ must not shadow standard-library modules for the child processes either.
if sys.path and sys.path[0] == __import__("os").path.dirname(__import__("os").path.abspath(__file__)):
    sys.path.pop(0)

import argparse
import json
import os
import re
import select
import statistics
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED_AUDIO = REPO / "tests" / "data" / "audio"
TOKEN = "flarelet-bench-token-0123456789"
ACCOUNT = "0123456789abcdef0123456789abcdef"
MODEL = "@cf/openai/whisper-tiny-en"
CLIPS = [
    "jfk.flac",
    "librispeech_1089-134686-0001.wav",
    "enrollment_audio_katie.wav",
    "librispeech_1221-135766-0002.wav",
    "picovoice_test_en.wav",
    "ljspeech_LJ001-0001.mp3",
    "katiesteve_mono.wav",
    "librispeech_1221-135766-0001.wav",
]


@dataclass
class Level:
    clients: int
    latencies: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    wall: float = 0.0
    audio_s: float = 0.0
    peak_rss_mb: float = 0.0


class Server:
    """``flarelet ai serve --port 0 --preload MODEL`` with extra ``FLARELET_AI_*`` settings."""

    def __init__(self, settings: dict[str, str], timeout: float = 600) -> None:
        flarelet = Path(sys.executable).with_name("flarelet")
        cmd = (
            [str(flarelet), "ai", "serve"]
            if flarelet.is_file()
            else [sys.executable, "-m", "flarelet.cli.ai_command", "serve"]
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLARELET_AI_")}
        env.update({"HF_HUB_OFFLINE": "1", **{f"FLARELET_AI_{k.upper()}": v for k, v in settings.items()}})
        self.proc = subprocess.Popen(
            [*cmd, "--port", "0", "--api-token", TOKEN, "--preload", MODEL, "--log-level", "warning"],
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        lines: list[str] = []
        deadline = time.monotonic() + timeout
        assert self.proc.stderr is not None
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.proc.stderr], [], [], 0.2)
            if ready:
                line = self.proc.stderr.readline()
                if not line:
                    break
                lines.append(line.rstrip("\n"))
                if "/client/v4" in line:  # the banner: the port is known; readiness is polled below
                    break
            elif self.proc.poll() is not None:
                break
        match = re.search(r"(http://[^ ]+/client/v4)", "\n".join(lines))
        if not match:
            self.proc.kill()
            raise RuntimeError("flarelet ai serve did not start:\n" + "\n".join(lines))
        self.base = match.group(1)
        threading.Thread(target=self._drain, daemon=True).start()
        self._wait_ready(deadline)

    def _drain(self) -> None:  # keep the pipe from filling up (warnings, access logs)
        assert self.proc.stderr is not None
        for _ in self.proc.stderr:
            pass

    def _wait_ready(self, deadline: float) -> None:
        import httpx

        while time.monotonic() < deadline:
            try:
                r = httpx.get(
                    f"{self.base}/accounts/{ACCOUNT}/ai/models/search",
                    headers={"Authorization": f"Bearer {TOKEN}"},
                    timeout=5,
                )
                if r.status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError("flarelet ai serve did not answer")

    def rss_mb(self) -> float:
        try:
            with open(f"/proc/{self.proc.pid}/statm") as fh:
                return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
        except OSError:
            return 0.0

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def run_level(server: Server, clips: list[tuple[str, bytes, float]], clients: int, requests: int) -> Level:
    import httpx

    level = Level(clients)
    url = f"{server.base}/accounts/{ACCOUNT}/ai/run/{MODEL}"
    lock = threading.Lock()
    counter = iter(range(requests))
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            level.peak_rss_mb = max(level.peak_rss_mb, server.rss_mb())
            stop.wait(0.05)

    def client() -> None:
        with httpx.Client(timeout=900, headers={"Authorization": f"Bearer {TOKEN}"}) as http:
            while True:
                with lock:
                    i = next(counter, None)
                if i is None:
                    return
                name, data, seconds = clips[i % len(clips)]
                started = time.perf_counter()
                try:
                    resp = http.post(url, content=data)
                    status = resp.status_code
                    code = str(resp.json()["errors"][0]["code"]) if status != 200 else ""
                except (httpx.HTTPError, ValueError, KeyError, IndexError) as exc:
                    status, code = 0, type(exc).__name__
                elapsed = time.perf_counter() - started
                with lock:
                    if status == 200:
                        level.latencies.append(elapsed)
                        level.audio_s += seconds
                    else:
                        key = f"{status} {code}".strip()
                        level.errors[key] = level.errors.get(key, 0) + 1

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    level.wall = time.perf_counter() - started
    stop.set()
    sampler.join()
    level.peak_rss_mb = max(level.peak_rss_mb, server.rss_mb())
    return level


def quantile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(len(s) * q))]


def load_clips(names: list[str] = CLIPS) -> list[tuple[str, bytes, float]]:
    sys.path.insert(0, str(REPO))
    from flarelet.bindings.ai.asr.audio import decode_audio

    out = []
    for name in names:
        path = SHARED_AUDIO / name
        if path.is_file():
            data = path.read_bytes()
            out.append((name, data, decode_audio(data).shape[0] / 16000))
    if not out:
        raise SystemExit(f"no clips found in {SHARED_AUDIO}")
    return out


def parse_config(text: str) -> dict[str, str]:
    if text in ("", "default"):
        return {}
    pairs = {}
    for item in text.split(","):
        key, _, value = item.partition("=")
        if not key or not value:
            raise SystemExit(f"--config: expected key=value[,key=value], got {text!r}")
        pairs[key.strip()] = value.strip()
    return pairs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--levels", default="1,4,16", help="comma-separated numbers of concurrent clients")
    parser.add_argument("--requests", type=int, default=16, help="transcriptions per level (default 16)")
    parser.add_argument(
        "--config",
        action="append",
        default=None,
        help="server settings, e.g. max_batch=1 or workers=2,max_batch=1 (repeatable; 'default' = as shipped)",
    )
    parser.add_argument(
        "--repeat", type=int, default=1, help="repeat the levels, interleaved with the other configs; medians are shown"
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the raw results here")
    parser.add_argument(
        "--clips",
        default=None,
        help="comma-separated file names from the shared audio (default: 8 English clips of 5-19 s); "
        "e.g. librivox_sonnet001.mp3 for long-form requests, where the decoder -- the part batching "
        "shares -- is most of the work",
    )
    args = parser.parse_args(argv)
    levels = [int(x) for x in args.levels.split(",") if x]
    configs = args.config or ["default", "max_batch=1"]
    clips = load_clips([c for c in args.clips.split(",") if c] if args.clips else CLIPS)
    load_before = os.getloadavg()
    results = []
    print(
        f"{len(clips)} clips ({sum(c[2] for c in clips):.0f} s of audio), {args.requests} requests per level, "
        f"{args.repeat} repeat(s), {os.cpu_count()} CPUs, load average {load_before[0]:.2f}",
        flush=True,
    )
    servers: dict[str, Server] = {}
    loaded_rss: dict[str, float] = {}
    idle_rss: dict[str, float] = {}
    runs: dict[tuple[str, int], list[Level]] = {(c, n): [] for c in configs for n in levels}
    try:
        for config in configs:  # all servers up first; then the runs interleave, so each sees the same load
            servers[config] = Server(parse_config(config))
            loaded_rss[config] = servers[config].rss_mb()
            warm = run_level(servers[config], clips[:1], 1, 1)  # one-off costs (VAD model, caches)
            if warm.errors:
                raise SystemExit(f"{config}: warm-up request failed: {warm.errors}")
        for rep in range(args.repeat):
            for n in levels:
                for config in configs:
                    runs[(config, n)].append(run_level(servers[config], clips, n, args.requests))
                    print(f"  repeat {rep + 1}: {config}: {n} clients done", file=sys.stderr, flush=True)
        time.sleep(1.0)  # let the workers go idle (freed memory is handed back then)
        idle_rss = {config: server.rss_mb() for config, server in servers.items()}
    finally:
        for server in servers.values():
            server.close()
    for config in configs:
        base = [lvl.audio_s / lvl.wall for lvl in runs[(config, 1)]] if (config, 1) in runs else []
        base_tp = statistics.median(base) if base else float("nan")
        for n in levels:
            lvls = runs[(config, n)]
            tps = [lvl.audio_s / lvl.wall for lvl in lvls]
            tp = statistics.median(tps)
            lat = [x for lvl in lvls for x in lvl.latencies]
            errors: dict[str, int] = {}
            for lvl in lvls:
                for k, v in lvl.errors.items():
                    errors[k] = errors.get(k, 0) + v
            results.append(
                {
                    "config": config,
                    "clients": n,
                    "requests": args.requests * len(lvls),
                    "wall_s": statistics.median(lvl.wall for lvl in lvls),
                    "throughput": tp,
                    "throughput_range": [min(tps), max(tps)],
                    "p50": quantile(lat, 0.5),
                    "p99": quantile(lat, 0.99),
                    "errors": errors,
                    "peak_rss_mb": max(lvl.peak_rss_mb for lvl in lvls),
                    "x_one_by_one": tp / base_tp,
                    "loaded_rss_mb": loaded_rss[config],
                    "idle_rss_mb": idle_rss.get(config),
                }
            )
    load_after = os.getloadavg()
    print(f"\nload average {load_before[0]:.2f} before / {load_after[0]:.2f} after\n")
    header = [
        "config",
        "clients",
        "requests",
        "errors",
        "wall s",
        "audio s/s (range)",
        "p50 s",
        "p99 s",
        "peak RSS MB",
        "x 1-by-1",
    ]
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for r in results:
        errors = ", ".join(f"{k} x{v}" for k, v in r["errors"].items()) or "0"
        lo, hi = r["throughput_range"]
        print(
            "| "
            + " | ".join(
                [
                    r["config"],
                    str(r["clients"]),
                    str(r["requests"]),
                    errors,
                    f"{r['wall_s']:.1f}",
                    f"{r['throughput']:.1f} ({lo:.1f}-{hi:.1f})",
                    f"{r['p50']:.2f}",
                    f"{r['p99']:.2f}",
                    f"{r['peak_rss_mb']:.0f}",
                    f"{r['x_one_by_one']:.2f}",
                ]
            )
            + " |"
        )
    print()
    for config in configs:
        print(
            f"{config}: RSS {loaded_rss[config]:.0f} MB with the model loaded (after preload), "
            f"{idle_rss.get(config, float('nan')):.0f} MB idle after the runs"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
