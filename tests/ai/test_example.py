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


def test_docs_example_from_its_own_origin(serve_worker, manifest):
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
        worker.wait_for_log("GET /enrollment_audio_katie.wav 200")

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


def test_first_use_of_a_model_is_said_in_the_log_with_progress(serve_worker, tmp_path):
    """An empty weights cache: the first request converts and loads tiny.en, and the log says so as
    it happens (before the request's own line), with the reading progress."""
    with serve_worker(EXAMPLE, "--no-watch", env={"FLARELET_CACHE": str(tmp_path)}, timeout=180) as worker:
        reply = httpx.get(worker.url + "/", params={"model": "@cf/openai/whisper-tiny-en"}, timeout=300)
        assert reply.status_code == 200, reply.text
        request_line = worker.wait_for_log("GET / 200 OK")
        lines = worker.lines
    expected = [
        "Converting Whisper tiny.en weights (once) into",
        "Converting Whisper tiny.en: read 25% of the weights",
        "Converting Whisper tiny.en: read 100% of the weights",
        "Converting Whisper tiny.en: encoder layers",
        "Converting Whisper tiny.en: decoder layers",
        "Converting Whisper tiny.en: writing model.safetensors",
        "Converted Whisper tiny.en in",
        "Loading Whisper model whisper-tiny.en from",
        "Loaded Whisper model whisper-tiny.en from",
    ]
    at = [next((i for i, line in enumerate(lines) if text in line), -1) for text in expected]
    assert -1 not in at and at == sorted(at), "\n".join(lines)
    assert all(lines[i].startswith("[flarelet:info] ") for i in at)
    assert at[-1] < lines.index(request_line)
