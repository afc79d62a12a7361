"""Persistence: data survives closing and reopening (in this process and in a new one),
the on-disk layout mirrors wrangler's ``v3`` folders, and crash leftovers are cleaned up."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from flarelet.bindings import registry
from flarelet.bindings.d1 import D1Plugin
from flarelet.bindings.kv import KvPlugin
from flarelet.bindings.r2 import R2Bucket, R2Plugin
from flarelet.bindings.storage.paths import hashed_name

CONFIG = {
    "kv_namespaces": [{"binding": "KV", "id": "kv-id"}],
    "d1_databases": [{"binding": "DB", "database_name": "app", "database_id": "db-uuid"}],
    "r2_buckets": [{"binding": "BUCKET", "bucket_name": "media"}],
}


def build(root: Path | None):
    ctx = registry.BindingContext(config_dir=Path("."), persist_to=root)
    plugins = [KvPlugin(), D1Plugin(), R2Plugin()]
    env = {}
    for plugin in plugins:
        for info in plugin.create(CONFIG[plugin.key], ctx):
            env[info.name] = info.value
    return plugins, env


async def close(plugins) -> None:
    for plugin in plugins:
        await plugin.aclose()


async def write_everything(env) -> None:
    await env["KV"].put("greeting", "hello", metadata={"v": 1})
    await env["DB"].exec("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT);")
    await env["DB"].prepare("INSERT INTO notes (body) VALUES (?)").bind("remember me").run()
    await env["BUCKET"].put("photos/cat.jpg", b"\xff\xd8meow", httpMetadata={"contentType": "image/jpeg"})


async def check_everything(env) -> None:
    assert (await env["KV"].getWithMetadata("greeting")) == {
        "value": "hello",
        "metadata": {"v": 1},
        "cacheStatus": None,
    }
    assert await env["DB"].prepare("SELECT body FROM notes").first("body") == "remember me"
    photo = await env["BUCKET"].get("photos/cat.jpg")
    assert await photo.arrayBuffer() == b"\xff\xd8meow" and photo.httpMetadata.contentType == "image/jpeg"


async def test_data_survives_reopen(tmp_path: Path) -> None:
    plugins, env = build(tmp_path)
    await write_everything(env)
    await close(plugins)
    plugins, env = build(tmp_path)
    await check_everything(env)
    await close(plugins)


async def test_closed_bindings_reopen_lazily(tmp_path: Path) -> None:
    plugins, env = build(tmp_path)
    await write_everything(env)
    await close(plugins)
    # a binding still referenced after aclose (another worker sharing the files) keeps working
    await check_everything(env)
    await close(plugins)


async def test_data_is_read_by_a_new_process(tmp_path: Path) -> None:
    plugins, env = build(tmp_path)
    await write_everything(env)
    # no close: acknowledged writes are durable without a clean shutdown
    script = textwrap.dedent(
        f"""
        import asyncio
        from pathlib import Path
        from flarelet.bindings.kv import KVNamespace
        from flarelet.bindings.d1 import D1Database
        from flarelet.bindings.r2 import R2Bucket
        async def main():
            root = Path({str(tmp_path)!r})
            print(await KVNamespace.open(root, "kv-id").get("greeting"))
            print(await D1Database.open(root, "db-uuid").prepare("SELECT body FROM notes").first("body"))
            print(await (await R2Bucket.open(root, "media").get("photos/cat.jpg")).text())
        asyncio.run(main())
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["hello", "remember me", "\ufffd\ufffdmeow"]
    await close(plugins)


async def test_in_memory_when_persist_to_is_none(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    plugins, env = build(None)
    await write_everything(env)
    await check_everything(env)
    await close(plugins)
    assert list(tmp_path.iterdir()) == []
    plugins, env = build(None)  # a fresh in-memory world
    assert await env["KV"].get("greeting") is None
    await close(plugins)


async def test_layout_mirrors_wrangler_v3(tmp_path: Path) -> None:
    plugins, env = build(tmp_path)
    await write_everything(env)
    v3 = tmp_path / "v3"
    assert (v3 / "kv" / "miniflare-KVNamespaceObject" / f"{hashed_name('kv-id')}.sqlite").is_file()
    assert (v3 / "d1" / "miniflare-D1DatabaseObject" / f"{hashed_name('db-uuid')}.sqlite").is_file()
    assert (v3 / "r2" / "miniflare-R2BucketObject" / f"{hashed_name('media')}.sqlite").is_file()
    blobs = list((v3 / "r2" / hashed_name("media") / "blobs").iterdir())
    assert len(blobs) == 1 and len(blobs[0].name) == 32
    await close(plugins)


async def test_crash_leftovers_are_collected_at_open(tmp_path: Path) -> None:
    bucket = R2Bucket.open(tmp_path, "gc")
    await bucket.put("keep", b"kept")
    await bucket.aclose()
    folder = bucket._blobs.folder
    orphan = folder / ("a" * 32)  # a body whose row never committed
    orphan.write_bytes(b"orphan")
    tmp = folder / (".tmp-" + "b" * 32)  # a body cut off mid-write
    tmp.write_bytes(b"partial")
    fresh = folder / ("c" * 32)  # maybe another process about to commit: too young to touch
    fresh.write_bytes(b"young")
    old = time.time() - 3600
    for path in (orphan, tmp):
        os.utime(path, (old, old))
    reopened = R2Bucket.open(tmp_path, "gc")
    assert await (await reopened.get("keep")).text() == "kept"  # opening runs the collection
    names = set(os.listdir(folder))
    assert orphan.name not in names and tmp.name not in names and fresh.name in names
    assert len(names) == 2
    await reopened.aclose()
