"""Static assets: served before the worker, and through ``env.ASSETS.fetch``."""

from __future__ import annotations

import httpx
import pytest

WORKER = """
from workers import WorkerEntrypoint, Response

class Default(WorkerEntrypoint):
    async def fetch(self, request):
        path = request.url.split("/", 3)[3]
        if path.startswith("via-binding/"):
            return await self.env.ASSETS.fetch(request.url.replace("/via-binding", ""))
        if path == "binding-request":
            r = await self.env.ASSETS.fetch(request)
            return Response(f"binding gave {r.status}")
        return Response("worker: /" + path)
"""

FILES = {
    "public/hello.txt": "static hello\n",
    "public/about.html": "<p>about</p>\n",
    "public/docs/index.html": "<p>docs</p>\n",
    "public/404.html": "<p>custom 404</p>\n",
    "public/audio/sample.wav": "RIFF....WAVE",
}


@pytest.fixture
def server(make_worker, run_worker):
    root = make_worker(WORKER, '[assets]\ndirectory = "./public"\nbinding = "ASSETS"\n', files=FILES)
    with run_worker(root) as srv:
        yield srv


def test_assets_are_served_before_the_worker(server):
    r = httpx.get(server.url + "/hello.txt")
    assert (r.status_code, r.text) == (200, "static hello\n")
    assert r.headers["content-type"] == "text/plain; charset=utf-8" and r.headers["etag"]
    assert httpx.get(server.url + "/audio/sample.wav").headers["content-type"] in ("audio/x-wav", "audio/wav")
    assert httpx.get(server.url + "/not-a-file").text == "worker: /not-a-file"
    assert httpx.post(server.url + "/hello.txt").text == "worker: /hello.txt"  # only GET/HEAD hit assets


def test_html_handling_and_etag(server):
    assert httpx.get(server.url + "/about").text == "<p>about</p>\n"
    r = httpx.get(server.url + "/about.html")
    assert (r.status_code, r.headers["location"]) == (307, "/about")
    r = httpx.get(server.url + "/docs")
    assert (r.status_code, r.headers["location"]) == (307, "/docs/")
    assert httpx.get(server.url + "/docs/").text == "<p>docs</p>\n"
    etag = httpx.get(server.url + "/hello.txt").headers["etag"]
    assert httpx.get(server.url + "/hello.txt", headers={"if-none-match": etag}).status_code == 304


def test_path_traversal_is_not_served(server):
    r = httpx.get(server.url + "/..%2f..%2fwrangler.toml")
    assert r.text.startswith("worker:")


def test_assets_binding_fetch(server):
    r = httpx.get(server.url + "/via-binding/hello.txt")
    assert (r.status_code, r.text) == (200, "static hello\n")
    assert httpx.get(server.url + "/via-binding/missing.txt").status_code == 404
    assert httpx.get(server.url + "/binding-request").text == "binding gave 404"
    assert any(b.name == "ASSETS" and b.type_label == "Assets" for b in server.host.bindings)


def test_assets_only_project_with_404_page(make_worker, run_worker):
    root = make_worker("", files=FILES)
    (root / "src/entry.py").unlink()
    (root / "wrangler.toml").write_text(
        'name = "site"\ncompatibility_date = "2025-11-02"\n'
        '[assets]\ndirectory = "public"\nnot_found_handling = "404-page"\n'
    )
    with run_worker(root) as srv:
        assert httpx.get(srv.url + "/hello.txt").text == "static hello\n"
        r = httpx.get(srv.url + "/nowhere")
        assert (r.status_code, r.text) == (404, "<p>custom 404</p>\n")
        assert httpx.post(srv.url + "/hello.txt").status_code == 405


def test_run_worker_first(make_worker, run_worker):
    root = make_worker(
        WORKER, '[assets]\ndirectory = "public"\nbinding = "ASSETS"\nrun_worker_first = ["/audio/*"]\n', files=FILES
    )
    with run_worker(root) as srv:
        assert httpx.get(srv.url + "/audio/sample.wav").text == "worker: /audio/sample.wav"
        assert httpx.get(srv.url + "/hello.txt").text == "static hello\n"
