"""Tests for the chat app: the worker streams Workers AI's events, and the page shows them as they come.

Both run the real stand-in (SmolLM2-135M-Instruct behind the configured model id), so they are
``slow``: the in-process test through flarelet's ``worker`` fixture, the page under ``flarelet dev``
in headless Chromium driven over the DevTools protocol.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def sse_events(text: str) -> list:
    out = []
    for block in text.split("\n\n"):
        if block.startswith("data: "):
            data = block[len("data: ") :]
            out.append(data if data == "[DONE]" else json.loads(data))
    return out


async def test_api_chat_streams_cloudflares_events(worker):
    resp = await worker.fetch(
        "/api/chat",
        method="POST",
        json={"messages": [{"role": "user", "content": "What is the capital of France?"}], "max_tokens": 12},
    )
    assert resp.status == 200
    assert resp.headers.get("content-type").startswith("text/event-stream")
    events = sse_events(await resp.text())
    assert events[-1] == "[DONE]"
    assert events[-2]["response"] == "" and events[-2]["usage"]["completion_tokens"] <= 12
    assert all(set(e) == {"response", "tool_calls", "p"} for e in events[:-3])
    assert "".join(e["response"] for e in events[:-3]).strip()


async def test_api_chat_refuses_a_bad_body(worker):
    resp = await worker.fetch("/api/chat", method="POST", body="not json", headers={"content-type": "text/plain"})
    assert resp.status == 400


class Chromium:
    """Headless Chromium driven over the DevTools protocol (a websocket)."""

    def __init__(self, binary: str) -> None:
        self.proc = subprocess.Popen(
            [binary, "--headless", "--no-sandbox", "--disable-gpu", "--remote-debugging-port=0", "about:blank"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        line = ""
        deadline = time.monotonic() + 30
        while "DevTools listening on" not in line:
            assert time.monotonic() < deadline and self.proc.poll() is None, "chromium did not start"
            line = self.proc.stderr.readline()
        browser = re.search(r"ws://\S+", line).group(0)
        port = re.search(r":(\d+)/", browser).group(1)
        import httpx

        page = next(t for t in httpx.get(f"http://127.0.0.1:{port}/json").json() if t["type"] == "page")
        from websockets.sync.client import connect

        self.ws = connect(page["webSocketDebuggerUrl"], max_size=None)
        self.next_id = 0

    def call(self, method: str, **params):
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv(timeout=60))
            if msg.get("id") == self.next_id:
                return msg.get("result", {})

    def evaluate(self, expression: str):
        return self.call("Runtime.evaluate", expression=expression, returnByValue=True)["result"].get("value")

    def close(self) -> None:
        self.ws.close()
        self.proc.terminate()
        self.proc.wait(10)


class DevServer:
    """``flarelet dev`` on this project, a free loopback port, its own process group."""

    def __init__(self) -> None:
        import os
        import sys

        script = Path(sys.executable).with_name("flarelet")
        argv = [str(script)] if script.exists() else [sys.executable, "-m", "flarelet"]
        env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1", NO_COLOR="1")
        self.proc = subprocess.Popen(
            [*argv, "dev", str(PROJECT), "--port", "0"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            env=env,
            start_new_session=True,
        )
        deadline = time.monotonic() + 90
        while True:
            assert time.monotonic() < deadline and self.proc.poll() is None, "flarelet dev did not start"
            found = re.search(r"Ready on (http://\S+)", self.proc.stdout.readline())
            if found:
                self.url = found.group(1)
                break
        import threading

        # keep reading its log so that a full pipe never blocks the server
        threading.Thread(target=lambda: [None for _ in self.proc.stdout], daemon=True).start()

    def stop(self) -> None:
        import os
        import signal

        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)


def test_the_page_shows_the_answer_as_it_streams_in_headless_chromium():
    binary = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if binary is None:
        pytest.skip("no Chromium on this machine")
    server = DevServer()
    try:
        browser = Chromium(binary)
        try:
            browser.call("Page.navigate", url=f"{server.url}/?ask=Tell%20me%20about%20Paris&max_tokens=48")
            seen = []
            deadline = time.monotonic() + 240
            while time.monotonic() < deadline:
                state = browser.evaluate(
                    "JSON.stringify({status: document.getElementById('status')?.textContent,"
                    " text: document.querySelector('.assistant')?.textContent ?? null,"
                    " events: document.querySelector('.assistant')?.dataset.events ?? null})"
                )
                state = json.loads(state) if state else {}
                if state.get("text"):
                    seen.append(state["text"])
                if state.get("status") == "done":
                    break
                time.sleep(0.05)
        finally:
            browser.close()
    finally:
        server.stop()
    assert state.get("status") == "done", state
    assert int(state["events"]) > 1 and state["text"].strip()
    # the answer grew on the page while it streamed: more than one partial text was shown
    assert len(set(seen)) > 1, seen
    assert all(state["text"].startswith(partial) for partial in seen)
