"""Cloudflare's own clients against the local REST API, with the real Whisper models and real speech.

Each test calls the API exactly the way Cloudflare's docs do (curl ``--data-binary "@file"``, the
official ``cloudflare`` SDK's ``client.ai.run``, a script posting base64 JSON to turbo), only with
the base URL swapped, and checks the transcript against the published reference (word error rate,
so a tiny.en slip does not fail the test but a wrong or empty answer does).
"""

from __future__ import annotations

import base64
import json
import re
import shlex
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cloudflare
import httpx
import jiwer
import pytest

from flarelet.bindings.ai.rest import create_app
from flarelet.bindings.ai.rest_auth import RestCredentials
from flarelet.bindings.ai.service import get_service
from flarelet.bindings.ai.settings import AiSettings

pytestmark = pytest.mark.slow


def reference(audio_dir: Path, name: str) -> str:
    manifest = json.loads((audio_dir / "manifest.json").read_text())
    return next(f["reference"] for f in manifest["files"] if f["file"] == name)


def wer(ref: str, hyp: str) -> float:
    def norm(s: str) -> str:
        return " ".join(re.sub(r"[^a-z0-9' ]+", " ", s.lower()).split())

    return jiwer.wer(norm(ref), norm(hyp))


@pytest.fixture(scope="module")
def server(rest: Any) -> Iterator[str]:
    creds = RestCredentials(tokens=(rest.TOKEN,), account_id=None, token_source="config")
    with rest.serve_app(create_app(AiSettings(), credentials=creds)) as url:
        yield url


def test_official_sdk_runs_tiny_en(server: str, rest: Any, audio_dir: Path) -> None:
    name = "picovoice_test_en.wav"
    client = cloudflare.Cloudflare(api_token=rest.TOKEN, base_url=f"{server}/client/v4")
    result = client.ai.run(rest.TINY, account_id=rest.ACCOUNT, audio=list((audio_dir / name).read_bytes()))
    assert isinstance(result, dict)
    assert wer(reference(audio_dir, name), result["text"]) < 0.25, result["text"]
    assert result["word_count"] == len(result["words"]) > 10
    assert all(w["start"] <= w["end"] for w in result["words"])


def test_curl_data_binary_exactly_as_the_docs(server: str, rest: Any, audio_dir: Path) -> None:
    name = "whatstheweatherlike.mp3"
    argv = [
        "curl",
        f"{server}/client/v4/accounts/{rest.ACCOUNT}/ai/run/{rest.TINY}",
        "-X",
        "POST",
        "-H",
        f"Authorization: Bearer {rest.TOKEN}",
        "--data-binary",
        f"@{name}",
    ]
    out = subprocess.run(argv, cwd=audio_dir, capture_output=True, text=True, timeout=300, check=True)
    body = json.loads(out.stdout)
    assert body["success"] is True and body["errors"] == [] and body["messages"] == []
    assert wer(reference(audio_dir, name), body["result"]["text"]) < 0.25, body


def test_httpx_posts_base64_json_to_turbo(server: str, rest: Any, audio_dir: Path) -> None:
    name = "jfk.flac"
    payload = {"audio": base64.b64encode((audio_dir / name).read_bytes()).decode(), "language": "en"}
    resp = httpx.post(
        f"{server}/client/v4/accounts/{rest.ACCOUNT}/ai/run/{rest.TURBO}",
        headers={"Authorization": f"Bearer {rest.TOKEN}"},
        json=payload,
        timeout=300,
    )
    assert resp.status_code == 200, resp.text
    result = resp.json()["result"]
    assert wer(reference(audio_dir, name), result["text"]) < 0.2, result["text"]
    assert result["transcription_info"]["language"] == "en"
    assert result["segments"] and result["vtt"].startswith("WEBVTT")


def test_sdk_sees_a_bad_audio_file_as_bad_request(server: str, rest: Any) -> None:
    client = cloudflare.Cloudflare(api_token=rest.TOKEN, base_url=f"{server}/client/v4", max_retries=0)
    with pytest.raises(cloudflare.BadRequestError) as info:
        client.ai.run(rest.TINY, account_id=rest.ACCOUNT, audio=list(b"this is not audio at all" * 10))
    assert info.value.body["errors"][0]["code"] == 5006  # type: ignore[index]


def test_timeout_is_3007_408(rest: Any, audio_dir: Path) -> None:
    settings = AiSettings(timeout_s=0.05)  # far below any real transcription of 53 s of speech
    creds = RestCredentials(tokens=(rest.TOKEN,), account_id=None, token_source="config")
    with rest.serve_app(create_app(settings, credentials=creds)) as base:
        resp = httpx.post(
            f"{base}/client/v4/accounts/{rest.ACCOUNT}/ai/run/{rest.TINY}",
            content=(audio_dir / "librivox_sonnet001.mp3").read_bytes(),
            headers={"Authorization": f"Bearer {rest.TOKEN}"},
            timeout=300,
        )
        assert resp.status_code == 408, resp.text
        assert resp.json()["errors"][0]["code"] == 3007


def test_out_of_capacity_is_3040_429_while_the_model_is_busy(rest: Any, audio_dir: Path) -> None:
    settings = AiSettings(queue_size=0)  # one request at a time, none waiting
    creds = RestCredentials(tokens=(rest.TOKEN,), account_id=None, token_source="config")
    long_audio = (audio_dir / "librivox_sonnet001.mp3").read_bytes()
    with rest.serve_app(create_app(settings, credentials=creds)) as base:
        url = f"{base}/client/v4/accounts/{rest.ACCOUNT}/ai/run/{rest.TINY}"
        auth = {"Authorization": f"Bearer {rest.TOKEN}"}
        first: dict[str, httpx.Response] = {}
        busy = threading.Thread(
            target=lambda: first.setdefault("r", httpx.post(url, content=long_audio, headers=auth, timeout=600))
        )
        busy.start()
        service = get_service(settings)
        while service.in_flight == 0 and busy.is_alive():
            threading.Event().wait(0.01)
        assert service.in_flight == 1
        client = cloudflare.Cloudflare(api_token=rest.TOKEN, base_url=f"{base}/client/v4", max_retries=0)
        with pytest.raises(cloudflare.RateLimitError) as info:
            client.ai.run(
                rest.TINY, account_id=rest.ACCOUNT, audio=list((audio_dir / "whatstheweatherlike.mp3").read_bytes())
            )
        assert info.value.body["errors"][0]["code"] == 3040  # type: ignore[index]
        busy.join(600)
        assert first["r"].status_code == 200, first["r"].text  # the busy one still completes


def test_the_curl_line_printed_by_flarelet_ai_serve_works(rest: Any, audio_dir: Path, tmp_path: Path) -> None:
    served = rest.start_serve("--preload", rest.TINY, timeout=300)
    try:
        line = served.curl
        assert '--data-binary "@audio.mp3"' in line
        argv = [f"@{audio_dir / 'whatstheweatherlike.mp3'}" if a == "@audio.mp3" else a for a in shlex.split(line)]
        out = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=True)
        body = json.loads(out.stdout)
        assert body["success"] is True
        assert wer("What's the weather like?", body["result"]["text"]) < 0.25, body
    finally:
        served.proc.terminate()
        served.proc.wait(20)
