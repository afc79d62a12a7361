"""The Workers AI REST API inside ``flarelet dev``, beside a worker that uses ``env.AI``.

Runs the real CLI (``serve_worker`` from tests/conftest.py). The fast test never loads a model;
the slow one transcribes through both front doors of the same process: the worker's ``env.AI``
and the REST API, with the official SDK.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path
from typing import Any

import cloudflare
import httpx
import pytest

WORKER = """
from workers import Response, WorkerEntrypoint


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        if request.method == "POST":
            data = await request.bytes()
            result = await self.env.AI.run("@cf/openai/whisper-tiny-en", {"audio": list(data)})
            return Response.json({"via": "env.AI", "text": result["text"]})
        return Response("worker here")
"""


def make_project(root: Path, flarelet_ai: str = "") -> Path:
    (root / "src").mkdir(parents=True)
    (root / "src" / "entry.py").write_text(textwrap.dedent(WORKER))
    (root / "wrangler.toml").write_text(
        'name = "ai-rest"\nmain = "src/entry.py"\ncompatibility_date = "2025-11-02"\n'
        'compatibility_flags = ["python_workers"]\n\n[ai]\nbinding = "AI"\n' + flarelet_ai
    )
    return root


@pytest.mark.slow  # a subprocess or timed wait: kept out of the fast subset
def test_dev_prints_a_token_and_serves_the_api_beside_the_worker(serve_worker: Any, tmp_path: Path) -> None:
    project = make_project(tmp_path / "p")
    with serve_worker(project) as worker:
        curl = worker.wait_for_log(re.compile(r"^curl http://"))
        token = re.search(r'Bearer ([^"]+)"', curl).group(1)  # type: ignore[union-attr]
        account = re.search(r"/accounts/([0-9a-f]{32})/", curl).group(1)  # type: ignore[union-attr]
        assert curl.startswith(f"curl {worker.url}/client/v4/accounts/")
        assert httpx.get(worker.url + "/").text == "worker here"
        client = cloudflare.Cloudflare(api_token=token, base_url=f"{worker.url}/client/v4", max_retries=0)
        names = [m["name"] for m in client.ai.models.list(account_id=account)]
        assert "@cf/openai/whisper-tiny-en" in names
        with pytest.raises(cloudflare.AuthenticationError):
            cloudflare.Cloudflare(api_token="guess", base_url=f"{worker.url}/client/v4", max_retries=0).ai.models.list(
                account_id=account
            ).to_dict()
        with pytest.raises(cloudflare.BadRequestError) as info:
            client.ai.run("@cf/none/such", account_id=account, audio=[1])
        assert info.value.body["errors"][0]["code"] == 5007  # type: ignore[index]


@pytest.mark.slow  # a subprocess or timed wait: kept out of the fast subset
def test_dev_takes_tokens_from_flarelet_ai_and_the_command_line(serve_worker: Any, tmp_path: Path) -> None:
    project = make_project(
        tmp_path / "p",
        '\n[flarelet.ai]\napi_tokens = ["toml-token"]\naccount_id = "abcdef0123456789abcdef0123456789"\n',
    )
    url_tail = "/client/v4/accounts/abcdef0123456789abcdef0123456789/ai/models/search"
    with serve_worker(project) as worker:
        worker.wait_for_log("Workers AI REST API on")
        assert "toml-token" not in worker.output
        assert httpx.get(worker.url + url_tail, headers={"Authorization": "Bearer toml-token"}).status_code == 200
    with serve_worker(project, "--api-token", "cli-token", "--account-id", "f" * 32) as worker:
        worker.wait_for_log("Workers AI REST API on")
        ok = httpx.get(
            f"{worker.url}/client/v4/accounts/{'f' * 32}/ai/models/search",
            headers={"Authorization": "Bearer cli-token"},
        )
        assert ok.status_code == 200
        old = httpx.get(worker.url + url_tail, headers={"Authorization": "Bearer toml-token"})
        assert old.json()["errors"][0]["code"] == 10000


@pytest.mark.slow
def test_dev_rest_and_env_ai_share_one_model(serve_worker: Any, tmp_path: Path, audio_dir: Path) -> None:
    project = make_project(tmp_path / "p", '\n[flarelet.ai]\napi_tokens = ["t0ken"]\n')
    audio = (audio_dir / "picovoice_test_en.wav").read_bytes()
    with serve_worker(project) as worker:
        via_worker = httpx.post(worker.url + "/", content=audio, timeout=300).json()
        client = cloudflare.Cloudflare(api_token="t0ken", base_url=f"{worker.url}/client/v4")
        via_rest = client.ai.run("@cf/openai/whisper-tiny-en", account_id="0" * 32, audio=list(audio))
        assert isinstance(via_rest, dict)
        assert via_rest["text"] == via_worker["text"]
        assert "quilter" in via_rest["text"].lower()
