"""The chat page in headless Chromium, driven over the DevTools protocol, against the real dev server.

Why CDP over the ``websockets`` library (already a dependency) rather than Playwright: the test
needs three things -- open a page, read the DOM, type and submit -- and Chromium's own protocol
does that with no extra package or browser download; it runs the system ``chromium``
(``apt-get install chromium``) and is skipped where there is none.
"""

import asyncio
import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from websockets.asyncio.client import connect

from flarelet.runtime.host import WorkerHost
from flarelet.runtime.server import DevServer, bind_socket

PROJECT = Path(__file__).resolve().parent.parent
CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)

pytestmark = [
    pytest.mark.slow,  # a browser and a real server
    pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH (apt-get install chromium)"),
]


class Page:
    """A Chromium tab over CDP: ``evaluate(js)`` returns the value of an expression."""

    def __init__(self, ws, session: str) -> None:
        self._ws = ws
        self._session = session
        self._next = 0

    @classmethod
    async def open(cls, browser_ws: str, url: str) -> "Page":
        ws = await connect(browser_ws, max_size=None)
        page = cls(ws, "")
        target = await page.call("Target.createTarget", url=url)
        attached = await page.call("Target.attachToTarget", targetId=target["targetId"], flatten=True)
        page._session = attached["sessionId"]
        return page

    async def call(self, method: str, **params):
        self._next += 1
        ident = self._next
        message = {"id": ident, "method": method, "params": params}
        if self._session:
            message["sessionId"] = self._session
        await self._ws.send(json.dumps(message))
        while True:
            answer = json.loads(await self._ws.recv())
            if answer.get("id") == ident:
                if "error" in answer:
                    raise RuntimeError(f"{method}: {answer['error']}")
                return answer["result"]

    async def evaluate(self, expression: str):
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(result["exceptionDetails"])
        return result["result"].get("value")

    async def wait_for(self, expression: str, timeout: float = 20.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                value = await self.evaluate(expression)
            except RuntimeError:
                value = None
            if value:
                return value
            await asyncio.sleep(0.1)
        raise AssertionError(f"timed out waiting for {expression}")


@pytest.fixture
def chat_url(tmp_path):
    host = WorkerHost.from_config(PROJECT, persist_to=tmp_path)
    server = DevServer(host, bind_socket("127.0.0.1", 0), watch=False, log_requests=False).start_in_thread()
    yield server.url
    server.stop()


@pytest.fixture
def browser_ws():
    profile = tempfile.mkdtemp(prefix="flarelet-chromium-")
    args = [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions"]
    args += ["--remote-debugging-port=0", f"--user-data-dir={profile}", "about:blank"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    port_file = Path(profile) / "DevToolsActivePort"
    try:
        deadline = time.monotonic() + 30
        while not (port_file.exists() and len(port_file.read_text().splitlines()) >= 2):
            if time.monotonic() > deadline or proc.poll() is not None:
                pytest.fail("chromium did not start its DevTools endpoint")
            time.sleep(0.1)
        port, path = port_file.read_text().splitlines()[:2]
        yield f"ws://127.0.0.1:{port}{path}"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(profile, ignore_errors=True)


def test_chat_page_sends_and_receives_in_headless_chromium(chat_url, browser_ws):
    async def run():
        page = await Page.open(browser_ws, chat_url + "/")
        assert await page.wait_for("document.getElementById('status').textContent === 'connected'")
        room = chat_url.replace("http://", "ws://") + "/api/room/lobby/websocket?user=py"
        async with connect(room) as other:
            assert json.loads(await other.recv())["type"] == "history"
            await other.send(json.dumps({"text": "hello from python"}))
            await page.wait_for("document.getElementById('log').textContent.includes('py: hello from python')")
            await page.evaluate(
                "document.getElementById('text').value = 'hi from the browser';"
                "document.getElementById('send').requestSubmit(); true"
            )
            while True:
                msg = json.loads(await asyncio.wait_for(other.recv(), 20))
                if msg["type"] == "message" and msg["user"] == "guest":
                    assert msg["text"] == "hi from the browser"
                    break
        await page.wait_for("document.getElementById('log').textContent.includes('py left (1 online)')")
        await page._ws.close()

    asyncio.run(run())
