"""What the Workers AI REST layer costs: start-up, per-request overhead, and transcription via REST
versus calling the service directly (same process, same model, same audio).

    HF_HUB_OFFLINE=1 .venv/bin/python bench/rest_bench.py [--runs 5] [--requests 300]

Prints a table (milliseconds; medians). The REST server is real uvicorn on 127.0.0.1, clients are
httpx (keep-alive) and the official ``cloudflare`` SDK.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import uvicorn
from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from flarelet.bindings.ai.rest import create_app  # noqa: E402
from flarelet.bindings.ai.rest_auth import RestCredentials  # noqa: E402
from flarelet.bindings.ai.service import get_service  # noqa: E402
from flarelet.bindings.ai.settings import AiSettings  # noqa: E402

TOKEN = "bench-token"
ACCOUNT = "0" * 32
TINY = "@cf/openai/whisper-tiny-en"


def audio_dir() -> Path:
    return REPO / "tests" / "data" / "audio"


def serve(app: object) -> tuple[str, uvicorn.Server, threading.Thread]:
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    return f"http://127.0.0.1:{sock.getsockname()[1]}", server, thread


def timed(fn, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000)
    return out


def startup_ms() -> float:
    """``flarelet ai serve --port 0`` until uvicorn reports start-up complete."""
    flarelet = Path(sys.executable).with_name("flarelet")
    cmd = (
        [str(flarelet), "ai", "serve", "--port", "0"]
        if flarelet.exists()
        else [sys.executable, "-m", "flarelet.cli.ai_command", "serve", "--port", "0"]
    )
    t = time.perf_counter()
    proc = subprocess.Popen(
        cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}
    )
    try:
        assert proc.stderr is not None
        while True:
            line = proc.stderr.readline()
            if not line or "startup complete" in line:
                return (time.perf_counter() - t) * 1000
    finally:
        proc.terminate()
        proc.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5, help="transcriptions per path")
    parser.add_argument("--requests", type=int, default=300, help="requests per cheap endpoint")
    args = parser.parse_args()

    settings = AiSettings()
    creds = RestCredentials(tokens=(TOKEN,), account_id=None, token_source="config")
    base, server, thread = serve(create_app(settings, credentials=creds))
    auth = {"Authorization": f"Bearer {TOKEN}"}
    run_url = f"{base}/client/v4/accounts/{ACCOUNT}/ai/run/{TINY}"
    search_url = f"{base}/client/v4/accounts/{ACCOUNT}/ai/models/search"
    audio_file = audio_dir() / "picovoice_test_en.wav"
    audio = audio_file.read_bytes()
    rows: list[tuple[str, str, float, float]] = []

    start = [startup_ms() for _ in range(3)]
    rows.append(("flarelet ai serve: process start -> listening", "3 starts", statistics.median(start), min(start)))

    with httpx.Client(timeout=600) as client:
        for label, fn in (
            (
                "refused: bad token (10000)",
                lambda: client.post(run_url, content=b"x", headers={"Authorization": "Bearer no"}),
            ),
            (
                "refused: unknown model (5007)",
                lambda: client.post(run_url.replace(TINY, "@cf/x/y"), content=b"x", headers=auth),
            ),
            (
                "refused: not audio (5006, decoded)",
                lambda: client.post(run_url, content=b"not audio" * 100, headers=auth),
            ),
            ("GET models/search", lambda: client.get(search_url, headers=auth)),
        ):
            fn()
            ms = timed(fn, args.requests)
            rows.append((label, f"{args.requests} sequential", statistics.median(ms), 1000 / statistics.mean(ms)))

        client.post(run_url, content=audio, headers=auth)  # load the model
        import cloudflare

        service = get_service(settings)
        sdk = cloudflare.Cloudflare(api_token=TOKEN, base_url=f"{base}/client/v4")
        direct_ms: list[float] = []
        rest_ms: list[float] = []
        sdk_ms: list[float] = []
        # interleaved, so load from anything else on the machine hits all three paths alike
        for _ in range(args.runs):
            t = time.perf_counter()
            asyncio.run(service.run(TINY, audio))  # the service is safe across event loops
            direct_ms.append((time.perf_counter() - t) * 1000)
            rest_ms += timed(lambda: client.post(run_url, content=audio, headers=auth).raise_for_status(), 1)
            sdk_ms += timed(lambda: sdk.ai.run(TINY, account_id=ACCOUNT, audio=list(audio)), 1)
    server.should_exit = True
    thread.join(10)

    rows.append(
        (
            f"tiny.en {audio_file.name} (5.9 s of speech): service.run direct",
            f"{args.runs} runs",
            statistics.median(direct_ms),
            min(direct_ms),
        )
    )
    rows.append(
        ("  same via REST, raw body (curl-style)", f"{args.runs} runs", statistics.median(rest_ms), min(rest_ms))
    )
    rows.append(
        ("  same via cloudflare SDK, JSON audio=[...]", f"{args.runs} runs", statistics.median(sdk_ms), min(sdk_ms))
    )

    table = Table(title="Workers AI REST API (bench/rest_bench.py)")
    table.add_column("what")
    table.add_column("n")
    table.add_column("median ms", justify="right")
    table.add_column("min ms / req/s", justify="right")
    for label, n, med, extra in rows:
        table.add_row(label, n, f"{med:.1f}", f"{extra:.1f}")
    Console().print(table)
    print(
        f"REST overhead on a transcription (median): raw body "
        f"{statistics.median(rest_ms) - statistics.median(direct_ms):+.1f} ms, "
        f"SDK JSON {statistics.median(sdk_ms) - statistics.median(direct_ms):+.1f} ms"
    )


if __name__ == "__main__":
    main()
