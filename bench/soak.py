"""Soak: mixed traffic against a real ``flarelet dev`` for N minutes, under periodic SIGKILL.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/soak.py --minutes 10 [--kill-every 60] [--writers 3]

The server runs ``bench/soak_worker`` (KV, D1, R2, Workers AI with the tiny.en model, and the
Workers AI REST API mounted at ``/client/v4``) with its storage in a temporary folder. At once:

* writers PUT random values to KV, D1 and R2; every ``201`` goes into a ledger of acknowledged
  writes (key -> sha256 of the value);
* a reader GETs ``/`` and reads acknowledged keys back, comparing hashes;
* a REST client searches the model catalog and, with the worker's ``env.AI``, transcribes a clip
  every ``--ai-every`` seconds (by the REST API and by the binding, in turn);
* a stream of bad inputs: uploads cut short (plain and chunked), a 200 KB header, a 17 KB URL,
  log-forging and control-character URLs, TLS bytes on the HTTP port, a half-sent head, REST
  calls with a bad token, bad query parameters, bad JSON and a large JSON audio array, and a
  handler stuck in a loop (stopped by ``[limits] cpu_ms = 500`` with error 1102, counted apart);
* every ``--kill-every`` seconds the server gets SIGKILL and is restarted on the same port and
  state, and the whole ledger is read back.

At the end the ledger is read back once more, every cut-short upload is checked to be absent,
and the log is searched for forged lines. It prints a summary table (requests served, 5xx,
acknowledged writes lost, ...) and the server's RSS, sampled every 5 s, per minute. Exit status
1 when anything that must be zero is not.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import itertools
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
PROJECT = REPO / "bench" / "soak_worker"
AUDIO = REPO / "examples" / "whisper" / "public" / "enrollment_audio_katie.wav"
TOKEN = "soak-token"
ACCOUNT = "f1a7e1e7000000000000000000000000"
TINY = "@cf/openai/whisper-tiny-en"
READY = re.compile(r"Ready on (http://\S+)")


@dataclass
class Tally:
    lock: threading.Lock = field(default_factory=threading.Lock)
    served: Counter[str] = field(default_factory=Counter)  # status class -> count
    fivexx: list[str] = field(default_factory=list)
    cpu_limited: int = 0  # 1102 answers to the deliberately stuck handler (expected, not counted as 5xx)
    transport_errors: int = 0
    ledger: dict[str, tuple[str, str]] = field(default_factory=dict)  # key -> (kind, sha256)
    acked: Counter[str] = field(default_factory=Counter)
    wrong_reads: list[str] = field(default_factory=list)
    aborted_keys: list[tuple[str, str]] = field(default_factory=list)
    bad_inputs: Counter[str] = field(default_factory=Counter)
    ai_ok: int = 0

    def response(self, label: str, status: int, body: bytes = b"") -> None:
        with self.lock:
            if label == "stuck_handler" and status == 503 and body.startswith(b"error code: 1102"):
                self.served["1102"] += 1
                self.cpu_limited += 1
                return
            self.served[f"{status // 100}xx"] += 1
            if status >= 500:
                self.fivexx.append(f"{label} -> {status} {body[:120]!r}")

    def transport_error(self) -> None:
        with self.lock:
            self.transport_errors += 1


class Server:
    """A ``flarelet dev`` subprocess on a fixed port and state folder; SIGKILLed and restarted."""

    def __init__(self, state: Path, log_path: Path) -> None:
        self.state = state
        self.log_path = log_path
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.starts = 0

    def start(self, timeout: float = 120.0) -> None:
        argv = [
            str(Path(sys.executable).with_name("flarelet")),
            "dev",
            str(PROJECT),
            "--port",
            str(self.port),
            "--persist-to",
            str(self.state),
            "--api-token",
            TOKEN,
            "--no-watch",
        ]
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1", NO_COLOR="1", COLUMNS="200")
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.log_path.open("rb") as log:
                log.seek(offset)
                found = READY.search(log.read().decode("utf-8", "replace"))
            if found:
                self.url = found.group(1)
                self.port = int(self.url.rsplit(":", 1)[1])
                self.starts += 1
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"flarelet dev exited with {self.proc.returncode}; see {self.log_path}")
            time.sleep(0.05)
        raise TimeoutError("flarelet dev did not start")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def rss_mb(self) -> float | None:
        if self.proc is None or self.proc.poll() is not None:
            return None
        try:
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        except OSError:
            return None
        return None


class Soak:
    def __init__(self, args: argparse.Namespace, server: Server) -> None:
        self.args = args
        self.server = server
        self.tally = Tally()
        self.stop = threading.Event()
        self.rss: list[tuple[float, float, int]] = []
        self.started = time.monotonic()
        self.audio = AUDIO.read_bytes()

    # -- helpers ------------------------------------------------------------------------------------
    def request(self, client: httpx.Client, label: str, method: str, path: str, **kwargs) -> httpx.Response | None:
        try:
            response = client.request(method, self.server.url + path, **kwargs)
        except httpx.HTTPError:
            self.tally.transport_error()
            time.sleep(0.05)
            return None
        self.tally.response(label, response.status_code, response.content)
        return response

    def _raw(self, data: bytes, *, read: bool = True, close_after: float = 0.0) -> bytes:
        try:
            with socket.create_connection(("127.0.0.1", self.server.port), timeout=10) as sock:
                sock.sendall(data)
                if close_after:
                    time.sleep(close_after)
                    return b""
                if not read:
                    return b""
                sock.shutdown(socket.SHUT_WR)
                chunks = []
                while chunk := sock.recv(65536):
                    chunks.append(chunk)
                return b"".join(chunks)
        except OSError:
            self.tally.transport_error()
            return b""

    # -- traffic ------------------------------------------------------------------------------------
    def writer(self, seed: int) -> None:
        rng = random.Random(seed)
        with httpx.Client(timeout=30) as client:
            while not self.stop.is_set():
                kind = rng.choice(("kv", "d1", "r2"))
                key = f"{kind}-{uuid.uuid4().hex}"
                if kind == "d1":
                    value = rng.randbytes(rng.randint(1, 4096)).hex().encode()
                else:
                    value = rng.randbytes(rng.randint(1, 256 * 1024 if kind == "r2" else 64 * 1024))
                response = self.request(client, f"PUT /{kind}", "PUT", f"/{kind}/{key}", content=value)
                if response is not None and response.status_code == 201:
                    with self.tally.lock:
                        self.tally.ledger[key] = (kind, hashlib.sha256(value).hexdigest())
                        self.tally.acked[kind] += 1
                time.sleep(self.args.pause)

    def reader(self) -> None:
        rng = random.Random(7)
        with httpx.Client(timeout=30) as client:
            while not self.stop.is_set():
                self.request(client, "GET /", "GET", "/")
                with self.tally.lock:
                    keys = list(self.tally.ledger) if self.tally.ledger else []
                if keys:
                    self.check_key(client, rng.choice(keys))
                time.sleep(self.args.pause)

    def check_key(self, client: httpx.Client, key: str) -> bool | None:
        """True when ``key`` reads back as acknowledged, False when not, None when unreachable."""
        kind, digest = self.tally.ledger[key]
        for _ in range(200):
            response = self.request(client, f"GET /{kind}", "GET", f"/{kind}/{key}")
            if response is not None:
                break
            time.sleep(0.1)
        else:
            return None
        ok = response.status_code == 200 and hashlib.sha256(response.content).hexdigest() == digest
        if not ok:
            with self.tally.lock:
                self.tally.wrong_reads.append(f"{key}: {response.status_code}")
        return ok

    def rest(self) -> None:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        base = f"/client/v4/accounts/{ACCOUNT}/ai"
        turn = itertools.count()
        last_ai = 0.0
        with httpx.Client(timeout=120) as client:
            while not self.stop.is_set():
                self.request(client, "GET models/search", "GET", f"{base}/models/search?per_page=5", headers=headers)
                if time.monotonic() - last_ai >= self.args.ai_every:
                    last_ai = time.monotonic()
                    if next(turn) % 2 == 0:
                        response = self.request(
                            client,
                            "POST ai/run",
                            "POST",
                            f"{base}/run/{TINY}",
                            headers={**headers, "content-type": "audio/wav"},
                            content=self.audio,
                        )
                    else:
                        response = self.request(client, "POST /ai", "POST", "/ai", content=self.audio)
                    if response is not None and response.status_code == 200 and "text" in response.text:
                        with self.tally.lock:
                            self.tally.ai_ok += 1
                time.sleep(0.2)

    def bad_inputs(self) -> None:
        base = f"/client/v4/accounts/{ACCOUNT}/ai"
        auth = {"Authorization": f"Bearer {TOKEN}"}
        cases = [
            "aborted_upload",
            "aborted_chunked",
            "big_header",
            "long_url",
            "log_forging",
            "tls_bytes",
            "half_head",
            "bad_token",
            "bad_query",
            "bad_json",
            "json_audio_array",
            "stuck_handler",
        ]
        last_stuck = 0.0
        with httpx.Client(timeout=60) as client:
            for case in itertools.cycle(cases):
                if self.stop.is_set():
                    return
                self.tally.bad_inputs[case] += 1
                if case == "aborted_upload":
                    key = f"abort-{uuid.uuid4().hex}"
                    head = f"PUT /kv/{key} HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n".encode()
                    self._raw(head + b"a" * 50_000, close_after=0.05)
                    with self.tally.lock:
                        self.tally.aborted_keys.append(("kv", key))
                elif case == "aborted_chunked":
                    key = f"abort-{uuid.uuid4().hex}"
                    head = f"PUT /r2/{key} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
                    self._raw(head + b"4000\r\n" + b"b" * 0x4000 + b"\r\n", close_after=0.05)
                    with self.tally.lock:
                        self.tally.aborted_keys.append(("r2", key))
                elif case == "big_header":
                    self._status_of_raw(case, b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 200_000 + b"\r\n\r\n")
                elif case == "long_url":
                    self._status_of_raw(case, b"GET /" + b"u" * 17_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
                elif case == "log_forging":
                    self.request(client, case, "GET", "/x%0A%5Bflarelet:info%5D%20GET%20/admin%20200%20OK%1B%5B31m")
                elif case == "tls_bytes":
                    self._status_of_raw(case, bytes.fromhex("160301020001000200030368") + os.urandom(64))
                elif case == "half_head":
                    self._raw(b"GET / HTTP/1.1\r\nHost: x\r\nX-Half: ", close_after=0.2)
                elif case == "bad_token":
                    self.request(client, case, "GET", f"{base}/models/search", headers={"Authorization": "Bearer nope"})
                elif case == "bad_query":
                    self.request(client, case, "GET", f"{base}/models/search?page={'9' * 5000}", headers=auth)
                    self.request(client, case, "GET", f"{base}/models/search?per_page=-3", headers=auth)
                elif case == "bad_json":
                    self.request(
                        client,
                        case,
                        "POST",
                        f"{base}/run/{TINY}",
                        headers={**auth, "content-type": "application/json"},
                        content=b'{"audio": [1, 2,',
                    )
                elif case == "json_audio_array":
                    body = json.dumps({"audio": list(os.urandom(200_000))}).encode()
                    self.request(
                        client,
                        case,
                        "POST",
                        f"{base}/run/{TINY}",
                        headers={**auth, "content-type": "application/json"},
                        content=body,
                    )
                elif case == "stuck_handler":
                    if time.monotonic() - last_stuck >= self.args.stuck_every:
                        last_stuck = time.monotonic()
                        self.request(client, case, "GET", "/spin")
                time.sleep(0.05)

    def _status_of_raw(self, label: str, data: bytes) -> None:
        reply = self._raw(data)
        match = re.match(rb"HTTP/1\.1 (\d{3}) ", reply)
        if match:
            self.tally.response(label, int(match.group(1)), reply[-120:])

    def sample_rss(self) -> None:
        while not self.stop.wait(5.0):
            rss = self.server.rss_mb()
            if rss is not None:
                self.rss.append((time.monotonic() - self.started, rss, self.server.starts))

    # -- the run --------------------------------------------------------------------------------------
    def verify_ledger(self, since: int = 0, sample: int | None = None) -> tuple[int, int, int]:
        """(checked, lost, unreachable) over the acknowledged writes from index ``since`` on (those
        acknowledged just before a kill are the ones at risk), plus ``sample`` older ones at random."""
        with self.tally.lock:
            keys = list(self.tally.ledger)
        older, keys = keys[:since], keys[since:]
        if sample is None:
            keys = older + keys
        else:
            keys += random.sample(older, min(sample, len(older)))
        lost = unreachable = 0
        with httpx.Client(timeout=30) as client:
            for key in keys:
                ok = self.check_key(client, key)
                if ok is None:
                    unreachable += 1
                elif not ok:
                    lost += 1
        return len(keys), lost, unreachable

    def run(self) -> dict[str, object]:
        threads = [threading.Thread(target=self.writer, args=(i,), daemon=True) for i in range(self.args.writers)]
        threads += [threading.Thread(target=t, daemon=True) for t in (self.reader, self.rest, self.bad_inputs)]
        threads.append(threading.Thread(target=self.sample_rss, daemon=True))
        for thread in threads:
            thread.start()
        end = self.started + self.args.minutes * 60
        kills = 0
        verifications = []
        checked_up_to = 0
        while time.monotonic() < end:
            wait = min(self.args.kill_every, end - time.monotonic())
            time.sleep(max(0.0, wait))
            if time.monotonic() >= end:
                break
            self.server.kill()
            kills += 1
            with self.tally.lock:
                acked_before_kill = len(self.tally.ledger)
            self.server.start()
            verifications.append(self.verify_ledger(checked_up_to, sample=300))
            checked_up_to = acked_before_kill
        self.stop.set()
        for thread in threads:
            thread.join(150)
        final = self.verify_ledger()
        leaked = 0
        with httpx.Client(timeout=30) as client:
            for kind, key in self.tally.aborted_keys:
                response = self.request(client, f"GET /{kind} (aborted)", "GET", f"/{kind}/{key}")
                if response is not None and response.status_code != 404:
                    leaked += 1
        forged = [
            line
            for line in self.server.log_path.read_text(errors="replace").splitlines()
            if line.startswith("[flarelet:info] GET /admin") or "\x1b" in line
        ]
        return {
            "kills": kills,
            "verifications": verifications,
            "final": final,
            "aborted_stored": leaked,
            "forged_lines": len(forged),
        }


def _load() -> str:
    with contextlib.suppress(OSError):
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    return "?"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--kill-every", type=float, default=60.0, help="seconds between SIGKILLs")
    parser.add_argument("--writers", type=int, default=3)
    parser.add_argument("--ai-every", type=float, default=15.0, help="seconds between transcriptions")
    parser.add_argument("--stuck-every", type=float, default=10.0, help="seconds between stuck-handler requests")
    parser.add_argument("--pause", type=float, default=0.01, help="seconds each writer/reader waits between requests")
    parser.add_argument("--keep", action="store_true", help="keep the state folder and log")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="flarelet-soak-"))
    server = Server(workdir / "state", workdir / "server.log")
    load_before = _load()
    server.start()
    soak = Soak(args, server)
    try:
        result = soak.run()
    finally:
        server.kill()
    load_after = _load()
    tally = soak.tally
    served = sum(tally.served.values())
    checked, lost, unreachable = result["final"]  # type: ignore[misc]
    lost_any = lost + sum(v[1] for v in result["verifications"])  # type: ignore[union-attr]
    fivexx = len(tally.fivexx)

    title = f"soak: {args.minutes:g} min, SIGKILL every {args.kill_every:g} s"
    print(f"\n## {title} (load average {load_before} -> {load_after})\n")
    print("| metric | value |")
    print("|---|---|")
    print(f"| requests served | {served} ({', '.join(f'{k} {v}' for k, v in sorted(tally.served.items()))}) |")
    print(f"| 5xx | {fivexx} |")
    print(f"| stuck handlers stopped by the CPU limit (503, error 1102; expected) | {tally.cpu_limited} |")
    print(f"| SIGKILLs + restarts | {result['kills']} |")
    print(f"| connection errors (server down or killed mid-request) | {tally.transport_errors} |")
    acked = ", ".join(f"{k.upper()} {v}" for k, v in sorted(tally.acked.items()))
    print(f"| acknowledged writes | {sum(tally.acked.values())} ({acked}) |")
    after = sum(v[0] for v in result["verifications"])  # type: ignore[union-attr]
    print(f"| acknowledged writes lost (checked after restarts: {after}; at the end: all {checked}) | {lost_any} |")
    print(f"| cut-short uploads stored | {result['aborted_stored']} of {len(tally.aborted_keys)} |")
    print(f"| forged or escape-carrying log lines | {result['forged_lines']} |")
    print(f"| transcriptions (REST and env.AI) | {tally.ai_ok} |")
    print(f"| bad inputs sent | {sum(tally.bad_inputs.values())} ({len(tally.bad_inputs)} kinds) |")
    if unreachable:
        print(f"| keys unreachable at the end | {unreachable} |")
    by_minute: dict[int, list[float]] = defaultdict(list)
    for elapsed, rss, _ in soak.rss:
        by_minute[int(elapsed // 60)].append(rss)
    print("\nRSS of the server (MB, max per minute; restarts reset it):\n")
    print("| minute | " + " | ".join(str(m + 1) for m in sorted(by_minute)) + " |")
    print("|---|" + "---|" * len(by_minute))
    print("| RSS | " + " | ".join(f"{max(v):.0f}" for _, v in sorted(by_minute.items())) + " |")
    if tally.fivexx:
        by_label = Counter(entry.split(" -> ", 1)[0] for entry in tally.fivexx)
        print("\n5xx by request:", dict(by_label))
        print("first 5xx:", *tally.fivexx[:10], sep="\n  ")
    if tally.wrong_reads:
        print("\nwrong reads:", *tally.wrong_reads[:10], sep="\n  ")
    if args.keep:
        print(f"\nstate and log kept in {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    failed = fivexx or lost_any or result["aborted_stored"] or result["forged_lines"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
