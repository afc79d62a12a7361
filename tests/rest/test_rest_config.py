"""Where the REST API's credentials come from, what it prints, and its two entry points:
``routes(ctx)`` mounted beside a worker (as ``flarelet dev`` does) and ``flarelet ai serve``."""

from __future__ import annotations

import os
import re
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route

from flarelet.bindings.ai import catalog
from flarelet.bindings.ai.rest import ai_settings_from_options, announce, banner, routes
from flarelet.bindings.ai.rest_auth import DEFAULT_ACCOUNT_ID, RestCredentials, generated_token
from flarelet.bindings.ai.settings import AiSettings
from flarelet.bindings.registry import BindingContext

# -- credentials ------------------------------------------------------------------------------------


def test_command_line_beats_environment_beats_config() -> None:
    table = {"flarelet": {"ai": {"api_tokens": ["from-config"], "account_id": "c" * 32}}}
    env = {"FLARELET_API_TOKEN": "env-1, env-2", "FLARELET_ACCOUNT_ID": "e" * 32}
    cli = {"api_token": ["from-cli"], "account_id": "a" * 32}

    creds = RestCredentials.from_options({**table, **cli}, environ=env)
    assert (creds.tokens, creds.account_id, creds.token_source) == (("from-cli",), "a" * 32, "command line")
    creds = RestCredentials.from_options(table, environ=env)
    assert (creds.tokens, creds.account_id, creds.token_source) == (("env-1", "env-2"), "e" * 32, "environment")
    creds = RestCredentials.from_options(table, environ={})
    assert (creds.tokens, creds.account_id, creds.token_source) == (("from-config",), "c" * 32, "config")
    single = RestCredentials.from_options({"flarelet": {"ai": {"api_token": "one"}}}, environ={})
    assert single.tokens == ("one",)


def test_without_configuration_a_random_token_is_made_once_per_process() -> None:
    creds = RestCredentials.from_options({}, environ={})
    assert creds.token_source == "generated"
    assert creds.account_id is None and creds.example_account_id == DEFAULT_ACCOUNT_ID
    assert re.fullmatch(r"[A-Za-z0-9_-]{40}", creds.tokens[0])
    assert creds.tokens == (generated_token(),) == RestCredentials.from_options({}, environ={}).tokens


def test_a_token_that_cannot_travel_in_a_header_is_refused_at_start() -> None:
    with pytest.raises(ValueError, match="command line"):
        RestCredentials.from_options({"api_token": "has space"}, environ={})


def test_rest_keys_do_not_reach_the_ai_settings() -> None:
    options = {"flarelet": {"ai": {"api_tokens": ["t"], "account_id": "x", "max_input_bytes": 1234}}}
    assert ai_settings_from_options(options).max_input_bytes == 1234
    # the same settings as the AI plugin's, so env.AI and the REST API share one service (one queue)
    assert ai_settings_from_options(options) == AiSettings.from_options(options)


def test_banner_has_a_ready_to_paste_curl_line() -> None:
    generated = RestCredentials(tokens=("tok",), account_id=None, token_source="generated")
    lines = banner(generated, "http://127.0.0.1:8787")
    assert "tok" in lines[1]
    assert lines[2] == (
        f"curl http://127.0.0.1:8787/client/v4/accounts/{DEFAULT_ACCOUNT_ID}/ai/run/@cf/openai/whisper-tiny-en "
        '-X POST -H "Authorization: Bearer tok" --data-binary "@audio.mp3"'
    )
    from_env = RestCredentials(tokens=("secret",), account_id="b" * 32, token_source="environment")
    text = "\n".join(banner(from_env, "http://127.0.0.1:8787"))
    assert "secret" not in text and "$FLARELET_API_TOKEN" in text and "b" * 32 in text


# -- routes(ctx): the API beside a worker, as flarelet dev mounts it --------------------------------


def test_routes_mount_the_api_beside_a_worker(rest: Any, tmp_path: Path, capsys: Any) -> None:
    ctx = BindingContext(
        config_dir=tmp_path,
        persist_to=None,
        options={"flarelet": {"ai": {"api_tokens": [rest.TOKEN]}}},
    )
    api_routes = routes(ctx)
    assert [type(r) for r in api_routes] == [Mount] and api_routes[0].path == "/client/v4"
    announce(ctx, "http://127.0.0.1:9999")
    err = capsys.readouterr().err
    assert "http://127.0.0.1:9999/client/v4" in err and rest.TOKEN not in err

    async def worker(request: Any) -> PlainTextResponse:
        return PlainTextResponse(f"worker saw {request.url.path}")

    app = Starlette(routes=[*api_routes, Route("/{path:path}", worker, methods=["GET", "POST"])])
    with rest.serve_app(app) as base:
        assert httpx.get(f"{base}/hello").text == "worker saw /hello"
        resp = httpx.get(
            f"{base}/client/v4/accounts/{rest.ACCOUNT}/ai/models/search",
            headers={"Authorization": f"Bearer {rest.TOKEN}"},
        )
        assert resp.status_code == 200 and resp.json()["result_info"]["total_count"] == len(catalog.MODELS)
        assert httpx.get(f"{base}/client/v4/openapi.json").json()["servers"] == [{"url": f"{base}/client/v4"}]
        assert (
            httpx.get(f"{base}/client/v4/accounts/{rest.ACCOUNT}/ai/models/search").json()["errors"][0]["code"] == 9106
        )


# -- flarelet ai serve ------------------------------------------------------------------------------


@pytest.fixture
def served() -> Iterator[list[Any]]:
    started: list[Any] = []
    yield started
    for s in started:
        s.proc.terminate()
        try:
            s.proc.wait(10)
        except subprocess.TimeoutExpired:
            s.proc.kill()


def test_serve_prints_a_token_that_works_and_refuses_others(served: list[Any], rest: Any) -> None:
    s = rest.start_serve()
    served.append(s)
    token = re.search(r'Bearer ([^"]+)"', s.curl).group(1)  # type: ignore[union-attr]
    account = re.search(r"/accounts/([0-9a-f]{32})/", s.curl).group(1)  # type: ignore[union-attr]
    assert s.base.startswith("http://127.0.0.1:")
    url = f"{s.base}/accounts/{account}/ai/models/search"
    assert httpx.get(url, headers={"Authorization": f"Bearer {token}"}).status_code == 200
    assert httpx.get(url, headers={"Authorization": "Bearer guess"}).json()["errors"][0]["code"] == 10000


@pytest.mark.slow  # a subprocess or timed wait: kept out of the fast subset
def test_serve_reads_flarelet_ai_from_the_config_and_options_override_it(
    served: list[Any], rest: Any, tmp_path: Path
) -> None:
    (tmp_path / "wrangler.toml").write_text(
        'name = "x"\n[flarelet.ai]\napi_tokens = ["toml-token"]\n'
        f'account_id = "{rest.ACCOUNT}"\nmax_input_bytes = 1000\n'
    )
    s = rest.start_serve(cwd=tmp_path)
    served.append(s)
    run = f"{s.base}/accounts/{rest.ACCOUNT}/ai/run/{rest.TINY}"
    auth = {"Authorization": "Bearer toml-token"}
    assert httpx.post(run, content=b"x" * 1001, headers=auth).json()["errors"][0]["code"] == 3006
    other = f"{s.base}/accounts/{'f' * 32}/ai/models/search"
    assert [e["code"] for e in httpx.get(other, headers=auth).json()["errors"]] == [7003, 7000]

    s2 = rest.start_serve("--api-token", "cli-token", "--account-id", "f" * 32, cwd=tmp_path)
    served.append(s2)
    ok = httpx.get(f"{s2.base}/accounts/{'f' * 32}/ai/models/search", headers={"Authorization": "Bearer cli-token"})
    assert ok.status_code == 200
    assert "cli-token" not in "\n".join(s2.lines)  # a configured secret is not echoed


@pytest.mark.slow  # a subprocess or timed wait: kept out of the fast subset
def test_serve_rejects_bad_arguments_clearly(rest: Any) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLARELET_")}
    bad = subprocess.run(
        [*rest.serve_command(), "--preload", "@cf/no/such"], capture_output=True, text=True, env=env, timeout=60
    )
    assert bad.returncode == 2 and "no such model @cf/no/such" in bad.stderr
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        taken = subprocess.run(
            [*rest.serve_command(), "--port", str(port)], capture_output=True, text=True, env=env, timeout=60
        )
    assert taken.returncode == 1 and "cannot listen on 127.0.0.1" in taken.stderr
    assert "Traceback" not in bad.stderr + taken.stderr
