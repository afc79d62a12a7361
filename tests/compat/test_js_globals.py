"""The ``js`` globals as a Python Worker uses them (``from js import URL, crypto, ...``), over a real
server. Expected values come from Python's own hashlib/hmac/base64, or are what workerd returns."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

import httpx
import pytest

WORKER = r"""
from js import (URL, URLSearchParams, TextEncoder, TextDecoder, atob, btoa, crypto, JSON, Object,
                Array, Date, Uint8Array, ArrayBuffer, console, Headers, Request, Response, fetch)
from pyodide.ffi import JsException, JsProxy, to_js
from workers import WorkerEntrypoint
import workers


def js_obj(d):
    return to_js(d, dict_converter=Object.fromEntries)


def js_error(fn):
    try:
        fn()
    except JsException as exc:
        return [exc.name, exc.message]
    return None


async def js_error_async(coro):
    try:
        await coro
    except JsException as exc:
        return [exc.name, exc.message]
    return None


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        url = URL.new(request.url)
        route = url.pathname
        q = url.searchParams
        if route == "/url":
            u = URL.new("https://Example.COM:443/a/../b/./c?x=1&y=two%20words#frag")
            rel = URL.new("../up?z=1", "https://h.test/one/two/three")
            u.searchParams.set("verify", "12-a+b/=")
            u.searchParams.append("sp", "a b~")
            u.pathname = "/moved"
            return workers.Response.json({
                "href": u.href, "origin": u.origin, "host": u.host, "pathname": u.pathname, "search": u.search,
                "hash": u.hash, "protocol": u.protocol, "verify": u.searchParams.get("verify"),
                "has": "verify" in u.searchParams, "rel": rel.toString(), "str": str(rel),
                "invalid": js_error(lambda: URL.new("not a url")),
                "canParse": [URL.canParse("/x", "https://a.test"), URL.canParse("/x")],
                "params": URLSearchParams.new("a=1&b=2&a=3&e=").getAll("a"),
                "empty": URLSearchParams.new("?e=&f").get("e"),
                "from_dict": URLSearchParams.new(to_js({"k": "v w"}, dict_converter=Object.fromEntries)).toString(),
                "request_query": q.get("name"),
            })
        if route == "/encoding":
            enc = TextEncoder.new()
            data = enc.encode("héllo €")
            dec = TextDecoder.new()
            fatal = TextDecoder.new("utf-8", to_js({"fatal": True}, dict_converter=Object.fromEntries))
            return workers.Response.json({
                "byteLength": data.byteLength, "bytes": list(data), "encoding": enc.encoding,
                "decoded": dec.decode(data), "bom": TextDecoder.new().decode(b"\xef\xbb\xbfhi"),
                "lossy": TextDecoder.new().decode(b"a\xffb"),
                "fatal": js_error(lambda: fatal.decode(Uint8Array.new([0xff]))),
                "btoa": btoa("hello"), "atob": atob("aGVsbG8"), "atob_ws": atob(" aGVs\nbG8= "),
                "binary": [ord(c) for c in atob(btoa("\x00\xff"))],
                "atob_bad": js_error(lambda: atob("!!!")),
                "btoa_bad": js_error(lambda: btoa("€")),
            })
        if route == "/crypto":
            enc = TextEncoder.new()
            arr = Uint8Array.new(16)
            same = crypto.getRandomValues(arr) is arr
            key = await crypto.subtle.importKey(
                "raw", enc.encode("secret"), js_obj({"name": "HMAC", "hash": "SHA-256"}),
                False, ["sign", "verify"])
            mac = await crypto.subtle.sign("HMAC", key, enc.encode("message"))
            sha1 = await crypto.subtle.digest("SHA-1", enc.encode("abc"))
            sha256 = await crypto.subtle.digest({"name": "SHA-256"}, enc.encode("abc"))
            sha512 = await crypto.subtle.digest("SHA-512", b"abc")
            return workers.Response.json({
                "uuid": crypto.randomUUID(), "random_len": len(arr), "same_array": same,
                "random_nonzero": any(arr),
                "quota": js_error(lambda: crypto.getRandomValues(Uint8Array.new(65537))),
                "sha1": bytes(sha1).hex(), "sha256": sha256.to_bytes().hex(), "sha512": bytes(sha512).hex(),
                "digest_bad": await js_error_async(crypto.subtle.digest("SHA-3", b"x")),
                "mac": bytes(mac).hex(), "macLength": mac.byteLength,
                "verify_ok": await crypto.subtle.verify("HMAC", key, mac, enc.encode("message")),
                "verify_bad": await crypto.subtle.verify("HMAC", key, mac, enc.encode("messagE")),
                "key": [key.type, key.algorithm.name, key.algorithm.hash.name, key.extractable],
                "export_denied": await js_error_async(crypto.subtle.exportKey("raw", key)),
                "tse_equal": crypto.subtle.timingSafeEqual(enc.encode("abc"), enc.encode("abc")),
                "tse_differ": crypto.subtle.timingSafeEqual(enc.encode("abc"), enc.encode("abd")),
                "tse_lengths": js_error(lambda: crypto.subtle.timingSafeEqual(enc.encode("a"), enc.encode("ab"))),
            })
        if route == "/values":
            parsed = JSON.parse('{"a": {"b": [1, 2, {"c": true}]}, "n": null}')
            obj = to_js({"x": 1, "nested": {"y": [1, 2]}}, dict_converter=Object.fromEntries)
            as_map = to_js({"k": "v"})
            png = to_js(b"\x89PNG\r\n")
            return workers.Response.json({
                "parsed": [parsed.a.b[2].c, parsed["a"]["b"][0], parsed.n, isinstance(parsed, JsProxy)],
                "stringify": JSON.stringify(obj), "indented": JSON.stringify(js_obj({"a": [1]}), None, 2),
                "obj_attr": obj.nested.y[1], "map": [as_map.get("k"), as_map.has("k"), as_map.size],
                "keys": list(Object.keys(obj)), "entries": [list(e) for e in Object.entries({"p": 1})],
                "array": [Array.isArray(Array.new(1, 2)), Array.new(1, 2).length, getattr(Array, "from")([3, 4])],
                "png": [type(png).__name__, png.byteLength, type(png.buffer).__name__, png.buffer.byteLength],
                "date_now_ms": Date.now(), "epoch": Date.new(0).toISOString(),
                "date_iso": Date.new("2024-02-29T12:00:00Z").getTime(),
                "date_year": Date.new(86400000 * 366).getFullYear(),
            })
        if route == "/timers":
            import asyncio
            from js import setTimeout, clearTimeout, Error
            fired = []
            setTimeout(lambda v: fired.append(v), 5, "first")
            cancelled = setTimeout(lambda: fired.append("cancelled"), 5)
            clearTimeout(cancelled)
            await asyncio.sleep(0.05)
            err = Error.new("boom")
            error = [err.name, err.message, isinstance(err, JsException)]
            return workers.Response.json({"fired": fired, "error": error})
        if route == "/png":
            # what the image example does: to_js(bytes).buffer as a Response body
            return workers.Response(to_js(b"\x89PNG-bytes").buffer, headers={"content-type": "image/png"})
        if route == "/blob":
            from js import Blob, FormData
            form = FormData.new()
            form.append("k", "v")
            blob = Blob.new(["a", "b"], js_obj({"type": "text/x-blob"}))
            return Response.new(blob, headers={"x-form": form.get("k"), "x-size": str(blob.size)})
        if route == "/bytes-body":
            return Response.new(TextEncoder.new().encode("from a Uint8Array"))
        if route == "/init-object":
            init = js_obj({"status": 201, "statusText": "Made", "headers": {"x-a": "1"}})
            made = Response.new("created", init)
            made.headers.set("x-status-text", made.statusText)
            return made
        if route == "/init-kwargs":
            return Response.new("teapot", status=418, headers=Headers.new([["x-b", "2"]]))
        if route == "/response-as-init":
            original = Response.new("old", status=202, headers={"x-keep": "yes"})
            return Response.new("new body", original)
        if route == "/json-init":
            return Response.json(to_js({"ok": True}, dict_converter=Object.fromEntries),
                                 to_js({"status": 203}, dict_converter=Object.fromEntries))
        if route == "/request-new":
            req = Request.new("https://a.test/p", js_obj({"method": "POST", "body": "b", "headers": {"x": "y"}}))
            copy = Request.new("https://b.test/q", req)
            return workers.Response.json({"method": copy.method, "url": copy.url, "x": copy.headers.get("x"),
                                          "body": await copy.text()})
        return workers.Response("?", status=404)
"""


@pytest.fixture(scope="module")
def server(serve_worker):
    return serve_worker(WORKER)


def get(server, path: str, **kwargs) -> httpx.Response:
    return httpx.get(server.url + path, timeout=30, **kwargs)


def test_url_parses_normalises_and_serialises_as_workerd(server):
    data = get(server, "/url?name=Ada%20L").json()
    assert (
        data["href"] == "https://example.com/moved?x=1&y=two+words&verify=12-a%2Bb%2F%3D&sp=a+b%7E#frag"
    )  # searchParams re-serialises the query
    assert (data["origin"], data["host"], data["protocol"], data["hash"]) == (
        "https://example.com",
        "example.com",
        "https:",
        "#frag",
    )
    assert data["verify"] == "12-a+b/=" and data["has"] is True
    assert data["rel"] == data["str"] == "https://h.test/one/up?z=1"
    assert data["invalid"] == ["TypeError", "Invalid URL string."]
    assert data["canParse"] == [True, False]
    assert data["params"] == ["1", "3"] and data["empty"] == ""
    assert data["from_dict"] == "k=v+w" and data["request_query"] == "Ada L"


def test_text_encoding_and_base64_as_workerd(server):
    data = get(server, "/encoding").json()
    assert bytes(data["bytes"]) == "héllo €".encode() and data["byteLength"] == len("héllo €".encode())
    assert data["encoding"] == "utf-8" and data["decoded"] == "héllo €"
    assert data["bom"] == "hi" and data["lossy"] == "a\ufffdb"
    assert data["fatal"][0] == "TypeError"
    assert data["btoa"] == base64.b64encode(b"hello").decode() and data["atob"] == data["atob_ws"] == "hello"
    assert data["binary"] == [0, 255]
    assert data["atob_bad"][0] == "InvalidCharacterError" and data["btoa_bad"][0] == "InvalidCharacterError"


def test_crypto_digest_hmac_and_random_match_the_standard(server):
    data = get(server, "/crypto").json()
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", data["uuid"])
    assert data["random_len"] == 16 and data["same_array"] is True and data["random_nonzero"] is True
    assert data["quota"][0] == "QuotaExceededError"
    assert data["sha1"] == hashlib.sha1(b"abc").hexdigest()
    assert data["sha256"] == hashlib.sha256(b"abc").hexdigest()
    assert data["sha512"] == hashlib.sha512(b"abc").hexdigest()
    assert data["digest_bad"][0] == "NotSupportedError"
    assert data["mac"] == hmac.new(b"secret", b"message", "sha256").hexdigest() and data["macLength"] == 32
    assert (data["verify_ok"], data["verify_bad"]) == (True, False)
    assert data["key"] == ["secret", "HMAC", "SHA-256", False]
    assert data["export_denied"][0] == "InvalidAccessError"
    assert (data["tse_equal"], data["tse_differ"]) == (True, False)
    assert data["tse_lengths"] == ["TypeError", "Input buffers must have the same byte length."]


def test_json_object_array_date_and_byte_interop(server):
    data = get(server, "/values").json()
    assert data["parsed"] == [True, 1, None, True]
    assert data["stringify"] == '{"x":1,"nested":{"y":[1,2]}}'
    assert data["indented"] == '{\n  "a": [\n    1\n  ]\n}'
    assert data["obj_attr"] == 2 and data["map"] == ["v", True, 1]
    assert data["keys"] == ["x", "nested"] and data["entries"] == [["p", 1]]
    assert data["array"] == [True, 2, [3, 4]]
    assert data["png"] == ["Uint8Array", 6, "ArrayBuffer", 6]
    assert isinstance(data["date_now_ms"], int) and data["date_now_ms"] > 1_600_000_000_000
    assert data["epoch"] == "1970-01-01T00:00:00.000Z" and data["date_iso"] == 1709208000000
    assert data["date_year"] == 1971


def test_set_timeout_and_clear_timeout_run_on_the_event_loop(server):
    assert get(server, "/timers").json() == {"fired": ["first"], "error": ["Error", "boom", True]}


def test_console_log_prints_js_style_values(serve_worker, capfd):
    srv = serve_worker(
        """
        from js import console
        from workers import Response
        def on_fetch(request):
            console.log("hello", 1, None, True, False)
            return Response("ok")
        """
    )
    assert get(srv, "/").text == "ok"
    assert "hello 1 null true false" in capfd.readouterr().out


def test_js_blob_and_formdata_build_bodies(server):
    r = get(server, "/blob")
    assert (r.text, r.headers["content-type"], r.headers["x-form"], r.headers["x-size"]) == (
        "ab",
        "text/x-blob",
        "v",
        "2",
    )


def test_array_buffer_and_uint8array_are_response_bodies(server):
    r = get(server, "/png")
    assert r.content == b"\x89PNG-bytes" and r.headers["content-type"] == "image/png"
    assert get(server, "/bytes-body").content == b"from a Uint8Array"


def test_response_new_takes_js_init_objects_and_a_response_as_init(server):
    r = get(server, "/init-object")
    assert (r.status_code, r.headers["x-status-text"], r.headers["x-a"], r.text) == (201, "Made", "1", "created")
    r = get(server, "/init-kwargs")
    assert (r.status_code, r.headers["x-b"], r.text) == (418, "2", "teapot")
    r = get(server, "/response-as-init")
    assert (r.status_code, r.headers["x-keep"], r.text) == (202, "yes", "new body")
    r = get(server, "/json-init")
    assert (r.status_code, r.json(), r.headers["content-type"]) == (203, {"ok": True}, "application/json")


def test_request_new_takes_an_init_object_and_a_request_as_init(server):
    assert get(server, "/request-new").json() == {"method": "POST", "url": "https://b.test/q", "x": "y", "body": "b"}


def test_importing_a_missing_js_name_gives_one_line_naming_it_and_the_worker_line(serve_worker):
    srv = serve_worker(
        """
        from workers import Response
        from js import URL, NoSuchGlobal

        def on_fetch(request):
            return Response("unreachable")
        """
    )
    r = get(srv, "/")
    assert r.status_code == 500 and len(r.text.strip().splitlines()) == 1
    assert "src/entry.py:3: from js import URL, NoSuchGlobal" in r.text
    assert "flarelet does not provide js.NoSuchGlobal" in r.text and "Traceback" not in r.text


def test_a_missing_name_imported_inside_a_handler_is_one_line_too(serve_worker):
    srv = serve_worker(
        """
        from workers import Response

        def on_fetch(request):
            from pyodide.ffi import not_a_thing
            return Response("unreachable")
        """
    )
    r = get(srv, "/")
    assert r.status_code == 500 and len(r.text.strip().splitlines()) == 1
    assert "src/entry.py:5:" in r.text and "pyodide.ffi.not_a_thing" in r.text
