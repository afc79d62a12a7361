"""The Workers AI REST API under hostile input, against a real ``flarelet dev`` process (issue 16).

``hardening_project/`` has the AI binding, so ``flarelet dev`` serves the REST API beside the
worker, with a small ``max_input_bytes`` (2 MiB: JSON bodies up to ~8 MB) and ``queue_size = 2``
(three requests admitted at once). Bodies are random bytes, never real audio: the service refuses
them at decoding (5006) without loading a model, so these tests stay cheap.
"""

from __future__ import annotations

import json
import math
import os
import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.slow

PROJECT = Path(__file__).parent / "hardening_project"
TOKEN = "rest-hardening-token-0123456789abcdefgh"
ACCOUNT = "0123456789abcdef0123456789abcdef"
TINY = "@cf/openai/whisper-tiny-en"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
MAX_INPUT_BYTES = 2 * 1024 * 1024


@pytest.fixture(scope="module")
def dev(serve_worker, tmp_path_factory) -> Iterator[Any]:
    state = tmp_path_factory.mktemp("rest-hardening")
    with serve_worker(PROJECT, "--api-token", TOKEN, "--persist-to", str(state)) as worker:
        yield worker


def _api(dev: Any) -> str:
    return f"{dev.url}/client/v4/accounts/{ACCOUNT}/ai"


def _codes(response: httpx.Response) -> list[int]:
    body = response.json()
    assert body["success"] is False and body["result"] is None, body
    return [e["code"] for e in body["errors"]]


def _chain(response: httpx.Response) -> list[int]:
    return [c["code"] for c in response.json()["errors"][0].get("error_chain", [])]


def _rss(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise AssertionError(field)


# -- 10. auth -----------------------------------------------------------------------------------------


def test_global_key_without_email_and_duplicate_credentials_get_cloudflares_6003(dev):
    url = f"{_api(dev)}/models/search"
    r = httpx.get(url, headers={"X-Auth-Key": TOKEN})
    assert r.status_code == 400 and _codes(r) == [6003] and _chain(r) == [6102]
    r = httpx.get(url, headers={"X-Auth-Email": "me@example.com"})
    assert r.status_code == 400 and _codes(r) == [6003] and _chain(r) == [6103]
    r = httpx.get(url, headers={"X-Auth-Email": "not an email", "X-Auth-Key": TOKEN})
    assert r.status_code == 400 and _chain(r) == [6102]
    # two Authorization headers are ambiguous, even when the first is right: never "first one wins"
    r = httpx.get(url, headers=[("Authorization", f"Bearer {TOKEN}"), ("Authorization", "Bearer other")])
    assert r.status_code == 400 and _codes(r) == [6003] and _chain(r) == [6111]
    r = httpx.get(url, headers=[("X-Auth-Email", "me@example.com"), ("X-Auth-Key", TOKEN), ("X-Auth-Key", "x")])
    assert r.status_code == 400 and _chain(r) == [6103]
    assert httpx.get(url, headers={"X-Auth-Email": "me@example.com", "X-Auth-Key": TOKEN}).status_code == 200
    assert httpx.get(url, headers=AUTH).status_code == 200


# -- 5. every query and path parameter is validated, and the document says how -----------------------


def test_page_with_5000_digits_gets_a_4xx_envelope_not_a_500(dev):
    for name in ("page", "per_page"):
        r = httpx.get(f"{_api(dev)}/models/search", params={name: "9" * 5000}, headers=AUTH)
        assert r.status_code == 400 and _codes(r) == [5006], r.text


def _conforms(value: str, schema: dict[str, Any]) -> bool:
    """Whether a query-string ``value`` satisfies a parameter ``schema`` (as the document states it)."""
    kind = schema.get("type")
    if "enum" in schema:
        return value in [str(v).lower() if isinstance(v, bool) else str(v) for v in schema["enum"]]
    if kind == "boolean":
        return value in ("true", "false")
    if kind in ("integer", "number"):
        pattern = r"-?(0|[1-9][0-9]*)" if kind == "integer" else r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?"
        if not re.fullmatch(pattern, value) or len(value) > 400:
            return False
        number = int(value) if kind == "integer" else float(value)
        if isinstance(number, float) and not math.isfinite(number):
            return False
        return schema.get("minimum", -math.inf) <= number <= schema.get("maximum", math.inf)
    if kind == "string":
        if "pattern" in schema and not re.search(schema["pattern"], value):
            return False
        return schema.get("minLength", 0) <= len(value) <= schema.get("maxLength", math.inf)
    raise AssertionError(f"unexpected parameter schema {schema}")


def _query_parameters(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any], bool]]:
    """(path, name, schema, required) for every query parameter of every GET operation."""
    found = []
    for path, item in document["paths"].items():
        for parameter in item.get("get", {}).get("parameters", []):
            if "$ref" in parameter:
                continue
            if parameter["in"] == "query":
                found.append((path, parameter["name"], parameter["schema"], parameter.get("required", False)))
    return found


_values = st.one_of(
    st.text(max_size=30),
    st.from_regex(r"-?[0-9]{1,30}(\.[0-9]{1,5})?([eE][+-]?[0-9]{1,4})?", fullmatch=True),
    st.integers(min_value=-10, max_value=2**40).map(str),
    st.sampled_from(["true", "false", "True", "1", "", "0", "01", "1e3", "NaN", "9" * 5000]),
    st.sampled_from([TINY, "@cf/openai/whisper", "@cf/openai/whisper-large-v3-turbo", "@cf/meta/llama"]),
)


def test_every_query_parameter_is_answered_as_the_openapi_document_says(dev):
    """Property: for any value of any query parameter, the answer is a v4 envelope, never a 5xx,
    and a success exactly when the value satisfies the parameter's schema in the live document."""
    document = httpx.get(f"{dev.url}/client/v4/openapi.json").json()
    parameters = _query_parameters(document)
    assert {name for _, name, _, _ in parameters} >= {"page", "per_page", "source", "hide_experimental", "model"}
    with httpx.Client(headers=AUTH, timeout=30) as client:
        for path, name, schema, _required in parameters:
            url = dev.url + "/client/v4" + path.replace("{account_id}", ACCOUNT)
            others = {p: "@cf/openai/whisper" for p0, p, _, r in parameters if p0 == path and r and p != name}

            @settings(max_examples=40, deadline=None, database=None, suppress_health_check=list(HealthCheck))
            @given(value=_values)
            def check(value: str) -> None:
                r = client.get(url, params={**others, name: value})
                assert r.status_code < 500, (name, value, r.text)
                body = r.json()
                assert set(body) >= {"result", "success", "errors", "messages"}
                expected = _conforms(value, schema)
                assert body["success"] is expected, (path, name, value, schema, r.text[:300])

            check()


def test_every_path_parameter_is_validated(dev):
    with httpx.Client(headers=AUTH, timeout=30) as client:

        @settings(max_examples=40, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        @given(account=st.text(min_size=1, max_size=40), model=st.text(min_size=1, max_size=40))
        def check(account: str, model: str) -> None:
            base = f"{dev.url}/client/v4/accounts/{quote(account, safe='')}/ai"
            r = client.get(f"{base}/models/search")
            assert r.status_code == (200 if re.fullmatch(r"[0-9a-f]{32}", account) else 400), (account, r.text)
            r = client.post(f"{_api(dev)}/run/{quote(model, safe='@/')}", content=b"x")
            assert 400 <= r.status_code < 500 and r.json()["success"] is False, (model, r.text)

        check()


def test_openapi_document_states_the_servers_real_constraints(dev):
    document = httpx.get(f"{dev.url}/client/v4/openapi.json").json()
    search = {
        p["name"]: p["schema"]
        for p in document["paths"]["/accounts/{account_id}/ai/models/search"]["get"]["parameters"]
        if "name" in p
    }
    assert search["page"].get("maximum") and search["per_page"].get("maximum") == 1000
    schema_op = document["paths"]["/accounts/{account_id}/ai/models/schema"]["get"]["parameters"]
    model = next(p for p in schema_op if p.get("name") == "model")
    assert model["required"] is True and TINY in model["schema"]["enum"]
    run = document["paths"][f"/accounts/{{account_id}}/ai/run/{TINY}"]["post"]["requestBody"]["content"]
    assert run["application/octet-stream"]["schema"].get("minLength") == 1
    turbo = document["paths"]["/accounts/{account_id}/ai/run/@cf/openai/whisper-large-v3-turbo"]["post"]
    language = turbo["requestBody"]["content"]["application/json"]["schema"]["properties"]["language"]
    languages = [branch for branch in language.get("anyOf", [language]) if branch.get("type") == "string"]
    assert languages and "en" in languages[0]["enum"]


# -- 7. large JSON audio arrays ------------------------------------------------------------------------


def _big_json_body(items: int) -> bytes:
    return json.dumps({"audio": list(os.urandom(items))}, separators=(",", ":")).encode()


def test_max_size_json_audio_array_peaks_at_most_twice_its_body_and_does_not_stall_others(dev):
    url = f"{_api(dev)}/run/{TINY}"
    headers = {**AUTH, "content-type": "application/json"}
    warm = httpx.post(url, content=_big_json_body(100_000), headers=headers, timeout=60)  # imports, caches
    assert warm.status_code == 400 and _codes(warm) == [5006]
    body = _big_json_body(MAX_INPUT_BYTES)  # ~8 MB of JSON: the largest the limit lets through
    pid = dev.proc.pid
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # reset the peak RSS (VmHWM) to now
    before = _rss(pid, "VmRSS")
    pings: list[float] = []
    done = threading.Event()

    def ping() -> None:
        with httpx.Client(headers=AUTH, timeout=30) as client:
            while not done.is_set():
                began = time.monotonic()
                client.get(f"{_api(dev)}/models/search")
                pings.append(time.monotonic() - began)
                time.sleep(0.02)

    pinger = threading.Thread(target=ping, daemon=True)
    pinger.start()
    r = httpx.post(url, content=body, headers=headers, timeout=120)
    done.set()
    pinger.join(10)
    assert r.status_code == 400 and _codes(r) == [5006], r.text  # parsed, validated, refused at decoding
    peak = _rss(pid, "VmHWM") - before
    assert peak <= 2 * len(body), f"peak RSS grew {peak / 1e6:.1f} MB for a {len(body) / 1e6:.1f} MB body"
    assert pings and max(pings) < 0.5, f"another request waited {max(pings):.2f}s"


def _hold_upload(dev: Any, declared: int) -> socket.socket:
    """A request whose JSON body stops after its first kilobyte (the connection stays open)."""
    parts = urlsplit(dev.url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=30)
    head = (
        f"POST /client/v4/accounts/{ACCOUNT}/ai/run/{TINY} HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\nContent-Length: {declared}\r\n\r\n"
    )
    sock.sendall(head.encode() + b'{"audio": [' + b"1," * 500)
    return sock


def test_json_bodies_are_read_and_parsed_inside_the_admission_limit(dev):
    """``queue_size = 2``: three requests in flight. Three uploads that stall hold all three slots,
    so a fourth is refused at once with 3040 (before its body is read); when the three clients go
    away their slots come back (an aborted upload is never run as a complete one)."""
    start = len(dev.lines)
    held = [_hold_upload(dev, 4_000_000) for _ in range(3)]
    try:
        time.sleep(0.5)
        began = time.monotonic()
        r = httpx.post(
            f"{_api(dev)}/run/{TINY}",
            content=_big_json_body(200_000),
            headers={**AUTH, "content-type": "application/json"},
            timeout=30,
        )
        assert r.status_code == 429 and _codes(r) == [3040], r.text
        assert time.monotonic() - began < 5
    finally:
        for sock in held:
            sock.close()
    deadline = time.monotonic() + 10
    while True:
        r = httpx.post(
            f"{_api(dev)}/run/{TINY}", content=b"not audio", headers={**AUTH, "content-type": "audio/wav"}, timeout=30
        )
        if r.status_code != 429 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert r.status_code == 400 and _codes(r) == [5006], r.text
    lines = dev.lines[start:]
    assert sum(1 for line in lines if re.search(r"POST /client/v4/\S+/ai/run/\S+ 499 ", line)) == 3, lines
