"""The Cache API (``caches.default``, ``caches.open``) against Cloudflare's documented behaviour.

Most tests drive a worker (``data/cache_worker``) on a real dev server: its ``/put``, ``/match``
and ``/delete`` routes call the Cache API with what the test posts, its ``/page...`` routes are
the docs' cache-aside pattern. Freshness arithmetic is tested on :class:`CacheStorage` with a
fake clock, so no test sleeps.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path

import httpx
import pytest

from flarelet.runtime.cache import CacheStorage
from flarelet.runtime.cache.policy import DEFAULT_EDGE_TTL_S, decide, parse_cache_control
from flarelet.runtime.headers import Headers
from flarelet.runtime.request import Request
from flarelet.runtime.response import Response

WORKER = Path(__file__).parent / "data" / "cache_worker"
URL = "https://example.com/item"


@pytest.fixture(scope="module")
def server():
    from tests.runtime.conftest import _run_worker

    with _run_worker(WORKER) as srv:
        yield srv


def call(server, op: str, **body):
    resp = httpx.post(f"{server.url}/{op}", json=body, timeout=30)
    assert resp.status_code == 200, resp.text
    return resp.json()


def put(server, url=URL, **kw):
    return call(server, "put", url=url, **kw)


def match(server, url=URL, **kw):
    return call(server, "match", url=url, **kw)["response"]


def test_docs_cache_aside_pattern_second_request_is_a_hit_with_cf_cache_status(server):
    first = httpx.get(server.url + "/page-aside", timeout=30)
    assert first.headers["x-source"] == "origin" and "cf-cache-status" not in first.headers
    for _ in range(100):  # the put runs in waitUntil, after the first response went out
        second = httpx.get(server.url + "/page-aside", timeout=30)
        if "cf-cache-status" in second.headers:
            break
        time.sleep(0.05)
    assert second.text == "rendered page-aside"
    assert second.headers["cf-cache-status"] == "HIT"
    assert 0 <= int(second.headers["age"]) < 30


def test_put_then_match_returns_status_headers_and_body(server):
    put(server, url=URL + "/1", status=200, headers={"cache-control": "max-age=300", "x-a": "1"}, body="payload")
    hit = match(server, url=URL + "/1")
    assert hit["status"] == 200 and hit["body"] == "payload"
    assert hit["headers"]["x-a"] == "1" and hit["headers"]["cf-cache-status"] == "HIT"
    assert hit["headers"]["content-length"] == "7"
    assert match(server, url=URL + "/other") is None


def test_put_rejects_non_get_request_as_workerd(server):
    result = put(server, url=URL + "/post", method="POST", headers={"cache-control": "max-age=60"})
    assert result == {"ok": False, "error": "TypeError: Cannot cache response to non-GET request."}


def test_put_rejects_206_partial_content_as_documented(server):
    result = put(server, url=URL + "/206", status=206, headers={"content-range": "bytes 0-1/10"})
    assert result["error"] == "TypeError: Cannot cache response to a range request (206 Partial Content)."


def test_put_rejects_vary_star_as_documented(server):
    result = put(server, url=URL + "/vary-star", headers={"vary": "*", "cache-control": "max-age=60"})
    assert result["error"] == "TypeError: Cannot cache response with 'Vary: *' header."


@pytest.mark.parametrize(
    "headers",
    [
        {"cache-control": "no-store"},
        {"cache-control": "private"},
        {"cache-control": "no-cache"},
        {"cache-control": "max-age=0"},
        {"cache-control": "max-age=60", "set-cookie": "id=1"},
        {"expires": "Thu, 01 Jan 1970 00:00:00 GMT"},
        {"expires": "not a date"},
        {"cache-control": "max-age=60", "age": "120"},
    ],
    ids=["no-store", "private", "no-cache", "max-age-0", "set-cookie", "expires-past", "expires-invalid", "age"],
)
def test_responses_cloudflare_does_not_cache_are_silently_not_stored(server, headers):
    url = f"{URL}/not-stored/{sorted(headers.items())}"
    assert put(server, url=url, headers=headers) == {"ok": True}  # put resolves, as on Cloudflare
    assert match(server, url=url) is None


def test_set_cookie_with_private_set_cookie_is_stored_without_the_cookie_as_documented(server):
    url = URL + "/cookie"
    put(server, url=url, headers={"cache-control": "max-age=60, private=Set-Cookie", "set-cookie": "id=1"})
    hit = match(server, url=url)
    assert hit is not None and "set-cookie" not in hit["headers"]


def test_expires_in_the_future_is_cached(server):
    url = URL + "/expires"
    later = format_datetime(datetime.fromtimestamp(datetime.now(UTC).timestamp() + 3600, UTC), usegmt=True)
    put(server, url=url, headers={"expires": later})
    assert match(server, url=url)["status"] == 200


def test_range_request_to_a_cached_full_response_gives_206(server):
    url = URL + "/range"
    put(server, url=url, headers={"cache-control": "max-age=60", "content-type": "text/plain"}, body="0123456789")
    part = match(server, url=url, request_headers={"range": "bytes=2-5"})
    assert part["status"] == 206 and part["body"] == "2345"
    assert part["headers"]["content-range"] == "bytes 2-5/10"
    assert match(server, url=url, request_headers={"range": "bytes=-3"})["body"] == "789"
    assert match(server, url=url, request_headers={"range": "bytes=7-"})["body"] == "789"
    many = match(server, url=url, request_headers={"range": "bytes=0-1,8-9"})
    assert many["headers"]["content-type"].startswith("multipart/byteranges; boundary=")
    assert "Content-Range: bytes 0-1/10\r\n\r\n01" in many["body"] and "bytes 8-9/10\r\n\r\n89" in many["body"]
    unsatisfiable = match(server, url=url, request_headers={"range": "bytes=50-60"})
    assert unsatisfiable["status"] == 416 and unsatisfiable["headers"]["content-range"] == "bytes */10"
    # read as Miniflare's cache reads a Range header
    assert match(server, url=url, request_headers={"range": "lines=1-2"})["status"] == 416
    assert match(server, url=url, request_headers={"range": "bytes=5-2"})["status"] == 416
    assert match(server, url=url, request_headers={"range": "bytes=-20"})["status"] == 200  # suffix >= size: all
    assert match(server, url=url, request_headers={"range": "bytes="})["status"] == 200


def test_conditional_match_gives_304_on_etag_and_last_modified(server):
    url = URL + "/conditional"
    put(
        server,
        url=url,
        headers={"cache-control": "max-age=60", "etag": 'W/"v1"', "last-modified": "Tue, 01 Dec 2026 10:00:00 GMT"},
    )
    assert match(server, url=url, request_headers={"if-none-match": '"v0", "v1"'})["status"] == 304
    assert match(server, url=url, request_headers={"if-none-match": '"v2"'})["status"] == 200
    since = {"if-modified-since": "Tue, 01 Dec 2026 11:00:00 GMT"}
    assert match(server, url=url, request_headers=since)["status"] == 304


def test_vary_does_not_split_the_cache_by_default_as_cloudflare_without_a_vary_rule(server):
    url = URL + "/vary"
    for lang in ("en", "fr"):
        put(
            server,
            url=url,
            headers={"cache-control": "max-age=60", "vary": "Accept-Language"},
            body=f"hello-{lang}",
            request_headers={"accept-language": lang},
        )
    for lang in ("en", "fr", "de"):  # the last put of the URL wins, as in Miniflare
        assert match(server, url=url, request_headers={"accept-language": lang})["body"] == "hello-fr"


async def test_vary_setting_keeps_one_entry_per_request_header_variant():
    cache = CacheStorage.from_config(None, {"vary": True}).default
    for lang in ("en", "fr"):
        request = Request(URL + "/vary", headers={"accept-language": lang})
        await cache.put(
            request, Response(f"hello-{lang}", headers={"cache-control": "max-age=60", "vary": "Accept-Language"})
        )
    for lang, expected in (("fr", "hello-fr"), ("en", "hello-en")):
        hit = await cache.match(Request(URL + "/vary", headers={"accept-language": lang}))
        assert await hit.text() == expected
    assert await cache.match(Request(URL + "/vary", headers={"accept-language": "de"})) is None
    with pytest.raises(ValueError, match="vary must be true or false"):
        CacheStorage.from_config(None, {"vary": "yes"})


def test_ignore_method_on_match_and_delete(server):
    url = URL + "/ignore-method"
    put(server, url=url, headers={"cache-control": "max-age=60"})
    assert match(server, url=url, method="POST") is None
    assert match(server, url=url, method="POST", ignoreMethod=True)["status"] == 200
    assert call(server, "delete", url=url, method="POST")["deleted"] is False
    assert call(server, "delete", url=url, method="POST", ignoreMethod=True)["deleted"] is True
    assert match(server, url=url) is None
    assert call(server, "delete", url=url)["deleted"] is False


def test_named_caches_are_separate_from_default_and_each_other(server):
    url = URL + "/named"
    put(server, url=url, cache="a", headers={"cache-control": "max-age=60"}, body="in a")
    assert match(server, url=url, cache="a")["body"] == "in a"
    assert match(server, url=url, cache="b") is None
    assert match(server, url=url) is None


# -- freshness arithmetic, with a fake clock ------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


async def test_s_maxage_wins_over_max_age_and_entries_expire():
    clock = Clock()
    cache = CacheStorage(clock=clock).default
    await cache.put(URL, Response("x", headers={"cache-control": "max-age=10, s-maxage=100"}))
    clock.now += 50
    hit = await cache.match(URL)
    assert hit is not None and hit.headers.get("age") == "50"
    clock.now += 51
    assert await cache.match(URL) is None


async def test_default_edge_ttl_by_status_when_no_directive_as_cloudflare_documents():
    clock = Clock()
    cache = CacheStorage(clock=clock).default
    await cache.put(URL + "/200", Response("ok"))
    await cache.put(URL + "/404", Response("missing", status=404))
    await cache.put(URL + "/500", Response("error", status=500))
    assert await cache.match(URL + "/500") is None
    clock.now += DEFAULT_EDGE_TTL_S[404] + 1
    assert await cache.match(URL + "/404") is None
    assert (await cache.match(URL + "/200")).status == 200
    clock.now += DEFAULT_EDGE_TTL_S[200]
    assert await cache.match(URL + "/200") is None


async def test_expires_is_measured_against_the_date_header():
    clock = Clock()
    date = datetime.fromtimestamp(clock.now - 1000, UTC)
    expires = datetime.fromtimestamp(clock.now - 1000 + 60, UTC)
    headers = {"date": format_datetime(date, usegmt=True), "expires": format_datetime(expires, usegmt=True)}
    decision = decide(200, Headers(headers), clock.now)
    assert decision.storable and decision.ttl_s == 60


async def test_max_entry_bytes_limit_drops_larger_entries():
    cache = CacheStorage(max_entry_bytes=4).default
    await cache.put(URL + "/small", Response("1234", headers={"cache-control": "max-age=60"}))
    await cache.put(URL + "/big", Response("12345", headers={"cache-control": "max-age=60"}))
    assert await cache.match(URL + "/small") is not None
    assert await cache.match(URL + "/big") is None
    with pytest.raises(ValueError, match="max_entry_bytes"):
        CacheStorage.from_config(None, {"max_entry_bytes": 0})
    with pytest.raises(ValueError, match="unknown key"):
        CacheStorage.from_config(None, {"max_entry_byte": 10})


async def test_put_needs_an_unused_body_and_a_response():
    cache = CacheStorage().default
    used = Response("x")
    await used.text()
    with pytest.raises(TypeError, match="already been used"):
        await cache.put(URL, used)
    with pytest.raises(TypeError, match="expected a Response"):
        await cache.put(URL, "not a response")
    with pytest.raises(TypeError):
        await cache.match("relative/url")


def test_parse_cache_control_handles_quoted_values_and_case():
    assert parse_cache_control('Public, MAX-AGE=5, private="Set-Cookie, X"') == {
        "public": None,
        "max-age": "5",
        "private": "Set-Cookie, X",
    }


async def test_entries_persist_under_persist_to_across_restarts(tmp_path):
    first = CacheStorage(tmp_path)
    await first.default.put(URL, Response("kept", headers={"cache-control": "max-age=600"}))
    await first.aclose()
    assert (tmp_path / "v3" / "cache" / "cache.sqlite").is_file()
    second = CacheStorage(tmp_path)
    hit = await second.default.match(Request(URL))
    assert hit is not None and await hit.text() == "kept"
    await second.aclose()


def test_dev_server_keeps_the_cache_under_persist_to(run_worker, tmp_path):
    host = {"host": "example.com"}  # the cache key is the URL: the same host on both ports
    with run_worker(WORKER, persist_to=tmp_path) as srv:
        assert httpx.get(srv.url + "/page-persisted", headers=host, timeout=30).headers["x-source"] == "origin"
    with run_worker(WORKER, persist_to=tmp_path) as srv:
        again = httpx.get(srv.url + "/page-persisted", headers=host, timeout=30)
        assert again.headers["cf-cache-status"] == "HIT"


def test_bad_cache_settings_are_one_config_error_line(make_worker):
    from flarelet.runtime.host import WorkerHost
    from flarelet.wrangler_compat.config import ConfigError

    root = make_worker(
        "from workers import Response\nasync def on_fetch(request, env):\n    return Response('x')\n",
        toml="[flarelet.cache]\nmax_entry_bytes = 0\n",
    )
    with pytest.raises(ConfigError, match="max_entry_bytes must be a positive integer") as info:
        WorkerHost.from_config(root)
    assert "\n" not in str(info.value) and "wrangler.toml" in str(info.value)
