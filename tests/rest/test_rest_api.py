"""The Workers AI REST API's envelope, auth, routing and error mapping, over real HTTP.

None of these load a model: every request here is refused (or answered from the catalog) before
inference, so they are fast. Clients: httpx for exact status/body checks, and Cloudflare's own
``cloudflare`` SDK to prove its exceptions carry our codes.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import cloudflare
import httpx
import pytest

from flarelet.bindings.ai import errors
from flarelet.bindings.ai.rest import create_app
from flarelet.bindings.ai.rest_auth import RestCredentials
from flarelet.bindings.ai.settings import AiSettings

MAX_INPUT = 64 * 1024


def _settings() -> AiSettings:
    return AiSettings(max_input_bytes=MAX_INPUT)


@pytest.fixture(scope="module")
def server(rest: Any) -> Iterator[str]:
    """Real service, two configured tokens, any 32-hex account id accepted."""
    creds = RestCredentials(tokens=(rest.TOKEN, rest.OTHER_TOKEN), account_id=None, token_source="config")
    with rest.serve_app(create_app(_settings(), credentials=creds)) as url:
        yield url


@pytest.fixture(scope="module")
def bound_server(rest: Any) -> Iterator[str]:
    """Real service, bound to one account id."""
    creds = RestCredentials(tokens=(rest.TOKEN,), account_id=rest.ACCOUNT, token_source="config")
    with rest.serve_app(create_app(_settings(), credentials=creds)) as url:
        yield url


@pytest.fixture(scope="module")
def scripted(rest: Any) -> Iterator[tuple[str, Any]]:
    """The REST layer in front of the scripted test backend (for failures on demand)."""
    backend = rest.ScriptedAiBackend()
    creds = RestCredentials(tokens=(rest.TOKEN,), account_id=None, token_source="config")
    with rest.serve_app(create_app(_settings(), credentials=creds, service=backend)) as url:
        yield url, backend


def _run_url(base: str, account: str, model: str) -> str:
    return f"{base}/client/v4/accounts/{account}/ai/run/{model}"


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _error(resp: httpx.Response, status: int, *codes: int) -> dict:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    body = resp.json()
    assert body["success"] is False
    assert body["result"] is None
    assert body["messages"] == []
    assert [e["code"] for e in body["errors"]] == list(codes)
    assert all(isinstance(e["message"], str) and e["message"] for e in body["errors"])
    return body


def _sdk(base: str, token: str) -> cloudflare.Cloudflare:
    return cloudflare.Cloudflare(api_token=token, base_url=f"{base}/client/v4", max_retries=0)


# -- auth -------------------------------------------------------------------------------------------


def test_no_auth_header_is_9106(server: str, rest: Any) -> None:
    resp = httpx.post(_run_url(server, rest.ACCOUNT, rest.TINY), content=b"RIFF....")
    body = _error(resp, 400, 9106)
    assert body["errors"][0]["message"] == "Missing X-Auth-Key, X-Auth-Email or Authorization headers"


@pytest.mark.parametrize("header", ["Basic dXNlcjpwYXNz", "Bearer", "Bearer two words", "Token abc", ""])
def test_malformed_authorization_is_6003_with_6111_chain(server: str, rest: Any, header: str) -> None:
    resp = httpx.post(_run_url(server, rest.ACCOUNT, rest.TINY), content=b"x", headers={"Authorization": header})
    body = _error(resp, 400, 6003)
    assert body["errors"][0]["error_chain"] == [{"code": 6111, "message": "Invalid format for Authorization header"}]


def test_wrong_token_is_10000_and_sdk_raises_authentication_error(server: str, rest: Any) -> None:
    resp = httpx.get(f"{server}/client/v4/accounts/{rest.ACCOUNT}/ai/models/search", headers=_auth("nope"))
    _error(resp, 401, 10000)
    with pytest.raises(cloudflare.AuthenticationError) as info:
        _sdk(server, "wrong-token").ai.run(rest.TINY, account_id=rest.ACCOUNT, audio=[1, 2, 3])
    assert info.value.status_code == 401
    assert info.value.body["errors"][0]["code"] == 10000  # type: ignore[index]


def test_a_token_that_is_a_prefix_of_a_real_one_is_refused(server: str, rest: Any) -> None:
    resp = httpx.get(f"{server}/client/v4/accounts/{rest.ACCOUNT}/ai/models/search", headers=_auth(rest.TOKEN[:-1]))
    _error(resp, 401, 10000)


def test_every_configured_token_is_accepted_and_bearer_is_case_insensitive(server: str, rest: Any) -> None:
    for header in (f"Bearer {rest.TOKEN}", f"bearer {rest.OTHER_TOKEN}"):
        resp = httpx.get(
            f"{server}/client/v4/accounts/{rest.ACCOUNT}/ai/models/search", headers={"Authorization": header}
        )
        assert resp.status_code == 200, resp.text


def test_global_key_headers_are_checked_against_the_tokens(server: str, rest: Any) -> None:
    url = f"{server}/client/v4/accounts/{rest.ACCOUNT}/ai/models/search"
    ok = httpx.get(url, headers={"X-Auth-Email": "me@example.com", "X-Auth-Key": rest.TOKEN})
    assert ok.status_code == 200
    _error(httpx.get(url, headers={"X-Auth-Email": "me@example.com", "X-Auth-Key": "bad"}), 401, 10000)
    _error(httpx.get(url, headers={"X-Auth-Email": "me@example.com"}), 400, 6003)  # no key: 6103 (issue 16)


def test_auth_is_checked_before_the_account_and_the_model(server: str, rest: Any) -> None:
    # Without a token nobody learns whether an account id or a model exists.
    resp = httpx.post(_run_url(server, "not-an-account", "@cf/no/such"), content=b"x", headers=_auth("bad"))
    _error(resp, 401, 10000)


# -- routing ----------------------------------------------------------------------------------------


def test_malformed_account_id_is_7003_7000(server: str, rest: Any) -> None:
    resp = httpx.post(_run_url(server, "my-account", rest.TINY), content=b"x", headers=_auth(rest.TOKEN))
    body = _error(resp, 400, 7003, 7000)
    assert "/client/v4/accounts/my-account/ai/run/" in body["errors"][0]["message"]
    assert body["errors"][1]["message"] == "No route for that URI"


def test_any_32_hex_account_is_accepted_when_none_is_configured(server: str, rest: Any) -> None:
    for account in (rest.ACCOUNT, "f" * 32):
        resp = httpx.get(f"{server}/client/v4/accounts/{account}/ai/models/search", headers=_auth(rest.TOKEN))
        assert resp.status_code == 200


def test_other_account_than_the_configured_one_is_7003_7000(bound_server: str, rest: Any) -> None:
    other = "f" * 32
    _error(
        httpx.post(_run_url(bound_server, other, rest.TINY), content=b"x", headers=_auth(rest.TOKEN)), 400, 7003, 7000
    )
    with pytest.raises(cloudflare.BadRequestError) as info:
        _sdk(bound_server, rest.TOKEN).ai.models.list(account_id=other).to_dict()
    assert [e["code"] for e in info.value.body["errors"]] == [7003, 7000]  # type: ignore[index]
    resp = httpx.get(f"{bound_server}/client/v4/accounts/{rest.ACCOUNT}/ai/models/search", headers=_auth(rest.TOKEN))
    assert resp.status_code == 200


@pytest.mark.parametrize(
    "path, codes",
    [
        ("/client/v4/zones", (7000,)),
        ("/client/v4/", (7000,)),
        ("/client/v4/accounts/0123456789abcdef0123456789abcdef/workers/scripts", (7003, 7000)),
        ("/client/v4/accounts/0123456789abcdef0123456789abcdef/ai/run", (7003, 7000)),
        ("/client/v4/accounts/0123456789abcdef0123456789abcdef/ai/run/", (7003, 7000)),
        ("/elsewhere", (7000,)),
    ],
)
def test_unknown_paths_are_v4_route_errors(server: str, rest: Any, path: str, codes: tuple[int, ...]) -> None:
    _error(httpx.post(server + path, content=b"x", headers=_auth(rest.TOKEN)), 400, *codes)


def test_wrong_method_is_a_v4_405_with_allow(server: str, rest: Any) -> None:
    resp = httpx.get(_run_url(server, rest.ACCOUNT, rest.TINY), headers=_auth(rest.TOKEN))
    body = _error(resp, 405, 7000)
    assert resp.headers["allow"] == "POST"
    assert "GET" in body["errors"][0]["message"]
    resp = httpx.delete(f"{server}/client/v4/accounts/{rest.ACCOUNT}/ai/models/search", headers=_auth(rest.TOKEN))
    _error(resp, 405, 7000)
    assert "GET" in resp.headers["allow"]


# -- inputs -----------------------------------------------------------------------------------------


def test_unknown_model_is_5007_and_sdk_raises_bad_request(server: str, rest: Any) -> None:
    resp = httpx.post(_run_url(server, rest.ACCOUNT, "@cf/x/y"), content=b"x", headers=_auth(rest.TOKEN))
    body = _error(resp, 400, 5007)
    assert body["errors"][0]["message"] == "No such model @cf/x/y or task"
    with pytest.raises(cloudflare.BadRequestError) as info:
        _sdk(server, rest.TOKEN).ai.run("@cf/meta/llama-99-unknown", account_id=rest.ACCOUNT, prompt="hi")
    assert info.value.body["errors"][0]["code"] == 5007  # type: ignore[index]


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b'{"audio": [1, 2,',
        b"\xff\xfe\x00garbage",
        b'"a string"',
        b"[1, 2, 3]",
        b"null",
        b"[" * 100_000,
        b'{"audio": NaN}',
    ],
)
def test_malformed_json_body_is_5006_never_500(server: str, rest: Any, body: bytes) -> None:
    headers = {**_auth(rest.TOKEN), "Content-Type": "application/json"}
    resp = httpx.post(_run_url(server, rest.ACCOUNT, rest.TINY), content=body, headers=headers)
    err = _error(resp, 400, 5006)
    assert err["errors"][0]["message"].startswith("AiError: Bad input: ")


def test_empty_body_is_3003(server: str, rest: Any) -> None:
    resp = httpx.post(_run_url(server, rest.ACCOUNT, rest.TINY), content=b"", headers=_auth(rest.TOKEN))
    body = _error(resp, 400, 3003)
    assert body["errors"][0]["message"] == "Request is missing headers or body: body"


def test_body_over_the_limit_is_3006_413(server: str, rest: Any) -> None:
    url = _run_url(server, rest.ACCOUNT, rest.TINY)
    resp = httpx.post(url, content=b"\0" * (MAX_INPUT + 1), headers=_auth(rest.TOKEN))
    _error(resp, 413, 3006)

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit is enforced while reading
        for _ in range(MAX_INPUT // 4096 + 2):
            yield b"\0" * 4096

    resp = httpx.post(url, content=chunks(), headers=_auth(rest.TOKEN))
    _error(resp, 413, 3006)
    # a JSON body may be larger (base64 / integer arrays), but not without bound
    big_json = b'{"audio": "' + b"A" * (MAX_INPUT * 5) + b'"}'
    resp = httpx.post(url, content=big_json, headers={**_auth(rest.TOKEN), "Content-Type": "application/json"})
    _error(resp, 413, 3006)


# -- service errors reach clients as the SDK's normal exceptions ----------------------------------


def test_service_errors_map_to_status_and_code(scripted: tuple[str, Any], rest: Any) -> None:
    base, backend = scripted
    client = _sdk(base, rest.TOKEN)
    cases = [
        (errors.out_of_capacity("queue full"), cloudflare.RateLimitError, 429, 3040),
        (errors.timeout("too slow"), cloudflare.APIStatusError, 408, 3007),
        (errors.bad_input("Error: required properties at '/' are 'audio'"), cloudflare.BadRequestError, 400, 5006),
        (errors.too_large("audio is 2 h long"), cloudflare.APIStatusError, 413, 3006),
        (RuntimeError("boom: secret detail"), cloudflare.InternalServerError, 500, 3000),
    ]
    for exc, kind, status, code in cases:
        backend.next_error = exc
        with pytest.raises(kind) as info:
            client.ai.run(rest.TINY, account_id=rest.ACCOUNT, audio=[1, 2, 3])
        assert info.value.status_code == status
        body: dict = info.value.body  # type: ignore[assignment]
        assert body["success"] is False and body["errors"][0]["code"] == code
        assert "Traceback" not in json.dumps(body) and "secret detail" not in json.dumps(body)
    backend.next_error = None
    assert client.ai.run(rest.TINY, account_id=rest.ACCOUNT, audio=[1, 2, 3]) == {"text": "scripted:json:1"}


def test_body_kinds_reach_the_service_as_documented(scripted: tuple[str, Any], rest: Any) -> None:
    base, backend = scripted
    backend.next_error = None
    url = _run_url(base, rest.ACCOUNT, rest.TINY)
    backend.calls.clear()
    # curl --data-binary sends application/x-www-form-urlencoded: the body is the file
    httpx.post(
        url, content=b"ID3\x04audio", headers={**_auth(rest.TOKEN), "Content-Type": "application/x-www-form-urlencoded"}
    )
    httpx.post(url, content=b"RIFFaudio", headers={**_auth(rest.TOKEN), "Content-Type": "audio/wav"})
    httpx.post(url, json={"audio": [1, 2]}, headers=_auth(rest.TOKEN))
    httpx.post(
        url,
        content=b'{"audio": [1, 2]}',
        headers={**_auth(rest.TOKEN), "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert backend.calls == [
        (rest.TINY, b"ID3\x04audio"),
        (rest.TINY, b"RIFFaudio"),
        (rest.TINY, {"audio": [1, 2]}),
        (rest.TINY, {"audio": [1, 2]}),
    ]


def test_non_finite_numbers_in_a_result_go_out_as_null() -> None:
    from flarelet.bindings.ai.rest import envelope, v4_response

    resp = v4_response(envelope({"text": "x", "segments": [{"avg_logprob": float("-inf"), "t": float("nan")}]}))
    assert json.loads(resp.body) == {
        "result": {"text": "x", "segments": [{"avg_logprob": None, "t": None}]},
        "success": True,
        "errors": [],
        "messages": [],
    }


def test_success_envelope(scripted: tuple[str, Any], rest: Any) -> None:
    base, backend = scripted
    backend.next_error = None
    resp = httpx.post(_run_url(base, rest.ACCOUNT, rest.TINY), content=b"abc", headers=_auth(rest.TOKEN))
    assert resp.status_code == 200
    assert resp.json() == {"result": {"text": "scripted:bytes:3"}, "success": True, "errors": [], "messages": []}


# -- models/search and schema -----------------------------------------------------------------------


def _search(base: str, rest: Any, **params: Any) -> httpx.Response:
    return httpx.get(
        f"{base}/client/v4/accounts/{rest.ACCOUNT}/ai/models/search", params=params, headers=_auth(rest.TOKEN)
    )


def test_models_search_lists_the_catalog_with_result_info(server: str, rest: Any) -> None:
    from flarelet.bindings.ai import catalog

    everything = _search(server, rest, per_page=1000).json()
    assert {m["name"] for m in everything["result"]} == set(catalog.MODELS)  # text and embedding ids too
    body = _search(server, rest, task="Automatic Speech Recognition").json()
    assert body["success"] is True and body["errors"] == [] and body["messages"] == []
    names = [m["name"] for m in body["result"]]
    assert set(names) == {"@cf/openai/whisper", rest.TINY, rest.TURBO}
    assert body["result_info"] == {"page": 1, "per_page": 20, "count": 3, "total_count": 3}
    for model in body["result"]:
        assert model["task"]["name"] == "Automatic Speech Recognition"
        assert {"id", "source", "description", "properties"} <= set(model)


def test_models_search_filters_and_pages(server: str, rest: Any) -> None:
    assert [m["name"] for m in _search(server, rest, search="WHISPER-TINY").json()["result"]] == [rest.TINY]
    assert _search(server, rest, search="multilingual").json()["result"][0]["name"] == "@cf/openai/whisper"
    assert len(_search(server, rest, task="automatic speech recognition").json()["result"]) == 3
    assert _search(server, rest, task="Translation").json()["result"] == []
    openai_ids = {m["name"] for m in _search(server, rest, author="openai").json()["result"]}
    assert {"@cf/openai/whisper", rest.TINY, rest.TURBO} <= openai_ids
    assert all(m["name"].startswith("@cf/meta/") for m in _search(server, rest, author="meta").json()["result"])
    assert rest.TINY not in [m["name"] for m in _search(server, rest, hide_experimental="true").json()["result"]]
    page2 = _search(server, rest, task="Automatic Speech Recognition", per_page=2, page=2).json()
    assert page2["result_info"] == {"page": 2, "per_page": 2, "count": 1, "total_count": 3}
    assert _search(server, rest, page=9).json()["result"] == []
    assert len(_search(server, rest, task="Automatic Speech Recognition", source="1").json()["result"]) == 3
    assert _search(server, rest, source="2").json()["result"] == []
    for bad in (
        {"page": "0"},
        {"per_page": "x"},
        {"hide_experimental": "maybe"},
        {"source": "one"},
        {"source": "nan"},
        {"page": ""},
        {"hide_experimental": ""},
        {"source": ""},
        {"page": "\u00b2"},
        {"per_page": "01"},
        {"page": "1.0"},
        {"hide_experimental": "1"},
        {"source": "1_000"},
        {"source": "1e999"},
    ):
        _error(_search(server, rest, **bad), 400, 5006)


def test_sdk_lists_models_through_every_page(server: str, rest: Any) -> None:
    client = _sdk(server, rest.TOKEN)
    names = [
        m["name"]
        for m in client.ai.models.list(account_id=rest.ACCOUNT, per_page=1, task="Automatic Speech Recognition")
    ]
    assert sorted(names) == sorted(["@cf/openai/whisper", rest.TINY, rest.TURBO])
    schema = client.ai.models.schema.get(account_id=rest.ACCOUNT, model=rest.TURBO)
    assert schema.to_dict()["input"]["required"] == ["audio"]
    with pytest.raises(cloudflare.BadRequestError):
        client.ai.models.schema.get(account_id=rest.ACCOUNT, model="@cf/none/such")


# -- OpenAPI ----------------------------------------------------------------------------------------


def test_openapi_document_needs_no_token_and_describes_the_api(server: str) -> None:
    resp = httpx.get(f"{server}/client/v4/openapi.json")
    assert resp.status_code == 200
    doc = resp.json()
    assert doc["openapi"].startswith("3.1")
    assert doc["servers"] == [{"url": f"{server}/client/v4"}]
    assert doc["components"]["securitySchemes"]["api_token"] == {
        "type": "http",
        "scheme": "bearer",
        "description": doc["components"]["securitySchemes"]["api_token"]["description"],
    }
    tiny = doc["paths"]["/accounts/{account_id}/ai/run/@cf/openai/whisper-tiny-en"]["post"]
    assert set(tiny["requestBody"]["content"]) == {"application/json", "application/octet-stream"}
    assert tiny["requestBody"]["content"]["application/octet-stream"]["schema"]["format"] == "binary"
    turbo = doc["paths"]["/accounts/{account_id}/ai/run/@cf/openai/whisper-large-v3-turbo"]["post"]
    assert set(turbo["requestBody"]["content"]) == {"application/json"}
    ok = tiny["responses"]["200"]["content"]["application/json"]["schema"]
    assert ok["properties"]["result"]["required"] == ["text"]
    assert "/accounts/{account_id}/ai/models/search" in doc["paths"]


@pytest.mark.slow  # a subprocess or timed wait: kept out of the fast subset
def test_a_body_that_never_finishes_is_3007_not_a_hang(rest: Any) -> None:
    import socket

    creds = RestCredentials(tokens=(rest.TOKEN,), account_id=None, token_source="config")
    settings = AiSettings(max_input_bytes=MAX_INPUT, timeout_s=0.5)
    with rest.serve_app(create_app(settings, credentials=creds)) as base:
        host, port = base.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=30) as sock:
            head = (
                f"POST /client/v4/accounts/{rest.ACCOUNT}/ai/run/{rest.TINY} HTTP/1.1\r\nHost: {host}\r\n"
                f"Authorization: Bearer {rest.TOKEN}\r\nContent-Length: 1000\r\n\r\n"
            )
            sock.sendall(head.encode() + b"only ten b")  # 990 bytes never come
            reply = b""
            while b"\r\n\r\n" not in reply or not reply.rstrip().endswith(b"}"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                reply += chunk
        status_line, _, rest_of = reply.partition(b"\r\n")
        assert status_line.startswith(b"HTTP/1.1 408"), reply
        body = json.loads(rest_of.split(b"\r\n\r\n", 1)[1])
        assert body["errors"][0]["code"] == 3007
        # and the server still answers
        assert httpx.get(f"{base}/client/v4/openapi.json").status_code == 200


def test_raw_body_that_is_not_audio_names_the_body_not_a_json_field(server: str, rest: Any) -> None:
    """curl --data-binary sent no JSON, so the 5006 names the request body; a JSON caller's error
    still points at its field, as Cloudflare's schema errors do ('/audio')."""
    url = _run_url(server, rest.ACCOUNT, rest.TINY)
    raw = httpx.post(url, content=b"not audio at all" * 8, headers=_auth(rest.TOKEN))
    message = _error(raw, 400, 5006)["errors"][0]["message"]
    assert message.startswith("AiError: Bad input: Error: the request body could not be decoded as audio"), message
    assert "/audio" not in message
    as_json = httpx.post(url, json={"audio": list(b"not audio at all" * 8)}, headers=_auth(rest.TOKEN))
    assert "Error: '/audio' could not be decoded as audio" in _error(as_json, 400, 5006)["errors"][0]["message"]
