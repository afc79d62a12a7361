"""What a maximum-size JSON audio array costs the server: peak RSS and the stall of other requests.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/json_audio_rss.py [--items 2097152]

Starts ``flarelet dev`` on ``tests/rest/hardening_project`` (``max_input_bytes`` 2 MiB, so JSON
bodies up to ~8 MB), posts ``{"audio": [<items> random bytes]}`` to the REST ``run`` endpoint while
another client pings ``models/search`` every 20 ms, and prints the growth of the server's peak RSS
(``VmHWM``, reset just before through ``/proc/<pid>/clear_refs``) against the body size, and the
slowest ping. Random bytes are not audio: the request ends in 5006 at decoding, so no model loads.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
PROJECT = REPO / "tests" / "rest" / "hardening_project"
TOKEN = "json-audio-bench-token"
ACCOUNT = "0123456789abcdef0123456789abcdef"


def _status(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=2 * 1024 * 1024)
    args = parser.parse_args()
    argv = [str(Path(sys.executable).with_name("flarelet")), "dev", str(PROJECT), "--port", "0", "--no-watch"]
    argv += ["--api-token", TOKEN, "--persist-to", "/tmp/flarelet-json-audio-bench"]
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        url = ""
        for line in proc.stdout or ():
            found = re.search(r"Ready on (http://\S+)", line)
            if found:
                url = found.group(1)
                break
        threading.Thread(target=lambda: [None for _ in proc.stdout or ()], daemon=True).start()
        api = f"{url}/client/v4/accounts/{ACCOUNT}/ai"
        headers = {"Authorization": f"Bearer {TOKEN}", "content-type": "application/json"}
        run = f"{api}/run/@cf/openai/whisper-tiny-en"
        warm = json.dumps({"audio": list(os.urandom(100_000))}).encode()
        httpx.post(run, content=warm, headers=headers, timeout=60)  # imports and caches first
        body = json.dumps({"audio": list(os.urandom(args.items))}, separators=(",", ":")).encode()
        Path(f"/proc/{proc.pid}/clear_refs").write_text("5")
        before = _status(proc.pid, "VmRSS")
        pings: list[float] = []
        done = threading.Event()

        def ping() -> None:
            with httpx.Client(headers=headers, timeout=30) as client:
                while not done.is_set():
                    began = time.monotonic()
                    client.get(f"{api}/models/search")
                    pings.append(time.monotonic() - began)
                    time.sleep(0.02)

        pinger = threading.Thread(target=ping)
        pinger.start()
        began = time.monotonic()
        response = httpx.post(run, content=body, headers=headers, timeout=120)
        took = time.monotonic() - began
        done.set()
        pinger.join()
        peak = _status(proc.pid, "VmHWM") - before
        print(
            f"body {len(body) / 1e6:.1f} MB -> {response.status_code}; peak RSS +{peak / 1e6:.1f} MB "
            f"({peak / len(body):.2f}x the body); request {took:.2f} s; other requests: slowest "
            f"{max(pings) * 1000:.0f} ms of {len(pings)}"
        )
    finally:
        proc.terminate()
        proc.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
