"""examples/whisper under the real ``flarelet dev``: Cloudflare's docs example, offline."""

from __future__ import annotations

import functools
import http.server
import threading
from pathlib import Path

import httpx
import pytest

from .conftest import wer

pytestmark = pytest.mark.slow

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "whisper"


def test_docs_example_on_its_bundled_sample(serve_worker, manifest):
    with serve_worker(EXAMPLE, "--preload", timeout=180) as worker:
        reply = httpx.get(worker.url + "/", timeout=300)
        assert reply.status_code == 200, reply.text
        body = reply.json()
        assert body["input"] == {"audio": []}
        response = body["response"]
        assert set(response) == {"text", "word_count", "words", "vtt"}
        reference = manifest["enrollment_audio_katie.wav"]["reference"]
        assert wer(reference, response["text"]) <= 0.05
        assert response["words"][-1]["end"] <= 18.35  # the header's "30 minutes" was not believed

        tiny = httpx.get(worker.url + "/", params={"model": "@cf/openai/whisper-tiny-en"}, timeout=300).json()
        assert wer(reference, tiny["response"]["text"]) <= 0.10


@pytest.fixture
def audio_server(audio_dir):
    """A plain HTTP server on 127.0.0.1 serving tests/data/audio (stands in for GitHub's raw URL)."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(audio_dir))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_audio_url_var_fetches_elsewhere(serve_worker, audio_server, manifest):
    url = f"{audio_server}/jfk.flac"
    with serve_worker(EXAMPLE, "--var", f"AUDIO_URL:{url}", timeout=180) as worker:
        reply = httpx.get(worker.url + "/", params={"model": "@cf/openai/whisper-tiny-en"}, timeout=300)
        assert reply.status_code == 200, reply.text
        assert wer(manifest["jfk.flac"]["reference"], reply.json()["response"]["text"]) <= 0.10
