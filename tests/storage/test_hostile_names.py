"""Hostile keys and names never reach the file system: files stay inside the persist folder."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from flarelet.bindings import registry
from flarelet.bindings.d1 import D1Plugin
from flarelet.bindings.kv import KvPlugin
from flarelet.bindings.r2 import R2Plugin

HOSTILE_KEYS = [
    "../../../../etc/passwd",
    "../escape",
    "/etc/shadow",
    "/",
    "a/../../b",
    "..\\..\\windows\\system32",
    "C:\\evil",
    "nul\x00byte",
    "\x00",
    "%2e%2e%2f%2e%2e",
    "~/.ssh/id_rsa",
    "con",
    "a" * 512,
    "ü/../../ü",
    "new\nline",
]
SAFE_FILE = re.compile(r"^([0-9a-f]{64}\.sqlite(-wal|-shm|-journal)?|[0-9a-f]{32})$")
SAFE_DIR = re.compile(r"^(v3|kv|d1|r2|blobs|miniflare-[A-Za-z0-9]+Object|[0-9a-f]{64})$")


def assert_tidy(root: Path) -> None:
    """Every path under ``root`` is one we chose: hashed names, random blob ids, fixed folders."""
    for folder, dirs, files in os.walk(root):
        for name in dirs:
            assert SAFE_DIR.match(name), f"unexpected folder {name!r} in {folder}"
        for name in files:
            assert SAFE_FILE.match(name), f"unexpected file {name!r} in {folder}"
            assert Path(folder, name).resolve().is_relative_to(root.resolve())


def env_for(root: Path, *, namespace_id: str = "ns", bucket: str = "bucket", database_id: str = "db"):
    ctx = registry.BindingContext(config_dir=Path("."), persist_to=root)
    kv = KvPlugin().create([{"binding": "KV", "id": namespace_id}], ctx)[0].value
    r2 = R2Plugin().create([{"binding": "B", "bucket_name": bucket}], ctx)[0].value
    db = D1Plugin().create([{"binding": "DB", "database_id": database_id}], ctx)[0].value
    return kv, r2, db


async def test_hostile_r2_and_kv_keys_stay_inside(tmp_path: Path) -> None:
    root = tmp_path / "state"
    outside_before = set(os.listdir(tmp_path))
    kv, r2, db = env_for(root)
    for i, key in enumerate(HOSTILE_KEYS):
        body = f"body {i}".encode()
        await r2.put(key, body)
        await kv.put(key, body)
    for i, key in enumerate(HOSTILE_KEYS):
        assert await (await r2.get(key)).arrayBuffer() == f"body {i}".encode()
        assert await kv.get(key, "arrayBuffer") == f"body {i}".encode()
    assert sorted(o.key for o in (await r2.list()).objects) == sorted(HOSTILE_KEYS)
    assert sorted(k["name"] for k in (await kv.list())["keys"]) == sorted(HOSTILE_KEYS)
    # NUL bytes do not truncate keys: "nul\x00byte" and "nul" are different
    assert await kv.get("nul") is None and await r2.head("nul") is None
    listed = await r2.list(prefix="nul\x00")
    assert [o.key for o in listed.objects] == ["nul\x00byte"]
    await r2.delete(HOSTILE_KEYS)
    for key in HOSTILE_KEYS:
        await kv.delete(key)
    assert (await r2.list()).objects == []
    assert set(os.listdir(tmp_path)) == outside_before | {"state"}
    assert_tidy(root)
    for binding in (kv, r2, db):
        await binding.aclose()


async def test_very_long_keys_are_rejected_not_written(tmp_path: Path) -> None:
    kv, r2, db = env_for(tmp_path)
    from flarelet.bindings.jsobject import JsException

    with pytest.raises(JsException):
        await r2.put("x" * 100_000, b"data")
    with pytest.raises(JsException):
        await kv.put("x" * 100_000, b"data")
    assert (await r2.list()).objects == []
    assert_tidy(tmp_path)
    for binding in (kv, r2, db):
        await binding.aclose()


@pytest.mark.parametrize(
    "name",
    ["../../outside", "/absolute/path", "with\x00nul", "..", "x" * 5000, "C:\\Windows", "a/b/../../.."],
)
async def test_hostile_resource_names_are_hashed(tmp_path: Path, name: str) -> None:
    root = tmp_path / "state"
    kv, r2, db = env_for(root, namespace_id=name, bucket=name, database_id=name)
    await kv.put("k", "v")
    await r2.put("k", "v")
    await db.exec("CREATE TABLE t (x);")
    assert set(os.listdir(tmp_path)) == {"state"}
    assert_tidy(root)
    for binding in (kv, r2, db):
        await binding.aclose()
