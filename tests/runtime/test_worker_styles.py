"""Worker code in both Cloudflare styles runs unchanged (class Default and legacy on_fetch)."""

from __future__ import annotations

import httpx
import pytest

from flarelet.runtime.host import WorkerHost
from flarelet.runtime.loader import WorkerLoadError


def test_class_entrypoint_fetch_with_request(make_worker, run_worker):
    root = make_worker("""
        from workers import WorkerEntrypoint, Response, Request, fetch

        class Default(WorkerEntrypoint):
            async def fetch(self, request):
                assert isinstance(request, Request)
                return Response(f"{request.method} {request.url}", headers={"x-style": "class"})
    """)
    with run_worker(root) as server:
        r = httpx.get(server.url + "/path?q=1")
    assert r.status_code == 200
    assert r.text == f"GET {server.url}/path?q=1"
    assert r.headers["x-style"] == "class"
    assert r.headers["content-type"] == "text/plain;charset=UTF-8"


def test_class_entrypoint_fetch_without_request_argument(make_worker, run_worker):
    root = make_worker("""
        from workers import WorkerEntrypoint, Response

        class Default(WorkerEntrypoint):
            async def fetch(self):
                return Response("no request needed")
    """)
    with run_worker(root) as server:
        assert httpx.get(server.url).text == "no request needed"


def test_one_entrypoint_instance_per_request(make_worker, run_worker):
    root = make_worker("""
        from workers import WorkerEntrypoint, Response

        created = []

        class Default(WorkerEntrypoint):
            def __init__(self, ctx, env):
                super().__init__(ctx, env)
                created.append(self)

            async def fetch(self, request):
                return Response(str(len(created)))
    """)
    with run_worker(root) as server:
        assert [httpx.get(server.url).text for _ in range(3)] == ["1", "2", "3"]


@pytest.mark.parametrize("signature", ["request, env", "request, env, ctx", "request"])
def test_legacy_on_fetch(make_worker, run_worker, signature):
    root = make_worker(
        f"""
        from workers import Response

        async def on_fetch({signature}):
            env_seen = "env" in locals() and env.WHO
            return Response(f"legacy {{request.method}} {{env_seen}}")
    """,
        toml='[vars]\nWHO = "me"\n',
    )
    with run_worker(root) as server:
        text = httpx.post(server.url, content=b"x").text
    assert text == ("legacy POST False" if signature == "request" else "legacy POST me")


def test_legacy_js_style_response_new(make_worker, run_worker):
    root = make_worker("""
        from js import Response, Headers, JSON
        from pyodide.ffi import to_js

        async def on_fetch(request, env):
            if request.url.endswith("/json"):
                return Response.json(to_js({"ok": True}), {"status": 201})
            headers = Headers.new({"x-legacy": "yes"}.items())
            return Response.new("hello " + JSON.stringify({"a": 1}), headers=headers, status=202)
    """)
    with run_worker(root) as server:
        r = httpx.get(server.url)
        j = httpx.get(server.url + "/json")
    assert (r.status_code, r.text, r.headers["x-legacy"]) == (202, 'hello {"a":1}', "yes")
    assert (j.status_code, j.json()) == (201, {"ok": True})


def test_handler_decorator(make_worker, run_worker):
    root = make_worker("""
        from workers import handler, Response

        @handler
        async def on_fetch(request, env):
            return Response("decorated")
    """)
    with run_worker(root) as server:
        assert httpx.get(server.url).text == "decorated"


def test_sync_fetch_method_is_accepted(make_worker, run_worker):
    root = make_worker("""
        from workers import WorkerEntrypoint, Response

        class Default(WorkerEntrypoint):
            def fetch(self, request):
                return Response("sync")
    """)
    with run_worker(root) as server:
        assert httpx.get(server.url).text == "sync"


def test_sibling_modules_and_packages_import(make_worker, run_worker):
    root = make_worker(
        """
        from workers import WorkerEntrypoint, Response
        from helpers import shout
        from lib.words import WORD

        class Default(WorkerEntrypoint):
            async def fetch(self, request):
                return Response(shout(WORD))
    """,
        files={
            "src/helpers.py": "def shout(s):\n    return s.upper() + '!'\n",
            "src/lib/__init__.py": "",
            "src/lib/words.py": "WORD = 'sibling'\n",
        },
    )
    with run_worker(root) as server:
        assert httpx.get(server.url).text == "SIBLING!"


def test_both_styles_is_an_error(make_worker):
    root = make_worker("""
        from workers import WorkerEntrypoint, Response

        class Default(WorkerEntrypoint):
            async def fetch(self, request):
                return Response("a")

        async def on_fetch(request, env):
            return Response("b")
    """)
    with pytest.raises(WorkerLoadError, match="Cannot define multiple default entrypoints"):
        WorkerHost.from_config(root, raise_on_load_error=True)


def test_module_without_handlers_is_named(make_worker):
    root = make_worker("x = 1\n")
    with pytest.raises(WorkerLoadError, match="entry.py defines no handler"):
        WorkerHost.from_config(root, raise_on_load_error=True)


async def test_scheduled_in_both_styles(make_worker):
    class_root = make_worker(
        """
        from workers import WorkerEntrypoint
        seen = []

        class Default(WorkerEntrypoint):
            async def scheduled(self, controller, env, ctx):
                seen.append((controller.cron, controller.scheduledTime, env.X, type(ctx).__name__))
    """,
        toml='[vars]\nX = "1"\n',
    )
    host = WorkerHost.from_config(class_root, raise_on_load_error=True)
    result = await host.scheduled("* * * * 30", 1000)
    assert result == {"outcome": "ok", "noRetry": False}
    assert host.dispatcher.worker.module.seen == [("* * * * 30", 1000.0, "1", "ExecutionContext")]

    legacy_root = make_worker("""
        seen = []

        async def on_scheduled(controller, env, ctx):
            seen.append(controller.cron)
            raise RuntimeError("boom")
    """)
    host = WorkerHost.from_config(legacy_root, raise_on_load_error=True)
    assert (await host.scheduled("0 0 * * *"))["outcome"] == "exception"
    assert host.dispatcher.worker.module.seen == ["0 0 * * *"]


async def test_queue_handler_through_dispatch_queue(make_worker):
    root = make_worker("""
        from workers import WorkerEntrypoint
        received = []

        class Default(WorkerEntrypoint):
            async def queue(self, batch, env, ctx):
                for message in batch.messages:
                    received.append((batch.queue, message.id, message.body, message.attempts))
                    if message.body == "bad":
                        message.retry(delaySeconds=5)
                    else:
                        message.ack()
    """)
    host = WorkerHost.from_config(root, raise_on_load_error=True)
    outcome = await host.dispatch_queue(
        "jobs", [{"id": "m1", "body": "ok"}, {"id": "m2", "body": "bad", "attempts": 2}]
    )
    assert outcome["outcome"] == "ok"
    assert outcome["explicitAcks"] == ["m1"]
    assert outcome["retryMessages"] == [{"msgId": "m2", "delaySeconds": 5}]
    assert host.dispatcher.worker.module.received == [("jobs", "m1", "ok", 1), ("jobs", "m2", "bad", 2)]


async def test_queue_handler_failure_and_missing_handler(make_worker):
    root = make_worker("""
        from workers import WorkerEntrypoint, Response

        class Default(WorkerEntrypoint):
            async def fetch(self, request):
                return Response("only fetch")
    """)
    host = WorkerHost.from_config(root, raise_on_load_error=True)
    outcome = await host.dispatch_queue("jobs", [{"body": 1}])
    assert outcome["outcome"] == "exception"
    assert (await host.scheduled("* * * * *"))["outcome"] == "exception"


def test_workers_module_exports_sdk_names():
    import flarelet.runtime.workers_sdk as sdk

    names = (
        "Blob BlobEnding BlobValue Body Context DurableObject FetchKwargs FetchResponse File FormData "
        "FormDataValue Headers JSBody Request RequestInitCfProperties Response WorkerEntrypoint "
        "WorkflowEntrypoint env fetch handler import_from_javascript patch_env python_from_rpc "
        "python_to_rpc waitUntil wait_until"
    ).split()
    missing = [n for n in names if not hasattr(sdk, n)]
    assert missing == []
