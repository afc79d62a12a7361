"""The storage plugins as the runtime sees them: found by config key, validate, BindingInfo rows."""

from __future__ import annotations

from pathlib import Path

import pytest

from flarelet.bindings import registry
from flarelet.bindings.d1 import D1Database
from flarelet.bindings.kv import KVNamespace
from flarelet.bindings.queues import WorkerQueue
from flarelet.bindings.r2 import R2Bucket


@pytest.mark.parametrize(
    ("key", "section", "rows", "cls"),
    [
        (
            "kv_namespaces",
            [{"binding": "KV", "id": "0000000001"}, {"binding": "CACHE", "id": "a", "preview_id": "p"}],
            [("KV", "KV Namespace", "0000000001"), ("CACHE", "KV Namespace", "p")],
            KVNamespace,
        ),
        (
            "d1_databases",
            [{"binding": "DB", "database_name": "quotes", "database_id": "uuid-1"}, {"binding": "OTHER"}],
            [("DB", "D1 Database", "quotes"), ("OTHER", "D1 Database", "OTHER")],
            D1Database,
        ),
        (
            "r2_buckets",
            [{"binding": "BUCKET", "bucket_name": "my-bucket"}],
            [("BUCKET", "R2 Bucket", "my-bucket")],
            R2Bucket,
        ),
        (
            "queues",
            {"producers": [{"binding": "QUEUE", "queue": "my-queue"}]},
            [("QUEUE", "Queue", "my-queue")],
            WorkerQueue,
        ),
    ],
)
async def test_plugins_build_binding_rows(tmp_path: Path, key, section, rows, cls) -> None:
    plugin = registry.load_plugin(key)
    assert plugin is not None and plugin.key == key
    ctx = registry.BindingContext(config_dir=tmp_path, persist_to=tmp_path / "state")
    infos = plugin.create(section, ctx)
    assert [(i.name, i.type_label, i.resource) for i in infos] == rows
    assert all(isinstance(i.value, cls) and i.mode == "local" for i in infos)
    await plugin.aclose()


@pytest.mark.parametrize(
    ("key", "section", "bad_key"),
    [
        ("kv_namespaces", {"binding": "KV"}, "kv_namespaces"),
        ("kv_namespaces", [{"id": "x"}], "kv_namespaces[0].binding"),
        ("kv_namespaces", [{"binding": "KV", "id": 5}], "kv_namespaces[0].id"),
        ("kv_namespaces", [{"binding": "KV"}, {"binding": "KV"}], "kv_namespaces[1].binding"),
        ("kv_namespaces", [{"binding": "not valid"}], "kv_namespaces[0].binding"),
        ("d1_databases", [{"database_name": "x"}], "d1_databases[0].binding"),
        ("d1_databases", ["DB"], "d1_databases[0]"),
        ("r2_buckets", [{"binding": "B", "bucket_name": ["x"]}], "r2_buckets[0].bucket_name"),
    ],
)
def test_plugins_reject_bad_sections(tmp_path: Path, key, section, bad_key) -> None:
    plugin = registry.load_plugin(key)
    ctx = registry.BindingContext(config_dir=tmp_path, persist_to=None)
    with pytest.raises(registry.ConfigSectionError) as info:
        plugin.create(section, ctx)
    assert info.value.key == bad_key
    assert info.value.message


async def test_limits_can_be_overridden_through_options(tmp_path: Path) -> None:
    plugin = registry.load_plugin("kv_namespaces")
    ctx = registry.BindingContext(config_dir=tmp_path, persist_to=None, options={"kv_limits": {"max_value_bytes": 3}})
    kv = plugin.create([{"binding": "KV"}], ctx)[0].value
    assert kv.limits.max_value_bytes == 3
    await plugin.aclose()
